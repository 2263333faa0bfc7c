"""Nothing half-written: a write that fails part way leaves the earlier output as it was and no partial file.

Every output aerialseg delivers is written under a temporary name and renamed when complete
(:func:`aerialseg.atomic.atomic_output`). Here the library call that writes an output's bytes
(the class raster's COG copy, the objects file's layers, the weights file, the ONNX graph) is
made to write half a file and fail as a full disk does; the command must then exit 1 with one
line naming the output, leave the output that was there before byte for byte, and leave no
other file behind. A writer that wrote straight into the destination fails these tests.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
from rasterio.windows import Window

CROP = 160


class HalfWrite:
    """Wraps a writer: the real write, then the file cut to half its size and ``No space left on device``."""

    def __init__(self, real: Callable, path_of: Callable[..., str | Path]):
        self.real = real
        self.path_of = path_of
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.real(*args, **kwargs)
        path = Path(self.path_of(*args, **kwargs))
        self.calls += 1
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


def listing(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def bench(tmp_path, rasters, abcnet_weights, monkeypatch) -> Path:
    """The working directory: a crop of the real NEON orthophoto and the ABCNet test weights."""
    with rasterio.open(rasters["striped"]) as src:
        window = Window(0, 0, CROP, CROP)
        profile = src.profile | {"width": CROP, "height": CROP, "transform": src.window_transform(window)}
        with rasterio.open(tmp_path / "ortho.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.colorinterp = src.colorinterp
    (tmp_path / "w.safetensors").write_bytes(abcnet_weights.read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


PREDICT = ["predict", "ortho.tif", "-m", "w.safetensors", "--backend", "torch", "--precision", "fp32"]


def test_predict_keeps_the_earlier_class_raster_when_its_write_fails(bench, cli, monkeypatch):
    import rasterio.shutil

    writer = HalfWrite(rasterio.shutil.copy, lambda src, dst, **_: dst)
    argv = [*PREDICT, "-o", "map.tif", "--json"]
    code, _, err = cli(argv)
    assert code == 0, err
    monkeypatch.setattr(rasterio.shutil, "copy", writer)
    before = listing(bench)
    code, out, err = cli([*argv, "--overwrite"])
    assert writer.calls == 1, "the writer under test was not called: the write path changed"
    (row,) = json.loads(out)
    assert code == 1 and row["status"] == "failed" and "map.tif" in row["error"]
    assert "No space left on device" in row["error"]
    assert listing(bench) == before


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_vectorize_keeps_the_earlier_objects_when_their_write_fails(bench, cli, monkeypatch, suffix):
    import pyogrio

    code, _, err = cli([*PREDICT, "-o", "map.tif"])
    assert code == 0, err
    output = f"objects{suffix}"
    argv = ["vectorize", "map.tif", "-o", output, "--classes", "tree,low_vegetation,impervious_surfaces"]
    code, _, err = cli(argv)
    assert code == 0, err
    before = listing(bench)
    name = "write_dataframe" if suffix == ".gpkg" else "write_arrow"  # a GeoPackage's layers, or the conversion
    writer = HalfWrite(getattr(pyogrio, name), lambda data, path, **_: path)
    monkeypatch.setattr(pyogrio, name, writer)
    code, _, err = cli([*argv, "--overwrite"])
    assert writer.calls == 1, "the writer under test was not called: the write path changed"
    assert code == 1 and len(err.strip().splitlines()) == 1 and output in err, err
    assert listing(bench) == before


def test_weights_import_keeps_the_earlier_weights_file_when_its_write_fails(bench, cli, monkeypatch):
    import safetensors.torch

    writer = HalfWrite(safetensors.torch.save_file, lambda tensors, filename, **_: filename)
    argv = ["weights", "import", "w.safetensors", "--arch", "abcnet", "-o", "imported.safetensors"]
    code, _, err = cli(argv)
    assert code == 0, err
    monkeypatch.setattr(safetensors.torch, "save_file", writer)
    before = listing(bench)
    code, _, err = cli([*argv, "--overwrite"])
    assert writer.calls == 1, "the writer under test was not called: the write path changed"
    assert code == 1 and len(err.strip().splitlines()) == 1 and "imported.safetensors" in err, err
    assert "No space left on device" in err
    assert listing(bench) == before


@pytest.mark.slow
def test_export_keeps_the_earlier_onnx_file_when_its_write_fails(bench, cli, monkeypatch):
    import torch

    (bench / "model.onnx").write_bytes(b"an earlier export")
    before = listing(bench)
    writer = HalfWrite(torch.onnx.ONNXProgram.save, lambda program, destination, **_: destination)
    monkeypatch.setattr(
        torch.onnx.ONNXProgram, "save", lambda program, *args, **kwargs: writer(program, *args, **kwargs)
    )
    code, _, err = cli(["export", "w.safetensors", "-o", "model.onnx", "--overwrite"])
    assert writer.calls == 1, "the writer under test was not called: the write path changed"
    assert code == 1 and len(err.strip().splitlines()) == 1 and "model.onnx" in err, err
    assert listing(bench) == before
