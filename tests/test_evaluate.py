"""eval through the tiled predict path equals predict + a direct comparison with the labels."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.errors import AerialsegError, DatasetLayoutError
from aerialseg.evaluate import EvalOptions, evaluate
from aerialseg.models import create_model
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.runners import open_runner
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
    result = evaluate(EvalOptions(data=potsdam_prepared.folder, weights=potsdam_weights, save_maps=tmp_path / "maps"))
    assert result.labels == "eroded" and result.split == "test"
    # independently: predict the tile, read both rasters whole, count with bincount
    scene = potsdam_prepared.split("test").scenes[0]
    runner = open_runner(potsdam_weights)
    predict(scene.image, tmp_path / "direct.tif", runner, PredictOptions(bands=(1, 2, 3)))
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
    # the saved map is the one compared
    with rasterio.open(tmp_path / "maps" / "2_10_classes.tif") as src:
        assert (src.read(1) == pred).all()


def test_eval_on_prepared_patches_and_errors(potsdam_prepared, potsdam_weights):
    result = evaluate(EvalOptions(data=potsdam_prepared.folder, weights=potsdam_weights, split="val", patches=True))
    assert result.labels == "full" and len(result.images) == 4
    assert result.scores.pixels == sum(r["pixels"] for r in result.images)
    with pytest.raises(DatasetLayoutError, match="no eroded labels"):
        evaluate(
            EvalOptions(
                data=potsdam_prepared.folder, weights=potsdam_weights, split="val", labels="eroded", patches=True
            )
        )
    with pytest.raises(DatasetLayoutError, match="no 'nope' split"):
        evaluate(EvalOptions(data=potsdam_prepared.folder, weights=potsdam_weights, split="nope"))


def test_eval_refuses_a_model_of_other_classes(potsdam_prepared, tmp_path):
    info = DATASETS["uavid"]
    path = tmp_path / "uavid.safetensors"
    save_weights(create_model("abcnet", num_classes=8), ModelCard("abcnet", "resnet18", info.classes), path)
    with pytest.raises(AerialsegError, match="differ from the dataset"):
        evaluate(EvalOptions(data=potsdam_prepared.folder, weights=path))
