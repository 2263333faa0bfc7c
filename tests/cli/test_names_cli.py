"""The promised commands, as a new user types them: datasets and models by name, no paths.

``prepare ... --name mine``, ``train --dataset mine`` and ``predict ortho.tif --model manet``
on real NEON imagery, in a private data folder and weights folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from aerialseg.conventions import NODATA_CLASS, Tag
from aerialseg.data.manifest import MANIFEST_NAME

TILE = 128


@pytest.fixture
def homes(tmp_path, monkeypatch) -> dict[str, Path]:
    """Private data and weights folders; only the package's sample weights are installed."""
    folders = {"data": tmp_path / "data", "xdg": tmp_path / "xdg"}
    monkeypatch.setenv("AERIALSEG_DATA", str(folders["data"]))
    monkeypatch.setenv("XDG_DATA_HOME", str(folders["xdg"]))
    monkeypatch.delenv("AERIALSEG_WEIGHTS", raising=False)
    return folders


@pytest.fixture
def own_data(tmp_path, neon_tif) -> list[str]:
    """``prepare folder`` arguments for four 128-pixel NEON crops labelled bright/dark (nodata ignored)."""
    for sub in ("images", "labels"):
        (tmp_path / "raw" / sub).mkdir(parents=True)
    with rasterio.open(neon_tif) as src:
        for index, (row, col) in enumerate([(0, 0), (0, TILE), (TILE, 0), (TILE, TILE)]):
            window = Window(col, row, TILE, TILE)
            pixels = src.read(window=window)
            grid = {"crs": src.crs, "transform": src.window_transform(window), "width": TILE, "height": TILE}
            with rasterio.open(
                tmp_path / "raw" / "images" / f"t{index}.tif", "w", driver="GTiff", count=3, dtype="uint8", **grid
            ) as dst:
                dst.write(pixels)
            labels = np.where(pixels.mean(axis=0) > 120, 1, 0).astype(np.uint8)
            labels[(pixels == 255).all(axis=0)] = NODATA_CLASS  # the tile's nodata
            with rasterio.open(
                tmp_path / "raw" / "labels" / f"t{index}.tif", "w", driver="GTiff", count=1, dtype="uint8", **grid
            ) as dst:
                dst.write(labels, 1)
    toml = tmp_path / "classes.toml"
    toml.write_text(
        'ignore = 255\n[[classes]]\nname = "dark"\ncolor = [0, 90, 0]\nid = 0\n'
        '[[classes]]\nname = "bright"\ncolor = [220, 220, 220]\nid = 1\n'
    )
    raw = tmp_path / "raw"
    return ["--images", str(raw / "images"), "--labels", str(raw / "labels"), "--classes", str(toml)]


TRAIN_FAST = ["--arch", "manet", "--backbone", "resnet18", "--max-steps", "2", "--batch-size", "2", "--crop", "64"]


def test_prepare_train_predict_by_name(cli, homes, own_data, tmp_path):
    code, _, err = cli(
        ["prepare", "folder", *own_data, "--val-fraction", "0.25", "--patch-size", "64", "--name", "mine"]
    )
    assert code == 0, err
    assert (homes["data"] / "mine" / MANIFEST_NAME).is_file()
    assert "train with 'aerialseg train --dataset mine'" in err

    code, out, err = cli(["train", "--dataset", "mine", *TRAIN_FAST, "--epochs", "1", "--json"])
    assert code == 0, err
    result = json.loads(out)
    (run,) = (homes["data"] / "runs").iterdir()
    assert run.name.startswith("mine-manet-resnet18-") and Path(result["out"]) == run
    installed = Path(result["installed"])
    assert installed.parent == homes["xdg"] / "aerialseg" / "weights"
    assert installed.name == f"manet-r18-mine-{run.name.removeprefix('mine-manet-resnet18-')}.safetensors"
    assert installed.read_bytes() == Path(result["best"] or result["last"]).read_bytes()

    image = tmp_path / "raw" / "images" / "t3.tif"
    code, _, err = cli(["predict", str(image), "--model", "manet", "-o", str(tmp_path / "by_name.tif")])
    assert code == 0, err
    assert f"--model manet: {installed.stem} (best of 2) from {installed}, val split mean F1" in err
    assert "sample weights" not in err  # trained weights beat the shipped sample weights
    code, _, err = cli(["predict", str(image), "--model", str(installed), "-o", str(tmp_path / "by_path.tif")])
    assert code == 0, err
    with rasterio.open(tmp_path / "by_name.tif") as by_name, rasterio.open(tmp_path / "by_path.tif") as by_path:
        assert np.array_equal(by_name.read(), by_path.read())
        assert by_name.tags()[Tag.MODEL_CHOICE].startswith(f"--model manet: {installed.stem}")
        assert Tag.MODEL_CHOICE not in by_path.tags()

    code, out, err = cli(["eval", "--dataset", "mine", "-m", "manet-mine", "--split", "val"])
    assert code == 0, err
    assert f"--model manet-mine: {installed.stem}" in err and " on folder val, full labels" in out

    code, out, _ = cli(["models", "--json"])
    listing = json.loads(out)
    assert [d["name"] for d in listing["datasets"]] == ["mine"] and listing["data_folder"] == str(homes["data"])

    code, _, err = cli(["train", "--dataset", "mine", *TRAIN_FAST, "--epochs", "2", "--resume", "--json"])
    assert code == 0, err
    assert list((homes["data"] / "runs").iterdir()) == [run]  # --resume continued the newest run


def test_sample_weights_chosen_by_name_warn(cli, homes, neon_tif, tmp_path):
    code, _, err = cli(["predict", str(neon_tif), "--model", "manet", "-o", str(tmp_path / "out.tif"), "--json"])
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: manet-r18-potsdam-sample are sample weights")
    assert "aerialseg train --dataset potsdam --arch manet" in lines[0]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["train", "--dataset", "potsdam"], 1, "run 'aerialseg prepare potsdam --root "),
        (["train", "--dataset", "nope"], 1, "no prepared dataset 'nope' (prepared: none; benchmarks: vaihingen"),
        (["train"], 2, "name a prepared dataset with --dataset NAME, or its folder with --data FOLDER"),
        (["eval", "-m", "manet", "--dataset", "uavid"], 1, "dataset 'uavid' is not prepared"),
        (["train", "--dataset", "../x"], 1, "'../x' cannot name a dataset"),
        (["predict", "x.tif", "--model", "maresunet"], 1, "no weights for maresunet (--model maresunet)"),
        (["predict", "x.tif", "--model", "ma"], 1, "'ma' fits several names (manet, maresunet)"),
        (["export", "manet-abcnet", "-o", "x.onnx"], 1, "names several architectures (manet, abcnet)"),
    ],
)
def test_names_that_fit_nothing_are_one_line(cli, homes, argv, code, message):
    got, _, err = cli(argv)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and message in lines[0], err


def test_prepare_folder_needs_a_name_and_refuses_both(cli, homes, own_data, tmp_path):
    code, _, err = cli(["prepare", "folder", *own_data])
    assert code == 2 and "a folder dataset needs --name NAME" in err
    code, _, err = cli(["prepare", "folder", *own_data, "--name", "a", "--out", str(tmp_path / "b")])
    assert code == 2 and "not both" in err
    code, _, err = cli(["prepare", "folder", *own_data, "--name", ""])
    assert code == 1 and "'' cannot name a dataset" in err
    assert not homes["data"].exists() and not (tmp_path / "b").exists()


def test_a_manifest_from_a_newer_aerialseg_is_one_line(cli, homes, own_data):
    code, _, err = cli(["prepare", "folder", *own_data, "--patch-size", "64", "--name", "mine"])
    assert code == 0, err
    manifest = homes["data"] / "mine" / MANIFEST_NAME
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"format": 99}))
    code, _, err = cli(["train", "--dataset", "mine", *TRAIN_FAST])
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "manifest is newer than this aerialseg" in lines[0]
