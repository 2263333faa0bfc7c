"""The engine and precision rules: every row of the table in aerialseg.runners.choice, and the refusals."""

from __future__ import annotations

import pytest

from aerialseg.errors import AerialsegError, MissingDependencyError
from aerialseg.hardware import Hardware
from aerialseg.runners.choice import PrecisionUnavailableError, choose_engine

ZEN4 = Hardware("AMD EPYC 9R14", 2, frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
SKYLAKE = Hardware("Intel Xeon Platinum 8175M", 2, frozenset({"avx2", "avx512f", "avx512bw"}))
GRAVITON3 = Hardware("Neoverse-V1", 4, frozenset({"asimd", "bf16", "asimddp"}))
GPU = Hardware("AMD EPYC 9R14", 16, frozenset({"avx2", "avx512_bf16"}), ("NVIDIA H100 80GB HBM3",))


@pytest.mark.parametrize(
    "hardware, backend, precision, ort, expected",
    [
        (ZEN4, "auto", "auto", True, ("torch", "bf16")),
        (GRAVITON3, "auto", "auto", True, ("torch", "bf16")),
        (SKYLAKE, "auto", "auto", True, ("onnx", "fp32")),
        (SKYLAKE, "auto", "auto", False, ("torch", "fp32")),
        (ZEN4, "auto", "fp32", True, ("onnx", "fp32")),
        (ZEN4, "auto", "fp32", False, ("torch", "fp32")),
        (ZEN4, "torch", "auto", True, ("torch", "bf16")),
        (ZEN4, "onnx", "auto", True, ("onnx", "fp32")),  # int8 is never chosen by auto
        (SKYLAKE, "torch", "auto", True, ("torch", "fp32")),
        (ZEN4, "auto", "int8", True, ("onnx", "int8")),
        (SKYLAKE, "auto", "int8", True, ("onnx", "int8")),
        (GPU, "auto", "auto", True, ("torch", "fp16")),
        (GPU, "auto", "fp32", True, ("torch", "fp32")),
        (GPU, "auto", "bf16", True, ("torch", "bf16")),
        (GPU, "onnx", "auto", True, ("onnx", "fp16")),
    ],
)
def test_rules(hardware, backend, precision, ort, expected):
    choice = choose_engine(backend, precision, None, hardware, onnxruntime=ort)
    assert (choice.backend, choice.precision) == expected
    assert choice.reason and choice.requested_precision == precision
    assert choice.gated == (expected[1] != "fp32")
    assert choice.device == ("cuda" if hardware is GPU else "cpu")


def test_an_explicit_cpu_device_on_a_gpu_machine_follows_the_cpu_rules():
    choice = choose_engine("auto", "auto", "cpu", GPU, onnxruntime=True)
    assert (choice.backend, choice.precision, choice.device) == ("torch", "bf16", "cpu")


def test_reasons_say_why():
    assert "avx512_bf16" in choose_engine("auto", "auto", None, ZEN4, onnxruntime=True).describe()
    assert "no native bf16" in choose_engine("auto", "auto", None, SKYLAKE, onnxruntime=True).reason
    assert "aerialseg[cpu]" in choose_engine("auto", "auto", None, SKYLAKE, onnxruntime=False).reason


@pytest.mark.parametrize(
    "hardware, backend, precision, device, ort, error, words",
    [
        (SKYLAKE, "auto", "bf16", None, True, PrecisionUnavailableError, ["no native bf16", "--precision fp32"]),
        (ZEN4, "auto", "fp16", None, True, PrecisionUnavailableError, ["CUDA", "--precision bf16"]),
        (ZEN4, "onnx", "bf16", None, True, PrecisionUnavailableError, ["ONNX Runtime has no bf16", "--backend torch"]),
        (ZEN4, "torch", "int8", None, True, PrecisionUnavailableError, ["int8 runs on ONNX Runtime", "--backend onnx"]),
        (ZEN4, "auto", "int8", None, False, MissingDependencyError, ["aerialseg[cpu]", "--precision fp32"]),
        (ZEN4, "onnx", "auto", None, False, MissingDependencyError, ["aerialseg[cpu]"]),
        (ZEN4, "auto", "auto", "cuda", True, PrecisionUnavailableError, ["no CUDA GPU", "--device cpu"]),
        (GPU, "onnx", "bf16", None, True, PrecisionUnavailableError, ["bf16 runs on PyTorch"]),
    ],
)
def test_refusals_name_what_is_missing_and_the_alternative(hardware, backend, precision, device, ort, error, words):
    with pytest.raises(error) as info:
        choose_engine(backend, precision, device, hardware, onnxruntime=ort)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_onnx_files_run_as_exported_or_int8():
    assert choose_engine("auto", "auto", None, ZEN4, onnx_file=True, onnxruntime=True).precision == "fp32"
    fp16 = choose_engine("auto", "auto", None, GPU, onnx_file=True, onnx_precision="fp16", onnxruntime=True)
    assert (fp16.backend, fp16.precision, fp16.gated) == ("onnx", "fp16", True)
    assert choose_engine("auto", "int8", None, ZEN4, onnx_file=True, onnxruntime=True).precision == "int8"
    with pytest.raises(PrecisionUnavailableError, match="exported with"):
        choose_engine("auto", "bf16", None, ZEN4, onnx_file=True, onnxruntime=True)


def test_unknown_names_are_refused():
    with pytest.raises(AerialsegError, match="choose one of auto, torch, onnx"):
        choose_engine("tensorrt", "auto", None, ZEN4, onnxruntime=True)
    with pytest.raises(AerialsegError, match="choose one of auto, fp32"):
        choose_engine("auto", "half", None, ZEN4, onnxruntime=True)
