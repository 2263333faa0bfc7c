"""The accuracy gate on real rasters: measured on valid pixels, strict refusal, auto fallback, once per batch."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from aerialseg.batch import predict_batch
from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.errors import AerialsegError
from aerialseg.options import TilingOptions
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.runners.gate import GatedRunner, PrecisionGateError, gate_tile_count


class PixelRunner:
    """A per-pixel softmax of a fixed linear map: a fast network whose classes depend on the pixels.

    ``permute`` rolls the class axis: a stand-in for a reduced precision that gets classes wrong.
    """

    def __init__(self, precision="fp32", permute=0, noise=0.0):
        info = DATASETS["potsdam"]
        self.card = ModelCard(
            arch="abcnet",
            backbone="resnet18",
            classes=info.classes,
            bands=("R", "G", "B"),
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            tile_size=128,
            overlap=32,
        )
        self.a = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32) * 6
        self.precision, self.permute, self.noise = precision, permute, noise
        self.description = f"pixel stand-in, {precision}"
        self.gate = None
        self.tiles = 0

    def __call__(self, batch):
        self.tiles += len(batch)
        logits = np.einsum("kc,nchw->nkhw", self.a, batch - 0.5)
        logits += self.noise * np.random.default_rng(self.tiles).normal(size=logits.shape)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return np.roll(e / e.sum(1, keepdims=True), self.permute, axis=1)


def gated(candidate, strict, built=None):
    def build(sample):
        if built is not None:
            built.append(sample.name)
        return candidate

    return GatedRunner(PixelRunner(), build, candidate.precision, strict=strict)


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_strict_gate_failure_is_one_line_and_writes_nothing(tmp_path, rasters):
    runner = gated(PixelRunner("bf16", permute=1), strict=True)
    with pytest.raises(PrecisionGateError) as info:
        predict(rasters["nodata"], tmp_path / "out.tif", runner, PredictOptions())
    message = str(info.value)
    assert "\n" not in message and "RGB.byte.tif" in message and "threshold 99.00%" in message
    assert "--precision fp32" in message and "nothing written" in message
    assert files(tmp_path) == []
    with pytest.raises(PrecisionGateError):  # the verdict stands for every later use of the runner
        runner(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(PrecisionGateError):
        predict(rasters["alpha"], tmp_path / "again.tif", runner, PredictOptions())
    assert files(tmp_path) == []


def test_a_failed_gate_stops_the_whole_batch(tmp_path, rasters):
    runner = gated(PixelRunner("bf16", permute=2), strict=True)
    with pytest.raises(PrecisionGateError):
        predict_batch([rasters["nodata"], rasters["alpha"]], runner, PredictOptions(), out_dir=tmp_path)
    assert files(tmp_path) == []


def test_auto_falls_back_to_fp32_says_so_and_maps_as_fp32(tmp_path, rasters):
    runner = gated(PixelRunner("bf16", permute=1), strict=False)
    predict(rasters["nodata"], tmp_path / "gated.tif", runner, PredictOptions())
    predict(rasters["nodata"], tmp_path / "fp32.tif", PixelRunner(), PredictOptions())
    with rasterio.open(tmp_path / "gated.tif") as gated_out, rasterio.open(tmp_path / "fp32.tif") as plain:
        assert np.array_equal(gated_out.read(1), plain.read(1))
        tags = gated_out.tags()
    assert runner.precision == "fp32" and runner.result.fell_back
    assert tags["AERIALSEG_PRECISION"].startswith("fp32 (bf16 accuracy gate: ")
    assert "so fp32 ran instead" in tags["AERIALSEG_PRECISION"]
    assert float(tags["AERIALSEG_PRECISION_AGREEMENT"]) < 0.5


def test_agreement_is_measured_on_valid_pixels_only(tmp_path, rasters):
    """RGB.byte.tif's collars are nodata 0: a candidate wrong exactly there still agrees 100 %."""

    class WrongOnNodata(PixelRunner):
        def __call__(self, batch):
            out = super().__call__(batch)
            black = (batch == 0).all(axis=1, keepdims=True)
            return np.where(black, np.roll(out, 1, axis=1), out)

    runner = gated(WrongOnNodata("bf16"), strict=True)
    predict(rasters["nodata"], tmp_path / "out.tif", runner, PredictOptions(TilingOptions(tile_size=256, overlap=32)))
    result = runner.result
    assert result.tiles == 2 and result.agreement == 1.0
    assert 0 < result.pixels < 2 * 256 * 256  # the tiles hold collar pixels, which were not counted


def test_a_passing_gate_runs_the_candidate_releases_the_reference_and_runs_once_per_batch(tmp_path, rasters):
    built = []
    candidate = PixelRunner("bf16")
    runner = gated(candidate, strict=True, built=built)
    results = predict_batch(
        [rasters["nodata"], rasters["alpha"], rasters["striped"]], runner, PredictOptions(), out_dir=tmp_path
    )
    assert [r.status for r in results] == ["ok"] * 3
    assert built == ["RGB.byte.tif"] and runner._reference is None
    assert runner.result.agreement == 1.0 and runner.precision == "bf16"
    for name in ("RGB.byte_classes.tif", "neon_osbs_029_classes.tif"):
        with rasterio.open(tmp_path / name) as out:
            tags = out.tags()
        assert tags["AERIALSEG_PRECISION"].startswith("bf16 (accuracy gate: 100.000% of ")
        assert "RGB.byte.tif" in tags["AERIALSEG_PRECISION"] and tags["AERIALSEG_PRECISION_AGREEMENT"] == "1.000000"


def test_called_directly_the_gate_runs_on_the_first_batch():
    runner = gated(PixelRunner("bf16", permute=1), strict=False)
    batch = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    out = runner(batch)
    assert runner.result.source == "the first batch" and runner.result.fell_back
    np.testing.assert_allclose(out, PixelRunner()(batch))


def test_gate_tiles_grow_with_the_raster_within_bounds():
    assert [gate_tile_count(n) for n in (1, 81, 324, 600, 800, 10_000)] == [2, 2, 2, 3, 4, 4]


def test_the_threshold_must_be_a_share():
    with pytest.raises(AerialsegError, match="within 0..1"):
        GatedRunner(PixelRunner(), lambda sample: PixelRunner("bf16"), "bf16", strict=True, min_agreement=99)
