"""`aerialseg predict`: the rasters a folder or glob names, the options reaching the outputs, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import rasterio

from aerialseg.runners import RunnerSpec


def only_line(err):
    """The one line a failing command prints on stderr."""
    lines = err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.fixture
def opened(monkeypatch, context_runner):
    """RunnerSpec.open gives the fast stand-in network (with its TTA, as open wraps it); the specification is kept."""
    from aerialseg.runners.tta import TTARunner

    specs = []

    def fake_open(spec, choice=None):
        specs.append(spec)
        return TTARunner(context_runner(), spec.tta) if spec.tta else context_runner()

    monkeypatch.setattr(RunnerSpec, "open", fake_open)
    return specs


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
def test_bad_input_gives_one_line_and_writes_nothing(cli, workdir, rasters, abcnet_weights, case):
    path, message = bad_inputs(workdir, rasters)[case]
    argv = ["predict", str(path), "-m", str(abcnet_weights), "--out-dir", str(workdir / "out"), "--json"]
    code, _, err = cli(argv)
    assert code == 1
    line = only_line(err)
    assert line.startswith(f"error: {path}: ") and message in line
    assert list((workdir / "out").iterdir()) == []


def test_output_folder_not_writable(cli, workdir, rasters, abcnet_weights):
    blocker = workdir / "a-file"
    blocker.write_text("x")
    code, _, err = cli(
        ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "-o", str(blocker / "out.tif"), "--json"]
    )
    assert code == 1 and "output folder does not exist" in only_line(err)


@pytest.mark.parametrize("existing", ["classes.tif", "classes.qml", "classes.tif.aux.xml"])
def test_existing_output_needs_overwrite(cli, workdir, rasters, abcnet_weights, existing):
    target = workdir / "out" / "classes.tif"
    (workdir / "out" / existing).write_bytes(b"earlier result")
    argv = ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "-o", str(target), "--json"]
    code, _, err = cli(argv)
    assert code == 1 and f"{workdir / 'out' / existing}: output exists; pass --overwrite" in only_line(err)
    assert [p.name for p in (workdir / "out").iterdir()] == [existing]
    assert (workdir / "out" / existing).read_bytes() == b"earlier result"
    code, _, _ = cli([*argv, "--overwrite"])
    assert code == 0
    with rasterio.open(target) as out:
        assert out.width == 400
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["classes.qml", "classes.tif", "classes.tif.aux.xml"]
    assert (workdir / "out" / existing).read_bytes() != b"earlier result"


def test_batch_reports_each_file_and_fails_the_exit_code(cli, workdir, rasters, abcnet_weights):
    broken = workdir / "broken.tif"
    broken.write_text("nope")
    code, out, err = cli(
        [
            "predict",
            str(rasters["striped"]),
            str(broken),
            "-m",
            str(abcnet_weights),
            "--out-dir",
            str(workdir / "out"),
            "--json",
        ]
    )
    results = json.loads(out)
    assert code == 1
    assert [r["status"] for r in results] == ["ok", "failed"]
    assert (workdir / "out" / "neon_osbs_029_classes.tif").exists()
    assert "broken.tif" in only_line(err)


def test_a_folder_and_a_glob_name_the_rasters_in_them(cli, workdir, rasters, abcnet_weights, opened):
    folder = workdir / "in"
    folder.mkdir()
    for name in ("striped", "nodata"):
        shutil.copy(rasters[name], folder / rasters[name].name)
    (folder / "notes.txt").write_text("not a raster")
    (folder / "nested").mkdir()
    found = ["RGB.byte.tif", "neon_osbs_029.tif"]
    model, out_dir = str(abcnet_weights), str(workdir / "out")

    code, out, err = cli(["predict", str(folder), "-m", model, "--out-dir", out_dir, "--json"])
    assert code == 0, err
    assert [Path(r["input"]).name for r in json.loads(out)] == found
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "RGB.byte_classes.qml",
        "RGB.byte_classes.tif",
        "RGB.byte_classes.tif.aux.xml",
        "neon_osbs_029_classes.qml",
        "neon_osbs_029_classes.tif",
        "neon_osbs_029_classes.tif.aux.xml",
    ]

    # the same files by pattern; --resume leaves the finished ones alone
    code, out, err = cli(["predict", str(folder / "*.tif"), "-m", model, "--out-dir", out_dir, "--resume", "--json"])
    assert code == 0, err
    assert [(Path(r["input"]).name, r["status"]) for r in json.loads(out)] == [(name, "skipped") for name in found]


def test_options_reach_the_outputs_and_the_runner(cli, workdir, rasters, abcnet_weights, opened):
    target = workdir / "out" / "classes.tif"
    code, _, err = cli(
        [
            "predict",
            str(rasters["striped"]),
            "-m",
            str(abcnet_weights),
            "-o",
            str(target),
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
            "--tta",
            "flip",
            "--backend",
            "torch",
            "--precision",
            "fp32",
            "--min-agreement",
            "0.95",
            "--json",
        ]
    )
    assert code == 0, err
    assert opened == [RunnerSpec(str(abcnet_weights), "torch", None, "flip", "fp32", 0.95, None)]
    with rasterio.open(target) as out:
        tags = out.tags()
    assert tags["AERIALSEG_TILING"] == "tile 256, overlap 48, blend center"
    assert tags["AERIALSEG_BANDS"] == "3,2,1" and tags["AERIALSEG_TTA"] == "flip"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--blend", "feather"], "'feather' is not one of 'cosine', 'linear', 'center'"),
        (["--tile-size", "0"], "--tile-size"),
        (["--tta", "rot90"], "'rot90' is not one of 'flip', 'd4'"),
        (["--bands", "4;1;2"], "give 1-based band numbers separated by commas"),
        (["--calibration", "ortho.tif"], "calibrates int8 only; add --precision int8"),
        (["--cluster", "local:0"], "bad cluster 'local:0'"),
        (["--cluster", "local", "--split-rows", "0"], "--split-rows"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(cli, workdir, rasters, abcnet_weights, extra, message):
    code, out, err = cli(["predict", str(rasters["striped"]), "-m", str(abcnet_weights), *extra])
    line = only_line(err)
    assert code == 2 and line.startswith("error: ") and message in line and "aerialseg predict --help" in line
    assert out == "" and list((workdir / "out").iterdir()) == []


def test_missing_onnxruntime_names_the_extra(cli, workdir, rasters, abcnet_weights, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a missing package looks like to import
    code, _, err = cli(["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "--backend", "onnx"])
    assert code == 1 and "pip install 'aerialseg[cpu]'" in only_line(err)


def test_extra_outputs_from_the_command_line(cli, workdir, rasters, abcnet_weights):
    code, _, _ = cli(
        [
            "predict",
            str(rasters["striped"]),
            "-m",
            str(abcnet_weights),
            "--out-dir",
            str(workdir / "out"),
            "--probabilities",
            "--uncertainty",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "neon_osbs_029_classes.qml",
        "neon_osbs_029_classes.tif",
        "neon_osbs_029_classes.tif.aux.xml",
        "neon_osbs_029_classes_probabilities.tif",
        "neon_osbs_029_classes_uncertainty.tif",
    ]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["keep", "overwrite"])
def test_the_input_as_output_is_refused_without_inviting_overwrite(
    cli, workdir, rasters, opened, abcnet_weights, overwrite
):
    ortho = workdir / "ortho.tif"
    shutil.copyfile(rasters["striped"], ortho)
    before = ortho.read_bytes()
    code, _, err = cli(["predict", str(ortho), "-m", str(abcnet_weights), "-o", str(ortho), *overwrite, "--json"])
    line = only_line(err)
    assert code == 1 and f"this output is the input {ortho}" in line and "--overwrite" not in line
    assert "choose another -o or --out-dir" in line and ortho.read_bytes() == before
    assert sorted(p.name for p in workdir.iterdir()) == ["ortho.tif", "out"]


def test_an_unexpected_error_fails_its_file_only(cli, workdir, rasters, context_runner, abcnet_weights, monkeypatch):
    class BrokenOnTheSecondFile(context_runner):
        def __call__(self, batch):
            if self.tiles >= 16:  # the striped sample is 16 tiles of 128 pixels (overlap 32)
                raise RuntimeError("CUDA error: device-side assert triggered\nmore GPU detail")
            return super().__call__(batch)

    monkeypatch.setattr(RunnerSpec, "open", lambda spec, choice=None: BrokenOnTheSecondFile())
    argv = ["predict", str(rasters["striped"]), str(rasters["nodata"]), "-m", str(abcnet_weights), "--out-dir"]
    code, out, err = cli([*argv, str(workdir / "out"), "--json"])
    assert code == 1 and [r["status"] for r in json.loads(out)] == ["ok", "failed"]
    line = only_line(err)
    assert "RGB.byte.tif: unexpected error (RuntimeError: CUDA error: device-side assert triggered)" in line
    assert "rerun with -v for the traceback" in line
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "neon_osbs_029_classes.qml",
        "neon_osbs_029_classes.tif",
        "neon_osbs_029_classes.tif.aux.xml",
    ]


def test_a_vectorize_class_the_model_lacks_is_refused_before_any_file(cli, workdir, rasters, opened, abcnet_weights):
    argv = ["predict", str(rasters["striped"]), str(rasters["nodata"]), "-m", str(abcnet_weights), "--out-dir"]
    code, _, err = cli([*argv, str(workdir / "out"), "--vectorize", "building,bilding", "--json"])
    line = only_line(err)
    assert code == 1 and "--vectorize, for this model: no class 'bilding'" in line and "1=building" in line
    assert list((workdir / "out").iterdir()) == []


def test_progress_as_json_lines_and_an_objects_file_of_its_own(cli, workdir, rasters, abcnet_weights, opened):
    output, objects = workdir / "out" / "map.tif", workdir / "objects" / "buildings.fgb"
    objects.parent.mkdir()
    argv = ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "-o", str(output), "--tile-size", "128"]
    code, _, err = cli([*argv, "--vectorize", "building", "--objects", str(objects), "--progress", "json"])
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events and all(set(event) == {"stage", "item", "done", "total"} for event in events)
    tiles = [event for event in events if event["stage"] == "tiles"]
    assert {event["item"] for event in tiles} == {rasters["striped"].name}
    assert [event["done"] for event in tiles] == sorted(event["done"] for event in tiles)
    assert tiles[-1]["done"] == tiles[-1]["total"] > 1
    assert events[-1] == {"stage": "files", "item": "all files", "done": 1, "total": 1}
    assert objects.is_file() and objects.with_suffix(".qml").is_file()
    assert sorted(p.name for p in output.parent.iterdir()) == ["map.qml", "map.tif", "map.tif.aux.xml"]


def test_an_objects_file_needs_vectorize_a_vector_suffix_and_one_output(cli, workdir, rasters, abcnet_weights):
    argv = ["predict", str(rasters["striped"]), "-m", str(abcnet_weights)]
    code, _, err = cli([*argv, "-o", str(workdir / "map.tif"), "--objects", str(workdir / "o.gpkg")])
    assert code == 2 and "add --vectorize" in only_line(err)
    code, _, err = cli([*argv, "-o", str(workdir / "map.tif"), "--vectorize", "building", "--objects", "o.txt"])
    assert code == 2 and "no vector format" in only_line(err)
    code, _, err = cli([*argv, "--out-dir", str(workdir / "out"), "--vectorize", "building", "--objects", "o.gpkg"])
    assert code == 1 and "goes with one class raster" in only_line(err) and "-o" in only_line(err)
    assert list((workdir / "out").iterdir()) == [] and not (workdir / "map.tif").exists()
