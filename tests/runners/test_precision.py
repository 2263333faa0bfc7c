"""Reduced precision end to end on real imagery with the trained sample weights, and its refusals.

The machine's CPU features are replaced (monkeypatch) where a test needs a CPU with or without
native bf16, so every branch runs on any CI machine; bf16 on a CPU without it is emulated
(slower, same numbers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from aerialseg.conventions import SAMPLE_ORTHOPHOTO
from aerialseg.hardware import Hardware
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.runners import RunnerSpec
from aerialseg.runners.torch_runner import TorchRunner
from aerialseg.sampling import RasterTileSample
from aerialseg.source import RasterSource
from aerialseg.tiling import TILE_ALIGN, plan_tiles
from aerialseg.weights import load_model

SAMPLE = "manet-r18-potsdam-sample"
NEON = SAMPLE_ORTHOPHOTO
WITH_BF16 = Hardware("test CPU with AVX512-BF16", 2, frozenset({"avx512f", "avx512_bf16", "avx512_vnni"}))
WITHOUT_BF16 = Hardware("test CPU without bf16", 2, frozenset({"avx2", "fma"}))


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(hardware)`` makes aerialseg see that CPU (and no GPU)."""

    def use(hardware):
        monkeypatch.setattr("aerialseg.hardware.detect_hardware", lambda use_torch=False: hardware)

    return use


def neon_tiles(card, count=2):
    with RasterSource(NEON, card) as source:  # read at the model's 5 cm, as predict does
        plan = plan_tiles(source.height, source.width, card.tile_size, card.overlap, align=TILE_ALIGN)
        return RasterTileSample(source, plan, NEON.name).tiles(count)


def test_bf16_inference_form_agrees_with_fp32_on_real_imagery():
    model, card = load_model(SAMPLE)
    fp32 = TorchRunner(model, card, "cpu", "fp32")
    bf16 = TorchRunner.from_weights(SAMPLE, "cpu", "bf16")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bf16.model.modules())
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    agree = pixels = 0
    for data, valid in neon_tiles(card):
        expected, got = fp32(data[None])[0], bf16(data[None])[0]
        assert got.dtype == np.float32 and np.allclose(got.sum(0), 1.0, atol=1e-4)
        agree += int((expected.argmax(0) == got.argmax(0))[valid].sum())
        pixels += int(valid.sum())
    assert pixels > 400_000 and agree / pixels >= 0.99


def test_auto_on_a_cpu_with_native_bf16_runs_bf16_gated_and_tags_it(tmp_path, cli, cpu):
    cpu(WITH_BF16)
    out = tmp_path / "neon_classes.tif"
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "-o", str(out)])
    assert code == 0, err
    assert "engine: PyTorch bf16 on cpu (this CPU has native bf16, avx512_bf16" in err
    assert "bf16 accuracy gate: " in err
    with rasterio.open(out) as dst:
        tags = dst.tags()
    assert tags["AERIALSEG_PRECISION"].startswith("bf16 (accuracy gate: ")
    assert float(tags["AERIALSEG_PRECISION_AGREEMENT"]) >= 0.99
    assert "BatchNorms folded" in tags["AERIALSEG_BACKEND"]


@pytest.mark.parametrize(
    "hardware, argv, words",
    [
        (WITHOUT_BF16, ["--precision", "bf16"], ["no native bf16", "--precision fp32"]),
        (WITH_BF16, ["--precision", "fp16"], ["fp16 needs a CUDA GPU"]),
        (WITH_BF16, ["--precision", "bf16", "--backend", "onnx"], ["ONNX Runtime has no bf16"]),
        (WITH_BF16, ["--device", "cuda"], ["no CUDA GPU", "--device cpu"]),
    ],
)
def test_impossible_precisions_are_one_line_and_write_nothing(tmp_path, cli, cpu, hardware, argv, words):
    cpu(hardware)
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "--out-dir", str(tmp_path), *argv])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == (2 if "--device" in argv else 1) and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(word in lines[0] for word in words), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_int8_without_onnxruntime_names_the_extra(tmp_path, cli, monkeypatch):
    monkeypatch.setattr("aerialseg.runners.choice.onnxruntime_installed", lambda: False)
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "--out-dir", str(tmp_path), "--precision", "int8"])
    assert code == 1 and "ONNX Runtime is not installed (int8 runs on it)" in err and "aerialseg[cpu]" in err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_precision_or_threshold_is_a_usage_error(cli):
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "--precision", "half"])
    assert code == 2 and "'half' is not one of 'auto', 'fp32', 'bf16', 'fp16', 'int8'" in err
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "--min-agreement", "99"])
    assert code == 2 and "--min-agreement" in err


def test_doctor_states_the_engine_and_why(cli, cpu):
    cpu(WITHOUT_BF16)
    code, out, _ = cli(["doctor", str(NEON), "-m", SAMPLE, "--json"])
    report = json.loads(out)
    assert code == 0 and report["facts"]["hardware"].startswith("test CPU without bf16, 2 cores, native fp32 only")
    assert report["facts"]["engine"].startswith("ONNX Runtime fp32 on cpu (no native bf16 on this CPU")
    code, out, _ = cli(["doctor", str(NEON), "-m", SAMPLE, "--precision", "bf16", "--json"])
    report = json.loads(out)
    assert code == 1 and any("no native bf16" in f["message"] for f in report["findings"])


@pytest.mark.slow
def test_auto_on_a_cpu_without_bf16_runs_onnxruntime_and_int8_is_calibrated_gated_and_cached(
    tmp_path, cli, cpu, rasters
):
    cpu(WITHOUT_BF16)
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "-o", str(tmp_path / "fp32.tif")])
    assert code == 0, err
    with rasterio.open(tmp_path / "fp32.tif") as dst:
        assert dst.tags()["AERIALSEG_BACKEND"].startswith("ONNX Runtime (CPUExecutionProvider), fp32")
        assert dst.tags()["AERIALSEG_PRECISION"] == "fp32"
        fp32 = dst.read(1)
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "aerialseg" / "onnx"
    for attempt in range(2):
        out = tmp_path / f"int8_{attempt}.tif"
        # int8 agrees less where ONNX Runtime lacks VNNI (an AVX2-only CPU: 98.8 % on this tile): the threshold says so
        argv = ["predict", str(NEON), "-m", SAMPLE, "-o", str(out), "--precision", "int8", "--min-agreement", "0.98"]
        code, _, err = cli(argv)
        assert code == 0, err
        quantized = sorted(cache.glob("*-int8-*.onnx"))
        assert len(quantized) == 1  # made on the first run, reused on the second
        if attempt == 0:
            made = quantized[0].stat().st_mtime_ns
        assert quantized[0].stat().st_mtime_ns == made
    with rasterio.open(out) as dst:
        tags, int8 = dst.tags(), dst.read(1)
    assert tags["AERIALSEG_PRECISION"].startswith("int8 (accuracy gate: ")
    assert float(tags["AERIALSEG_PRECISION_AGREEMENT"]) >= 0.98
    valid = fp32 != 255
    assert (int8[valid] == fp32[valid]).mean() >= 0.97
    # a calibration raster of the user's makes (and caches) its own int8 model
    other = rasters["nodata"]
    argv = [
        "predict",
        str(NEON),
        "-m",
        SAMPLE,
        "-o",
        str(tmp_path / "cal.tif"),
        "--precision",
        "int8",
        "--calibration",
        str(other),
        "--min-agreement",
        "0.9",
    ]
    code, _, err = cli(argv)
    assert code == 0, err
    assert len(list(cache.glob("*-int8-*.onnx"))) == 2


def test_calibration_is_checked_before_any_work(tmp_path, cli):
    code, _, err = cli(["predict", str(NEON), "-m", SAMPLE, "--out-dir", str(tmp_path), "--calibration", str(NEON)])
    assert code == 2 and "--calibration" in err and "--precision int8" in err
    broken = tmp_path / "calibration.tif"
    broken.write_bytes(b"not a raster")
    (tmp_path / "out").mkdir()
    argv = [
        "predict",
        str(NEON),
        "-m",
        SAMPLE,
        "--out-dir",
        str(tmp_path / "out"),
        "--precision",
        "int8",
        "--calibration",
        str(broken),
    ]
    code, _, err = cli(argv)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "calibration.tif" in lines[0], err
    assert list((tmp_path / "out").iterdir()) == []


def test_the_torch_runner_keeps_freed_memory_between_tiles():
    """Minor page faults over three forwards after warm-up: glibc's defaults fault the activations back in."""
    script = """
import resource, sys, numpy as np, torch
from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.models import create_model
from aerialseg.runners.torch_runner import TorchRunner
torch.set_num_threads(1)
info = DATASETS["potsdam"]
card = ModelCard(arch="abcnet", backbone="resnet18", classes=info.classes, bands=info.bands)
model = create_model("abcnet", "resnet18", num_classes=6)
if sys.argv[1] == "runner":
    forward = TorchRunner(model, card, "cpu", "fp32")
else:
    model = model.eval().to(memory_format=torch.channels_last)
    forward = lambda b: model(torch.from_numpy(b).contiguous(memory_format=torch.channels_last))
tile = np.random.default_rng(0).random((1, 3, 512, 512), dtype=np.float32)
with torch.inference_mode():
    forward(tile); forward(tile)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        forward(tile)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {}
    for kind in ("plain", "runner"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        done = subprocess.run([sys.executable, "-c", script, kind], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        faults[kind] = int(done.stdout.split()[-1])
    assert faults["plain"] > 2000 and faults["runner"] < faults["plain"] / 4, faults


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_cuda_runs_reduced_precision_gated_and_agrees_with_fp32_on_real_imagery(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    spec = RunnerSpec(SAMPLE, precision=precision)
    choice = spec.resolve()
    assert (choice.backend, choice.device) == ("torch", "cuda")
    assert choice.precision == ("fp16" if precision == "auto" else "bf16")
    runner = spec.open(choice)
    predict(NEON, tmp_path / "out.tif", runner, PredictOptions())
    assert runner.result.passed and runner.result.agreement >= 0.99 and runner.precision == choice.precision
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert dst.tags()["AERIALSEG_PRECISION"].startswith(f"{choice.precision} (accuracy gate: ")
