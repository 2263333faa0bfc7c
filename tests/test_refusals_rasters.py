"""Misuse with rasters and outputs that a held-out hunt found, each refused in one line or made to work.

Every case failed before its fix, on crops of the real rasters the repository carries:

* pixel values float32 cannot hold (a float64 raster up to 2.5e302) became infinities, then
  nodata, and an all-nodata map was reported as a success; a scaling that flattens a band
  (a fill value such as -3.4e38 taken for data, values spanning beyond float64) gave a
  meaningless map;
* 10,000 km pixels (outside the CRS's domain) gave an "unexpected error" line;
* a full disk or a file-size limit printed libtiff's raw lines and an internal read error, or
  delivered a torn file as a success;
* a VRT whose source is missing said "Read failed. See previous exception" without naming it;
* a FIFO given as input made predict, doctor and vectorize wait forever;
* two runs writing the same output shared one intermediate file;
* ``--resume`` continued from an input rewritten with its old size and modification time;
* a raster too wide for the memory available grew until the system killed it.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from aerialseg import tiling
from aerialseg.conventions import NODATA_CLASS
from aerialseg.errors import InputRasterError, OutputWriteError
from aerialseg.options import OutputOptions, PredictOptions, TilingOptions
from aerialseg.pipeline import predict
from aerialseg.source import RasterSource

CROP = 96
TORCH = ["--backend", "torch", "--precision", "fp32"]  # no ONNX export in a test


def _crop(source: Path, target: Path, *, dtype: str = "uint8", scale: float = 1.0, size: int = CROP, **profile) -> Path:
    """A ``size``-pixel square of ``source``'s data (the RGB.byte interior) as ``dtype``, times ``scale``.

    ``profile`` overrides the written profile (``transform``, ``nodata`` ...); the bands keep their
    colour interpretation, so the model's bands are found by name.
    """
    with rasterio.open(source) as src:
        window = Window(300, 300, size, size)
        data = src.read(window=window).astype(np.float64) * scale
        written = src.profile | {"width": size, "height": size, "transform": src.window_transform(window)}
        written |= {"dtype": dtype, "nodata": None, "tiled": False, "compress": None} | profile
        colours = src.colorinterp
    with rasterio.open(target, "w", **written) as dst:
        dst.write(data.astype(dtype))
        dst.colorinterp = colours
    return target


def _classes(path: Path) -> np.ndarray:
    with rasterio.open(path) as out:
        return out.read(1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _subprocess_cli(argv: list[str], *, timeout: float = 120, limit=None) -> subprocess.CompletedProcess:
    """The command line in a child process: its stderr at the file-descriptor level, and a hang a failure."""
    return subprocess.run(
        [sys.executable, "-m", "aerialseg", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


# 1. Pixel values and scaling


@pytest.fixture
def rgb(rasters) -> Path:
    """The carried RGB raster whose interior the crops take (rasterio's RGB.byte.tif, nodata 0)."""
    return rasters["nodata"]


def test_float64_pixels_beyond_float32_are_scaled_not_lost(rgb, tmp_path, context_runner):
    huge = _crop(rgb, tmp_path / "huge.tif", dtype="float64", scale=1e300)  # up to 2.55e302
    plain = _crop(rgb, tmp_path / "plain.tif", dtype="float64")
    options = PredictOptions(TilingOptions(tile_size=64, overlap=16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow warnings were the only sign
        predict(huge, tmp_path / "huge_classes.tif", context_runner(), options)
    predict(plain, tmp_path / "plain_classes.tif", context_runner(), options)
    found = _classes(tmp_path / "huge_classes.tif")
    assert (found != NODATA_CLASS).all()
    np.testing.assert_array_equal(found, _classes(tmp_path / "plain_classes.tif"))  # the stretch is scale-free


def test_float64_pixels_beyond_float32_predict_ok_from_the_command_line(rgb, tmp_path, cli, abcnet_weights):
    huge = _crop(rgb, tmp_path / "huge.tif", dtype="float64", scale=1e300)
    code, out, err = cli(["predict", str(huge), "-m", str(abcnet_weights), *TORCH, "-o", str(tmp_path / "o.tif")])
    assert code == 0 and "RuntimeWarning" not in err and "overflow" not in err, err
    assert (_classes(tmp_path / "o.tif") != NODATA_CLASS).all()


def _collar(path: Path, value: float) -> Path:
    """``path`` with its first 12 rows set to ``value`` in every band, no nodata declared: a fill taken for data."""
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        data[:, :12] = value
        dst.write(data)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "needles"),
    [
        (
            lambda rgb, folder: _collar(_crop(rgb, folder / "in.tif", dtype="float32"), -3.4028235e38),
            [],
            ["band 1 holds values from -3.4e+38 to", "2-98 percentile stretch", "at most two grey levels"],
        ),
        (
            lambda rgb, folder: _crop(rgb, folder / "in.tif", dtype="float64", scale=1e300),
            ["--scale", "255"],
            ["values from 1e+300 to 2.55e+302", "divide by 255 (--scale)"],
        ),
        (  # a range wider than float64 itself: no stretch can span it
            lambda rgb, folder: _collar(_crop(rgb, folder / "in.tif", dtype="float64", scale=7e305), -1.7e308),
            [],
            ["values from -1.7e+308 to 1.78e+308"],
        ),
        (
            lambda rgb, folder: _crop(rgb, folder / "in.tif", dtype="uint16"),
            ["--scale", "1"],
            ["values from 1 to 255", "divide by 1 (--scale)"],
        ),
    ],
    ids=["float32-fill-value", "scale-far-too-small", "beyond-float64", "uint16-scale-1"],
)
def test_a_scaling_that_flattens_a_band_is_refused(rgb, tmp_path, cli, abcnet_weights, make, extra, needles, one_line):
    path = make(rgb, tmp_path)
    argv = ["predict", str(path), "-m", str(abcnet_weights), *TORCH, *extra, "-o", str(tmp_path / "o.tif"), "--json"]
    code, _, err = cli(argv)
    one_line(code, err, 1, "in.tif", *needles, "--scale", "nodata")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    code, out, err = cli(["doctor", str(path), "-m", str(abcnet_weights), *extra, "--json"])
    assert code == 1 and "at most two grey levels" in out and "Traceback" not in err


def test_nan_and_infinite_pixels_among_huge_ones_are_nodata(rgb, tmp_path, cli, abcnet_weights):
    path = _crop(rgb, tmp_path / "holes.tif", dtype="float64", scale=1e300)
    holes = [((slice(0, 20), slice(0, 20)), np.nan), ((slice(50, 60), slice(40, 50)), np.inf), ((70, 80), -np.inf)]
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        for (rows, cols), value in holes:
            data[1, rows, cols] = value  # one band's hole makes the pixel nodata
        dst.write(data)
    code, _, err = cli(["predict", str(path), "-m", str(abcnet_weights), *TORCH, "-o", str(tmp_path / "o.tif")])
    assert code == 0 and "Warning" not in err, err
    found = _classes(tmp_path / "o.tif")
    hole = np.zeros_like(found, bool)
    for (rows, cols), _ in holes:
        hole[rows, cols] = True
    assert (found[hole] == NODATA_CLASS).all() and (found[~hole] != NODATA_CLASS).all()


# 2. Pixels too large to measure on the ground


@pytest.mark.parametrize(
    ("crs", "size", "shown"),
    [("EPSG:32618", 1e7, "1e+07 x 1e+07 m"), ("EPSG:4326", 10.0, "10 x 10 degrees")],
    ids=["utm-10000-km", "geographic-10-degrees"],
)
def test_pixels_too_large_to_measure_are_one_line(rgb, tmp_path, cli, make_weights, crs, size, shown, one_line):
    from affine import Affine

    path = _crop(rgb, tmp_path / "in.tif", crs=crs, transform=Affine(size, 0, 0, 0, -size, 0))
    weights = make_weights(tmp_path / "w10cm.safetensors", gsd_m=0.1)  # a model GSD: predict would resample
    code, _, err = cli(["predict", str(path), "-m", str(weights), *TORCH, "-o", str(tmp_path / "o.tif"), "--json"])
    one_line(code, err, 1, "in.tif: cannot measure the ground pixel size of", shown, "--gsd native")
    assert not (tmp_path / "o.tif").exists()
    code, out, err = cli(["doctor", str(path), "-m", str(weights), "--json"])
    report = json.loads(out)
    assert code == 1 and "Traceback" not in err
    assert any(shown in f["message"] and "--gsd native" in f["fix"] for f in report["findings"]), report
    code, _, err = cli(
        ["predict", str(path), "-m", str(weights), *TORCH, "--gsd", "native", "-o", str(tmp_path / "o.tif")]
    )
    assert code == 0, err


def test_vectorize_of_pixels_too_large_to_measure_names_the_file_and_the_fix(rgb, tmp_path, cli, one_line):
    """vectorize measures objects on the ground: its line names the raster and the georeferencing, not --gsd."""
    from affine import Affine

    path = _crop(rgb, tmp_path / "map.tif", crs="EPSG:32618", transform=Affine(1e7, 0, 0, 0, -1e7, 0))
    with rasterio.open(path, "r+") as dst:
        dst.write(np.ones((dst.count, dst.height, dst.width), "uint8"))
    code, _, err = cli(["vectorize", str(path), "-o", str(tmp_path / "objects.gpkg"), "--classes", "1"])
    one_line(
        code, err, 1, "map.tif: cannot measure the ground pixel size of 1e+07 x 1e+07 m", "check the georeferencing"
    )
    assert "--gsd" not in err and not (tmp_path / "objects.gpkg").exists()


# 3. A full disk or a file-size limit while writing


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture
def earlier_output(tmp_path) -> Path:
    """A folder holding an earlier output ``out.tif`` that a failed run must leave as it was."""
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "out.tif").write_bytes(b"an earlier map\n" * 10)
    return folder


def _write_fails_in_one_line(result: subprocess.CompletedProcess, folder: Path, reason: str, before: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {folder / 'out.tif'}: cannot write ({reason}); "), lines
    assert "Proc" not in result.stderr and "IReadBlock" not in result.stderr and "WARNING" not in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["out.tif"]  # no temporary, no partial, no journal
    assert _digest(folder / "out.tif") == before


@pytest.mark.parametrize("limit", [4_000, 12_000])  # the intermediate file's first blocks, or its last ones
def test_a_file_size_limit_while_writing_is_one_line(rgb, abcnet_weights, earlier_output, limit):
    source = _crop(rgb, earlier_output.parent / "in.tif", size=256)  # a 16 kB intermediate, a 15 kB map
    before = _digest(earlier_output / "out.tif")
    argv = ["predict", str(source), "-m", str(abcnet_weights), *TORCH, "-o", str(earlier_output / "out.tif")]
    result = _subprocess_cli([*argv, "--overwrite", "--json"], limit=_file_size_limit(limit))
    _write_fails_in_one_line(result, earlier_output, "File too large", before)
    assert "ulimit -f" in result.stderr


@contextmanager
def _small_filesystem(folder: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` mounted on ``folder`` (root only: the test skips elsewhere, saying why)."""
    folder.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
        )
    except OSError as exc:  # no mount command
        pytest.skip(f"cannot mount a small tmpfs here ({exc})")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# 4 kB pages: the earlier output takes one; the 16 kB intermediate file does not fit in one more,
# and fits in five, beside which the 15 kB final copy does not.
@pytest.mark.parametrize("size", ["8k", "24k"], ids=["full-while-streaming-rows", "full-in-the-final-copy"])
def test_a_full_disk_while_writing_is_one_line(rgb, abcnet_weights, tmp_path, size):
    source = _crop(rgb, tmp_path / "in.tif", size=256)
    folder = tmp_path / "small"
    with _small_filesystem(folder, size):
        (folder / "out.tif").write_bytes(b"an earlier map\n" * 10)
        before = _digest(folder / "out.tif")
        argv = ["predict", str(source), "-m", str(abcnet_weights), *TORCH, "-o", str(folder / "out.tif")]
        result = _subprocess_cli([*argv, "--overwrite", "--json"])
        _write_fails_in_one_line(result, folder, "No space left on device", before)
        assert "free some space" in result.stderr


# 4. A VRT whose source is missing


def _vrt(path: Path, source: Path, width: int = CROP, height: int = CROP) -> Path:
    """A VRT of ``width`` x ``height`` pixels whose top-left ``CROP`` square is ``source`` (an RGB crop)."""
    with rasterio.open(source) as src:
        crs, t = src.crs.to_wkt(), src.transform
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>0</NoDataValue><ColorInterp>{colour}</ColorInterp>'
        f'<SimpleSource><SourceFilename relativeToVRT="1">{source.name}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{CROP}" ySize="{CROP}"/><DstRect xOff="0" yOff="0" xSize="{CROP}" '
        f'ySize="{CROP}"/></SimpleSource></VRTRasterBand>'
        for b, colour in ((1, "Red"), (2, "Green"), (3, "Blue"))
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>{bands}</VRTDataset>"
    )
    return path


@pytest.mark.parametrize("gone", ["deleted", "fifo"])
def test_a_vrt_whose_source_is_missing_names_it(rgb, tmp_path, abcnet_weights, gone, one_line):
    source = _crop(rgb, tmp_path / "sheet.tif")
    vrt = _vrt(tmp_path / "mosaic.vrt", source)
    source.unlink()
    if gone == "fifo":
        os.mkfifo(source)
    problem = "does not exist" if gone == "deleted" else "is a named pipe (FIFO)"
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["predict", str(vrt), "-m", str(abcnet_weights), *TORCH, "-o", str(tmp_path / "o.tif"), "--json"]
    result = _subprocess_cli(argv, timeout=90)  # a FIFO read would wait forever: the timeout fails the test
    one_line(result.returncode, result.stderr, 1, "mosaic.vrt: the VRT reads", "sheet.tif", problem, "gdalbuildvrt")
    result = _subprocess_cli(["doctor", str(vrt), "-m", str(abcnet_weights), "--json"], timeout=90)
    assert result.returncode == 1 and "sheet.tif" in result.stdout and problem in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_vrt_source_removed_after_opening_is_named_when_read(rgb, tmp_path, context_runner):
    source = _crop(rgb, tmp_path / "sheet.tif")
    with RasterSource(_vrt(tmp_path / "mosaic.vrt", source), context_runner().card) as opened:
        source.unlink()  # GDAL opens a VRT's sources at the first read
        with pytest.raises(InputRasterError, match=r"mosaic.vrt: cannot read pixels \(.*sheet.tif"):
            opened.read(tiling.Window(0, 0, CROP, CROP))


# 5. A FIFO as input


@pytest.mark.parametrize("command", ["predict", "doctor", "vectorize"])
def test_a_fifo_as_input_is_refused_at_once(tmp_path, abcnet_weights, command):
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    argv = {
        "predict": ["predict", str(fifo), "-m", str(abcnet_weights), *TORCH, "-o", str(tmp_path / "o.tif"), "--json"],
        "doctor": ["doctor", str(fifo), "-m", str(abcnet_weights)],
        "vectorize": ["vectorize", str(fifo), "-o", str(tmp_path / "o.gpkg")],
    }[command]
    result = _subprocess_cli(argv, timeout=90)  # a regression hangs: the timeout fails the test
    assert result.returncode == 1, result.stderr
    assert "pipe.tif" in result.stdout + result.stderr and "named pipe (FIFO)" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.tif"]


# 6. Two runs writing the same output


RUN_HOLDING_THE_OUTPUT = r"""
import sys
sys.path.insert(0, sys.argv[3])
from fake_runners import ContextRunner
from aerialseg.options import PredictOptions, TilingOptions
from aerialseg.pipeline import predict

class Held(ContextRunner):
    def __call__(self, batch):
        if self.tiles == 2:
            print("writing", flush=True)
            sys.stdin.readline()  # held until the parent says go on
        return super().__call__(batch)

predict(sys.argv[1], sys.argv[2], Held(), PredictOptions(TilingOptions(tile_size=64, overlap=16)))
print("done", flush=True)
"""


def _run_holding(source: Path, target: Path) -> subprocess.Popen:
    """A child process predicting ``source`` into ``target``, held once it is writing until a line on its stdin."""
    here = str(Path(__file__).parent)
    child = subprocess.Popen(
        [sys.executable, "-c", RUN_HOLDING_THE_OUTPUT, str(source), str(target), here],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    return child


def _styled(*stems: str) -> list[str]:
    return sorted(name for stem in stems for name in (f"{stem}.qml", f"{stem}.tif", f"{stem}.tif.aux.xml"))


def test_a_second_run_on_the_same_output_is_refused_and_the_first_undisturbed(
    rgb,
    tmp_path,
    cli,
    abcnet_weights,
    context_runner,
    one_line,
):
    source = _crop(rgb, tmp_path / "in.tif")
    target = tmp_path / "out" / "map.tif"
    target.parent.mkdir()
    first = _run_holding(source, target)
    code, _, err = cli(["predict", str(source), "-m", str(abcnet_weights), *TORCH, "-o", str(target), "--json"])
    line = one_line(code, err, 1, "map.tif", "another aerialseg run is writing this output")
    assert line.endswith("wait for it or choose another -o")
    assert first.communicate("go on\n", timeout=120)[0].strip() == "done" and first.returncode == 0
    predict(source, tmp_path / "fresh.tif", context_runner(), PredictOptions(TilingOptions(tile_size=64, overlap=16)))
    np.testing.assert_array_equal(_classes(target), _classes(tmp_path / "fresh.tif"))
    assert sorted(p.name for p in target.parent.iterdir()) == _styled("map")  # the lock went with the run


def test_two_runs_in_threads_on_one_output_one_is_refused(rgb, tmp_path, context_runner):
    source = _crop(rgb, tmp_path / "in.tif")
    writing, finish = threading.Event(), threading.Event()

    class Held(context_runner):
        def __call__(self, batch):
            writing.set()
            finish.wait(60)
            return super().__call__(batch)

    options = PredictOptions(TilingOptions(tile_size=64, overlap=16))
    results: list = []
    first = threading.Thread(target=lambda: results.append(predict(source, tmp_path / "map.tif", Held(), options)))
    first.start()
    assert writing.wait(60)
    with pytest.raises(OutputWriteError, match="another aerialseg run is writing this output"):
        predict(source, tmp_path / "map.tif", context_runner(), options)
    finish.set()
    first.join(60)
    assert results and results[0].status == "ok"
    predict(source, tmp_path / "fresh.tif", context_runner(), options)
    np.testing.assert_array_equal(_classes(tmp_path / "map.tif"), _classes(tmp_path / "fresh.tif"))


def test_a_damaged_journal_starts_the_run_over(rgb, tmp_path, context_runner):
    """A journal that is deep JSON or not an object is no journal: the resumed run starts over, as a fresh one."""
    from aerialseg.journal import partial_paths
    from aerialseg.options import OutputOptions, TilingOptions
    from aerialseg.pipeline import PredictOptions, predict

    source = _crop(rgb, tmp_path / "in.tif", size=160)
    tiling = TilingOptions(tile_size=64, overlap=16)
    predict(source, tmp_path / "fresh.tif", context_runner(), PredictOptions(tiling))
    for name, damage in (("deep", "[" * 100_000 + "]" * 100_000), ("list", '["key", "rows_done"]')):
        target = tmp_path / f"{name}.tif"
        partial_paths(target)[1].write_text(damage)
        resumed = predict(source, target, context_runner(), PredictOptions(tiling, output=OutputOptions(resume=True)))
        assert resumed.tiles_run + resumed.tiles_skipped == 9  # every tile of the 160-pixel plan
        np.testing.assert_array_equal(_classes(target), _classes(tmp_path / "fresh.tif"))


def test_a_killed_run_leaves_no_lock_in_the_way(rgb, tmp_path, context_runner):
    source = _crop(rgb, tmp_path / "in.tif")
    target = tmp_path / "out" / "map.tif"
    target.parent.mkdir()
    child = _run_holding(source, target)
    child.send_signal(signal.SIGKILL)
    child.wait()
    options = PredictOptions(TilingOptions(tile_size=64, overlap=16), output=OutputOptions(resume=True))
    assert predict(source, target, context_runner(), options).status == "ok"
    assert sorted(p.name for p in target.parent.iterdir()) == _styled("map")


# 7. --resume after an input rewritten with its old size and modification time


def test_resume_after_a_rewrite_that_kept_size_and_mtime_starts_over(rgb, tmp_path, context_runner):
    source = _crop(rgb, tmp_path / "in.tif", size=256)  # 25 tiles of 64
    options = PredictOptions(TilingOptions(tile_size=64, overlap=16))

    class Interrupted(context_runner):
        def __call__(self, batch):
            if self.tiles >= 24:
                raise KeyboardInterrupt
            return super().__call__(batch)

    target = tmp_path / "out" / "map.tif"
    target.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        predict(source, target, Interrupted(), options)
    assert (target.parent / ".map.tif.partial.json").exists()
    stat = source.stat()
    with rasterio.open(source, "r+") as dst:  # other pixels, written in place: the same size
        dst.write(dst.read()[:, ::-1, ::-1])
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    resumed = context_runner()
    resume = PredictOptions(options.tiling, output=OutputOptions(resume=True))
    predict(source, target, resumed, resume)
    fresh = predict(source, tmp_path / "fresh.tif", context_runner(), options)
    assert resumed.tiles == fresh.tiles_run  # every tile again: nothing of the old pixels was reused
    np.testing.assert_array_equal(_classes(target), _classes(tmp_path / "fresh.tif"))


# 8. A raster too wide for the memory available


@contextmanager
def _address_space_cap(headroom: int) -> Iterator[None]:
    """The address space capped at what this process uses plus ``headroom`` bytes (Linux)."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("needs /proc/self/statm to cap the address space")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(statm.read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE") + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_a_raster_too_wide_for_the_memory_available_is_refused_before_any_work(
    rgb, tmp_path, cli, abcnet_weights, one_line
):
    source = _crop(rgb, tmp_path / "sheet.tif")
    vrt = _vrt(tmp_path / "wide.vrt", source, width=200_000, height=200_000)  # no disk: one small real tile
    argv = ["-m", str(abcnet_weights), "--tile-size", "512", "--probabilities"]
    cli(["doctor", str(source), *argv[:2]])  # GDAL and the model registry load before the cap
    with _address_space_cap(2 * 2**30):  # the dense blender alone needs 28 bytes x 512 rows x 200,000 columns
        code, _, err = cli(["predict", str(vrt), *argv, *TORCH, "-o", str(tmp_path / "o.tif"), "--json"])
        doctor_code, out, _ = cli(["doctor", str(vrt), *argv, "--json"])
    line = one_line(code, err, 1, "wide.vrt: a 200000 x 200000 pixel raster needs", "MiB is available")
    assert "--tile-size" in line and "--probabilities" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.tif", "wide.vrt"]
    report = json.loads(out)
    assert doctor_code == 1 and any("MiB is available" in f["message"] for f in report["findings"])
