"""``--mosaic``: a real orthophoto cut into sheets predicts, as one mosaic, the whole raster's map.

The reference is independent of the mosaic code: the whole raster predicted by the ordinary
path, cut at the sheets' windows. Without ``--mosaic`` the sheets disagree with it along
their edges, which is what the option is for.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from aerialseg.batch import predict_batch
from aerialseg.options import InputOptions, OutputOptions, PredictOptions, TilingOptions
from aerialseg.pipeline import predict

TILING = TilingOptions(tile_size=96, overlap=32)
SHEETS = {"a": (0, 0, 230, 170), "b": (230, 0, 170, 170), "c": (0, 170, 230, 230), "d": (230, 170, 170, 230)}
"""Uneven sheets (col, row, width, height) of the 400 x 400 NEON tile: edges off the tile grid."""


def _cut(source: Path, folder: Path, sheets: dict, **profile_changes) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    with rasterio.open(source) as src:
        for name, (col, row, width, height) in sheets.items():
            window = Window(col, row, width, height)
            profile = src.profile | {"width": width, "height": height, "transform": src.window_transform(window)}
            profile |= profile_changes
            paths[name] = folder / f"{name}.tif"
            with rasterio.open(paths[name], "w", **profile) as dst:
                dst.write(src.read(window=window))
    return paths


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture
def whole(tmp_path, neon_tif, context_runner) -> np.ndarray:
    """The reference: the whole tile predicted as one raster."""
    predict(neon_tif, tmp_path / "whole.tif", context_runner(), PredictOptions(TILING))
    return _read(tmp_path / "whole.tif")


def test_sheets_predicted_as_a_mosaic_equal_the_whole_raster(tmp_path, neon_tif, context_runner, whole):
    sheets = _cut(neon_tif, tmp_path / "sheets", SHEETS)
    options = PredictOptions(TILING, InputOptions(mosaic=True), OutputOptions(probabilities=True))
    results = predict_batch([tmp_path / "sheets"], context_runner(), options, out_dir=tmp_path / "mosaic")
    assert [r.status for r in results] == ["ok"] * 4
    apart = predict_batch([tmp_path / "sheets"], context_runner(), PredictOptions(TILING), out_dir=tmp_path / "apart")
    assert [r.status for r in apart] == ["ok"] * 4
    seams = 0
    for name, (col, row, width, height) in SHEETS.items():
        reference = whole[row : row + height, col : col + width]
        with rasterio.open(tmp_path / "mosaic" / f"{name}_classes.tif") as out, rasterio.open(sheets[name]) as sheet:
            assert (out.transform, out.crs, out.shape) == (sheet.transform, sheet.crs, sheet.shape)
            assert np.array_equal(out.read(1), reference)
            assert out.tags()["AERIALSEG_SOURCE"] == f"{name}.tif"
            assert "predicted as one mosaic of 4 files (400 x 400 pixels)" in out.tags()["AERIALSEG_MOSAIC"]
        assert (tmp_path / "mosaic" / f"{name}_classes_probabilities.tif").is_file()
        seams += int((_read(tmp_path / "apart" / f"{name}_classes.tif") != reference).sum())
    assert seams > 0  # predicted apart, the sheets disagree with the whole raster
    assert not any(p.name.startswith(".") for p in (tmp_path / "mosaic").iterdir())  # scratch removed
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == ["a.tif", "b.tif", "c.tif", "d.tif"]


def test_one_output_holds_the_whole_mosaic_and_gaps_are_nodata(tmp_path, neon_tif, context_runner, whole):
    sheets = {name: box for name, box in SHEETS.items() if name != "b"}  # the top-right sheet is missing
    _cut(neon_tif, tmp_path / "sheets", sheets)
    options = PredictOptions(TILING, InputOptions(mosaic=True))
    (result,) = predict_batch([tmp_path / "sheets"], context_runner(), options, output=tmp_path / "all.tif")
    assert result.status == "ok" and result.input.name == "mosaic of 3 files"
    with rasterio.open(tmp_path / "all.tif") as out, rasterio.open(neon_tif) as src:
        assert (out.transform, out.shape) == (src.transform, src.shape)
        classes = out.read(1)
    assert (classes[0:170, 230:400] == 255).all()  # the gap: no file, no prediction
    c_col, c_row, width, height = SHEETS["c"]  # far from the gap, the map is the whole raster's
    assert np.array_equal(classes[c_row + 100 :, :100], whole[c_row + 100 :, :100])


def test_files_without_nodata_get_their_gaps_masked(tmp_path, neon_tif, context_runner):
    sheets = {"a": SHEETS["a"], "d": SHEETS["d"]}  # diagonal: two gaps
    _cut(neon_tif, tmp_path / "sheets", sheets, nodata=None)
    options = PredictOptions(TILING, InputOptions(mosaic=True))
    (result,) = predict_batch([tmp_path / "sheets"], context_runner(), options, output=tmp_path / "all.tif")
    assert result.status == "ok", result.error
    classes = _read(tmp_path / "all.tif")
    assert (classes[0:170, 230:] == 255).all() and (classes[170:, :230] == 255).all()
    assert (classes[:170, :230] != 255).all()  # no nodata value: every pixel of a file is data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"transform": "shift"}, "origin +0.500, +0.000 pixels off the grid"),
        ({"crs": "EPSG:32618"}, "CRS EPSG:32618 instead of EPSG:32617"),
        ({"count": 1}, "1 bands of uint8 instead of 3 of uint8"),
        ({"nodata": 0}, "nodata marked by the value 0.0 instead of the value 255.0"),
        ({"transform": "pixel"}, "pixel size 0.2 x 0.1 instead of 0.1 x 0.1"),
    ],
)
def test_a_file_off_the_grid_is_named_and_nothing_is_written(tmp_path, neon_tif, context_runner, change, message):
    _cut(neon_tif, tmp_path / "sheets", {"a": SHEETS["a"]})
    odd = _cut(neon_tif, tmp_path / "odd", {"b": SHEETS["b"]})["b"]
    with rasterio.open(odd) as src:
        profile, data = src.profile, src.read()
    if change.get("transform") == "shift":
        change = {"transform": profile["transform"] @ Affine.translation(0.5, 0)}
    elif change.get("transform") == "pixel":
        change = {"transform": profile["transform"] @ Affine.scale(2, 1)}
    count = change.get("count", 3)
    with rasterio.open(tmp_path / "sheets" / "b.tif", "w", **(profile | change | {"count": count})) as dst:
        dst.write(data[:count])
    options = PredictOptions(TILING, InputOptions(mosaic=True))
    runner = context_runner()
    (result,) = predict_batch([tmp_path / "sheets"], runner, options, out_dir=tmp_path / "out")
    assert result.status == "failed" and result.input.name == "mosaic of 2 files"
    assert result.error == (
        f"{tmp_path / 'sheets' / 'b.tif'}: is not on the grid of a.tif ({message}), so the inputs cannot form one "
        "mosaic; predict it in another call, or without --mosaic"
    )
    assert runner.tiles == 0 and list((tmp_path / "out").iterdir()) == []


def test_outputs_are_checked_before_the_mosaic_is_predicted(tmp_path, neon_tif, context_runner):
    sheets = _cut(neon_tif, tmp_path / "sheets", SHEETS)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c_classes.tif").write_bytes(b"an earlier result")
    runner = context_runner()
    options = PredictOptions(TILING, InputOptions(mosaic=True))
    (result,) = predict_batch(list(sheets.values()), runner, options, out_dir=tmp_path / "out")
    assert result.status == "failed" and "c_classes.tif: output exists; pass --overwrite" in result.error
    assert runner.tiles == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c_classes.tif"]
    (result,) = predict_batch(list(sheets.values()), runner, options, output=sheets["a"])
    assert result.status == "failed" and "this output is the input" in result.error and runner.tiles == 0


def test_the_command_line_mosaic_with_the_sample_weights(cli, tmp_path, neon_tif):
    """Real weights: the mosaic equals the whole raster; the sheets apart differ along their edges."""
    _cut(neon_tif, tmp_path / "sheets", SHEETS)
    engine = ["--model", "manet-r18-potsdam-sample", "--backend", "torch", "--precision", "fp32", "--json"]
    engine += ["--gsd", "native", "--tile-size", "256", "--overlap", "64"]  # several tiles, seams inside sheets
    code, _, err = cli(["predict", str(neon_tif), "-o", str(tmp_path / "whole.tif"), *engine])
    assert code == 0, err
    code, out, err = cli(["predict", str(tmp_path / "sheets"), "--mosaic", "--out-dir", str(tmp_path / "m"), *engine])
    assert code == 0 and [r["status"] for r in json.loads(out)] == ["ok"] * 4, err
    code, _, err = cli(["predict", str(tmp_path / "sheets"), "--out-dir", str(tmp_path / "apart"), *engine])
    assert code == 0, err
    whole = _read(tmp_path / "whole.tif")
    differ = {"m": 0, "apart": 0}
    for name, (col, row, width, height) in SHEETS.items():
        for folder in differ:
            differ[folder] += int(
                (_read(tmp_path / folder / f"{name}_classes.tif") != whole[row : row + height, col : col + width]).sum()
            )
    assert differ["m"] == 0 and differ["apart"] > 0


def test_an_interrupted_mosaic_resumes_and_a_failed_one_leaves_no_scratch(tmp_path, neon_tif, context_runner, whole):
    _cut(neon_tif, tmp_path / "sheets", SHEETS)

    class Interrupted(context_runner):
        def __call__(self, batch):
            if self.tiles >= 30:  # well into the mosaic: finished rows are on disk
                raise KeyboardInterrupt
            return super().__call__(batch)

    options = PredictOptions(TILING, InputOptions(mosaic=True), OutputOptions(resume=True, skip_finished=True))
    with pytest.raises(KeyboardInterrupt):
        predict_batch([tmp_path / "sheets"], Interrupted(), options, out_dir=tmp_path / "out")
    (scratch,) = [p for p in (tmp_path / "out").iterdir()]
    assert scratch.name.startswith(".aerialseg-mosaic-")  # kept for --resume; no output yet
    resumed = context_runner()
    results = predict_batch([tmp_path / "sheets"], resumed, options, out_dir=tmp_path / "out")
    full = context_runner()
    predict_batch([tmp_path / "sheets"], full, replace(options, output=OutputOptions()), out_dir=tmp_path / "full")
    assert [r.status for r in results] == ["ok"] * 4 and 0 < resumed.tiles < full.tiles  # the rest only
    for name, (col, row, width, height) in SHEETS.items():
        assert np.array_equal(
            _read(tmp_path / "out" / f"{name}_classes.tif"), whole[row : row + height, col : col + width]
        )
    assert not scratch.exists()

    class Broken(context_runner):
        def __call__(self, batch):
            raise RuntimeError("out of memory")

    (result,) = predict_batch([tmp_path / "sheets"], Broken(), options, out_dir=tmp_path / "again")
    assert result.status == "failed" and "unexpected error (RuntimeError: out of memory)" in result.error
    assert list((tmp_path / "again").iterdir()) == []
