"""Hunting tracebacks: generated misuse of every command must end in a one-line error, never in a crash.

The hardening promise is that no input or option can crash aerialseg, destroy data, or quietly
produce a wrong map. Hand-written tests pin the cases someone thought of; these properties
generate the rest. Each example misuses one thing (its *focus*) and gives everything else
plausible values, so it gets past the option parser into the library: option values out of
range, of the wrong type, empty, unicode or unknown; rasters truncated at any byte, empty,
text or folders named ``.tif``, dangling links; weights files truncated or with their header
or card altered; outputs that exist, are folders, dangling links, the input or the model.
Run in-process in a fresh folder that is also its working directory, the command line must

* exit with 0, 1 (a data error) or 2 (a usage error) and say something when it fails;
* print no traceback or exception dump, and log none;
* leave every file that existed before byte for byte as it was, except a named output it was
  told to replace (``--overwrite``), and never an input, even one named as the output;
* create nothing but its named outputs (and whatever lands in its output folder);
* refuse an option value that cannot give a right map (``--scale 0``, band 0, altered tensors)
  rather than write one; a class raster it writes lies on the input's grid, scores it prints
  count pixels;
* finish within ``WATCHDOG_S`` and within ``MEMORY_HEADROOM`` more memory (an option that sizes
  a loop or an allocation shows up as a failure, not as a stuck or OOM-killed test run).

Runs stay short: 96-pixel crops of the carried rasters, the tiny ABCNet test weights
(128-pixel tiles) on PyTorch in fp32 (no ONNX export), and ``aerialseg export`` only with
arguments that fail before the export starts. Examples are derandomized, so CI replays the
same ones; a failure prints the command line and what each file it names was made of.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import struct
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from aerialseg.cli.main import main
from aerialseg.conventions import CARD_KEY, NODATA_CLASS

CROP = 96
EXIT_CODES = {0, 1, 2}
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png")
EXCEPTION_DUMP = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)(?::|$)", re.MULTILINE)
UNICODE_NAME = "pièce [1] 地図 ☃"
WATCHDOG_S = 45
MEMORY_HEADROOM = 4 * 2**30


def _fast(examples: int) -> Callable[[Any], Any]:
    """Few, replayable examples; each runs the command line, so no deadline and no shrinking.

    Each example draws one seeded ``random.Random`` and makes its choices with it: uniform picks
    over the misuse tables spread a few examples much further than hypothesis' own draws, which
    favour the first entries. A failure names its full command line, so it needs no shrinking.
    """
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        print_blob=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# ---------------------------------------------------------------- materials shared by every example


@dataclass(frozen=True)
class Materials:
    """Intact inputs every example copies or points at; none of them may ever change."""

    folder: Path
    rasters: dict[str, Path]
    weights: Path
    checkpoint: Path

    def weights_signature(self) -> tuple[int, int, int]:
        """Size, inode and modification time of the shared weights (hashing 50 MB per example is too slow)."""
        stat = self.weights.stat()
        return stat.st_size, stat.st_ino, stat.st_mtime_ns


def _crop(source: Path, target: Path, row: int, col: int, *, georeferenced: bool = True) -> Path:
    """A ``CROP``-pixel window of a real raster, with its nodata and (unless told not to) its georeferencing."""
    with rasterio.open(source) as src:
        window = Window(col, row, CROP, CROP)
        profile = {
            "driver": "GTiff",
            "width": CROP,
            "height": CROP,
            "count": src.count,
            "dtype": src.dtypes[0],
            "nodata": src.nodata,
        }
        if georeferenced:
            profile |= {"crs": src.crs, "transform": src.window_transform(window)}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return target


@pytest.fixture(scope="module")
def materials(tmp_path_factory, rasters, abcnet_weights) -> Iterator[Materials]:
    """96-pixel crops of the carried rasters, their predicted class map, the test weights and a tiny checkpoint."""
    import torch

    folder = tmp_path_factory.mktemp("misuse-materials")
    crops = {
        "rgb": _crop(rasters["striped"], folder / "rgb.tif", 100, 100),
        "nodata": _crop(rasters["nodata"], folder / "nodata.tif", 300, 0),
        "rgba": _crop(rasters["alpha"], folder / "rgba.tif", 300, 300),
        "uint16": _crop(rasters["uint16_single"], folder / "uint16.tif", 400, 400),
        "nocrs": _crop(rasters["striped"], folder / "nocrs.tif", 100, 100, georeferenced=False),
    }
    classes = folder / "classes.tif"
    argv = ["predict", str(crops["rgb"]), "-m", str(abcnet_weights), "-o", str(classes), "--probabilities"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--backend", "torch", "--precision", "fp32", "--json"])
    assert info.value.code == 0
    crops |= {"classes": classes, "probabilities": folder / "classes_probabilities.tif"}
    checkpoint = folder / "foreign.ckpt"
    torch.save({"state_dict": {"net.head.weight": torch.zeros(6, 4)}}, checkpoint)
    weights_sha256 = hashlib.sha256(abcnet_weights.read_bytes()).hexdigest()
    shared = Materials(folder, crops, abcnet_weights, checkpoint)
    before = _snapshot(folder)
    yield shared
    assert _snapshot(folder) == before, "an example changed the shared materials"
    assert hashlib.sha256(abcnet_weights.read_bytes()).hexdigest() == weights_sha256, "the shared weights changed"


# ---------------------------------------------------------------- values

INT_ODD = ("0", "-1", "-0", "1.5", "1e3", "nan", "", "abc", "٣", "0x10", "+5", "1_0", str(2**40), str(2**63 - 1))
INT_ODD += (str(2**64), "9" * 30)
FLOAT_ODD = ("0", "-1", "-0", "nan", "inf", "-inf", "1e-300", "1e999", str(2**64), "", "abc", "1,5", "٣")
CHOICE_NOISE = ("", "unknown", "FP32", "☃")
RASTER_DAMAGE = ("unicode", "truncated", "truncated", "empty", "text", "garbage", "folder", "batch", "glob")
RASTER_DAMAGE += ("dangling", "missing")
ONE_RASTER_DAMAGE = tuple(kind for kind in RASTER_DAMAGE if kind not in ("batch", "glob"))
WEIGHTS_DAMAGE = ("truncated", "header_length", "header_json", "card", "card_text", "no_card", "empty", "raster")
WEIGHTS_DAMAGE += ("folder", "fake_onnx", "dangling", "missing", "tensors", "name")
CARD_FIELDS = ("arch", "backbone", "classes", "bands", "mean", "std", "pixel_max", "gsd_m", "tile_size", "overlap")
CARD_FIELDS += ("sha256", "schema", "dataset", "unknown_field")
CARD_VALUES = (None, 0, -1, 1, 2**63, 1e308, -0.5, "", "é☃\x1b[31m", [], [1], ["R"], {}, True, "<absent>")


def _weights_detail(rng: random.Random, kind: str) -> Any:
    """Where and how ``kind`` damages the weights file: a byte share, a header length, a card field and value..."""
    return {
        "header_length": lambda: rng.choice((0, 1, 7, 2**31, 2**63, 2**64 - 1)),
        "card": lambda: (rng.choice(CARD_FIELDS), rng.choice(CARD_VALUES)),
        "card_text": lambda: rng.choice(("", "{", "[]", "null", "1", '"card"', "{}")),
        "name": lambda: rng.choice(("", "nonesuch", "abcnet-resnet18", "☃", "../up.safetensors")),
    }.get(kind, rng.random)()


TILING = ("--tile-size", "--overlap", "--blend", "--batch-size")
READING = ("--bands", "--scale", "--gsd")
TORCH_ENGINE = ("--backend", "--precision", "--device", "--min-agreement")


def _tiling(bench: Bench) -> None:
    """Tile size, overlap, blend and batch size around the 128-pixel tile (odd: overlap >= tile, tile 1 ...)."""
    bench.option("--tile-size", ("31", "32", "64", "96", "100", "128", "129"), ("1", "2", *INT_ODD))
    bench.option("--overlap", ("0", "16", "30", "32", "63"), ("64", "100", "127", "128", "256", *INT_ODD))
    bench.option("--blend", ("cosine", "linear", "center"), CHOICE_NOISE)
    bench.option("--batch-size", ("1", "2", "3", "64"), INT_ODD)


def _reading(bench: Bench) -> None:
    """Band mapping, scale and GSD mode; bands below 1 and scales that cannot divide must be refused."""
    bands = bench.option(
        "--bands",
        ("1,2,3", "3,2,1", "1,1,1", "4,5,6", "1", "1,2", "1,2,3,4", " 1, 2, 3 ", "１,２,３"),
        ("0,1,2", "-1,2,3", "a,b,c", "", ",", "1,,2", "1.0,2,3", f"{2**64},1,2"),
    )
    if bands and any(part.strip().lstrip("-").isdigit() and int(part) < 1 for part in bands.split(",")):
        bench.must_fail.append(f"--bands {bands} names a band below 1")
    scale = bench.option("--scale", ("1", "255", "4095", "65535"), ("1e308", "1e-50", *FLOAT_ODD))
    if scale is not None:
        try:
            value = float(scale)
        except ValueError:
            value = 1.0
        with np.errstate(over="ignore", under="ignore"):
            single = np.float32(value)  # the precision pixels are divided in
        if not (np.isfinite(single) and single > 0):
            bench.must_fail.append(f"--scale {scale} cannot normalise pixels (as float32: {single})")
    bench.option("--gsd", ("auto", "native"), CHOICE_NOISE)


def _torch_engine(bench: Bench) -> None:
    """PyTorch in fp32 (no export, no accuracy gate), or a value the command line must refuse."""
    bench.argv += ["--backend", bench.pick("--backend", ("torch",), CHOICE_NOISE)]
    bench.argv += ["--precision", bench.pick("--precision", ("fp32",), ("fp64", "", "☃", "FP32"))]
    bench.option("--device", ("cpu",), ("cuda", "cuda:7", "cuda:-1", "meta", "tpu", "", "cpu:0", "☃"))
    bench.option("--min-agreement", ("0", "0.5", "0.999", "1"), ("1.0001", "-0.1", *FLOAT_ODD))


# ---------------------------------------------------------------- building one example's files


def _safetensors_parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _safetensors(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


@dataclass
class Bench:
    """One example: its folder (also the working directory), its command line, and what that may write.

    ``focus`` names the one thing the example misuses (an option, the input, the weights, an
    output) or is ``"none"``; everything else gets plausible values, so the run reaches the
    library instead of stopping at the first parse error.
    """

    folder: Path
    materials: Materials
    rng: random.Random
    focus: str
    argv: list[str] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    output_prefixes: list[Path] = field(default_factory=list)
    out_dirs: list[Path] = field(default_factory=list)
    must_fail: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    intact_input: Path | None = None

    def _path(self, name: str) -> Path:
        return self.folder / name

    def chance(self, share: float) -> bool:
        """True in ``share`` of the examples."""
        return self.rng.random() < share

    def pick(self, name: str, plausible: tuple[Any, ...], odd: tuple[Any, ...]) -> Any:
        """An odd value when ``name`` is the example's focus, else a plausible one."""
        return self.rng.choice(odd if self.focus == name and odd else plausible)

    def option(
        self, flag: str, plausible: tuple[str, ...], odd: tuple[str, ...] = (), share: float = 0.3
    ) -> str | None:
        """Append ``flag value`` (always when it is the focus, else in ``share`` of the examples); the value or None."""
        if self.focus != flag and not self.chance(share):
            return None
        value = self.pick(flag, plausible, odd)
        self.argv += [flag, value]
        return value

    def flag(self, flag: str, share: float = 0.3) -> bool:
        """Append a boolean flag in ``share`` of the examples (``--overwrite`` in most of those misusing ``-o``)."""
        given_flag = self.chance(0.7 if flag == "--overwrite" and self.focus == "-o" else share)
        if given_flag:
            self.argv.append(flag)
        return given_flag

    def input_raster(self, flavours: tuple[str, ...], damage: tuple[str, ...], name: str = "input.tif") -> Path:
        """The command's raster: a crop of one of ``flavours``, damaged when ``input`` is the focus."""
        kind = self.pick("input", ("intact",), damage)
        return self.raster(kind, self.rng.choice(flavours), self.rng.random(), name)

    def model(self, damage: tuple[str, ...] = WEIGHTS_DAMAGE) -> str:
        """The ``-m`` argument: the test weights, or (when ``weights`` is the focus) a damaged or absent file."""
        kind = self.rng.choice(damage) if self.focus == "weights" else "intact"
        detail = _weights_detail(self.rng, kind)
        return self.weights(kind, detail)

    def raster(self, kind: str, flavour: str = "rgb", keep: float = 0.5, name: str = "input.tif") -> Path:
        """An input raster: an intact copy of a crop, or damaged in the way ``kind`` says."""
        source = self.materials.rasters[flavour]
        path = self._path(name)
        if kind == "intact":
            shutil.copyfile(source, path)
        elif kind == "unicode":
            path = self._path(f"{UNICODE_NAME}.tif")
            shutil.copyfile(source, path)
        elif kind == "truncated":
            data = source.read_bytes()
            path.write_bytes(data[: int(keep * (len(data) - 1))])
            kind = f"truncated to {path.stat().st_size} of {len(data)} bytes"
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "text":
            path.write_text("not a raster\n")
        elif kind == "garbage":
            path.write_bytes(bytes(range(256)) * 7)
        elif kind == "folder":
            path.mkdir()
        elif kind == "batch":
            path = self._path("batch")
            path.mkdir()
            shutil.copyfile(source, path / "one.tif")
            (path / "two.tif").write_bytes(source.read_bytes()[:300])
        elif kind == "glob":
            shutil.copyfile(source, path)
            path = self._path("*.tif")
        elif kind == "dangling":
            path.symlink_to(self._path("gone.tif"))
        elif kind != "missing":
            raise ValueError(kind)
        if kind in ("intact", "unicode") and flavour in ("rgb", "nodata", "rgba"):
            self.intact_input = path
        self.inputs.append(path)
        self.notes.append(f"{path.name}: {flavour} crop, {kind}")
        return path

    def weights(self, kind: str, detail: Any = None) -> str:
        """A model argument: the shared test weights, or a damaged copy, a bad name or a non-weights file."""
        if kind == "intact":
            return str(self.materials.weights)
        if kind == "name":
            return str(detail)
        data = self.materials.weights.read_bytes()
        path = self._path("model.safetensors")
        if kind == "copy":  # intact, but in the example folder: a command may be told to write over it
            path.write_bytes(data)
        elif kind == "truncated":
            path.write_bytes(data[: int(detail * (len(data) - 1))])
        elif kind == "header_length":
            path.write_bytes(struct.pack("<Q", detail) + data[8:])
        elif kind == "header_json":
            length = struct.unpack("<Q", data[:8])[0]
            header = bytearray(data[8 : 8 + length])
            header[int(detail * (length - 1))] = ord("\x01")
            path.write_bytes(data[:8] + bytes(header) + data[8 + length :])
        elif kind == "card":
            header, body = _safetensors_parts(data)
            key, value = detail
            card = json.loads(header["__metadata__"][CARD_KEY])
            if value == "<absent>":
                card.pop(key, None)
            else:
                card[key] = value
            header["__metadata__"][CARD_KEY] = json.dumps(card)
            path.write_bytes(_safetensors(header, body))
        elif kind == "card_text":
            header, body = _safetensors_parts(data)
            header["__metadata__"][CARD_KEY] = detail
            path.write_bytes(_safetensors(header, body))
        elif kind == "no_card":
            header, body = _safetensors_parts(data)
            header.pop("__metadata__")
            path.write_bytes(_safetensors(header, body))
        elif kind == "tensors":
            body = bytearray(data)
            body[-1 - int(detail * 1000)] ^= 0x5A
            path.write_bytes(bytes(body))
            self.must_fail.append("the tensors were altered after the card's sha256 was taken")
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "raster":
            path = self._path("model.tif")
            shutil.copyfile(self.materials.rasters["rgb"], path)
        elif kind == "folder":
            path.mkdir()
        elif kind == "fake_onnx":
            path = self._path("model.onnx")
            path.write_bytes(b"\x08\x07" + bytes(range(200)))
        elif kind == "dangling":
            path.symlink_to(self._path("gone.safetensors"))
        elif kind != "missing":
            raise ValueError(kind)
        self.inputs.append(path)
        self.notes.append(f"{path.name}: the test weights, {kind} {detail!r}")
        return str(path)

    def output(self, kind: str, name: str = "out.tif") -> Path | None:
        """An output argument: a new name, an existing file or folder, a missing folder, a link to one, an input."""
        path = self._path(name)
        if kind == "none":
            return None
        if kind == "existing":
            path.write_bytes(b"an earlier result\n")
        elif kind == "folder":
            path.mkdir()
        elif kind == "missing_folder":
            path = self._path("no-such-folder") / name
        elif kind == "unicode":
            path = self._path(f"{UNICODE_NAME}{Path(name).suffix}")
        elif kind == "dangling":
            path.symlink_to(self._path(f"elsewhere{Path(name).suffix}"))
        elif kind == "input":
            return self.inputs[0]
        elif kind != "new":
            raise ValueError(kind)
        self.outputs.append(path)
        self.notes.append(f"{path.name}: output, {kind}")
        return path

    def out_dir(self, kind: str) -> Path | None:
        """An output folder: none, new (nested), the example folder itself, or an existing file."""
        if kind == "none":
            return None
        path = {"new": "results/a/b", "here": ".", "file": "not-a-folder", "unicode": UNICODE_NAME}[kind]
        folder = self._path(path)
        if kind == "file":
            folder.write_bytes(b"a file\n")
        self.out_dirs.append(folder.resolve())
        return folder


@contextlib.contextmanager
def _bench(
    rng: random.Random, foci: tuple[str, ...], tmp_path: Path, materials: Materials, caplog: pytest.LogCaptureFixture
) -> Iterator[Bench]:
    """A fresh folder per example, used as the working directory (relative writes land where they are seen)."""
    caplog.clear()
    focus = rng.choice(("none", *foci))
    folder = Path(tempfile.mkdtemp(dir=tmp_path, prefix="example-"))
    start = os.getcwd()
    os.chdir(folder)
    try:
        yield Bench(folder, materials, rng, focus)
    finally:
        os.chdir(start)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- running and judging


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: folders, link targets, and files by their sha256."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                entries[key] = "folder"
            else:
                entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


@dataclass(frozen=True)
class Outcome:
    """What one command line did: exit code (None: an exception escaped), output, escaped traceback."""

    code: int | None
    out: str
    err: str
    escaped: str = ""
    numeric_warnings: tuple[str, ...] = ()


class Hung(BaseException):
    """Raised by the watchdog in a command line that runs far longer than any example should.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` in the library swallows it.
    """


def _watchdog(signum: int, frame: Any) -> None:
    raise Hung(f"still running after {WATCHDOG_S} s (a loop or an allocation sized by an option?)")


@contextlib.contextmanager
def _memory_cap() -> Iterator[None]:
    """The address space capped at what the process uses plus ``MEMORY_HEADROOM`` (Linux).

    An allocation sized by an option then fails as a MemoryError in its example, instead of the
    machine's OOM killer ending the whole run and its neighbours.
    """
    statm = Path("/proc/self/statm")
    if not statm.exists():
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(statm.read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE") + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _invoke(argv: list[str]) -> Outcome:
    """Run the command line in-process; any exception but SystemExit escaping ``main`` is a crash, so is a hang.

    RuntimeWarnings (numpy's division by zero, overflow, invalid values) are recorded: a number
    the command line let through that the arithmetic could not take.
    """
    out, err, escaped = io.StringIO(), io.StringIO(), ""
    previous = signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(WATCHDOG_S)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            try:
                with _memory_cap(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    main(argv)
            finally:  # from here on a late alarm must not interrupt the bookkeeping
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                signal.alarm(0)
        except SystemExit as exc:
            code: int | None = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else -1)
        except BaseException:  # the crash itself is the finding
            code, escaped = None, traceback.format_exc()
        else:
            code = 0
        finally:
            if signal.SIGALRM in signal.sigpending():
                signal.sigwait({signal.SIGALRM})  # drop an alarm that fired as the command ended
            signal.signal(signal.SIGALRM, previous)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    numeric = tuple(
        f"{Path(w.filename).name}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, RuntimeWarning)
    )
    return Outcome(code, out.getvalue(), err.getvalue(), escaped, numeric)


def _may_create(bench: Bench, path: Path) -> bool:
    """Whether ``path`` is a named output, a product named after one, or lies in (or leads to) an output folder."""
    resolved = path.resolve()
    if any(resolved == d or d in resolved.parents or resolved in d.parents for d in bench.out_dirs):
        return True
    if path in bench.outputs or resolved in {output.resolve() for output in bench.outputs}:  # a link's target too
        return True
    return any(path.parent == p.parent and path.name.startswith(p.name) for p in bench.output_prefixes)


def _run_and_check(bench: Bench, caplog: pytest.LogCaptureFixture, *, replace: bool) -> Outcome:
    """Run the bench's command line and assert the promises of the module docstring; the outcome, for more checks."""
    argv, materials = bench.argv, bench.materials
    before, shared_before = _snapshot(bench.folder), _snapshot(materials.folder)
    weights_before = materials.weights_signature()
    dangling = {key for key, state in before.items() if state.startswith("link") and not (bench.folder / key).exists()}
    outcome = _invoke(argv)
    after = _snapshot(bench.folder)
    problems = []
    if outcome.escaped:
        problems.append("exception escaped main():\n" + "\n".join(outcome.escaped.strip().splitlines()[-8:]))
    elif outcome.code not in EXIT_CODES:
        problems.append(f"exit code {outcome.code}")
    text = outcome.out + outcome.err
    if "Traceback" in text or EXCEPTION_DUMP.search(text):
        problems.append("traceback or exception dump printed:\n" + "\n".join(text.strip().splitlines()[-8:]))
    logged = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    if logged:
        problems.append(f"traceback logged: {logged[0].getMessage()}")
    if outcome.numeric_warnings:
        problems.append(f"numpy warned (a number let through): {outcome.numeric_warnings[0]}")
    if outcome.code not in (0, None) and not text.strip():
        problems.append("failed without a word")
    for error_line in re.findall(r"^error: (.*)$", outcome.err, re.MULTILINE):
        if " " not in error_line.strip():
            problems.append(f"error line is a bare exception text: {error_line!r}")
    if outcome.code == 0 and bench.must_fail:
        problems.append(f"succeeded although {bench.must_fail[0]}")
    protected = {str(p.relative_to(bench.folder)) for p in bench.inputs if p.is_relative_to(bench.folder)}
    for key, state in before.items():
        path = bench.folder / key
        replaceable = (replace or key in dangling) and key not in protected and _may_create(bench, path)
        if key not in after:
            problems.append(f"deleted {key}")
        elif after[key] != state and not replaceable:
            problems.append(f"changed {key}")
    for key in sorted(set(after) - set(before)):
        if not _may_create(bench, bench.folder / key):
            problems.append(f"wrote {key}, which is no named output")
    if _snapshot(materials.folder) != shared_before or materials.weights_signature() != weights_before:
        problems.append("changed the shared materials or weights")
    shown = " ".join(repr(a) if not a or " " in a else a for a in argv)
    files = "".join(f"\n  {note}" for note in bench.notes)
    assert not problems, f"aerialseg {shown}\nfiles:{files}\nexit {outcome.code}\n" + "\n".join(problems)
    return outcome


def _check_scores(outcome: Outcome, bench: Bench) -> None:
    """Scores printed by a successful ``eval --json`` count pixels: an empty evaluation is no result."""
    files = "".join(f"\n  {note}" for note in bench.notes)
    assert json.loads(outcome.out)["pixels"] > 0, f"scores over no pixel: aerialseg {' '.join(bench.argv)}{files}"


def _check_map(classes: Path, source: Path) -> None:
    """A class raster written by a successful run: the input's grid, classes of the card or nodata."""
    with rasterio.open(classes) as out, rasterio.open(source) as src:
        assert (out.width, out.height, out.crs, out.transform) == (src.width, src.height, src.crs, src.transform)
        values = np.unique(out.read(1))
    assert set(values.tolist()) <= {*range(6), NODATA_CLASS}, values


# ---------------------------------------------------------------- the properties, one per command

PREDICT_FOCI = ("input", "weights", "-o", "--out-dir", *TORCH_ENGINE, *TILING, *READING, "--tta", "--calibration")
PREDICT_FOCI += ("--vectorize", "--objects-format", "--car-geometry", "--split-rows", "--threshold")


@_fast(examples=30)
@given(rng=st.randoms(use_true_random=True))
def test_predict_survives_misuse(rng, materials, tmp_path, caplog):
    with _bench(rng, PREDICT_FOCI, tmp_path, materials, caplog) as bench:
        source = bench.input_raster(("rgb", "rgb", "nodata", "rgba", "uint16", "nocrs"), RASTER_DAMAGE)
        odd_outputs = ("existing", "folder", "missing_folder", "dangling", "input", "model", "unicode")
        output_kind = bench.pick("-o", ("none", "new"), odd_outputs)
        model = bench.weights("copy") if output_kind == "model" else bench.model()
        bench.argv += ["predict", str(source), "-m", model]
        output = Path(model) if output_kind == "model" else bench.output(output_kind)
        if output is not None:
            bench.argv += ["-o", str(output)]
            bench.output_prefixes.append(output.with_name(output.stem.removesuffix("_classes") + "_"))
            bench.outputs += [output.with_suffix(".qml"), output.with_name(output.name + ".aux.xml")]  # its style
        out_dir = bench.out_dir(bench.pick("--out-dir", ("none", "none", "new"), ("here", "file", "unicode")))
        if out_dir is not None:
            bench.argv += ["--out-dir", str(out_dir)]
        for path in _expanded(source):
            bench.output_prefixes.append((out_dir or path.parent) / f"{path.stem}_")
        _torch_engine(bench)
        _tiling(bench)
        _reading(bench)
        bench.option("--tta", ("flip",), ("d4", *CHOICE_NOISE), share=0.1)
        bench.option("--calibration", (), (str(source), "nowhere.tif"), share=0)
        bench.option("--vectorize", ("building,car", "tree", "0,1"), ("", ",", "nonesuch", "building=99", "255", "☃"))
        bench.option("--objects-format", ("gpkg", ".fgb", "geojson", "parquet"), ("shp", "", "x/y", "..", "GPKG"))
        bench.option("--car-geometry", ("box", "outline"), CHOICE_NOISE, share=0.1)
        bench.option("--split-rows", ("1", "64"), INT_ODD, share=0.1)
        bench.option("--threshold", ("0", "0.5", "1"), ("1.0001", "-0.1", "nan", "inf", "", "abc", "1,5"), share=0.1)
        for flag in ("--probabilities", "--uncertainty", "--allow-no-crs", "--resume", "--regularize", "--json"):
            bench.flag(flag)
        outcome = _run_and_check(bench, caplog, replace=bench.flag("--overwrite"))
        if outcome.code == 0 and output_kind in ("new", "unicode") and bench.intact_input == source:
            _check_map(output, source)


def _expanded(source: Path) -> list[Path]:
    """The inputs predict should find behind ``source`` (a folder's rasters, a pattern's matches)."""
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if "*" in source.name:
        return sorted(Path(p) for p in glob.glob(str(source)))
    return [source]


VECTORIZE_FOCI = ("input", "-o", "suffix", "--confidence", "--classes", "--min-area", "--fill-holes", "--simplify")
VECTORIZE_FOCI += ("--strip-rows", "--car-geometry")


@_fast(examples=30)
@given(rng=st.randoms(use_true_random=True))
def test_vectorize_survives_misuse(rng, materials, tmp_path, caplog):
    with _bench(rng, VECTORIZE_FOCI, tmp_path, materials, caplog) as bench:
        source = bench.input_raster(("classes", "classes", "probabilities", "rgb", "uint16"), ONE_RASTER_DAMAGE)
        suffix = bench.pick("suffix", (".gpkg", ".geojson", ".fgb", ".parquet"), (".shp", ".tif", "", ".GPKG"))
        odd_outputs = ("existing", "folder", "missing_folder", "dangling", "unicode", "input")
        output = bench.output(bench.pick("-o", ("new",), odd_outputs), f"objects{suffix}")
        assert output is not None
        bench.argv += ["vectorize", str(source), "-o", str(output)]
        bench.output_prefixes.append(output.with_suffix(""))
        confidence = bench.option("--confidence", ("probabilities",), ("rgb", "nodata", "classes", "damaged"))
        if confidence is not None:
            kind, flavour = ("truncated", "probabilities") if confidence == "damaged" else ("intact", confidence)
            bench.argv[-1] = str(bench.raster(kind, flavour, 0.5, "confidence.tif"))
        classes = ("building,car", "building", "car", "tree", "0,1,2", "building=1")
        bench.option("--classes", classes, ("", ",", "nonesuch", "7", "255", "building=99", "car=-1", "=1", "☃"))
        bench.option("--min-area", ("0", "0.5", "10"), FLOAT_ODD)
        bench.option("--fill-holes", ("0", "0.5", "10"), FLOAT_ODD)
        bench.option("--simplify", ("0", "1px", "0.3m", "2"), ("-1px", "nanm", "infpx", "px", "m", "1e999m", ""))
        bench.option("--strip-rows", ("1", "7", "96", "512"), INT_ODD)
        bench.option("--car-geometry", ("outline", "box"), CHOICE_NOISE)
        for flag in ("--regularize", "--json"):
            bench.flag(flag)
        _run_and_check(bench, caplog, replace=bench.flag("--overwrite"))


DOCTOR_FOCI = ("input", "weights", "--tile-size", "--overlap", *READING, "--backend", "--precision", "--device")


@_fast(examples=30)
@given(rng=st.randoms(use_true_random=True))
def test_doctor_survives_misuse(rng, materials, tmp_path, caplog):
    with _bench(rng, DOCTOR_FOCI, tmp_path, materials, caplog) as bench:
        source = bench.input_raster(("rgb", "nodata", "rgba", "uint16", "nocrs", "classes"), ONE_RASTER_DAMAGE)
        bench.argv += ["doctor", str(source), "-m", bench.model()]
        bench.option("--tile-size", ("1", "32", "96", "128"), INT_ODD)
        bench.option("--overlap", ("0", "32", "128"), INT_ODD)
        _reading(bench)
        bench.must_fail.clear()  # doctor reports on a run; it neither predicts nor checks the tensors
        bench.option("--backend", ("auto", "torch", "onnx"), CHOICE_NOISE)
        bench.option("--precision", ("auto", "fp32", "bf16", "fp16", "int8"), CHOICE_NOISE)
        bench.option("--device", ("cpu",), ("cuda", "cuda:7", "meta", "", "☃"))
        for flag in ("--probabilities", "--uncertainty", "--json"):
            bench.flag(flag)
        _run_and_check(bench, caplog, replace=False)


DATASET_DAMAGE = ("missing", "file", "empty", "label_truncated", "label_values", "label_size", "image_missing")
DATASET_DAMAGE += ("image_truncated", "manifest_garbage", "manifest_types", "manifest_newer")


def _dataset(bench: Bench, damage: str) -> Path:
    """A prepared dataset of one test scene (the RGB crop, labelled with its predicted classes), maybe damaged."""
    from aerialseg.data.classes import DATASETS
    from aerialseg.data.manifest import Manifest, Scene, SplitInfo

    folder = bench.folder / "prepared"
    bench.notes.append(f"{folder.name}: a prepared dataset of one scene, {damage}")
    if damage == "missing":
        return folder
    if damage == "file":
        folder.write_text("not a folder\n")
        bench.inputs.append(folder)
        return folder
    folder.mkdir()
    if damage == "empty":
        return folder
    image = bench.folder / "scene.tif"
    shutil.copyfile(bench.materials.rasters["rgb"], image)
    (folder / "scenes").mkdir()
    label = folder / "scenes" / "s1_label.tif"
    shutil.copyfile(bench.materials.rasters["classes"], label)
    if damage == "label_truncated":
        label.write_bytes(label.read_bytes()[:500])
    elif damage in ("label_values", "label_size"):
        size = CROP if damage == "label_values" else 40
        with rasterio.open(label, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8") as dst:
            dst.write(np.full((size, size), 9 if damage == "label_values" else 1, dtype=np.uint8), 1)
    elif damage == "image_missing":
        image.unlink()
    elif damage == "image_truncated":
        image.write_bytes(image.read_bytes()[:700])
    info = DATASETS["potsdam"]
    scene = Scene("s1", str(image), "scenes/s1_label.tif")
    test = SplitInfo("test", ("s1",), (), (0,) * 6, 0, scenes=(scene,))
    manifest = Manifest("potsdam", info.classes, info.bands, info.gsd_m, 128, 128, {"test": test})
    path = manifest.save(folder)
    if damage == "manifest_garbage":
        path.write_text("{")
    elif damage == "manifest_types":
        path.write_text(json.dumps(manifest.to_dict() | {"splits": [], "bands": 3}))
    elif damage == "manifest_newer":
        path.write_text(json.dumps(manifest.to_dict() | {"format": 99}))
    bench.inputs += [image, path, label]
    return folder


EVAL_FOCI = ("data", "weights", "--split", *TORCH_ENGINE, *TILING, "--save-maps", "--markdown")


@_fast(examples=12)
@given(rng=st.randoms(use_true_random=True))
def test_eval_survives_misuse(rng, materials, tmp_path, caplog):
    with _bench(rng, EVAL_FOCI, tmp_path, materials, caplog) as bench:
        data_folder = _dataset(bench, bench.pick("data", ("intact",), DATASET_DAMAGE))
        odd_tables = ("existing", "folder", "missing_folder", "dangling", "manifest", "model")
        markdown = bench.pick("--markdown", ("none", "new"), odd_tables)
        model = bench.weights("copy") if markdown == "model" else bench.model()
        bench.argv += ["eval", "--data", str(data_folder), "-m", model]
        bench.option("--split", ("test",), ("train", "", "☃", "../test"))
        for flag in ("--eroded", "--full", "--patches"):
            bench.flag(flag, share=0.15)
        scores = bench.flag("--json", share=0.6)
        _torch_engine(bench)
        _tiling(bench)
        save_maps = bench.out_dir(bench.pick("--save-maps", ("none", "new"), ("here", "file")))
        if save_maps is not None:
            bench.argv += ["--save-maps", str(save_maps)]
        named = {"manifest": data_folder / "manifest.json", "model": Path(model)}
        target = named[markdown] if markdown in named else bench.output(markdown, "table.md")
        if target is not None:
            bench.argv += ["--markdown", str(target)]
        outcome = _run_and_check(bench, caplog, replace=True)  # --markdown replaces the file it names, not an input
        if outcome.code == 0 and scores:
            _check_scores(outcome, bench)


EXPORT_FOCI = ("weights", "-o", "--opset", "--parity-image")
OPSETS = tuple(str(v) for v in range(13, 29))


@_fast(examples=20)
@given(rng=st.randoms(use_true_random=True))
def test_export_refuses_fast_without_crashing(rng, materials, tmp_path, caplog):
    with _bench(rng, EXPORT_FOCI, tmp_path, materials, caplog) as bench:
        weights = bench.model(tuple(kind for kind in WEIGHTS_DAMAGE if kind != "card"))  # a valid card would export
        output_kind = bench.pick("-o", ("new",), ("existing", "folder", "missing_folder", "unicode", "weights"))
        output = Path(weights) if output_kind == "weights" else bench.output(output_kind, "model.onnx")
        assert output is not None
        bench.argv += ["export", weights, "-o", str(output)]
        opset = bench.option("--opset", ("13", "17", "18"), ("0", "7", "12", "29", str(10**6), *INT_ODD), share=0.5)
        parity = bench.option("--parity-image", (), ("truncated", "empty", "text", "folder"), share=0)
        if parity is not None:
            bench.argv[-1] = str(bench.raster(parity, "rgb", 0.3, name="parity.tif"))
        odd = bench.chance(0.5)  # export stops early anyway: its other values may be odd too
        for flag, plausible, odd_values in (
            ("--static-size", ("7", "96", "128"), INT_ODD),
            ("--max-abs-diff", ("0.01", "1"), FLOAT_ODD),
            ("--min-agreement", ("0.99", "1"), FLOAT_ODD),
            ("--output-kind", ("logits", "probabilities"), CHOICE_NOISE),
        ):
            if bench.chance(0.3):
                bench.argv += [flag, rng.choice(odd_values if odd else plausible)]
        for flag in ("--fp16", "--json"):
            bench.flag(flag)
        replace = bench.flag("--overwrite")
        starts_export = (
            (opset or "18") in OPSETS
            and output_kind in ("new", "unicode", "existing" if replace else "new")
            and bench.focus not in ("weights", "--parity-image")
        )
        if starts_export:  # an export would take minutes, and is not what this test is about: make it fail early
            bench.argv += ["--opset", "12"]
        outcome = _run_and_check(bench, caplog, replace=replace)
        # a damaged parity image whose pixels GDAL still decodes may export: never a file from a failed export
        # (a "new" model.onnx may already be there as the weights: the fake ONNX input has that name)
        made = output.exists() and output not in bench.inputs
        assert outcome.code == 0 or output_kind != "new" or not made, "a failed export left a file"


WEIGHTS_FOCI = ("weights", "source", "-o", "--arch", "--backbone", "--num-classes", "--dataset")


@_fast(examples=20)
@given(rng=st.randoms(use_true_random=True))
def test_weights_commands_survive_misuse(rng, materials, tmp_path, caplog):
    with _bench(rng, WEIGHTS_FOCI, tmp_path, materials, caplog) as bench:
        if bench.focus == "weights" or bench.chance(0.3):
            bench.argv += ["weights", "info", bench.model()]
            bench.flag("--json")
            bench.must_fail.clear()  # info shows the card; it does not check the tensors
            _run_and_check(bench, caplog, replace=False)
            return
        source = bench.pick("source", ("checkpoint",), ("truncated", "weights", "raster", "text", "missing", "folder"))
        if source in ("checkpoint", "truncated"):
            src = bench.folder / "foreign.ckpt"
            checkpoint = materials.checkpoint.read_bytes()
            src.write_bytes(checkpoint if source == "checkpoint" else checkpoint[: len(checkpoint) // 2])
            bench.inputs.append(src)
        elif source == "weights":
            src = Path(bench.weights("intact"))
        else:
            src = bench.raster({"raster": "intact"}.get(source, source), "rgb")
        odd_outputs = ("existing", "folder", "missing_folder", "input")
        output = bench.output(bench.pick("-o", ("new",), odd_outputs), "imported.safetensors")
        assert output is not None
        bench.argv += ["weights", "import", str(src), "-o", str(output)]
        bench.argv += ["--arch", bench.pick("--arch", ("abcnet", "manet", "ABCNet"), CHOICE_NOISE)]
        bench.option("--backbone", ("resnet18", "resnet50"), CHOICE_NOISE)
        bench.option("--num-classes", ("1", "6"), INT_ODD)
        bench.option("--dataset", ("potsdam", "vaihingen", "uavid"), CHOICE_NOISE)
        for flag in ("--half", "--trust-pickle"):
            bench.flag(flag)
        _run_and_check(bench, caplog, replace=bench.flag("--overwrite"))


OTHER_COMMAND_LINES = (
    [],
    ["models"],
    ["models", "--json"],
    ["--version"],
    ["-vv", "models"],
    ["-q", "models", "--json"],
    ["nonesuch"],
    ["weights"],
    ["weights", "info"],
    ["predict"],
    ["☃"],
    ["models", "--json", "--json"],
    ["-vvvvvvv", "doctor"],
    ["--", "models"],
    ["models", "extra"],
)


@_fast(examples=8)
@given(rng=st.randoms(use_true_random=True))
def test_other_command_lines_survive_misuse(rng, materials, tmp_path, caplog):
    with _bench(rng, (), tmp_path, materials, caplog) as bench:
        bench.argv += rng.choice(OTHER_COMMAND_LINES)
        _run_and_check(bench, caplog, replace=False)
