"""Ground sampling distance: measured in metres whatever the CRS, and prediction at the model's GSD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.warp import reproject, transform_bounds

from aerialseg.conventions import NODATA_CLASS
from aerialseg.errors import GSDMismatchError
from aerialseg.gsd import model_grid, pixel_size_m
from aerialseg.options import InputOptions
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.runners import open_runner
from aerialseg.tiling import TILE_ALIGN, plan_tiles


def test_pixel_size_in_metres_for_utm_web_mercator_and_geographic(rasters, tmp_path):
    with rasterio.open(rasters["striped"]) as src:
        assert pixel_size_m(src.crs, src.transform, src.height, src.width) == pytest.approx((0.1, 0.1), rel=1e-3)
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    with rasterio.open(rasters["jpeg_3857"]) as src:  # Web Mercator units shrink by cos(latitude) on the ground
        x, y = pixel_size_m(src.crs, src.transform, src.height, src.width)
        latitude = math.radians(37.67)
        assert x == pytest.approx(src.res[0] * math.cos(latitude), rel=5e-3)
    geographic = from_bounds(west, south, east, north, 400, 400)
    x, y = pixel_size_m(rasterio.crs.CRS.from_epsg(4326), geographic, 400, 400)
    assert x == pytest.approx(0.1, rel=0.02) and y == pytest.approx(0.1, rel=0.02)
    assert pixel_size_m(None, geographic, 400, 400) is None


def test_model_grid_only_when_resolutions_differ(rasters):
    with rasterio.open(rasters["striped"]) as src:
        args = (src.crs, src.transform, src.height, src.width)
        assert model_grid(*args, 0.105) is None  # within 10 %
        assert model_grid(*args, None) is None
        grid = model_grid(*args, 0.2)
        assert (grid.height, grid.width, grid.factor) == (200, 200, pytest.approx(2, rel=1e-3))
        assert grid.transform.a == pytest.approx(0.2)
        with pytest.raises(GSDMismatchError, match="--gsd native"):
            model_grid(*args, 1.0)


def _bilinear_matrix(model_size: int, size: int) -> np.ndarray:
    """(size, model_size) interpolation weights, pixel centres aligned, edges clamped."""
    matrix = np.zeros((size, model_size))
    for i in range(size):
        position = min(max((i + 0.5) * model_size / size - 0.5, 0.0), model_size - 1.0)
        low = int(np.floor(position))
        high = min(low + 1, model_size - 1)
        matrix[i, low] += 1 - (position - low)
        matrix[i, high] += position - low
    return matrix


def test_prediction_at_model_gsd_equals_whole_raster_resample_then_upsample(
    tmp_path, rasters, context_runner, naive_probabilities
):
    """A 10 cm ortho with a 20 cm model, against a whole-array computation written here."""
    runner = context_runner()
    runner.card = runner.card.replace(gsd_m=0.2, tile_size=96, overlap=16)
    result = predict(rasters["striped"], tmp_path / "auto.tif", runner, PredictOptions())
    assert result.tiles_run == 9  # a 200 x 200 model grid in 96-pixel tiles, not 400 x 400
    with rasterio.open(rasters["striped"]) as src:
        coarse = np.zeros((src.count, 200, 200), np.uint8)
        transform = src.transform @ src.transform.scale(2, 2)
        reproject(
            src.read(),
            coarse,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs=src.crs,
            resampling=Resampling.average,
            src_nodata=src.nodata,
            dst_nodata=src.nodata,
        )
        profile = src.profile | dict(width=200, height=200, transform=transform)
        native_valid = src.dataset_mask() > 0
    with rasterio.open(tmp_path / "coarse.tif", "w", **profile) as dst:
        dst.write(coarse)
    probabilities, valid = naive_probabilities(tmp_path / "coarse.tif", context_runner(), 96, 16, "cosine")
    rows, cols = _bilinear_matrix(200, 400), _bilinear_matrix(200, 400)
    weights = rows @ valid.astype(float) @ cols.T
    scores = np.stack([rows @ (p * valid) @ cols.T for p in probabilities])
    expected = scores.argmax(0).astype(np.uint8)
    expected[(weights <= 0) | ~native_valid] = NODATA_CLASS
    with rasterio.open(tmp_path / "auto.tif") as out:
        assert (out.width, out.height) == (400, 400)
        assert "predicted at the model's 0.2 m" in out.tags()["AERIALSEG_GSD"]
        got = out.read(1)
    assert (got == expected).mean() >= 0.999


def test_native_keeps_the_input_grid(tmp_path, rasters, make_weights):
    weights = make_weights(tmp_path / "m20.safetensors", gsd_m=0.2, tile_size=96, overlap=16)
    result = predict(
        rasters["striped"],
        tmp_path / "n.tif",
        open_runner(weights, backend="torch", precision="fp32"),
        PredictOptions(input=InputOptions(gsd="native")),
    )
    assert result.tiles_run == len(plan_tiles(400, 400, 96, 16, align=TILE_ALIGN))  # the 400 x 400 input grid
    with rasterio.open(tmp_path / "n.tif") as out:
        assert out.tags()["AERIALSEG_GSD"].startswith("native")
