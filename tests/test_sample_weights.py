"""The sample weights shipped in weights/: honest card, reproducible held-out scores, the quick start works."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import rasterio

from aerialseg.conventions import SAMPLE_ORTHOPHOTO
from aerialseg.data.prepare import prepare_dataset
from aerialseg.evaluation import EvalOptions, evaluate
from aerialseg.runners import RunnerSpec
from aerialseg.weights import read_card, resolve_weights

NAME = "manet-r18-potsdam-sample"


def _script(repo_root):
    """examples/train_sample_weights.py as a module: its archive writer is what made the shipped weights."""
    path = repo_root / "examples" / "train_sample_weights.py"
    spec = importlib.util.spec_from_file_location("train_sample_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_card_says_what_the_weights_are():
    path = resolve_weights(NAME)
    assert path.parent.name == "weights" and path.stat().st_size < 30 * 2**20
    card = read_card(path)
    assert card.arch == "manet" and card.backbone == "resnet18" and card.dataset == "potsdam"
    assert card.bands == ("R", "G", "B") and card.gsd_m == 0.05
    assert card.training.startswith("SAMPLE WEIGHTS") and "not to map a city" in card.training
    assert set(card.metrics) == {"held_out_test", "held_out_trees", "validation"}
    assert "NEON" in card.training and "OSBS_029" in card.training and "NEON" in card.source


def test_the_held_out_scores_in_the_card_are_reproduced(tmp_path, repo_root, shared_data):
    """Rebuild the miniature archive from ../shared, prepare it, evaluate the shipped file by name."""
    _script(repo_root).write_archive(shared_data.parent, tmp_path / "raw")
    prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "data", patch_size=128, stride=32)
    options = EvalOptions(
        data=tmp_path / "data", runner=RunnerSpec(NAME, "torch", precision="fp32"), split="test", labels="eroded"
    )  # the card's scores were measured in fp32
    result = evaluate(options).to_dict()
    card = read_card(resolve_weights(NAME)).metrics["held_out_test"]
    assert result["pixels"] == card["pixels"] == 58_149  # the test tile's labelled (non-boundary) pixels
    for key in ("mean_f1", "oa", "miou"):
        assert result[key] == pytest.approx(card[key], abs=0.05)
    assert np.abs(np.array(result["confusion_matrix"]) - np.array(card["confusion_matrix"])).sum() <= 20


def test_the_held_out_tree_scores_in_the_card_are_reproduced(tmp_path, repo_root, shared_data):
    """Map the quick start's tile as the script did and score its held-out columns against the crown ellipses."""
    script = _script(repo_root)
    runner = RunnerSpec(NAME, "torch", precision="fp32").open()
    scores = script.osbs_held_out(shared_data.parent, runner, tmp_path)
    card = read_card(resolve_weights(NAME)).metrics["held_out_trees"]
    assert scores.pixels == card["pixels"] > 50_000  # the held-out columns off the ignored bands
    assert scores.iou[script.TREE] * 100 == pytest.approx(card["tree_iou"], abs=1.0)
    assert scores.recall[script.TREE] * 100 == pytest.approx(card["crown_pixels_called_tree"], abs=1.0)
    assert card["tree_iou"] >= 50 and card["crown_pixels_called_tree"] >= 50  # most crown pixels are tree


def test_the_quick_start_predicts_the_shipped_orthophoto(tmp_path, cli, naive_probabilities):
    """The quick start's map is the network's: a whole-raster computation at the model's 5 cm gives it again.

    The 10 cm tile is warped bilinearly to the model's grid (twice the size), every tile of
    the same plan run through the network alone in fp32 and accumulated with the plan's
    weights, and the probabilities taken back by averaging each 2 x 2 block (bilinear at
    exactly half the size) before the argmax.
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from aerialseg.runners import open_runner

    out = tmp_path / "neon_classes.tif"
    code, _, err = cli(["predict", str(SAMPLE_ORTHOPHOTO), "--model", NAME, "-o", str(out)])
    assert code == 0, err
    with rasterio.open(SAMPLE_ORTHOPHOTO) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        classes = dst.read(1)
        valid = src.dataset_mask() > 0
        fine = src.transform @ src.transform.scale(0.5)
        with WarpedVRT(
            src, transform=fine, width=2 * src.width, height=2 * src.height, resampling=Resampling.bilinear
        ) as vrt:
            profile = src.profile | {"width": vrt.width, "height": vrt.height, "transform": fine}
            with rasterio.open(tmp_path / "at_5cm.tif", "w", **profile) as model_grid:
                model_grid.write(vrt.read())
    runner = open_runner(NAME, precision="fp32")  # the fastest fp32 engine here (the quick start's export on a CPU)
    probabilities, _ = naive_probabilities(tmp_path / "at_5cm.tif", runner, 512, 64, "cosine")
    height, width = classes.shape
    native = probabilities.reshape(len(probabilities), height, 2, width, 2).mean(axis=(2, 4))
    assert (classes[~valid] == 255).all()
    # fp32 engines agree to rounding; on a CPU with native bf16 the run is bf16, which its accuracy gate holds to 0.99
    assert (native.argmax(0)[valid] == classes[valid]).mean() >= 0.98
