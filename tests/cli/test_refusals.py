"""Misuse the random misuse test found, pinned as examples: each one refused in one line, nothing lost.

Each case failed before its fix: a traceback (damaged pixels behind a readable header, an
unknown dataset name, ``--save-maps`` naming a file), a destroyed input (``-o`` naming the
weights file with ``--overwrite``) or a meaningless result reported as success (a divisor
float32 cannot hold, an evaluation that counted no pixel).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from aerialseg.data.classes import DATASETS
from aerialseg.data.manifest import Manifest, Scene, SplitInfo

CROP = 96


@pytest.fixture
def bench(tmp_path, rasters, abcnet_weights) -> Path:
    """A folder with a 96-pixel crop of the real NEON orthophoto, a truncated copy and a copy of the weights."""
    with rasterio.open(rasters["striped"]) as src:
        window = rasterio.windows.Window(100, 100, CROP, CROP)
        profile = src.profile | {"width": CROP, "height": CROP, "transform": src.window_transform(window)}
        profile |= {"tiled": True, "blockxsize": 32, "blockysize": 32}
        with rasterio.open(tmp_path / "in.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    data = (tmp_path / "in.tif").read_bytes()
    (tmp_path / "truncated.tif").write_bytes(data[: len(data) // 3])  # the header and tile offsets survive
    shutil.copyfile(abcnet_weights, tmp_path / "w.safetensors")
    return tmp_path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "in.tif", "-m", "w.safetensors", "-o", "w.safetensors", "--json"],
        ["export", "w.safetensors", "-o", "w.safetensors", "--json"],
        ["weights", "import", "w.safetensors", "--arch", "abcnet", "-o", "w.safetensors"],
    ],
    ids=["predict", "export", "weights-import"],
)
def test_an_output_naming_the_weights_file_is_refused_even_with_overwrite(bench, cli, monkeypatch, command):
    monkeypatch.chdir(bench)
    before = _digest(bench / "w.safetensors")
    code, _, err = cli([*command, "--overwrite"])
    assert code == 1
    assert "w.safetensors: this output is the input w.safetensors; writing it would destroy the input" in err
    assert "Traceback" not in err and "--overwrite" not in err
    assert _digest(bench / "w.safetensors") == before
    assert sorted(p.name for p in bench.iterdir()) == ["in.tif", "truncated.tif", "w.safetensors"]


def test_doctor_reports_pixels_that_do_not_decode(bench, cli):
    code, out, err = cli(["doctor", str(bench / "truncated.tif"), "-m", str(bench / "w.safetensors"), "--json"])
    assert code == 1 and "Traceback" not in err
    assert "cannot read pixels" in out and "the file is damaged" in out


@pytest.mark.parametrize("scale", ["1e-50", "1e50", "1e308"])
def test_a_divisor_float32_cannot_hold_is_refused(bench, cli, scale, one_line):
    argv = ["predict", str(bench / "in.tif"), "-m", str(bench / "w.safetensors"), "--scale", scale]
    code, _, err = cli([*argv, "-o", str(bench / "out.tif")])
    one_line(code, err, 2, "--scale", "outside the 32-bit range")
    assert not (bench / "out.tif").exists()


def test_an_unknown_dataset_name_is_one_line(bench, cli, one_line):
    argv = ["weights", "import", str(bench / "w.safetensors"), "--arch", "abcnet", "--dataset", "potsdamm"]
    code, _, err = cli([*argv, "-o", str(bench / "x.safetensors")])
    one_line(code, err, 1, "unknown dataset 'potsdamm'", "choose one of vaihingen, potsdam, uavid")
    assert not (bench / "x.safetensors").exists()


def _prepared(bench: Path, label: np.ndarray | None = None, *, truncated: bool = False) -> Path:
    """A prepared dataset of one scene (the crop) with ``label`` as its label raster."""
    folder = bench / "prepared"
    (folder / "scenes").mkdir(parents=True)
    path = folder / "scenes" / "s1_label.tif"
    values = np.ones((CROP, CROP), np.uint8) if label is None else label
    with rasterio.open(path, "w", driver="GTiff", width=CROP, height=CROP, count=1, dtype="uint8") as dst:
        dst.write(values, 1)
    if truncated:
        path.write_bytes(path.read_bytes()[:500])
    info = DATASETS["potsdam"]
    test = SplitInfo("test", ("s1",), (), (0,) * 6, 0, scenes=(Scene("s1", str(bench / "in.tif"), str(path)),))
    Manifest("potsdam", info.classes, info.bands, info.gsd_m, 128, 128, {"test": test}).save(folder)
    return folder


def _eval(cli, bench: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    engine = ["--backend", "torch", "--precision", "fp32"]
    return cli(["eval", "--data", str(data), "-m", str(bench / "w.safetensors"), *engine, "--json", *extra])


def test_eval_of_a_truncated_label_is_one_line(bench, cli, one_line):
    code, _, err = _eval(cli, bench, _prepared(bench, truncated=True))
    one_line(code, err, 1, "s1_label.tif", "cannot")


def test_eval_refuses_save_maps_naming_a_file(bench, cli, one_line):
    (bench / "maps").write_text("an earlier file\n")
    code, _, err = _eval(cli, bench, _prepared(bench), "--save-maps", str(bench / "maps"))
    one_line(code, err, 1, "--save-maps names a file", "give a folder")
    assert (bench / "maps").read_text() == "an earlier file\n"


def test_eval_refuses_a_split_without_patches(bench, cli, one_line):
    code, _, err = _eval(cli, bench, _prepared(bench), "--patches")
    one_line(code, err, 1, "split 'test' has no patches", "without --patches")


def test_eval_refuses_labels_with_no_class_the_model_knows(bench, cli, one_line):
    code, _, err = _eval(cli, bench, _prepared(bench, np.full((CROP, CROP), 9, np.uint8)))
    one_line(code, err, 1, "no pixel of split 'test' has a class label", "outside 0..5")
