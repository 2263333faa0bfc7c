"""`aerialseg predict` on bad inputs: one line naming the file and the problem, exit 1, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
import rasterio
from conftest import run_cli as run


def errors(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path


def bad_inputs(tmp_path, rasters):
    not_raster = tmp_path / "notes.tif"
    not_raster.write_text("field notes, not pixels")
    truncated = tmp_path / "truncated.tif"
    data = rasters["striped"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    zero_bands = tmp_path / "empty.vrt"
    zero_bands.write_text('<VRTDataset rasterXSize="64" rasterYSize="64"></VRTDataset>')
    return {
        "not a raster": (not_raster, "cannot open as a raster"),
        "truncated": (truncated, "cannot"),
        # GDAL itself refuses a band-less VRT at open; the message still names the missing bands.
        "zero bands": (zero_bands, "bands"),
        "one band for a three-band model": (
            rasters["uint16_single"],
            "the model reads 3 bands (R-G-B) but the file has 1",
        ),
    }


@pytest.mark.parametrize("case", ["not a raster", "truncated", "zero bands", "one band for a three-band model"])
def test_bad_input_gives_one_line_and_writes_nothing(capsys, workdir, rasters, abcnet_weights, case):
    path, message = bad_inputs(workdir, rasters)[case]
    code, _, err = run(["predict", str(path), "-m", str(abcnet_weights), "--out-dir", str(workdir / "out")], capsys)
    assert code == 1
    lines = errors(err)
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0]
    assert list((workdir / "out").iterdir()) == []


def test_output_folder_not_writable(capsys, workdir, rasters, abcnet_weights):
    blocker = workdir / "a-file"
    blocker.write_text("x")
    code, _, err = run(
        ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "-o", str(blocker / "out.tif")], capsys
    )
    assert code == 1
    assert "output folder does not exist" in errors(err)[0]


def test_existing_output_needs_overwrite(capsys, workdir, rasters, abcnet_weights):
    target = workdir / "out" / "classes.tif"
    target.write_bytes(b"earlier result")
    argv = ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "-o", str(target)]
    code, _, err = run(argv, capsys)
    assert code == 1 and "output exists; pass --overwrite" in errors(err)[0]
    assert target.read_bytes() == b"earlier result"
    code, _, _ = run([*argv, "--overwrite"], capsys)
    assert code == 0
    with rasterio.open(target) as out:
        assert out.width == 400


def test_batch_reports_each_file_and_fails_the_exit_code(capsys, workdir, rasters, abcnet_weights):
    broken = workdir / "broken.tif"
    broken.write_text("nope")
    code, out, err = run(
        [
            "predict",
            str(rasters["striped"]),
            str(broken),
            "-m",
            str(abcnet_weights),
            "--out-dir",
            str(workdir / "out"),
            "--json",
        ],
        capsys,
    )
    results = json.loads(out)
    assert code == 1
    assert [r["status"] for r in results] == ["ok", "failed"]
    assert (workdir / "out" / "OSBS_029_classes.tif").exists()
    assert len(errors(err)) == 1 and "broken.tif" in errors(err)[0]


def test_folder_input_and_options_reach_the_pipeline(capsys, workdir, rasters, abcnet_weights, monkeypatch):
    folder = workdir / "in"
    folder.mkdir()
    for name in ("striped", "nodata"):
        shutil.copy(rasters[name], folder / rasters[name].name)
    seen = {}

    def fake(inputs, runner, options, **kwargs):
        seen.update(inputs=list(inputs), options=options, **kwargs)
        return []

    monkeypatch.setattr("aerialseg.pipeline.predict_many", fake)
    code, _, err = run(
        [
            "predict",
            str(folder),
            "-m",
            str(abcnet_weights),
            "--tile-size",
            "256",
            "--overlap",
            "48",
            "--blend",
            "center",
            "--bands",
            "3,2,1",
            "--batch-size",
            "4",
            "--scale",
            "4095",
        ],
        capsys,
    )
    options = seen["options"]
    assert (options.tile_size, options.overlap, options.blend, options.bands) == (256, 48, "center", (3, 2, 1))
    assert options.batch_size == 4 and options.scale == 4095
    assert code == 1 and "no input rasters found" in err  # the fake found nothing


def test_missing_onnxruntime_names_the_extra(capsys, workdir, rasters, abcnet_weights, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a missing package looks like to import
    code, _, err = run(["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "--backend", "onnx"], capsys)
    assert code == 1 and "pip install 'aerialseg[cpu]'" in err


def test_extra_outputs_from_the_command_line(capsys, workdir, rasters, abcnet_weights):
    code, _, _ = run(
        [
            "predict",
            str(rasters["striped"]),
            "-m",
            str(abcnet_weights),
            "--out-dir",
            str(workdir / "out"),
            "--probabilities",
            "--uncertainty",
        ],
        capsys,
    )
    assert code == 0
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "OSBS_029_classes.tif",
        "OSBS_029_classes_probabilities.tif",
        "OSBS_029_classes_uncertainty.tif",
    ]
