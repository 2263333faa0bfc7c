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
(``cuda_count_known``) until torch says.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["Hardware", "detect_hardware", "parse_cpuinfo"]

# CPU flags (Linux names) that give native bf16 dot products: AVX512-BF16 (Cooper Lake,
# Zen 4 and later), AMX-BF16 (Sapphire Rapids), and Arm's BF16 extension.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# int8 dot products (VNNI, AMX-INT8, Arm dot product): what ONNX Runtime's int8 kernels use.
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
_NVIDIA_PROC = Path("/proc/driver/nvidia")


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
