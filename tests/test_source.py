"""Band mapping, scaling and masks of input rasters."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.errors import BandMismatchError, InputRasterError
from aerialseg.source import BandAssumptionWarning, RasterSource, resolve_bands
from aerialseg.tiling import Window

RGB = ("red", "green", "blue")


def card(bands, **kw):
    n = len(bands)
    return ModelCard(
        arch="abcnet",
        backbone="resnet18",
        classes=DATASETS["potsdam"].classes,
        bands=bands,
        mean=(0.5,) * n,
        std=(0.25,) * n,
        **kw,
    )


def test_bands_are_found_by_colour_and_description_whatever_their_order():
    assert resolve_bands(["blue", "green", "red"], [None] * 3, ("R", "G", "B"), None, "x.tif") == (3, 2, 1)
    interp = ["red", "green", "blue", "undefined"]
    assert resolve_bands(interp, [None, None, None, "NIR"], ("NIR", "R", "G"), None, "x.tif") == (4, 1, 2)
    assert resolve_bands(["gray"] * 3, ["Near infrared", "red", "green"], ("NIR", "R", "G"), None, "x.tif") == (1, 2, 3)


def test_alpha_is_never_data():
    assert resolve_bands([*RGB, "alpha"], [None] * 4, ("R", "G", "B"), None, "x.tif") == (1, 2, 3)
    with pytest.raises(BandMismatchError, match=r"4 bands \(R-G-B-NIR\) but the file has 3 data bands"):
        resolve_bands([*RGB, "alpha"], [None] * 4, ("R", "G", "B", "NIR"), None, "x.tif")


def test_unnamed_bands_in_matching_number_are_taken_in_file_order_with_a_warning():
    with pytest.warns(BandAssumptionWarning, match="NIR-R-G.*--bands"):
        assert resolve_bands(list(RGB), [None] * 3, ("NIR", "R", "G"), None, "vaihingen.tif") == (1, 2, 3)


def test_explicit_bands_win_and_are_checked():
    assert resolve_bands(["gray"], [None], ("R", "G", "B"), (1, 1, 1), "pan.tif") == (1, 1, 1)
    with pytest.raises(BandMismatchError, match="outside the file's bands 1..1"):
        resolve_bands(["gray"], [None], ("R", "G", "B"), (1, 2, 1), "pan.tif")
    with pytest.raises(BandMismatchError, match="names 2 bands but the model reads 3"):
        resolve_bands(list(RGB), [None] * 3, ("R", "G", "B"), (1, 2), "x.tif")


def test_sixteen_bit_input_is_stretched_between_percentiles(rasters):
    path = rasters["uint16_single"]
    with RasterSource(path, card(("PAN",))) as source:
        data, valid = source.read(Window(0, 0, 900, 900))
        assert "percentile" in source.scaling.rule
    with rasterio.open(path) as src:
        raw = src.read(1).astype(np.float64)
    low, high = np.percentile(raw[raw != 0], [2, 98])  # nodata is 0 here
    expected = np.clip((raw - low) / (high - low), 0, 1)
    np.testing.assert_allclose(data[0], expected, atol=2e-3)  # the stretch is measured on a decimated read
    assert 0.01 < (data[0] == 1).mean() < 0.05


def test_one_band_named_three_times_reads_the_same_pixels_into_every_slot(rasters):
    """GDAL's threaded decoding garbles repeated band lists (1, 1, 1) on band-interleaved files."""
    path = rasters["uint16_single"]
    with rasterio.open(path) as src:
        raw = src.read(1).astype(np.float64)
    with RasterSource(path, card(("R", "G", "B")), bands=(1, 1, 1)) as source:
        s = source.scaling
        for row, col in [(0, 96), (96, 192), (400, 700), (772, 0)]:
            data, _ = source.read(Window(row_off=row, col_off=col, height=128, width=128))
            expected = np.clip((raw[row : row + 128, col : col + 128] - s.offset[0]) / s.divisor[0], 0, 1)
            for band in data:
                np.testing.assert_allclose(band, expected, rtol=1e-6)


def test_explicit_scale_and_high_bit_models(rasters):
    path = rasters["uint16_single"]
    with RasterSource(path, card(("PAN",)), scale=2047) as source:
        data, _ = source.read(Window(0, 0, 50, 50))
    with rasterio.open(path) as src:
        raw = src.read(1, window=((0, 50), (0, 50)))
    np.testing.assert_allclose(data[0], np.clip(raw / 2047, 0, 1), rtol=1e-6)
    with RasterSource(path, card(("PAN",), pixel_max=4095)) as source:
        assert source.scaling.rule == "divide by 4095"


def test_masks_from_nodata_alpha_and_internal_masks(rasters):
    for kind in ("nodata", "alpha", "jpeg_3857"):
        with RasterSource(rasters[kind], card(("R", "G", "B"))) as source, rasterio.open(rasters[kind]) as src:
            _, valid = source.read(Window(200, 100, 300, 64))
            expected = src.dataset_mask(window=((100, 164), (200, 500))) > 0
            np.testing.assert_array_equal(valid, expected)


def test_missing_crs_is_refused_unless_allowed(vaihingen_png):
    with pytest.raises(InputRasterError, match="has no CRS.*--allow-no-crs"):
        RasterSource(vaihingen_png, card(("NIR", "R", "G")))
    with pytest.warns(BandAssumptionWarning):
        with RasterSource(vaihingen_png, card(("NIR", "R", "G")), allow_no_crs=True) as source:
            assert source.crs is None and source.indexes == (1, 2, 3)
