"""`aerialseg prepare` from the command line: exit codes, one-line errors, --json, option forwarding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

COLOURS = np.array([(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)], np.uint8)


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype="uint8",
        crs="EPSG:32632",
        transform=from_origin(500000, 5400000, 0.09, 0.09),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


@pytest.fixture
def raw(tmp_path):
    """A synthetic Vaihingen archive: areas 1 (train) and 30 (val), 64 x 64 pixels."""
    rng = np.random.default_rng(0)
    for area in (1, 30):
        name = f"top_mosaic_09cm_area{area}.tif"
        write(tmp_path / "raw" / "top" / name, rng.integers(0, 256, (3, 64, 64), dtype=np.uint8))
        write(
            tmp_path / "raw" / "gts_for_participants" / name, COLOURS[rng.integers(0, 6, (64, 64))].transpose(2, 0, 1)
        )
    return tmp_path / "raw"


def test_prepare_prints_the_manifest_as_json(tmp_path, raw, cli):
    code, out, err = cli(
        ["prepare", "vaihingen", "--root", str(raw), "--out", str(tmp_path / "data"), "--patch-size", "32", "--json"],
    )
    data = json.loads(out)
    assert code == 0 and err == ""
    assert data["dataset"] == "vaihingen" and data["folder"] == str(tmp_path / "data")
    assert data["splits"]["train"]["tiles"] == ["area1"] and len(data["splits"]["val"]["patches"]) == 4
    assert sum(data["splits"]["val"]["class_pixels"]) == 64 * 64


def test_prepare_prints_a_summary_table(tmp_path, raw, cli):
    code, out, _ = cli(["prepare", "Vaihingen", "--root", str(raw), "-o", str(tmp_path / "data"), "--patch-size", "64"])
    assert code == 0
    assert "impervious_surfaces" in out and "train" in out and "%" in out


def test_existing_output_is_one_line_with_exit_1(tmp_path, raw, cli):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    code, _, err = cli(["prepare", "vaihingen", "--root", str(raw), "--out", str(tmp_path / "data")])
    assert code == 1 and len(err.splitlines()) == 1
    assert "output folder exists and is not empty; pass --overwrite to replace it" in err


def test_unknown_colour_is_one_line_naming_it(tmp_path, raw, cli):
    label = raw / "gts_for_participants" / "top_mosaic_09cm_area30.tif"
    with rasterio.open(label, "r+") as dst:
        rgb = dst.read()
        rgb[:, 0, 0] = (12, 34, 56)
        dst.write(rgb)
    code, _, err = cli(["prepare", "vaihingen", "--root", str(raw), "--out", str(tmp_path / "data")])
    assert code == 1 and len(err.splitlines()) == 1 and "(12, 34, 56) in 1 pixels" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "isaid", "--root", "r", "--out", "o"], "use one of potsdam, vaihingen, uavid or folder"),
        (["prepare", "potsdam", "--out", "o"], "potsdam needs --root"),
        (["prepare", "vaihingen", "--root", "r", "--out", "o", "--image-kind", "IRRG"], "does not apply to vaihingen"),
        (["prepare", "uavid", "--root", "r", "--out", "o", "--val-fraction", "0.1"], "does not apply to uavid"),
        (["prepare", "folder", "--images", "i", "--labels", "l", "--out", "o"], "folder needs --classes"),
        (
            ["prepare", "folder", "--images", "i", "--labels", "l", "--classes", "c", "--root", "r", "--out", "o"],
            "does not apply to folder",
        ),
        (["prepare", "potsdam", "--root", "r", "--out", "o", "--patch-size", "0"], "--patch-size"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(argv, message, cli):
    code, out, err = cli(argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err


def test_api_errors_exit_1(tmp_path, cli):
    code, _, err = cli(
        ["prepare", "potsdam", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--image-kind", "CIR"]
    )
    assert code == 1 and len(err.splitlines()) == 1
    assert "unknown image kind 'CIR'; choose one of RGB, IRRG, RGBIR" in err


def test_options_are_forwarded(tmp_path, monkeypatch, cli):
    calls = {}

    def fake(*args, **kwargs):
        calls["dataset"] = (args, kwargs)
        raise SystemExit(0)

    def fake_folder(*args, **kwargs):
        calls["folder"] = (args, kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("aerialseg.data.prepare.prepare_dataset", fake)
    monkeypatch.setattr("aerialseg.data.prepare.prepare_folder", fake_folder)
    cli(
        [
            "prepare",
            "potsdam",
            "--root",
            "r",
            "--out",
            "o",
            "--patch-size",
            "512",
            "--stride",
            "256",
            "--image-kind",
            "RGBIR",
            "--colour-tolerance",
            "3",
            "--overwrite",
        ],
    )
    args, kwargs = calls["dataset"]
    assert [str(a) for a in args] == ["potsdam", "r", "o"]
    assert {k: v for k, v in kwargs.items() if k != "progress"} == {
        "patch_size": 512,
        "stride": 256,
        "image_kind": "RGBIR",
        "colour_tolerance": 3,
        "overwrite": True,
    }
    cli(
        [
            "prepare",
            "folder",
            "--images",
            "i",
            "--labels",
            "l",
            "--classes",
            "c.toml",
            "--out",
            "o",
            "--val-fraction",
            "0.2",
            "--seed",
            "5",
        ],
    )
    args, kwargs = calls["folder"]
    assert [str(a) for a in args] == ["i", "l", "c.toml", "o"]
    assert kwargs["val_fraction"] == 0.2 and kwargs["seed"] == 5
    assert "test_fraction" not in kwargs  # left to the library's default


def test_prepare_help_loads_neither_torch_nor_rasterio():
    code = (
        "import sys\n"
        "from aerialseg.cli.main import main\n"
        "try:\n"
        "    main(['prepare', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules and 'rasterio' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
