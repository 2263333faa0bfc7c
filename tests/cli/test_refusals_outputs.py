"""Held-out misuse of predict's outputs, pinned: each refused in one line before any work, nothing lost.

Each case failed before its fix: a VRT's source file replaced by the class map it was read
into (``--overwrite``), a named pipe given as ``-o`` replaced by a regular file, a GeoTIFF
written under a ``.png`` name, ``-o`` with ``--out-dir`` creating a folder it then ignored,
and a warning printed as Python prints it (source path, code line) instead of one line.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import rasterio
import rasterio.shutil
from rasterio.windows import Window

CROP = 96


@pytest.fixture
def bench(tmp_path, rasters, abcnet_weights, monkeypatch) -> Path:
    """A folder (the working directory) with a 96-pixel crop of the real NEON orthophoto and the weights."""
    with rasterio.open(rasters["striped"]) as src:
        window = Window(100, 100, CROP, CROP)
        profile = src.profile | {"width": CROP, "height": CROP, "transform": src.window_transform(window)}
        with rasterio.open(tmp_path / "data.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.colorinterp = src.colorinterp
    (tmp_path / "w.safetensors").write_bytes(abcnet_weights.read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _predict(cli, *argv: str) -> tuple[int, str, str]:
    return cli(["predict", *argv, "-m", "w.safetensors", "--backend", "torch", "--precision", "fp32", "--json"])


def test_a_vrt_input_protects_the_file_it_reads(bench, cli, one_line):
    with rasterio.open(bench / "data.tif") as src:
        rasterio.shutil.copy(src, bench / "view.vrt", driver="VRT")
    before = _digest(bench / "data.tif")
    code, _, err = _predict(cli, "view.vrt", "-o", "data.tif", "--overwrite")
    one_line(code, err, 1, "data.tif: this output is the input", "writing it would destroy the input")
    assert _digest(bench / "data.tif") == before
    assert sorted(p.name for p in bench.iterdir()) == ["data.tif", "view.vrt", "w.safetensors"]


def test_a_vrt_of_a_vrt_protects_the_file_at_the_bottom(bench, cli, one_line):
    with rasterio.open(bench / "data.tif") as src:
        rasterio.shutil.copy(src, bench / "inner.vrt", driver="VRT")
    with rasterio.open(bench / "inner.vrt") as src:
        rasterio.shutil.copy(src, bench / "outer.vrt", driver="VRT")
    before = _digest(bench / "data.tif")
    code, _, err = _predict(cli, "outer.vrt", "-o", "data.tif", "--overwrite")
    one_line(code, err, 1, "this output is the input")
    assert _digest(bench / "data.tif") == before


def test_a_named_pipe_as_output_is_refused_even_with_overwrite(bench, cli, one_line):
    os.mkfifo(bench / "pipe.tif")
    code, _, err = _predict(cli, "data.tif", "-o", "pipe.tif", "--overwrite")
    one_line(code, err, 1, "pipe.tif: is a named pipe (FIFO), not a file aerialseg can replace", "regular file")
    assert not (bench / "pipe.tif").is_file() and (bench / "pipe.tif").is_fifo()
    assert sorted(p.name for p in bench.iterdir()) == ["data.tif", "pipe.tif", "w.safetensors"]


def test_a_device_is_refused_as_an_output_before_anything_could_replace_it():
    """Checked, not run: a regression of the run itself would replace /dev/null on the test machine."""
    from aerialseg.atomic import check_output
    from aerialseg.errors import OutputWriteError

    with pytest.raises(OutputWriteError, match="/dev/null: is a character device, not a file aerialseg can replace"):
        check_output("/dev/null", overwrite=True)


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out"])
def test_a_class_raster_must_be_named_as_a_geotiff(bench, cli, name, one_line):
    code, _, err = _predict(cli, "data.tif", "-o", name)
    one_line(code, err, 1, f"{name}: aerialseg writes GeoTIFFs", f"name the output {Path(name).stem}.tif")
    assert sorted(p.name for p in bench.iterdir()) == ["data.tif", "w.safetensors"]


def test_output_and_out_dir_together_are_refused_before_the_folder_is_made(bench, cli, one_line):
    code, _, err = _predict(cli, "data.tif", "-o", "map.tif", "--out-dir", "maps")
    one_line(code, err, 1, "-o names the output file and --out-dir an output folder; give one of them")
    assert sorted(p.name for p in bench.iterdir()) == ["data.tif", "w.safetensors"]


def test_a_warning_is_one_line_naming_the_file_not_python_code(bench, cli):
    """Bands without colour names: the model's R-G-B are assumed in file order, and the user is told once."""
    with rasterio.open(bench / "data.tif") as src:
        profile = src.profile | {"photometric": "MINISBLACK"}
        with rasterio.open(bench / "grey.tif", "w", **profile) as dst:
            dst.write(src.read())
    code, _, err = _predict(cli, "grey.tif", "-o", "grey_classes.tif")
    assert code == 0, err
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: grey.tif: band names (1:PAN, 2:undefined, 3:undefined) do not identify")
    assert "BandAssumptionWarning" not in err and ".py:" not in err
