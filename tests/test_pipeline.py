"""predict() on real rasters, checked against independent computations."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window as RioWindow

from aerialseg.batch import predict_batch
from aerialseg.conventions import NODATA_CLASS
from aerialseg.data.classes import DATASETS
from aerialseg.errors import AerialsegError
from aerialseg.options import InputOptions, OutputOptions, TilingOptions
from aerialseg.outputs import OutputSet
from aerialseg.pipeline import PredictOptions, predict, uses_dense_accumulator
from aerialseg.runners import open_runner
from aerialseg.tiling import TILE_ALIGN, plan_tiles
from aerialseg.vector import VectorizeOptions


def crop(src_path, tmp_path, height, width, name="crop.tif", **profile_changes):
    with rasterio.open(src_path) as src:
        window = RioWindow(0, 0, width, height)
        data = src.read(window=window)
        profile = src.profile | dict(width=width, height=height, transform=src.window_transform(window))
        profile.update(profile_changes)
        path = tmp_path / name
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            dst.colorinterp = src.colorinterp
    return path


def naive_prediction(naive_probabilities, path, runner, tile, overlap, blend):
    probabilities, valid = naive_probabilities(path, runner, tile, overlap, blend)
    classes = probabilities.argmax(0).astype(np.uint8)
    classes[~valid] = NODATA_CLASS
    return classes


@pytest.mark.parametrize(
    "height, width, tile, overlap, blend",
    [
        (300, 517, 128, 32, "cosine"),
        (257, 129, 128, 0, "cosine"),
        (191, 450, 100, 50, "center"),
        (718, 791, 256, 64, "linear"),
        (1, 1, 128, 32, "cosine"),
        (40, 700, 64, 16, "cosine"),
    ],
)
def test_streamed_result_equals_whole_raster_accumulation(
    tmp_path, rasters, context_runner, naive_probabilities, height, width, tile, overlap, blend
):
    source = crop(rasters["nodata"], tmp_path, height, width) if (height, width) != (718, 791) else rasters["nodata"]
    runner = context_runner()
    options = PredictOptions(TilingOptions(tile_size=tile, overlap=overlap, blend=blend, batch_size=3))
    predict(source, tmp_path / "out.tif", runner, options)
    with rasterio.open(tmp_path / "out.tif") as out:
        streamed = out.read(1)
    expected = naive_prediction(naive_probabilities, source, context_runner(), tile, overlap, blend)
    assert streamed.shape == expected.shape
    assert (streamed == expected).mean() >= 0.9999


@pytest.mark.parametrize(
    "kind, overviews",  # halvings while the smaller side stays 256 pixels or more
    [("nodata", [2]), ("alpha", [2]), ("jpeg_3857", [2, 4]), ("striped", []), ("uint16_single", [2])],
)
def test_output_lines_up_with_the_input(tmp_path, rasters, abcnet_weights, kind, overviews):
    bands = (1, 1, 1) if kind == "uint16_single" else None
    runner = open_runner(abcnet_weights, backend="torch", precision="fp32")
    result = predict(
        rasters[kind],
        tmp_path / "classes.tif",
        runner,
        PredictOptions(TilingOptions(batch_size=2), InputOptions(bands=bands)),
    )
    assert result.status == "ok"
    with rasterio.open(rasters[kind]) as src, rasterio.open(tmp_path / "classes.tif") as out:
        assert out.crs == src.crs
        assert out.transform == src.transform
        assert (out.width, out.height) == (src.width, src.height)
        assert out.count == 1 and out.dtypes[0] == "uint8" and out.nodata == NODATA_CLASS
        assert out.block_shapes == [(512, 512)] and out.compression.name.lower() == "deflate"
        assert out.colormap(1)[1][:3] == DATASETS["potsdam"].classes[1].color
        assert out.tags(1)["CLASS_4"] == "car"
        tags = out.tags()
        assert tags["AERIALSEG_WEIGHTS_SHA256"] == runner.card.sha256 and "tile 128" in tags["AERIALSEG_TILING"]
        classes = out.read(1)
        assert set(np.unique(classes)) <= set(range(6)) | {NODATA_CLASS}
        assert out.overviews(1) == overviews
    assert sorted(p.name for p in tmp_path.iterdir()) == styled("classes")  # no temporary left


@pytest.mark.parametrize("kind", ["nodata", "alpha"])
def test_nodata_is_nodata_in_the_output_and_empty_tiles_never_reach_the_model(tmp_path, rasters, context_runner, kind):
    with rasterio.open(rasters[kind]) as src:
        valid = src.dataset_mask() > 0
    runner = context_runner()
    result = predict(
        rasters[kind], tmp_path / "out.tif", runner, PredictOptions(TilingOptions(tile_size=96, overlap=16))
    )
    with rasterio.open(tmp_path / "out.tif") as out:
        classes = out.read(1)
    np.testing.assert_array_equal(classes == NODATA_CLASS, ~valid)
    plan = plan_tiles(*valid.shape, 96, 16, align=TILE_ALIGN)
    tiles_with_data = sum(valid[w.as_slices()].any() for w in plan.windows())
    assert 0 < tiles_with_data < len(plan)  # the collar really empties some tiles
    assert runner.tiles == result.tiles_run == tiles_with_data
    assert result.tiles_skipped == len(plan) - tiles_with_data


def test_torch_and_onnx_backends_give_the_same_map(tmp_path, rasters, abcnet_weights, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    outputs = {}
    for backend in ("torch", "onnx"):
        runner = open_runner(abcnet_weights, backend=backend, precision="fp32")
        predict(rasters["striped"], tmp_path / f"{backend}.tif", runner, PredictOptions())
        with rasterio.open(tmp_path / f"{backend}.tif") as out:
            outputs[backend] = out.read(1)
    assert (outputs["torch"] == outputs["onnx"]).mean() >= 0.999
    assert list((tmp_path / "cache" / "aerialseg" / "onnx").glob("*.onnx"))  # exported once, kept


def test_blending_removes_seams_that_plain_tiling_shows(tmp_path, rasters, abcnet_weights):
    """Disagreement with one whole-image forward pass, near tile borders vs in tile interiors."""
    runner = open_runner(abcnet_weights, backend="torch", precision="fp32")
    source = crop(rasters["striped"], tmp_path, 384, 384)  # 3 x 128: plain tiling has no overlap at all
    with rasterio.open(source) as src:
        whole = runner(src.read().astype(np.float32)[None] / 255)[0].argmax(0)
    rates = {}
    for name, overlap in (("plain", 0), ("blended", 32)):
        predict(source, tmp_path / f"{name}.tif", runner, PredictOptions(TilingOptions(tile_size=128, overlap=overlap)))
        with rasterio.open(tmp_path / f"{name}.tif") as out:
            disagree = out.read(1) != whole
        border = np.zeros_like(disagree)
        height, width = disagree.shape
        for w in plan_tiles(height, width, 128, overlap, align=TILE_ALIGN).windows():
            rows, cols = w.as_slices()
            if w.row_off > 0:
                border[w.row_off : w.row_off + 8, cols] = True
            if w.row_off + w.height < height:
                border[w.row_off + w.height - 8 : w.row_off + w.height, cols] = True
            if w.col_off > 0:
                border[rows, w.col_off : w.col_off + 8] = True
            if w.col_off + w.width < width:
                border[rows, w.col_off + w.width - 8 : w.col_off + w.width] = True
        rates[name] = (disagree[border].mean(), disagree[~border].mean())
    print("seam rates (border, interior):", rates)
    assert rates["plain"][0] > 1.5 * rates["plain"][1]  # the seam is real without blending
    assert rates["blended"][0] <= 1.5 * rates["blended"][1]


def test_a_failing_file_does_not_stop_the_batch(tmp_path, rasters, context_runner):
    (tmp_path / "notes.tif").write_text("not a raster")
    runner = context_runner()
    results = predict_batch(
        [rasters["striped"], tmp_path / "notes.tif", rasters["jpeg_3857"]], runner, out_dir=tmp_path / "out"
    )
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "notes.tif: cannot open as a raster" in results[1].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == styled("cogeo_classes", "neon_osbs_029_classes")


@pytest.fixture
def interrupting(context_runner):
    class Interrupting(context_runner):
        def __init__(self, after):
            super().__init__()
            self.after = after

        def __call__(self, batch):
            if self.tiles >= self.after:
                raise KeyboardInterrupt
            return super().__call__(batch)

    return Interrupting


def test_interrupt_leaves_no_output_and_no_temporary(tmp_path, rasters, interrupting):
    with pytest.raises(KeyboardInterrupt):
        predict(
            rasters["nodata"], tmp_path / "out.tif", interrupting(after=5), PredictOptions(TilingOptions(tile_size=96))
        )
    assert list(tmp_path.iterdir()) == []


def styled(*stems):
    """The sorted names of the class rasters ``<stem>.tif`` with the style files beside each."""
    return sorted(name for stem in stems for name in (f"{stem}.qml", f"{stem}.tif", f"{stem}.tif.aux.xml"))


def _classes(path):
    with rasterio.open(path) as out:
        return out.read(1)


@pytest.mark.parametrize("gsd_m", [None, 0.2], ids=["native-grid", "model-grid"])
def test_interrupt_then_resume_equals_an_uninterrupted_run(tmp_path, rasters, context_runner, interrupting, gsd_m):
    source = rasters["striped"] if gsd_m else rasters["nodata"]
    tile, overlap = (48, 8) if gsd_m else (96, 16)  # the 200 x 200 model grid needs small tiles to skip any
    options = PredictOptions(TilingOptions(tile_size=tile, overlap=overlap))

    def runner(cls=context_runner, **kw):
        r = cls(**kw)
        r.card = r.card.replace(gsd_m=gsd_m)
        return r

    whole = runner()
    predict(source, tmp_path / "whole.tif", whole, options)
    target = tmp_path / "out" / "resumed.tif"
    target.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        predict(source, target, runner(interrupting, after=whole.tiles // 2), options)
    assert not target.exists()
    hidden = sorted(p.name for p in target.parent.iterdir())
    assert hidden == [".resumed.tif.partial.json", ".resumed.tif.partial.tif"]

    finishing = runner()
    predict(
        source,
        target,
        finishing,
        PredictOptions(TilingOptions(tile_size=tile, overlap=overlap), output=OutputOptions(resume=True)),
    )
    assert 0 < finishing.tiles < whole.tiles  # it really skipped the finished rows
    np.testing.assert_array_equal(_classes(target), _classes(tmp_path / "whole.tif"))
    assert sorted(p.name for p in target.parent.iterdir()) == styled("resumed")  # partial files cleaned up


@pytest.mark.parametrize("gsd_m", [None, 0.2], ids=["native-grid", "model-grid"])
def test_bands_of_rows_reassemble_the_whole_raster(tmp_path, rasters, context_runner, gsd_m):
    """How a cluster splits one raster: each band of rows equals those rows of the whole run."""
    source = rasters["striped"] if gsd_m else rasters["nodata"]
    runner = context_runner()
    runner.card = runner.card.replace(gsd_m=gsd_m)
    tiling = TilingOptions(tile_size=48 if gsd_m else 96, overlap=8 if gsd_m else 16)
    options = PredictOptions(tiling, output=OutputOptions(probabilities=True))
    predict(source, tmp_path / "whole.tif", runner, options)
    with rasterio.open(tmp_path / "whole.tif") as whole:
        height, transform = whole.height, whole.transform
        expected = whole.read(1)
    with rasterio.open(tmp_path / "whole_probabilities.tif") as whole:
        expected_p = whole.read()
    cuts = [0, 1, 77, 200, height]  # uneven bands, not aligned to tiles; one a single row
    for first, stop in itertools.pairwise(cuts):
        part = tmp_path / f"rows_{first}.tif"
        predict(source, part, runner, PredictOptions(tiling, InputOptions(rows=(first, stop)), options.output))
        with rasterio.open(part) as band, rasterio.open(part.with_name(f"rows_{first}_probabilities.tif")) as prob:
            assert band.height == stop - first and band.transform == transform @ Affine.translation(0, first)
            np.testing.assert_array_equal(band.read(1), expected[first:stop])
            np.testing.assert_array_equal(prob.read(), expected_p[:, first:stop])
    with pytest.raises(AerialsegError, match="not within"):
        predict(source, tmp_path / "bad.tif", runner, PredictOptions(input=InputOptions(rows=(10, height + 1))))


def test_resume_with_other_settings_starts_over(tmp_path, rasters, context_runner, interrupting):
    target = tmp_path / "out.tif"
    with pytest.raises(KeyboardInterrupt):
        predict(
            rasters["nodata"], target, interrupting(after=30), PredictOptions(TilingOptions(tile_size=96, overlap=16))
        )
    counting = context_runner()
    predict(
        rasters["nodata"],
        target,
        counting,
        PredictOptions(TilingOptions(tile_size=96, overlap=32), output=OutputOptions(resume=True)),
    )
    fresh = predict(
        rasters["nodata"],
        tmp_path / "fresh.tif",
        context_runner(),
        PredictOptions(TilingOptions(tile_size=96, overlap=32)),
    )
    np.testing.assert_array_equal(_classes(target), _classes(tmp_path / "fresh.tif"))
    assert counting.tiles == fresh.tiles_run  # every tile again: nothing was reused


KILLED_RUN = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from fake_runners import ContextRunner
from aerialseg.options import PredictOptions, TilingOptions
from aerialseg.pipeline import predict

class Slow(ContextRunner):
    def __call__(self, batch):
        if self.tiles == 20:
            print("halfway", flush=True)
            time.sleep(60)
        return super().__call__(batch)

predict(sys.argv[1], sys.argv[2], Slow(), PredictOptions(TilingOptions(tile_size=96, overlap=16)))
"""


def test_a_killed_run_leaves_no_output_and_a_resume_starts_over(tmp_path, rasters, context_runner):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    target = tmp_path / "killed.tif"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(rasters["nodata"]), str(target), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "halfway"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not target.exists()
    assert not list(tmp_path.glob("*.json"))  # no journal: nothing claims to be resumable
    counting = context_runner()
    predict(
        rasters["nodata"],
        target,
        counting,
        PredictOptions(TilingOptions(tile_size=96, overlap=16), output=OutputOptions(resume=True)),
    )
    predict(
        rasters["nodata"],
        tmp_path / "fresh.tif",
        context_runner(),
        PredictOptions(TilingOptions(tile_size=96, overlap=16)),
    )
    np.testing.assert_array_equal(_classes(target), _classes(tmp_path / "fresh.tif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == styled("fresh", "killed")


def test_probability_and_uncertainty_outputs_agree_with_the_class_map(
    tmp_path, rasters, context_runner, naive_probabilities
):
    options = PredictOptions(
        TilingOptions(tile_size=96, overlap=16), output=OutputOptions(probabilities=True, uncertainty=True)
    )
    predict(rasters["nodata"], tmp_path / "map.tif", context_runner(), options)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [*styled("map"), "map_probabilities.tif", "map_uncertainty.tif"]
    classes = _classes(tmp_path / "map.tif")
    with rasterio.open(tmp_path / "map_probabilities.tif") as src:
        assert src.count == 6 and src.descriptions[1] == "p(building)" and src.scales[0] == pytest.approx(1 / 254)
        probabilities = src.read().astype(int)
    with rasterio.open(tmp_path / "map_uncertainty.tif") as src:
        assert src.descriptions == ("confidence", "margin", "entropy")
        confidence, margin, entropy = src.read().astype(int)
    valid = classes != NODATA_CLASS
    assert ((probabilities == NODATA_CLASS).all(axis=0) == ~valid).all()
    assert np.abs(probabilities[:, valid].sum(axis=0) - 254).max() <= 3  # rounding of six bands
    assert np.abs(confidence[valid] - probabilities[:, valid].max(axis=0)).max() <= 1
    agrees = probabilities[:, valid].argmax(axis=0) == classes[valid]
    assert agrees.mean() > 0.99  # differs only where rounding to 1/254 creates ties
    assert (margin[valid] <= confidence[valid]).all() and (entropy[valid] <= 254).all()
    expected = naive_probabilities(rasters["nodata"], context_runner(), 96, 16, "cosine")[0]
    np.testing.assert_allclose(probabilities[:, valid], np.rint(expected[:, valid] * 254), atol=1)


def test_a_static_size_onnx_export_predicts_with_its_own_tile_size(tmp_path, rasters, abcnet_weights):
    from aerialseg.export import export_onnx

    onnx_path = tmp_path / "m256.onnx"
    export_onnx(abcnet_weights, onnx_path, opset=17, static_size=256)
    runner = open_runner(onnx_path)
    assert runner.card.tile_size == 256
    result = predict(rasters["striped"], tmp_path / "out.tif", runner, PredictOptions())
    assert result.status == "ok" and result.tiles_run == len(plan_tiles(400, 400, 256, 32, align=TILE_ALIGN))
    small = crop(rasters["striped"], tmp_path, 100, 150)  # smaller than the fixed tile: padded inside
    assert predict(small, tmp_path / "small.tif", runner, PredictOptions()).status == "ok"


def test_predict_vectorize_writes_the_objects_of_its_class_map(tmp_path, rasters, context_runner):
    import geopandas as gpd
    from rasterio.features import rasterize

    from aerialseg.vector import VectorizeOptions, vectorize

    names = [c.name for c in DATASETS["potsdam"].classes]
    exact = dict(min_area_m2=0, fill_holes_m2=0, simplify=0)
    predict(
        rasters["nodata"],
        tmp_path / "plain.tif",
        context_runner(),
        PredictOptions(TilingOptions(tile_size=96, overlap=16)),
    )
    counts = np.bincount(_classes(tmp_path / "plain.tif").ravel(), minlength=256)[: len(names)]
    chosen = tuple(names[i] for i in np.argsort(counts)[::-1][:2])  # the two classes this stand-in maps most
    options = PredictOptions(
        TilingOptions(tile_size=96, overlap=16),
        output=OutputOptions(probabilities=True, vectorize=VectorizeOptions(classes=chosen, **exact)),
    )
    predict(rasters["nodata"], tmp_path / "map_classes.tif", context_runner(), options)
    objects = tmp_path / "map_objects.gpkg"
    alone = vectorize(tmp_path / "map_classes.tif", tmp_path / "alone.gpkg", VectorizeOptions(classes=chosen, **exact))
    for layer in chosen:
        got = gpd.read_file(objects, layer=layer)
        assert len(got) == alone.counts[layer] > 0
        with rasterio.open(tmp_path / "map_classes_probabilities.tif") as src:
            p = src.read(names.index(layer) + 1).astype(float) / 254
            transform = src.transform
        for row in got.sample(min(len(got), 20), random_state=0).itertuples():
            inside = rasterize([(row.geometry, 1)], out_shape=p.shape, transform=transform, dtype="uint8") == 1
            assert row.mean_confidence == pytest.approx(p[inside].mean(), abs=1e-6)
            assert row.max_confidence == pytest.approx(p[inside].max(), abs=1e-6)


def test_an_output_set_names_every_product_of_one_input(context_runner):
    wanted = OutputOptions(probabilities=True, uncertainty=True, vectorize=VectorizeOptions(), objects_suffix=".fgb")
    outputs = OutputSet.for_target("maps/a_classes.tif", wanted)
    assert outputs.rasters == [
        Path("maps/a_classes.tif"),
        Path("maps/a_classes_probabilities.tif"),
        Path("maps/a_classes_uncertainty.tif"),
    ]
    assert outputs.objects == Path("maps/a_objects.fgb") and outputs.confidence == outputs.probabilities
    assert outputs.styles == (
        Path("maps/a_classes.qml"),
        Path("maps/a_classes.tif.aux.xml"),
        Path("maps/a_objects.qml"),
    )
    assert outputs.products == [*outputs.rasters, outputs.objects, *outputs.styles]
    assert Path("maps/.a_classes_uncertainty.tif.partial.tif") in outputs.written  # what a resume updates in place
    plain = OutputSet.for_target("x.tif", OutputOptions(uncertainty=True))
    assert plain.rasters == [Path("x.tif"), Path("x_uncertainty.tif")] and plain.objects is None
    assert plain.confidence == Path("x_uncertainty.tif")
    assert plain.styles == (Path("x.qml"), Path("x.tif.aux.xml"))  # the GeoPackage keeps its styles inside
    gpkg = OutputSet.for_target("x.tif", OutputOptions(vectorize=VectorizeOptions()))
    assert gpkg.objects == Path("x_objects.gpkg") and gpkg.styles == plain.styles
    parts = OutputSet.for_target("x.tif", OutputOptions(vectorize=VectorizeOptions(), objects_suffix=".fgb", cog=False))
    assert parts.styles == (Path("x_objects.qml"),)  # a band of rows, an unsaved eval map: no raster style
    card = context_runner().card
    assert [layout.name for _, layout in outputs.layouts(card)] == ["classes", "probabilities", "uncertainty"]


def test_the_dense_accumulator_is_used_only_when_probabilities_are_needed():
    assert not uses_dense_accumulator(PredictOptions(), resampled=False)
    assert uses_dense_accumulator(PredictOptions(), resampled=True)
    assert uses_dense_accumulator(PredictOptions(output=OutputOptions(uncertainty=True)), resampled=False)


def test_skip_finished_leaves_a_finished_file_alone_and_the_batch_goes_on(tmp_path, rasters, context_runner):
    tiling = TilingOptions(tile_size=96, overlap=16)
    out = tmp_path / "out"
    (done,) = predict_batch([rasters["nodata"]], context_runner(), PredictOptions(tiling), out_dir=out)
    stamp = done.output.stat().st_mtime_ns
    runner = context_runner()
    skipping = PredictOptions(tiling, output=OutputOptions(skip_finished=True))
    results = predict_batch([rasters["nodata"], rasters["alpha"]], runner, skipping, out_dir=out)
    assert [r.status for r in results] == ["skipped", "ok"] and results[0].output == done.output
    assert done.output.stat().st_mtime_ns == stamp and runner.tiles == results[1].tiles_run
    (again,) = predict_batch([rasters["nodata"]], context_runner(), PredictOptions(tiling), out_dir=out)
    assert again.status == "failed" and "output exists" in again.error
