"""eval through the tiled predict path equals predict + a direct comparison with the labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
import torch

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.errors import AerialsegError, DatasetLayoutError
from aerialseg.evaluation import EvalOptions, evaluate
from aerialseg.models import create_model
from aerialseg.options import InputOptions, PredictOptions, TilingOptions
from aerialseg.pipeline import predict
from aerialseg.runners import RunnerSpec
from aerialseg.weights import save_weights


@pytest.fixture(scope="module")
def potsdam_weights(tmp_path_factory):
    torch.manual_seed(0)
    info = DATASETS["potsdam"]
    card = ModelCard("manet", "resnet18", info.classes, bands=info.bands, gsd_m=0.05, tile_size=256, overlap=64)
    path = tmp_path_factory.mktemp("w") / "manet-potsdam-test.safetensors"
    save_weights(create_model("manet", "resnet18").eval(), card, path)
    return path


def test_eval_of_a_full_tile_equals_predict_plus_direct_comparison(potsdam_prepared, potsdam_weights, tmp_path):
    spec = RunnerSpec(str(potsdam_weights), "torch", precision="fp32")
    result = evaluate(EvalOptions(data=potsdam_prepared.folder, runner=spec, save_maps=tmp_path / "maps"))
    assert result.labels == "eroded" and result.split == "test"
    assert result.settings.endswith("tiles 256, blend cosine")  # the card's tiling
    # independently: predict the tile, read both rasters whole, count with bincount
    scene = potsdam_prepared.split("test").scenes[0]
    predict(scene.image, tmp_path / "direct.tif", spec.open(), PredictOptions(input=InputOptions(bands=(1, 2, 3))))
    with rasterio.open(tmp_path / "direct.tif") as src:
        pred = src.read(1).astype(np.int64)
    with rasterio.open(potsdam_prepared.resolve(scene.label_eroded)) as src:
        truth = src.read(1).astype(np.int64)
    keep = truth != 255
    expected = np.bincount(truth[keep] * 6 + pred[keep], minlength=36).reshape(6, 6)
    assert (result.matrix == expected).all()
    assert result.scores.pixels == keep.sum()
    # the papers' means: classes 0-4, clutter excluded; OA over everything
    tp = np.diag(expected)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (expected.sum(0) + expected.sum(1))
    assert result.scores.mean_f1 == pytest.approx(np.nanmean(f1[:5]))
    assert result.scores.oa == pytest.approx(tp.sum() / expected.sum())
    # the saved map is the one compared, delivered with its style files
    with rasterio.open(tmp_path / "maps" / "2_10_classes.tif") as src:
        assert (src.read(1) == pred).all()
    style = ET.parse(tmp_path / "maps" / "2_10_classes.qml").getroot()
    assert [e.get("label") for e in style.iter("paletteEntry")] == [c.name for c in DATASETS["potsdam"].classes]
    assert (tmp_path / "maps" / "2_10_classes.tif.aux.xml").is_file()


def test_eval_on_prepared_patches_and_errors(potsdam_prepared, potsdam_weights):
    spec = RunnerSpec(str(potsdam_weights), "torch", precision="fp32")
    tiling = TilingOptions(tile_size=64, overlap=16, blend="linear", batch_size=4)
    result = evaluate(EvalOptions(potsdam_prepared.folder, spec, split="val", patches=True, tiling=tiling))
    assert result.labels == "full" and len(result.images) == 4
    assert result.scores.pixels == sum(r["pixels"] for r in result.images)
    assert result.settings.endswith("tiles 64, blend linear")
    with pytest.raises(DatasetLayoutError, match="no eroded labels"):
        evaluate(EvalOptions(potsdam_prepared.folder, spec, split="val", labels="eroded", patches=True))
    with pytest.raises(DatasetLayoutError, match="no 'nope' split"):
        evaluate(EvalOptions(potsdam_prepared.folder, spec, split="nope"))


def test_eval_refuses_a_model_of_other_classes(potsdam_prepared, tmp_path):
    info = DATASETS["uavid"]
    path = tmp_path / "uavid.safetensors"
    save_weights(create_model("abcnet", num_classes=8), ModelCard("abcnet", "resnet18", info.classes), path)
    with pytest.raises(AerialsegError, match="differ from the dataset"):
        evaluate(EvalOptions(data=potsdam_prepared.folder, runner=RunnerSpec(str(path))))


def test_eval_on_a_folder_dataset(tmp_path, potsdam_arrays):
    """A user's own data: id labels with a classes TOML, one file held out as test, scored whole."""
    from aerialseg.card import ClassInfo
    from aerialseg.data.prepare import prepare_folder

    image, label = potsdam_arrays
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for i, (r, c) in enumerate(((0, 0), (0, 256), (256, 0), (256, 256))):
        window = (slice(r, r + 256), slice(c, c + 256))
        with rasterio.open(
            tmp_path / "img" / f"q{i}.tif", "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8"
        ) as dst:
            dst.write(image[(slice(None), *window)])
        ids = np.where(label[window] == 255, 0, label[window] + 1).astype(np.uint8)  # 0 = ignore, classes 1..6
        with rasterio.open(
            tmp_path / "lab" / f"q{i}_mask.tif", "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8"
        ) as dst:
            dst.write(ids, 1)
    names = ["impervious", "building", "low_vegetation", "tree", "car", "clutter"]
    colours = [c.color for c in DATASETS["potsdam"].classes]
    toml = "ignore = 0\n" + "".join(
        f'[[classes]]\nname = "{n}"\ncolor = {list(col)}\nid = {i + 1}\n'
        for i, (n, col) in enumerate(zip(names, colours, strict=True))
    )
    (tmp_path / "classes.toml").write_text(toml)
    manifest = prepare_folder(
        tmp_path / "img",
        tmp_path / "lab",
        tmp_path / "classes.toml",
        tmp_path / "data",
        test_fraction=0.25,
        patch_size=128,
    )
    (scene,) = manifest.split("test").scenes
    classes = tuple(ClassInfo(n, tuple(col)) for n, col in zip(names, colours, strict=True))
    weights = tmp_path / "w.safetensors"
    torch.manual_seed(1)
    save_weights(
        create_model("abcnet").eval(), ModelCard("abcnet", "resnet18", classes, tile_size=128, overlap=32), weights
    )
    spec = RunnerSpec(str(weights), "torch", precision="fp32")
    result = evaluate(EvalOptions(data=manifest.folder, runner=spec))
    assert result.labels == "full" and [r["image"] for r in result.images] == [scene.id]
    quadrant = int(scene.id[1])
    r, c = ((0, 0), (0, 256), (256, 0), (256, 256))[quadrant]
    truth = label[r : r + 256, c : c + 256]
    assert result.scores.pixels == (truth != 255).sum()
    patches = evaluate(EvalOptions(data=manifest.folder, runner=spec, patches=True))
    assert patches.scores.pixels == result.scores.pixels  # 2 x 2 patches of 128 tile it exactly


def test_eval_checks_the_tiling_and_classes_before_loading_the_network(potsdam_prepared, potsdam_weights, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was loaded")

    monkeypatch.setattr(RunnerSpec, "open", refuse)
    spec = RunnerSpec(str(potsdam_weights), "torch", precision="fp32")
    with pytest.raises(AerialsegError, match="overlap 300 must be at least 0 and below the tile size 256"):
        evaluate(EvalOptions(potsdam_prepared.folder, spec, tiling=TilingOptions(overlap=300)))
    with pytest.raises(DatasetLayoutError, match="no 'nope' split"):
        evaluate(EvalOptions(potsdam_prepared.folder, spec, split="nope"))
