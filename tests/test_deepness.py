"""Deepness/GeoDeep ONNX files as models: maps against a whole-image run of the same network, the rules, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from deepness_models import build_model, reference_classes, reference_scores

from aerialseg.card import read_card
from aerialseg.conventions import CARD_KEY, NODATA_CLASS, Tag
from aerialseg.errors import WeightsError
from aerialseg.options import InputOptions, OutputOptions, TilingOptions
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.runners import RunnerSpec, open_runner
from aerialseg.vector import VectorizeOptions

SEGMENTOR = {"model_type": "Segmentor"}
LAND = {"0": "background", "1": "building", "2": "woodland", "3": "water"}


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _image(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _agreement(got: np.ndarray, expected: np.ndarray) -> float:
    valid = got != NODATA_CLASS
    assert valid.mean() > 0.9
    return float((got[valid] == expected[valid]).mean())


@pytest.mark.parametrize(
    "metadata, static, kernel, threshold",
    [
        # softmax, standardised, threshold, static input size: tiles of 256 (overlap 20 % = 51 px)
        (
            SEGMENTOR
            | {"class_names": LAND, "standardization_mean": [0.4, 0.45, 0.4], "standardization_std": [0.2, 0.2, 0.25]}
            | {"seg_thresh": 0.45, "tiles_overlap": 20, "resolution": 10},
            256,
            1,
            0.45,
        ),
        # no threshold key: both tools' default 0.5; dynamic size, tile_size key
        (SEGMENTOR | {"class_names": LAND, "tile_size": 192, "resolution": 10}, None, 1, 0.5),
        # threshold off; a 3x3 network, whose tiles see their neighbours only through the overlap
        (SEGMENTOR | {"class_names": LAND, "seg_thresh": 0, "tile_size": 160, "resolution": 10}, None, 3, 0.0),
    ],
)
def test_softmax_model_maps_as_the_whole_image_run_of_its_network(
    tmp_path, neon_tif, metadata, static, kernel, threshold
):
    model = build_model(tmp_path / "land.onnx", metadata=metadata, static=static, kernel=kernel)
    card = read_card(model)
    assert card.origin == "deepness" and card.class_names == list(LAND.values())
    assert card.tile_size == (static or metadata.get("tile_size")) and card.threshold == threshold
    out = tmp_path / "map.tif"
    predict(neon_tif, out, open_runner(model), PredictOptions())
    mean = metadata.get("standardization_mean", [0.0] * 3)
    std = metadata.get("standardization_std", [1.0] * 3)
    expected = reference_classes(reference_scores(model, _image(neon_tif), mean, std), threshold)
    got = _read(out)
    assert len(np.unique(expected)) >= 3  # the network draws several classes on this image
    # a pointwise network is the same map wherever the tiles are cut; a 3x3 one differs at most near tile edges
    assert _agreement(got, expected) >= (0.9999 if kernel == 1 else 0.995)
    with rasterio.open(out) as src:
        tags = src.tags()
        assert [src.crs, src.transform] == _grid(neon_tif)
    assert tags[Tag.CARD] == "Deepness metadata of the ONNX file"
    assert tags[Tag.WEIGHTS_SHA256] == _sha256(model)
    assert ("0.45" in tags[Tag.CLASS_RULE]) == (threshold == 0.45)


def _grid(path: Path) -> list:
    with rasterio.open(path) as src:
        return [src.crs, src.transform]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("names", ['{"0": "building"}', "{0: 'building'}", '{"0": "background", "1": "building"}'])
def test_one_channel_model_is_its_class_where_the_probability_reaches_the_threshold(tmp_path, neon_tif, names):
    model = build_model(
        tmp_path / "buildings.onnx",
        outputs=1,
        head="sigmoid",
        seed=4,  # a network that calls some of this forest 'building' at 0.3 and little at 0.5
        batch=1,  # a graph of fixed batch size gets its tiles one at a time
        metadata=SEGMENTOR | {"seg_thresh": 0.3, "tile_size": 128, "resolution": 10},
        raw_metadata={"class_names": names},
    )
    card = read_card(model)
    assert card.binary and card.class_names == ["background", "building"]
    out = tmp_path / "map.tif"
    predict(
        neon_tif,
        out,
        open_runner(model),
        PredictOptions(TilingOptions(batch_size=3), output=OutputOptions(probabilities=True)),
    )
    scores = reference_scores(model, _image(neon_tif), [0.0] * 3, [1.0] * 3)
    expected = reference_classes(scores, 0.3)
    got = _read(out)
    assert 0.05 < expected.mean() < 0.95 and (scores[0] >= 0.5).mean() < expected.mean() / 4
    assert _agreement(got, expected) >= 0.9999
    with rasterio.open(tmp_path / "map_probabilities.tif") as src:  # background is the complement
        probabilities = src.read().astype(np.float64) / 254
    valid = got != NODATA_CLASS
    assert np.abs(probabilities[1][valid] - scores[0][valid]).max() < 0.01
    assert np.abs(probabilities.sum(0)[valid] - 1).max() < 0.01


def test_threshold_option_overrides_the_model_and_zero_is_the_plain_argmax(tmp_path, neon_tif):
    model = build_model(
        tmp_path / "land.onnx", metadata=SEGMENTOR | {"class_names": LAND, "seg_thresh": 0.6, "resolution": 10}
    )
    scores = reference_scores(model, _image(neon_tif), [0.0] * 3, [1.0] * 3)
    maps = {}
    for threshold in (None, 0.0, 0.8):
        out = tmp_path / f"map_{threshold}.tif"
        predict(neon_tif, out, open_runner(model), PredictOptions(threshold=threshold))
        maps[threshold] = _read(out)
        expected = reference_classes(scores, 0.6 if threshold is None else threshold)
        assert _agreement(maps[threshold], expected) >= 0.9999
    assert (maps[0.8] == 0).mean() > (maps[None] == 0).mean() > (maps[0.0] == 0).mean()


def test_aerialseg_static_export_without_its_card_gives_the_same_map(make_weights, tmp_path, neon_tif):
    from aerialseg.export import export_onnx

    weights = make_weights(tmp_path / "abcnet.safetensors", tile_size=256, overlap=64, gsd_m=0.1)
    export_onnx(weights, tmp_path / "with_card.onnx", static_size=128)
    graph = onnx.load(str(tmp_path / "with_card.onnx"))
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key != CARD_KEY]
    del graph.metadata_props[:]
    for key, value in kept:
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp_path / "without_card.onnx"))
    with_card, without = open_runner(tmp_path / "with_card.onnx"), open_runner(tmp_path / "without_card.onnx")
    assert without.card.origin == "deepness" and without.card.threshold == 0
    assert (without.card.tile_size, without.card.overlap, without.card.gsd_m) == (128, 32, 0.1)
    assert (with_card.card.tile_size, with_card.card.overlap) == (128, 32)
    predict(neon_tif, tmp_path / "a.tif", with_card, PredictOptions())
    predict(neon_tif, tmp_path / "b.tif", without, PredictOptions())
    a, b = _read(tmp_path / "a.tif"), _read(tmp_path / "b.tif")
    assert len(np.unique(a)) >= 2 and np.array_equal(a, b)


def test_resolution_resamples_and_min_segment_is_the_default_smallest_object(tmp_path, neon_tif):
    model = build_model(
        tmp_path / "land.onnx",
        metadata=SEGMENTOR | {"class_names": LAND, "resolution": 20, "seg_small_segment": 40, "tile_size": 128},
    )
    out = tmp_path / "map.tif"
    objects = OutputOptions(vectorize=VectorizeOptions(classes=("building", "water"), simplify=0))
    predict(neon_tif, out, open_runner(model), PredictOptions(output=objects))
    with rasterio.open(out) as src:
        assert src.shape == (400, 400) and "predicted at the model's 0.2 m" in src.tags()[Tag.GSD]
    import geopandas as gpd

    areas = [gpd.read_file(tmp_path / "map_objects.gpkg", layer=layer).area for layer in ("building", "water")]
    assert sum(len(a) for a in areas) > 0
    assert min(a.min() for a in areas if len(a)) >= 40 * 0.2**2 - 1e-6  # 40 model pixels of 20 cm


def test_uint16_input_needs_scale_and_one_band_models_read_it(tmp_path, rasters, cli, one_line):
    model = build_model(
        tmp_path / "pan.onnx", channels=1, outputs=3, metadata=SEGMENTOR | {"class_names": ["a", "b", "c"]}
    )
    # a list is not the contract's form; the dict is
    code, _, err = cli(["weights", "info", str(model)])
    one_line(code, err, 1, "class_names", "pan.onnx")
    pan = SEGMENTOR | {"class_names": {"0": "a", "1": "b", "2": "c"}}
    model = build_model(
        tmp_path / "pan.onnx",
        channels=1,
        outputs=3,
        metadata=pan | {"standardization_mean": [0.2], "standardization_std": [0.15]},
    )
    source = rasters["uint16_single"]  # 11-bit values in a uint16 file, nodata 0
    code, _, err = cli(["-q", "predict", str(source), "--model", str(model), "-o", str(tmp_path / "x.tif")])
    one_line(code, err, 1, "--scale", "uint16")
    assert not (tmp_path / "x.tif").exists()
    with pytest.warns(UserWarning, match="no resolution"):
        predict(source, tmp_path / "x.tif", open_runner(model), PredictOptions(input=InputOptions(scale=2047)))
    expected = reference_classes(reference_scores(model, _image(source), [0.2], [0.15], divisor=2047), 0.5)
    got = _read(tmp_path / "x.tif")
    assert len(np.unique(expected)) >= 2 and _agreement(got, expected) >= 0.9999


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(metadata={"model_type": "Detector", "class_names": LAND}), "segmentation models"),
        (dict(metadata={"class_names": LAND}), "model_type"),
        (dict(metadata=SEGMENTOR), "class_names"),
        (dict(metadata=SEGMENTOR | {"class_names": {"0": "a", "2": "b"}}, outputs=2), "ids 0 .. n-1"),
        (dict(metadata=SEGMENTOR | {"class_names": LAND}, outputs=5), "lists 4 classes but its output has 5"),
        (dict(metadata=SEGMENTOR | {"class_names": LAND, "standardization_mean": [0.5]}), "standardization_mean"),
        (dict(metadata=SEGMENTOR | {"class_names": LAND, "tiles_overlap": 150}), "tiles_overlap"),
        (dict(metadata=SEGMENTOR | {"class_names": LAND}, channels=2), "reads 2 channels"),
        (dict(metadata={CARD_KEY: "x"} | SEGMENTOR), "model card is not a JSON object"),  # the card wins
        (dict(metadata={}), "neither an aerialseg model card nor Deepness metadata"),
    ],
)
def test_files_outside_the_contract_are_one_line(tmp_path, neon_tif, cli, one_line, change, needle):
    model = build_model(tmp_path / "bad.onnx", **change)
    with pytest.raises(WeightsError, match=needle.replace(".", r"\.")):
        read_card(model)
    out = tmp_path / "x.tif"
    code, _, err = cli(["-q", "predict", str(neon_tif), "--model", str(model), "-o", str(out)])
    one_line(code, err, 1, "bad.onnx", needle)
    assert not out.exists()


def _two_heads(path: Path) -> Path:
    model = onnx.load(str(build_model(path, metadata=SEGMENTOR | {"class_names": LAND})))
    model.graph.output.append(onnx.helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, ["b", 8, "h", "w"]))
    onnx.save(model, str(path))
    return path


def _flat_output(path: Path) -> Path:
    model = onnx.load(str(build_model(path, metadata=SEGMENTOR | {"class_names": LAND})))
    flat = onnx.helper.make_node("ArgMax", ["y"], ["labels"], axis=1, keepdims=0)
    model.graph.node.append(flat)
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info("labels", onnx.TensorProto.INT64, ["b", "h", "w"]))
    onnx.save(model, str(path))
    return path


def _smaller_output(path: Path) -> Path:
    model = onnx.load(str(build_model(path, static=256, metadata=SEGMENTOR | {"class_names": LAND})))
    model.graph.node.append(onnx.helper.make_node("MaxPool", ["y"], ["half"], kernel_shape=[2, 2], strides=[2, 2]))
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info("half", onnx.TensorProto.FLOAT, [1, 4, 128, 128]))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "make, needle",
    [(_two_heads, "several output heads"), (_flat_output, "[b, h, w]"), (_smaller_output, "[1, 4, 128, 128]")],
)
def test_graphs_of_another_shape_say_the_shapes_found(tmp_path, make, needle):
    with pytest.raises(WeightsError) as info:
        read_card(make(tmp_path / "odd.onnx"))
    assert needle in info.value.message and "inputs [" in info.value.message


def test_a_raster_smaller_than_a_tile_is_padded_for_the_network(tmp_path, neon_tif):
    from rasterio.windows import Window

    small = tmp_path / "small.tif"
    with rasterio.open(neon_tif) as src:
        window = Window(100, 150, 70, 45)
        profile = src.profile | dict(width=70, height=45, transform=src.window_transform(window))
        with rasterio.open(small, "w", **profile) as dst:
            dst.write(src.read(window=window))
    model = build_model(tmp_path / "land.onnx", metadata=SEGMENTOR | {"class_names": LAND, "resolution": 10})
    predict(small, tmp_path / "small_map.tif", open_runner(model), PredictOptions())
    expected = reference_classes(reference_scores(model, _image(small), [0.0] * 3, [1.0] * 3), 0.5)
    assert _agreement(_read(tmp_path / "small_map.tif"), expected) >= 0.9999


def test_installed_by_name_listed_with_classes_and_run_without_torch(tmp_path, neon_tif, monkeypatch, cli):
    folder = tmp_path / "weights"
    folder.mkdir()
    build_model(folder / "landcover.onnx", metadata=SEGMENTOR | {"class_names": LAND, "resolution": 40})
    monkeypatch.setenv("AERIALSEG_WEIGHTS", str(folder))
    code, out, _ = cli(["models", "--json"])
    listed = {w["name"]: w["card"] for w in json.loads(out)["weights"]}
    assert code == 0 and listed["landcover"]["origin"] == "deepness" and listed["landcover"]["gsd_m"] == 0.4
    code, out, _ = cli(["weights", "info", "landcover"])
    assert code == 0 and "woodland" in out and "Deepness" in out
    code, out, _ = cli(["weights", "info", "landcover", "--json"])
    card = json.loads(out)
    assert card["sha256"] == _sha256(folder / "landcover.onnx")  # the file's, as predict's tags say
    assert (card["threshold"], card["binary"], card["tile_size"]) == (0.5, False, 512)
    assert RunnerSpec("landcover").onnx_file
    code, out, _ = cli(["doctor", str(neon_tif), "--model", "landcover", "--json"])
    report = json.loads(out)
    assert code == 0 and report["facts"]["model"].startswith("ONNX network (Deepness metadata)")
    argv = ["-q", "predict", str(neon_tif), "--model", "landcover", "-o", str(tmp_path / "m.tif")]
    script = (
        f"import sys\nfrom aerialseg.cli.main import main\ntry:\n    main({argv!r})\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(folder, tmp_path))
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.tags()[Tag.CARD].startswith("Deepness") and src.shape == (400, 400)


def _env(folder: Path, tmp_path: Path) -> dict[str, str]:
    import os

    return os.environ | {"AERIALSEG_WEIGHTS": str(folder), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_int8_runs_behind_the_accuracy_gate(tmp_path, neon_tif):
    model = build_model(
        tmp_path / "land.onnx", kernel=3, metadata=SEGMENTOR | {"class_names": LAND, "tile_size": 128, "resolution": 10}
    )
    runner = RunnerSpec(str(model), precision="int8", min_agreement=0.9).open()
    result = predict(neon_tif, tmp_path / "int8.tif", runner, PredictOptions())
    assert result.status == "ok" and runner.precision == "int8" and runner.gate.result.agreement >= 0.9
    predict(neon_tif, tmp_path / "fp32.tif", open_runner(model), PredictOptions())
    assert (_read(tmp_path / "int8.tif") == _read(tmp_path / "fp32.tif")).mean() >= 0.9


def test_eval_scores_a_deepness_model_on_a_prepared_dataset(tmp_path, potsdam_prepared):
    from aerialseg.data.classes import DATASETS
    from aerialseg.evaluation import evaluate
    from aerialseg.options import EvalOptions

    names = {str(i): c.name for i, c in enumerate(DATASETS["potsdam"].classes)}
    model = build_model(
        tmp_path / "isprs.onnx",
        outputs=6,
        seed=3,
        metadata=SEGMENTOR
        | {"class_names": names, "seg_thresh": 0, "standardization_mean": [0.4] * 3, "standardization_std": [0.2] * 3},
    )
    result = evaluate(
        EvalOptions(data=potsdam_prepared.folder, runner=RunnerSpec(str(model)), split="val", patches=True)
    )
    expected = np.zeros((6, 6), np.int64)
    for image, label_file in potsdam_prepared.patch_pairs("val", eroded=result.labels == "eroded"):
        label = _read(label_file)
        classes = reference_classes(reference_scores(model, _image(image), [0.4] * 3, [0.2] * 3), 0)
        keep = label < 6
        np.add.at(expected, (label[keep], classes[keep]), 1)
    assert expected.sum() > 0 and len(np.unique(classes)) >= 2 and np.array_equal(result.matrix, expected)


def test_batch_mosaic_and_cluster_runs_give_the_single_file_map(tmp_path, neon_tif, cli):
    """A Deepness file through the batch paths: sheets as a mosaic, a raster split across cluster workers."""
    from rasterio.windows import Window

    model = build_model(
        tmp_path / "land.onnx", kernel=3, metadata=SEGMENTOR | {"class_names": LAND, "tile_size": 128, "resolution": 10}
    )
    reference = tmp_path / "single.tif"
    predict(neon_tif, reference, open_runner(model), PredictOptions())
    expected = _read(reference)
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    with rasterio.open(neon_tif) as src:
        for col in (0, 200):  # two sheets side by side on one grid
            window = Window(col, 0, 200, 400)
            profile = src.profile | dict(width=200, height=400, transform=src.window_transform(window))
            with rasterio.open(sheets / f"sheet_{col}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.colorinterp = src.colorinterp
    out = tmp_path / "out"
    argv = ["predict", str(sheets), "--model", str(model), "--out-dir", str(out), "--mosaic", "--uncertainty"]
    code, _, err = cli([*argv, "--vectorize", "building,water"])
    assert code == 0, err
    mosaic = np.concatenate([_read(out / "sheet_0_classes.tif"), _read(out / "sheet_200_classes.tif")], axis=1)
    assert np.array_equal(mosaic, expected)  # no seam where the sheets meet
    assert (out / "sheet_0_classes_uncertainty.tif").exists() and (out / "sheet_0_objects.gpkg").exists()
    split = tmp_path / "split.tif"
    argv = ["predict", str(neon_tif), "--model", str(model), "-o", str(split), "--cluster", "local:1"]
    code, _, err = cli([*argv, "--split-rows", "150"])
    assert code == 0, err
    assert np.array_equal(_read(split), expected)
