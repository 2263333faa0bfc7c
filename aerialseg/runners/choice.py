"""Which engine and precision run the network: the rules, stated once, with their reasons.

``--backend auto`` and ``--precision auto`` (the defaults) resolve here, from the
machine's facts (:mod:`aerialseg.hardware`) and what is installed; ``aerialseg doctor``
prints the same choice with the same reason. The rules follow measurements (the README's
benchmark tables); each reason names the one that applies:

======================  ==============================================================
device / precision      engine
======================  ==============================================================
CPU, auto, native bf16  PyTorch, bf16 inference form (BatchNorm folded, bf16 weights,
                        channels-last): faster than ONNX Runtime fp32 where measured
CPU, auto, no bf16      fp32 on ONNX Runtime when installed (faster than PyTorch eager
                        on every CPU measured), else PyTorch
CPU, fp32               ONNX Runtime when installed, else PyTorch
CPU, bf16               PyTorch; refused without native bf16 (emulated bf16 is slower
                        than fp32)
int8 (never auto)       ONNX Runtime, static QDQ quantization calibrated on real tiles;
                        on the CPUs measured it gains less than bf16 and agrees less
CUDA, auto              PyTorch with fp16 autocast (ONNX Runtime's CUDA and TensorRT
                        providers are not measured faster yet)
CUDA, fp32/bf16/fp16    PyTorch (explicit ``--backend onnx``: fp32 or fp16 export)
an ``.onnx`` file       ONNX Runtime at the precision it was exported with, or int8
======================  ==============================================================

Every reduced-precision choice then passes the accuracy gate (:mod:`.gate`) before a run.
An explicit combination that cannot run (``bf16`` without native bf16, ``fp16`` without
CUDA, ``int8`` without ONNX Runtime) is refused here, before anything is read or written,
and so is a device that is not ``cpu``, ``cuda`` or ``cuda:N`` or that this machine lacks
(:func:`device_problem`, which the command line asks while it reads ``--device``).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

from ..errors import AerialsegError, MissingDependencyError
from ..hardware import Hardware

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "TTA_MODES",
    "DEFAULT_MIN_AGREEMENT",
    "EngineChoice",
    "choose_engine",
    "device_problem",
    "PrecisionUnavailableError",
    "DeviceUnavailableError",
]

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
TTA_MODES = ("flip", "d4")
"""Test-time augmentation (:mod:`.tta`): the 4 flips, or the 8 symmetries of the square."""
DEFAULT_MIN_AGREEMENT = 0.99
"""The accuracy gate's threshold (:mod:`.gate`): share of pixels whose class must equal fp32's."""
REDUCED = ("bf16", "fp16", "int8")
ENGINE_NAMES = {"torch": "PyTorch", "onnx": "ONNX Runtime"}
_DEVICE = re.compile(r"cpu|cuda(?::(\d+))?")


class PrecisionUnavailableError(AerialsegError, ValueError):
    """The precision asked for cannot run on this machine or engine."""


class DeviceUnavailableError(AerialsegError, ValueError):
    """The device asked for is not one aerialseg runs on, or this machine does not have it."""


def device_problem(device: str, hardware: Hardware) -> str | None:
    """Why ``device`` cannot run on ``hardware``, with the alternative; None when it can.

    Devices are ``cpu``, ``cuda`` and ``cuda:N``. A GPU number is checked only where the
    number of GPUs is known (see :attr:`Hardware.cuda_count_known`).
    """
    match = _DEVICE.fullmatch(device)
    if match is None:
        return f"{device!r} is not a device; use cpu, cuda or cuda:N (N: the GPU's number)"
    if device == "cpu":
        return None
    if not hardware.cuda:
        return f"{device}: no CUDA GPU is available; use --device cpu"
    count = len(hardware.cuda_devices)
    if match.group(1) is not None and int(match.group(1)) >= count and hardware.cuda_count_known:
        gpus = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        return f"{device}: this machine has {count} CUDA GPU{'s' if count > 1 else ''} ({gpus}); use one of them or cpu"
    return None


@dataclass(frozen=True)
class EngineChoice:
    """What will run: ``backend`` (torch or onnx), ``precision``, ``device`` and why."""

    backend: str
    precision: str
    device: str
    reason: str
    requested_precision: str = "auto"

    @property
    def gated(self) -> bool:
        """Reduced precision: checked against fp32 on real tiles before the run."""
        return self.precision in REDUCED

    def describe(self) -> str:
        """``ONNX Runtime fp32 on cpu (reason)``."""
        return f"{ENGINE_NAMES[self.backend]} {self.precision} on {self.device} ({self.reason})"


def onnxruntime_installed() -> bool:
    """ONNX Runtime importable (either extra), without importing it."""
    return importlib.util.find_spec("onnxruntime") is not None


def choose_engine(
    backend: str,
    precision: str,
    device: str | None,
    hardware: Hardware,
    *,
    onnx_file: bool = False,
    onnx_precision: str = "fp32",
    onnxruntime: bool | None = None,
) -> EngineChoice:
    """Resolve ``auto`` and check an explicit choice (see the module docstring).

    ``onnx_file``: the model is an exported ``.onnx`` file (at ``onnx_precision``).
    ``onnxruntime``: whether ONNX Runtime is installed (default: looked up).
    """
    if backend not in BACKENDS:
        raise AerialsegError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise AerialsegError(f"unknown precision {precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
    ort = onnxruntime_installed() if onnxruntime is None else onnxruntime
    if device is not None and (problem := device_problem(device, hardware)):
        raise DeviceUnavailableError(f"--device {problem}")
    cuda = device.startswith("cuda") if device else hardware.cuda
    where = device or ("cuda" if cuda else "cpu")
    if (onnx_file or backend == "onnx" or precision == "int8") and not ort:
        raise MissingDependencyError(
            "ONNX Runtime is not installed" + (" (int8 runs on it)" if precision == "int8" else ""),
            hint="pip install 'aerialseg[cpu]' (or 'aerialseg[gpu]' on a CUDA machine; never both)"
            + ("" if onnx_file or backend == "onnx" else ", or use --precision fp32"),
        )
    if onnx_file:
        return _onnx_file(precision, onnx_precision, where)
    if precision == "int8":
        if backend == "torch":
            raise PrecisionUnavailableError("int8 runs on ONNX Runtime, not PyTorch", hint="use --backend onnx or auto")
        return EngineChoice(
            "onnx", "int8", where, "int8 asked for: static quantization, calibrated on real tiles", precision
        )
    if cuda:
        return _cuda(backend, precision, where, hardware)
    return _cpu(backend, precision, where, hardware, ort)


def _cpu(backend: str, precision: str, device: str, hardware: Hardware, ort: bool) -> EngineChoice:
    if precision == "fp16":
        raise PrecisionUnavailableError(
            "fp16 needs a CUDA GPU; CPUs compute fp16 slower than fp32",
            hint="use --precision bf16 on a CPU with native bf16, or fp32",
        )
    if precision == "bf16" and not hardware.native_bf16:
        raise PrecisionUnavailableError(
            f"this CPU ({hardware.cpu}) has no native bf16 (AVX512-BF16, AMX or Arm BF16)",
            hint="use --precision fp32" + (" (or int8 with ONNX Runtime)" if ort else ""),
        )
    if precision == "bf16" and backend == "onnx":
        raise PrecisionUnavailableError(
            "ONNX Runtime has no bf16 kernels on the CPU", hint="use --backend torch (or auto) for bf16"
        )
    if precision in ("auto", "bf16") and hardware.native_bf16 and backend != "onnx":
        why = "asked for" if precision == "bf16" else f"this CPU has native bf16, {hardware.bf16_flag}"
        return EngineChoice("torch", "bf16", device, f"{why}; BatchNorm folded, bf16 weights", precision)
    if backend == "torch":
        return EngineChoice("torch", "fp32", device, _fp32_why(precision, hardware, "PyTorch asked for"), precision)
    if ort:
        why = "ONNX Runtime asked for" if backend == "onnx" else "the fastest fp32 engine on CPUs"
        return EngineChoice("onnx", "fp32", device, _fp32_why(precision, hardware, why), precision)
    why = "ONNX Runtime is not installed: pip install 'aerialseg[cpu]' runs fp32 faster"
    return EngineChoice("torch", "fp32", device, _fp32_why(precision, hardware, why), precision)


def _fp32_why(precision: str, hardware: Hardware, engine: str) -> str:
    if precision == "fp32":
        return f"fp32 asked for; {engine}"
    if precision == "auto" and not hardware.native_bf16:
        return f"no native bf16 on this CPU; {engine}"
    return engine


def _cuda(backend: str, precision: str, device: str, hardware: Hardware) -> EngineChoice:
    if backend == "onnx":
        if precision == "bf16":
            raise PrecisionUnavailableError(
                "bf16 runs on PyTorch, not ONNX Runtime", hint="use --backend torch (or auto)"
            )
        chosen = "fp16" if precision == "auto" else precision
        return EngineChoice("onnx", chosen, device, f"ONNX Runtime asked for; {chosen} graph on CUDA", precision)
    chosen = "fp16" if precision == "auto" else precision
    why = (
        "CUDA GPU: autocast; ONNX Runtime's CUDA and TensorRT providers are not measured faster"
        if precision == "auto"
        else f"{chosen} asked for"
    )
    return EngineChoice("torch", chosen, device, why, precision)


def _onnx_file(precision: str, exported: str, device: str) -> EngineChoice:
    if precision in ("bf16", "fp16") and precision != exported:
        raise PrecisionUnavailableError(
            f"this ONNX file runs at the precision it was exported with ({exported}), not {precision}",
            hint="pass the weights file instead, or export with --fp16",
        )
    if precision == "int8":
        return EngineChoice("onnx", "int8", device, "int8 asked for: static quantization of the ONNX file", precision)
    return EngineChoice("onnx", exported, device, "an ONNX file runs at the precision it was written with", precision)
