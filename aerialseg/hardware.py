"""What this machine can run fast, read without importing torch: CPU features and CUDA.

The engine and precision rules (:mod:`aerialseg.runners.choice`) decide from these facts,
and ``aerialseg doctor`` prints them, so both must be cheap to read. CPU features come
from ``/proc/cpuinfo`` (Linux; elsewhere the set is empty and every rule falls back to
fp32). CUDA is asked of torch when the caller is about to run torch anyway
(``use_torch=True``); otherwise it is inferred without torch: a torch build with CUDA
(``torch/version.py``) and an NVIDIA driver on the machine, unless
``CUDA_VISIBLE_DEVICES`` hides every device. The Linux driver lists its GPUs under
``/proc/driver/nvidia/gpus``, so ``--device cuda:3`` on a machine with two is refused
without torch too; where that list is missing, the number stays unknown
(``cuda_count_known``) until torch says. :func:`available_memory` says how much memory the
process can still take, for predict's and doctor's check of a raster's width.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import resource
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["Hardware", "detect_hardware", "parse_cpuinfo", "available_memory"]

# CPU flags (Linux names) that give native bf16 dot products: AVX512-BF16 (Cooper Lake,
# Zen 4 and later), AMX-BF16 (Sapphire Rapids), and Arm's BF16 extension.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# int8 dot products (VNNI, AMX-INT8, Arm dot product): what ONNX Runtime's int8 kernels use.
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
_NVIDIA_PROC = Path("/proc/driver/nvidia")
_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


@dataclass(frozen=True)
class Hardware:
    """The facts the engine rules read."""

    cpu: str
    cores: int
    cpu_flags: frozenset[str]
    cuda_devices: tuple[str, ...] = ()
    cuda_count_known: bool = True  # False: CUDA is there, but how many GPUs only torch can say

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (emulated bf16 is slower than fp32, so it does not count)."""
        return any(flag in self.cpu_flags for flag in _BF16_FLAGS)

    @property
    def bf16_flag(self) -> str | None:
        """The flag that gives native bf16, for messages."""
        return next((flag for flag in _BF16_FLAGS if flag in self.cpu_flags), None)

    @property
    def int8_dot(self) -> bool:
        """int8 dot-product instructions."""
        return any(flag in self.cpu_flags for flag in _INT8_FLAGS)

    @property
    def cuda(self) -> bool:
        """At least one usable CUDA device."""
        return bool(self.cuda_devices)

    def describe(self) -> str:
        """One line: CPU, cores, reduced-precision features, GPUs."""
        features = [name for name, present in (("bf16", self.native_bf16), ("int8 dot", self.int8_dot)) if present]
        text = f"{self.cpu}, {self.cores} cores, native {' and '.join(features) if features else 'fp32 only'}"
        return text + (f"; CUDA: {', '.join(self.cuda_devices)}" if self.cuda else "; no CUDA GPU")


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """``(model name, flags)`` of the first processor in a ``/proc/cpuinfo`` text (x86 or Arm)."""
    model = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    return (
        model.group(1).strip() if model else platform.processor() or platform.machine(),
        frozenset(flags.group(1).split()) if flags else frozenset(),
    )


def _driver_gpus() -> list[str] | None:
    """The GPUs the NVIDIA driver lists (model names, in bus order), or None where it lists none."""
    folders = sorted(_NVIDIA_PROC.joinpath("gpus").glob("*/information"))
    names = []
    for information in folders:
        try:
            model = re.search(r"^Model:\s*(.+)$", information.read_text(), re.MULTILINE)
        except OSError:
            return None
        names.append(model.group(1).strip() if model else "CUDA GPU")
    return names or None


def _visible(gpus: list[str]) -> tuple[tuple[str, ...], bool]:
    """The driver's ``gpus`` that ``CUDA_VISIBLE_DEVICES`` leaves, and whether their number is sure.

    CUDA takes the listed indexes in order and stops at the first that names no GPU; entries
    given by UUID (``GPU-...``, ``MIG-...``) are left for torch to count.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return tuple(gpus), True
    visible = []
    for entry in (e.strip() for e in listed.split(",")):
        if entry.startswith(("GPU-", "MIG-")):
            return ("CUDA GPU",), False
        if not (entry.isdigit() and int(entry) < len(gpus)):
            break
        visible.append(gpus[int(entry)])
    return tuple(visible), True


def _cuda_without_torch() -> tuple[tuple[str, ...], bool]:
    """``(GPU names, whether their number is known)``, read without torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return (), True
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return (), True
    version = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        built_with_cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]", version.read_text(), re.MULTILINE)
    except OSError:
        return (), True
    driver = _NVIDIA_PROC.joinpath("version").exists() or shutil.which("nvidia-smi") is not None
    if not (built_with_cuda and driver):
        return (), True
    gpus = _driver_gpus()
    return (("CUDA GPU",), False) if gpus is None else _visible(gpus)


def _cuda_with_torch() -> tuple[str, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


@lru_cache(maxsize=2)
def detect_hardware(use_torch: bool = False) -> Hardware:
    """Read :class:`Hardware` of the machine running aerialseg (cached per process)."""
    try:
        cpu, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu, flags = platform.processor() or platform.machine(), frozenset()
    cuda, counted = (_cuda_with_torch(), True) if use_torch else _cuda_without_torch()
    return Hardware(cpu=cpu, cores=os.cpu_count() or 1, cpu_flags=flags, cuda_devices=cuda, cuda_count_known=counted)


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None where nothing says.

    The least of the machine's available memory (``MemAvailable``: free memory and caches the
    kernel can drop), the container's limit less its use (cgroup ``memory.max``), and the
    address-space limit (``ulimit -v``) less the address space in use: past any of them the
    process is killed or its allocations fail.
    """
    limits = [_meminfo_available(), _cgroup_room(), _address_space_room()]
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        found = re.search(r"^MemAvailable:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _cgroup_room() -> int | None:
    """The process's cgroup memory limit less its current use (v2, else v1 as a container sees it); None without one."""
    root = Path("/sys/fs/cgroup")
    try:
        entry = re.search(r"^0::(.*)$", Path("/proc/self/cgroup").read_text(), re.MULTILINE)
    except OSError:
        return None
    own = root / entry.group(1).lstrip("/") if entry else root
    for limit_file, used_file in (
        (own / "memory.max", own / "memory.current"),
        (root / "memory/memory.limit_in_bytes", root / "memory/memory.usage_in_bytes"),
    ):
        try:
            limit, used = limit_file.read_text().strip(), used_file.read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and int(limit) < _NO_LIMIT:
            return max(0, int(limit) - int(used))
    return None


def _address_space_room() -> int | None:
    """``RLIMIT_AS`` less the address space in use (Linux ``/proc/self/statm``); None without a limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
    return max(0, soft - used)
