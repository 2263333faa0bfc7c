"""The batch layer on real rasters: no output over an input, one file never stops a batch, reruns see one input set."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import rasterio

from aerialseg.batch import predict_batch
from aerialseg.errors import AerialsegError, OutputWriteError
from aerialseg.inputs import expand_inputs
from aerialseg.options import OutputOptions, TilingOptions
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.vector import VectorizeOptions

TILING = TilingOptions(tile_size=96, overlap=16)


@pytest.fixture
def ortho(tmp_path, rasters):
    """A private copy of a real orthophoto (the carried ones must never be written near)."""
    path = tmp_path / "ortho.tif"
    shutil.copyfile(rasters["nodata"], path)
    return path


def spelled(ortho: Path, spelling: str) -> Path:
    """Another name of ``ortho``: the same path, through ``..``, a symbolic link or a hard link."""
    if spelling == "plain":
        return ortho
    if spelling == "dotdot":
        (ortho.parent / "sub").mkdir()
        return ortho.parent / "sub" / ".." / ortho.name
    other = ortho.with_name("other.tif")
    (os.symlink if spelling == "symlink" else os.link)(ortho, other)
    return other


@pytest.mark.parametrize("overwrite", [False, True], ids=["keep", "overwrite"])
@pytest.mark.parametrize("spelling", ["plain", "dotdot", "symlink", "hardlink"])
def test_the_input_is_never_an_output(tmp_path, ortho, context_runner, spelling, overwrite):
    before = ortho.read_bytes()
    target = spelled(ortho, spelling)
    options = PredictOptions(TILING, output=OutputOptions(overwrite=overwrite))
    runner = context_runner()
    (result,) = predict_batch([ortho], runner, options, output=target)
    assert result.status == "failed" and "--overwrite" not in result.error
    assert f"{target}: this output is the input {ortho}; " in result.error
    with pytest.raises(OutputWriteError, match="would destroy the input"):
        predict(ortho, target, runner, options)
    assert ortho.read_bytes() == before and runner.tiles == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        {"ortho.tif", target.name} if spelling in ("symlink", "hardlink") else {"ortho.tif"}
    )


def test_no_product_or_scratch_file_may_be_an_input(tmp_path, ortho, context_runner):
    before = ortho.read_bytes()
    os.link(ortho, tmp_path / "map_probabilities.tif")  # the probability raster of -o map.tif
    options = PredictOptions(TILING, output=OutputOptions(probabilities=True, overwrite=True))
    (result,) = predict_batch([ortho], context_runner(), options, output=tmp_path / "map.tif")
    assert result.status == "failed" and "map_probabilities.tif: this output is the input" in result.error
    os.link(ortho, tmp_path / "styled.qml")  # the style file of -o styled.tif
    (result,) = predict_batch([ortho], context_runner(), options, output=tmp_path / "styled.tif")
    assert result.status == "failed" and "styled.qml: this output is the input" in result.error
    os.symlink(ortho, tmp_path / ".run.tif.partial.tif")  # a resumed run would update it in place
    resuming = PredictOptions(TILING, output=OutputOptions(resume=True))
    (result,) = predict_batch([ortho], context_runner(), resuming, output=tmp_path / "run.tif")
    assert result.status == "failed" and "scratch file of the output is the input" in result.error
    assert ortho.read_bytes() == before
    assert not (tmp_path / "map.tif").exists() and not (tmp_path / "run.tif").exists()


@pytest.mark.parametrize("style", ["map.qml", "map.tif.aux.xml", "map_objects.qml"])
def test_a_style_file_is_an_output_like_the_others(tmp_path, ortho, context_runner, style):
    (tmp_path / style).write_text("the user's own style")
    runner = context_runner()
    output = OutputOptions(vectorize=VectorizeOptions(classes=("car",)), objects_suffix=".fgb")
    (result,) = predict_batch([ortho], runner, PredictOptions(TILING, output=output), output=tmp_path / "map.tif")
    assert (
        result.status == "failed"
        and result.error == f"{tmp_path / style}: output exists; pass --overwrite to replace it"
    )
    assert runner.tiles == 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted(["ortho.tif", style])
    overwrite = PredictOptions(TILING, output=replace(output, overwrite=True))
    (result,) = predict_batch([ortho], runner, overwrite, output=tmp_path / "map.tif")
    assert result.status == "ok" and (tmp_path / style).read_text() != "the user's own style"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.qml",
        "map.tif",
        "map.tif.aux.xml",
        "map_objects.fgb",
        "map_objects.qml",
        "ortho.tif",
    ]


def test_one_input_is_never_replaced_by_another_inputs_map(tmp_path, rasters, context_runner):
    first = tmp_path / "a.tif"
    shutil.copyfile(rasters["nodata"], first)
    named_like_its_map = tmp_path / "a_classes.tif"  # an orthophoto, named explicitly
    shutil.copyfile(rasters["alpha"], named_like_its_map)
    before = named_like_its_map.read_bytes()
    results = predict_batch([first, named_like_its_map], context_runner(), PredictOptions(TILING))
    assert [r.status for r in results] == ["failed", "ok"]
    assert f"a_classes.tif: this output is the input {named_like_its_map}" in results[0].error
    assert named_like_its_map.read_bytes() == before and (tmp_path / "a_classes_classes.tif").exists()


def test_two_inputs_of_one_name_do_not_share_a_map(tmp_path, rasters, context_runner):
    for folder, kind in (("north", "nodata"), ("south", "jpeg_3857")):
        (tmp_path / folder).mkdir()
        shutil.copyfile(rasters[kind], tmp_path / folder / "tile.tif")
    inputs = [tmp_path / "north" / "tile.tif", tmp_path / "south" / "tile.tif"]
    options = PredictOptions(TILING, output=OutputOptions(overwrite=True))
    results = predict_batch(inputs, context_runner(), options, out_dir=tmp_path / "out")
    assert [r.status for r in results] == ["ok", "failed"]
    assert f"is also the output of {inputs[0]}" in results[1].error
    with rasterio.open(tmp_path / "out" / "tile_classes.tif") as out:
        assert out.width == 791  # the north tile's map (the south one is 1024 wide), kept


@pytest.mark.parametrize(
    "error", [RuntimeError("CUDA error: an illegal memory access"), ValueError("cannot reshape"), MemoryError()]
)
def test_any_error_of_one_file_is_its_row_and_the_batch_goes_on(tmp_path, rasters, context_runner, caplog, error):
    inputs = [rasters["nodata"], rasters["alpha"], rasters["jpeg_3857"]]
    first = predict(inputs[0], tmp_path / "probe.tif", context_runner(), PredictOptions(TILING))

    class FailsOnce(context_runner):
        def __call__(self, batch):
            if self.tiles == first.tiles_run:  # the second file's first batch
                self.tiles += 1
                raise error
            return super().__call__(batch)

    caplog.set_level(logging.INFO, logger="aerialseg")
    out = tmp_path / "out"
    results = predict_batch(inputs, FailsOnce(), PredictOptions(TILING), out_dir=out)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    line = results[1].error
    assert line.startswith(f"{inputs[1]}: unexpected error ({type(error).__name__}") and "\n" not in line
    assert "rerun with -v for the traceback" in line
    assert any(record.exc_info and record.exc_info[1] is error for record in caplog.records)
    assert sorted(p.name for p in out.iterdir()) == [  # the failed file left nothing, not even a style
        "RGB.byte_classes.qml",
        "RGB.byte_classes.tif",
        "RGB.byte_classes.tif.aux.xml",
        "cogeo_classes.qml",
        "cogeo_classes.tif",
        "cogeo_classes.tif.aux.xml",
    ]


def test_ctrl_c_still_stops_the_batch(tmp_path, rasters, context_runner):
    class Interrupted(context_runner):
        def __call__(self, batch):
            if self.tiles == 3:
                raise KeyboardInterrupt
            return super().__call__(batch)

    with pytest.raises(KeyboardInterrupt):
        predict_batch([rasters["nodata"], rasters["alpha"]], Interrupted(), PredictOptions(TILING), out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        (VectorizeOptions(classes=("bilding",)), "--vectorize, for this model: no class 'bilding'"),
        (VectorizeOptions(classes=("car",), car_geometry="bx"), "unknown car geometry 'bx'"),
    ],
)
def test_vectorize_settings_are_checked_before_any_file(tmp_path, rasters, context_runner, objects, message):
    runner = context_runner()
    options = PredictOptions(TILING, output=OutputOptions(vectorize=objects))
    with pytest.raises(AerialsegError, match=message):
        predict_batch([rasters["nodata"], rasters["alpha"]], runner, options, out_dir=tmp_path)
    with pytest.raises(AerialsegError, match=message):
        predict(rasters["nodata"], tmp_path / "map.tif", runner, options)
    assert list(tmp_path.iterdir()) == [] and runner.tiles == 0


def test_a_folder_or_pattern_names_the_same_inputs_after_a_run(tmp_path, rasters, context_runner):
    folder = tmp_path / "survey"
    folder.mkdir()
    for kind in ("nodata", "alpha"):
        shutil.copyfile(rasters[kind], folder / rasters[kind].name)
    inputs = [folder / "RGB.byte.tif", folder / "RGBA.byte.tif"]
    assert expand_inputs([folder]) == inputs
    everything = OutputOptions(probabilities=True, uncertainty=True, vectorize=VectorizeOptions(classes=("car",)))
    results = predict_batch([folder], context_runner(), PredictOptions(TILING, output=everything))
    assert [r.status for r in results] == ["ok", "ok"]
    # an aerialseg map under a name of the user's choice, and what a cluster or a stopped run leaves
    predict(inputs[0], folder / "map.tif", context_runner(), PredictOptions(TILING))
    (folder / ".RGB.byte_classes.tif.bands").mkdir()
    shutil.copyfile(folder / "map.tif", folder / ".RGB.byte_classes.tif.bands" / "0000000000.tif")
    shutil.copyfile(folder / "map.tif", folder / ".RGB.byte_classes.tif.partial.tif")
    # two inputs; each one's 4 products and 2 style files; map.tif with its 2, the band folder and the partial file
    assert len(list(folder.iterdir())) == 2 + 2 * (4 + 2) + 3 + 2
    assert expand_inputs([folder]) == inputs
    assert expand_inputs([folder / "*"]) == inputs
    assert expand_inputs([str(folder / "**" / "*.tif")]) == inputs
    assert expand_inputs([str(folder / ".*" / "*.tif")]) == []
    assert expand_inputs([folder / "map.tif"]) == [folder / "map.tif"]  # named explicitly: taken as given
    again = predict_batch([folder], context_runner(), PredictOptions(TILING, output=OutputOptions(skip_finished=True)))
    assert [(r.input, r.status) for r in again] == [(path, "skipped") for path in inputs]


def test_a_full_disk_fails_the_file_with_one_line_and_leaves_no_result(tmp_path, rasters, context_runner, monkeypatch):
    import errno

    from aerialseg.sink import RasterSink

    written = []

    def full_disk(self, row_off, bands):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(row_off)

    monkeypatch.setattr(RasterSink, "write", full_disk)
    out = tmp_path / "out"
    results = predict_batch([rasters["nodata"]], context_runner(), PredictOptions(TILING), out_dir=out)
    assert [r.status for r in results] == ["failed"]
    assert "No space left on device" in results[0].error and "\n" not in results[0].error
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []  # nothing posing as a result


def test_the_api_tags_its_outputs_as_the_command_line_does(tmp_path, rasters, abcnet_weights, context_runner):
    """TTA and the engine are recorded whoever opened the network: the entry, or the caller."""
    from aerialseg.runners import RunnerSpec
    from aerialseg.runners.tta import TTARunner

    spec = RunnerSpec(str(abcnet_weights), "torch", precision="fp32", tta="flip")
    (by_spec,) = predict_batch([rasters["nodata"]], spec, PredictOptions(TILING), out_dir=tmp_path / "spec")
    (opened,) = predict_batch(
        [rasters["nodata"]], TTARunner(context_runner(), "d4"), PredictOptions(TILING), out_dir=tmp_path / "runner"
    )
    (plain,) = predict_batch([rasters["nodata"]], context_runner(), PredictOptions(TILING), out_dir=tmp_path / "plain")
    tags = {}
    for name, result in (("spec", by_spec), ("runner", opened), ("plain", plain)):
        with rasterio.open(result.output) as out:
            tags[name] = out.tags()
    assert [tags[name]["AERIALSEG_TTA"] for name in ("spec", "runner", "plain")] == ["flip", "d4", "none"]
    assert tags["spec"]["AERIALSEG_BACKEND"].startswith("PyTorch") and "TTA flip" in tags["spec"]["AERIALSEG_BACKEND"]


def test_the_batch_is_expanded_checked_and_run_once(tmp_path, rasters, context_runner, monkeypatch):
    """Expansion, the settings check and each claim happen exactly once per batch, whatever the path."""
    import aerialseg.batch
    import aerialseg.outputs
    import aerialseg.pipeline

    calls = {"expand": 0, "settings": 0, "claim": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(aerialseg.batch, "expand_inputs", counted("expand", aerialseg.batch.expand_inputs))
    monkeypatch.setattr(aerialseg.batch, "check_settings", counted("settings", aerialseg.batch.check_settings))
    monkeypatch.setattr(aerialseg.outputs.OutputClaims, "claim", counted("claim", aerialseg.outputs.OutputClaims.claim))
    monkeypatch.setattr(aerialseg.pipeline, "check_settings", counted("settings", aerialseg.pipeline.check_settings))
    results = predict_batch(
        [rasters["nodata"], rasters["alpha"]], context_runner(), PredictOptions(TILING), out_dir=tmp_path
    )
    assert [r.status for r in results] == ["ok", "ok"]
    assert calls == {"expand": 1, "settings": 1, "claim": 2}
