"""The engine and precision rules: every row of the table in aerialseg.runners.choice, and the refusals."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from types import SimpleNamespace

import pytest

from aerialseg.errors import AerialsegError, MissingDependencyError
from aerialseg.hardware import Hardware, detect_hardware
from aerialseg.runners.choice import DeviceUnavailableError, PrecisionUnavailableError, choose_engine, device_problem

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
        (ZEN4, "auto", "auto", "cuda", True, DeviceUnavailableError, ["no CUDA GPU", "--device cpu"]),
        (GPU, "auto", "auto", "cuda:1", True, DeviceUnavailableError, ["cuda:1: this machine has 1 CUDA GPU"]),
        (GPU, "auto", "auto", "gpu", True, DeviceUnavailableError, ["'gpu' is not a device", "cuda:N"]),
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


def test_devices_are_cpu_cuda_or_a_gpu_this_machine_has():
    two = replace(GPU, cuda_devices=("NVIDIA H200", "NVIDIA H200"))
    assert [device_problem(d, two) for d in ("cpu", "cuda", "cuda:0", "cuda:1")] == [None] * 4
    assert "this machine has 2 CUDA GPUs (cuda:0 to cuda:1)" in device_problem("cuda:2", two)
    assert device_problem("cuda:5", replace(two, cuda_count_known=False)) is None  # torch will say
    assert "no CUDA GPU is available; use --device cpu" in device_problem("cuda:0", ZEN4)
    for typo in ("gpu", "cuda0", "cuda:", "cuda:-1", "CPU", "cpu:0", " cuda", "mps"):
        assert "is not a device" in device_problem(typo, two), typo


@pytest.fixture
def nvidia(tmp_path, monkeypatch):
    """``nvidia(*models)``: a torch built with CUDA and a driver listing these GPUs, seen without torch."""
    torch_folder = tmp_path / "torch"
    torch_folder.mkdir()
    (torch_folder / "version.py").write_text("cuda = '12.4'\n")
    find_spec = importlib.util.find_spec
    fake_torch = SimpleNamespace(submodule_search_locations=[str(torch_folder)])
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: fake_torch if name == "torch" else find_spec(name, *a)
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def gpus(*models):
        proc = tmp_path / "proc"
        (proc / "version").parent.mkdir(parents=True, exist_ok=True)
        (proc / "version").write_text("NVRM version: 580.159.03\n")
        for bus, model in enumerate(models):
            folder = proc / "gpus" / f"0000:{bus + 1:02x}:00.0"
            folder.mkdir(parents=True)
            (folder / "information").write_text(f"Model: \t\t {model}\nIRQ:   \t\t 42\n")
        monkeypatch.setattr("aerialseg.hardware._NVIDIA_PROC", proc)
        detect_hardware.cache_clear()
        return detect_hardware()

    yield gpus
    detect_hardware.cache_clear()


def test_the_gpus_the_driver_lists_are_counted_without_torch(nvidia, monkeypatch):
    hardware = nvidia("NVIDIA H200", "NVIDIA A100-SXM4-80GB")
    assert hardware.cuda_devices == ("NVIDIA H200", "NVIDIA A100-SXM4-80GB") and hardware.cuda_count_known
    assert "cuda:3: this machine has 2 CUDA GPUs" in device_problem("cuda:3", hardware)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7")  # CUDA stops at the first index naming no GPU
    detect_hardware.cache_clear()
    assert detect_hardware().cuda_devices == ("NVIDIA A100-SXM4-80GB",)
    assert "this machine has 1 CUDA GPU (cuda:0)" in device_problem("cuda:1", detect_hardware())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8c8e3c5e-0000")  # by UUID: left to torch to count
    detect_hardware.cache_clear()
    assert detect_hardware().cuda and not detect_hardware().cuda_count_known


def test_a_driver_without_a_gpu_list_leaves_the_count_to_torch(nvidia):
    hardware = nvidia()
    assert hardware.cuda and not hardware.cuda_count_known
    assert device_problem("cuda:3", hardware) is None
