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


def _float_copy(source, path, holes=None):
    """The 512 x 512 top-left of a raster as float32 without a declared nodata, ``holes`` ((rows, cols), value) set."""
    with rasterio.open(source) as src:
        data = src.read(window=((0, 512), (0, 512))).astype(np.float32)
        profile = dict(src.profile, dtype="float32", nodata=None, width=512, height=512, tiled=False)
        profile["transform"] = src.window_transform(((0, 512), (0, 512)))
    for (rows, cols), value in holes or ():
        data[:, rows, cols] = value
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


class _Recording:
    """A runner passed through, recording every batch the network is given."""

    def __init__(self, runner):
        self.runner, self.batches = runner, []
        self.card, self.description, self.precision, self.gate = runner.card, "recording", runner.precision, None

    def __call__(self, batch):
        self.batches.append(batch.copy())
        return self.runner(batch)


_HOLES = [((slice(0, 160), slice(0, 160)), np.nan), ((400, 60), np.inf), ((60, 400), -np.inf)]


def _untouched(tile):
    """Pixels farther than a tile from every hole of _HOLES: no tile that sees a hole covers them."""
    near = np.zeros((512, 512), bool)
    near[: 160 + tile, : 160 + tile] = True
    for row, col in [(400, 60), (60, 400)]:
        near[max(row - tile, 0) : row + tile + 1, max(col - tile, 0) : col + tile + 1] = True
    return ~near


@pytest.mark.slow
def test_nan_and_infinite_pixels_of_a_float_raster_are_nodata(rasters, abcnet_weights, tmp_path):
    from aerialseg.conventions import NODATA_CLASS
    from aerialseg.options import InputOptions, PredictOptions
    from aerialseg.pipeline import predict
    from aerialseg.runners import RunnerSpec

    plain = _float_copy(rasters["uint16_single"], tmp_path / "plain.tif")
    holed = _float_copy(rasters["uint16_single"], tmp_path / "holed.tif", _HOLES)
    network = RunnerSpec(str(abcnet_weights), "torch", precision="fp32").open()
    tile = network.card.tile_size
    holes = np.zeros((512, 512), bool)
    for (rows, cols), _ in _HOLES:
        holes[rows, cols] = True

    # The stretch is measured on the finite pixels only, and NaN never reaches the network.
    with (
        RasterSource(plain, card(("R", "G", "B")), bands=(1, 1, 1)) as a,
        RasterSource(holed, card(("R", "G", "B")), bands=(1, 1, 1)) as b,
    ):
        assert np.isfinite(b.scaling.offset).all() and np.isfinite(b.scaling.divisor).all()
        np.testing.assert_allclose(b.scaling.offset, a.scaling.offset, rtol=0.05)
        np.testing.assert_allclose(b.scaling.divisor, a.scaling.divisor, rtol=0.05)
        data, valid = b.read(Window(0, 0, 512, 512))
        assert np.isfinite(data).all() and (valid == ~holes).all()

    def classes(path, scale):
        runner = _Recording(network)
        options = PredictOptions(input=InputOptions(bands=(1, 1, 1), scale=scale))
        result = predict(path, path.with_name(f"{path.stem}_{scale}.tif"), runner, options)
        assert all(np.isfinite(batch).all() for batch in runner.batches)
        with rasterio.open(result.output) as src:
            return src.read(1), result

    untouched = _untouched(tile)
    for scale in (2047.0, None):  # a fixed divisor, then the percentile stretch
        reference, _ = classes(plain, scale)
        found, result = classes(holed, scale)
        assert (found[holes] == NODATA_CLASS).all() and (found[~holes] != NODATA_CLASS).all()
        assert result.tiles_skipped >= 1  # the tile of only NaN never reached the network
        same = (found == reference)[untouched].mean()
        # A fixed divisor reads the untouched pixels exactly alike; the stretch's percentiles move a little.
        assert same == 1.0 if scale else same > 0.95, (scale, same)
        assert len(np.unique(found[~holes])) > 1


@pytest.mark.slow
def test_nan_pixels_stay_nodata_when_predicted_at_the_model_gsd(rasters, make_weights, tmp_path):
    from aerialseg.conventions import NODATA_CLASS
    from aerialseg.options import InputOptions, PredictOptions
    from aerialseg.pipeline import predict
    from aerialseg.runners import RunnerSpec

    holed = _float_copy(rasters["uint16_single"], tmp_path / "holed.tif", _HOLES)
    weights = make_weights(tmp_path / "one-metre.safetensors", gsd_m=1.0)  # the raster has 0.5 m pixels
    network = RunnerSpec(str(weights), "torch", precision="fp32").open()
    result = predict(holed, tmp_path / "out.tif", network, PredictOptions(input=InputOptions(bands=(1, 1, 1))))
    with rasterio.open(result.output) as src:
        found = src.read(1)
    holes = np.zeros((512, 512), bool)
    for (rows, cols), _ in _HOLES:
        holes[rows, cols] = True
    assert found.shape == holes.shape and (found[holes] == NODATA_CLASS).all()
    assert (found[~holes] != NODATA_CLASS).mean() > 0.99  # model pixels half made of NaN may be nodata too
