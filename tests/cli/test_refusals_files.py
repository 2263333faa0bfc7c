"""Misuse through files, pinned as examples: each one refused in one line naming the file, nothing lost.

Each case failed before its fix: ``prepare`` deleting its own inputs when ``--out`` held them;
JSON nested 100,000 deep (a weights header or card, an ONNX card, a STAC item, a class raster's
names, a manifest, a training checkpoint; also a classes TOML) ending as the catch-all
"unexpected error" line or breaking every lookup by name; a manifest of the wrong JSON types;
a card whose ``pixel_max`` (or std, or mean) float32 cannot use, mapping every pixel to one
class; a card naming another network than its tensors, or holding thousands of bad classes,
reported in a line of many thousand characters; a named pipe in the weights folder hanging ``models``
and every lookup (these run the command line in a subprocess with a timeout, so a regression
fails instead of hanging); a confidence raster on another grid than its class raster.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from aerialseg.conventions import CARD_KEY, CLASS_NAMES_TAG
from aerialseg.data.manifest import MANIFEST_NAME

CROP = 64
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than any parser's recursion limit
DEEP_METRICS = {"metrics": json.loads('{"a":' * 600 + "1" + "}" * 600)}  # parses, but too deep to walk


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder below ``folder``: its sha256, or ``<dir>``."""
    return {
        str(path.relative_to(folder)): "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
    }


def _crop(source: Path, dest: Path, row: int, col: int, size: int = CROP) -> np.ndarray:
    """Write a ``size`` crop of the real raster ``source`` to ``dest`` (its grid kept); return its pixels."""
    with rasterio.open(source) as src:
        window = Window(col, row, size, size)
        pixels = src.read(window=window)
        profile = src.profile | {"width": size, "height": size, "transform": src.window_transform(window)}
    for key in ("blockxsize", "blockysize", "tiled"):
        profile.pop(key, None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dest, "w", **profile) as dst:
        dst.write(pixels)
    return pixels


def _write_like(dest: Path, reference: Path, array: np.ndarray, **changes) -> Path:
    """``array`` (bands, h, w) as a GeoTIFF on ``reference``'s grid, with profile ``changes``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(reference) as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "crs": src.crs}
        profile |= {"transform": src.transform, "count": array.shape[0], "dtype": array.dtype.name}
    with rasterio.open(dest, "w", **(profile | changes)) as dst:
        dst.write(array)
    return dest


# --- 1. prepare never deletes its inputs -----------------------------------------------------------------


@pytest.fixture
def proj(tmp_path, rasters) -> Path:
    """``proj/images``, ``proj/labels`` (two NEON crops, dark/bright labels) and ``proj/classes.toml``."""
    project = tmp_path / "proj"
    for index, (row, col) in enumerate([(0, 0), (CROP, CROP)]):
        pixels = _crop(rasters["striped"], project / "images" / f"t{index}.tif", row, col)
        labels = (pixels.mean(axis=0) > 120).astype(np.uint8)[None]
        _write_like(project / "labels" / f"t{index}.tif", project / "images" / f"t{index}.tif", labels, nodata=None)
    (project / "classes.toml").write_text(
        '[[classes]]\nname = "dark"\ncolor = [0, 90, 0]\nid = 0\n'
        '[[classes]]\nname = "bright"\ncolor = [220, 220, 220]\nid = 1\n'
    )
    return project


def _folder_args(project: Path) -> list[str]:
    return ["--images", str(project / "images"), "--labels", str(project / "labels")]


@pytest.mark.parametrize(
    ("out", "relation", "named"),
    [
        ("proj", "holds", "images"),
        ("proj/images", "is", "images"),
        ("proj/labels/../images", "is", "images"),
        ("proj/labels", "is", "labels"),
        ("proj/images/prepared", "lies inside", "images"),
        ("link-to-proj", "holds", "images"),
        ("link-to-proj/images/sub", "lies inside", "images"),
    ],
)
def test_prepare_folder_refuses_an_out_holding_its_inputs_even_with_overwrite(
    cli,
    proj,
    monkeypatch,
    out,
    relation,
    named,
    one_line,
):
    monkeypatch.chdir(proj.parent)
    Path("link-to-proj").symlink_to(proj)
    before = _snapshot(proj.parent)
    argv = ["prepare", "folder", *_folder_args(proj), "--classes", str(proj / "classes.toml")]
    code, _, err = cli([*argv, "--out", out, "--patch-size", "32", "--overwrite"])
    one_line(code, err, 1, f"this output folder {relation} the input", named, "choose an --out folder outside")
    assert _snapshot(proj.parent) == before


def test_prepare_folder_refuses_an_out_holding_its_classes_file(cli, proj, one_line):
    (proj / "config").mkdir()
    (proj / "classes.toml").rename(proj / "config" / "classes.toml")
    before = _snapshot(proj)
    argv = ["prepare", "folder", *_folder_args(proj), "--classes", str(proj / "config" / "classes.toml")]
    code, _, err = cli([*argv, "--out", str(proj / "config"), "--overwrite"])
    one_line(code, err, 1, "holds the input", "classes.toml (--classes)")
    assert _snapshot(proj) == before


def test_prepare_refuses_an_out_holding_an_image_reached_through_a_link(cli, proj, tmp_path, one_line):
    """The images folder is elsewhere, but one image is a link into the output folder."""
    store = tmp_path / "data"
    store.mkdir()
    (proj / "images" / "t1.tif").rename(store / "t1.tif")
    (proj / "images" / "t1.tif").symlink_to(store / "t1.tif")
    before = _snapshot(tmp_path)
    argv = ["prepare", "folder", *_folder_args(proj), "--classes", str(proj / "classes.toml")]
    code, _, err = cli([*argv, "--out", str(store), "--patch-size", "32", "--overwrite"])
    one_line(code, err, 1, "holds the input", "t1.tif (tile t1)")
    assert _snapshot(tmp_path) == before


@pytest.fixture
def vaihingen_root(tmp_path, rasters) -> Path:
    """A Vaihingen archive of one tile: a NEON crop and its labels in ISPRS colours."""
    root = tmp_path / "raw"
    name = "top_mosaic_09cm_area1.tif"
    pixels = _crop(rasters["striped"], root / "top" / name, 0, 0)
    colours = np.where(pixels.mean(axis=0) > 120, 255, 0).astype(np.uint8)  # impervious white, else black
    _write_like(root / "gts_for_participants" / name, root / "top" / name, np.stack([colours] * 3), nodata=None)
    return root


@pytest.mark.parametrize(
    ("out", "relation"), [("raw", "is"), ("", "holds"), ("raw/top", "lies inside"), ("raw/prepared", "lies inside")]
)
def test_prepare_benchmark_refuses_an_out_holding_its_root(cli, vaihingen_root, out, relation, one_line):
    before = _snapshot(vaihingen_root.parent)
    argv = ["prepare", "vaihingen", "--root", str(vaihingen_root), "--patch-size", "32"]
    code, _, err = cli([*argv, "--out", str(vaihingen_root.parent / out), "--overwrite"])
    one_line(code, err, 1, f"this output folder {relation} the input {vaihingen_root} (--root)")
    assert _snapshot(vaihingen_root.parent) == before


def test_prepare_beside_its_inputs_still_works(cli, proj, vaihingen_root):
    argv = ["prepare", "folder", *_folder_args(proj), "--classes", str(proj / "classes.toml"), "--patch-size", "32"]
    code, _, err = cli([*argv, "--out", str(proj.parent / "prepared")])
    assert code == 0, err
    argv = ["prepare", "vaihingen", "--root", str(vaihingen_root), "--patch-size", "32"]
    code, _, err = cli([*argv, "--out", str(vaihingen_root.parent / "vaihingen")])
    assert code == 0, err


# --- 2. JSON nested beyond any limit, and 3. manifests of the wrong JSON types --------------------------


def _safetensors(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _write_safetensors(path: Path, header: dict | str, body: bytes) -> Path:
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def _with_card(source: Path, dest: Path, card: str | dict) -> Path:
    """A copy of the weights ``source`` whose card is ``card`` (text), or its own with ``card``'s fields changed."""
    header, body = _safetensors(source)
    text = card if isinstance(card, str) else json.dumps(json.loads(header["__metadata__"][CARD_KEY]) | card)
    header["__metadata__"][CARD_KEY] = text
    return _write_safetensors(dest, header, body)


@pytest.fixture
def weights_home(tmp_path, monkeypatch, abcnet_weights) -> Path:
    """``$AERIALSEG_WEIGHTS`` holding a copy of the test weights as ``good``; no user folder."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copyfile(abcnet_weights, folder / "good.safetensors")
    monkeypatch.setenv("AERIALSEG_WEIGHTS", str(folder))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("AERIALSEG_DATA", str(tmp_path / "data"))
    return folder


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda src, dest: _write_safetensors(dest, DEEP, b""), "not a safetensors file (header is not JSON)"),
        (lambda src, dest: _with_card(src, dest, DEEP), "model card is not valid JSON (nested deeper than 64"),
        (lambda src, dest: _with_card(src, dest, DEEP_METRICS), "model card is not valid JSON (nested deeper than"),
    ],
    ids=["header", "card", "card-metrics"],
)
def test_deep_json_in_a_weights_file_is_one_line_and_does_not_break_lookups(
    cli,
    weights_home,
    abcnet_weights,
    build,
    problem,
    one_line,
):
    deep = build(abcnet_weights, weights_home / "deep.safetensors")
    code, _, err = cli(["weights", "info", str(deep)])
    one_line(code, err, 1, f"{deep}: {problem}")
    code, _, err = cli(["weights", "info", "deep"])
    one_line(code, err, 1, f"{deep}: {problem}")

    code, out, err = cli(["models", "--json"])
    assert code == 0, err
    listing = json.loads(out)
    assert [w["name"] for w in listing["weights"]] == ["good", "manet-r18-potsdam-sample"]
    assert [(b["name"], b["problem"].startswith(problem)) for b in listing["broken_weights"]] == [("deep", True)]
    code, out, err = cli(["weights", "info", "good", "--json"])
    assert code == 0 and json.loads(out)["arch"] == "abcnet", err


def test_a_deep_classes_toml_is_one_line(cli, proj, tmp_path, one_line):
    toml = tmp_path / "deep.toml"
    toml.write_text(f"classes = {DEEP}\n")
    argv = ["prepare", "folder", *_folder_args(proj), "--classes", str(toml), "--out", str(tmp_path / "out")]
    code, _, err = cli(argv)
    one_line(code, err, 1, f"{toml}: is not valid TOML (nested too deeply)")
    assert not (tmp_path / "out").exists()


def _tiny_onnx(path: Path, card: str) -> Path:
    """A real ONNX file (one Identity node) whose aerialseg card is ``card``."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    helper.set_model_props(model, {CARD_KEY: card})
    onnx.save(model, str(path))
    return path


def test_deep_json_in_an_onnx_card_is_one_line(cli, tmp_path, rasters, one_line):
    model = _tiny_onnx(tmp_path / "deep.onnx", DEEP)
    code, _, err = cli(["weights", "info", str(model)])
    one_line(code, err, 1, f"{model}: model card is not valid JSON (nested deeper than 64 levels)")
    code, _, err = cli(["doctor", str(rasters["nodata"]), "-m", str(model), "--json"])
    one_line(code, err, 1, f"{model}: model card is not valid JSON (nested deeper than 64 levels)")


def test_a_deep_stac_item_is_one_line_naming_it(cli, tmp_path, abcnet_weights, one_line):
    item = tmp_path / "item.json"
    item.write_text(DEEP)
    code, _, err = cli(["predict", str(item), "-m", str(abcnet_weights), "-o", str(tmp_path / "out.tif")])
    one_line(code, err, 1, f"{item}: is not JSON (nested deeper than 64 levels)")
    code, out, err = cli(["doctor", str(item), "-m", str(abcnet_weights), "--json"])
    assert code == 1 and err == "", err
    (finding,) = json.loads(out)["findings"]
    assert finding["message"] == "is not JSON (nested deeper than 64 levels)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item.json"]


def _class_raster(tmp_path: Path, source: Path, names: str | None) -> Path:
    """A class raster (ids 0/1 from a NEON crop's brightness) with ``names`` as its class-names tag."""
    pixels = _crop(source, tmp_path / "crop.tif", 0, 0)
    ids = (pixels.mean(axis=0) > 120).astype(np.uint8)[None]
    path = _write_like(tmp_path / "classes.tif", tmp_path / "crop.tif", ids, nodata=255)
    if names is not None:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(1, **{CLASS_NAMES_TAG: names})
    return path


def test_deep_class_names_in_a_class_raster_are_one_line(cli, tmp_path, rasters, one_line):
    classes = _class_raster(tmp_path, rasters["striped"], DEEP)
    code, _, err = cli(["vectorize", str(classes), "-o", str(tmp_path / "objects.gpkg")])
    one_line(code, err, 1, f"{classes}: class raster has no class names", "--classes building=1")
    assert not (tmp_path / "objects.gpkg").exists()


@pytest.fixture
def prepared(cli, proj, tmp_path, weights_home) -> Path:
    """``proj`` prepared as ``$AERIALSEG_DATA/mine`` (a val split, 32-pixel patches)."""
    argv = ["prepare", "folder", *_folder_args(proj), "--classes", str(proj / "classes.toml"), "--name", "mine"]
    code, _, err = cli([*argv, "--patch-size", "32", "--val-fraction", "0.5"])
    assert code == 0, err
    return tmp_path / "data" / "mine"


def _manifest_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))

    return edit


MANIFEST_DAMAGE = {
    "deep": (lambda path: path.write_text(DEEP), "manifest is not valid JSON (nested deeper than 64 levels)"),
    "splits-list": (
        _manifest_edit(lambda m: m | {"splits": list(m["splits"])}),
        'the manifest field "splits" must be an object',
    ),
    "not-object": (_manifest_edit(lambda m: [m]), "the manifest must be an object"),
    "bands-number": (
        _manifest_edit(lambda m: m | {"bands": 3}),
        'the manifest field "bands" must be a list of band codes, not 3',
    ),
    "classes-text": (_manifest_edit(lambda m: m | {"classes": ["dark"]}), 'classes[0] must be {"name": text'),
    "patches-number": (
        _manifest_edit(lambda m: m | {"splits": {"train": m["splits"]["train"] | {"patches": 5}}}),
        'splits["train"] field "patches" must be a list of strings, not 5',
    ),
    "scene-text": (
        _manifest_edit(lambda m: m | {"splits": {"train": m["splits"]["train"] | {"scenes": ["t0"]}}}),
        'splits["train"].scenes[0] must be an object',
    ),
    "format-text": (
        _manifest_edit(lambda m: m | {"format": "2"}),
        'the manifest field "format" must be an integer, not "2"',
    ),
    "unknown-entry": (
        _manifest_edit(lambda m: m | {"folder": "/elsewhere"}),
        'the manifest has unknown fields ["folder"]',
    ),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_one_line_for_train_eval_and_models(cli, prepared, weights_home, damage, one_line):
    spoil, problem = MANIFEST_DAMAGE[damage]
    manifest = prepared / MANIFEST_NAME
    spoil(manifest)
    before = _snapshot(prepared.parent)
    fast = ["--arch", "manet", "--backbone", "resnet18", "--max-steps", "1", "--batch-size", "2", "--crop", "32"]
    runs = prepared.parent / "train-run"
    code, _, err = cli(["train", "--data", str(prepared), *fast, "--out", str(runs), "--no-install"])
    line = one_line(code, err, 1, f"{manifest}: ", problem, "prepare the dataset again with 'aerialseg prepare")
    assert len(line) < 400
    engine = ["--backend", "torch", "--precision", "fp32"]
    code, _, err = cli(["eval", "--data", str(prepared), "-m", str(weights_home / "good.safetensors"), *engine])
    one_line(code, err, 1, f"{manifest}: ", problem)
    code, out, err = cli(["models", "--json"])
    assert code == 0, err
    (listed,) = json.loads(out)["datasets"]
    assert listed["name"] == "mine" and problem in listed["problem"]
    assert _snapshot(prepared.parent) == before


def test_a_deep_training_checkpoint_is_one_line(tmp_path):
    import torch

    from aerialseg.errors import TrainingError
    from aerialseg.training.checkpoint import CHECKPOINT_JSON, load_checkpoint

    (tmp_path / CHECKPOINT_JSON).write_text(DEEP)
    with pytest.raises(TrainingError, match="checkpoint is not valid JSON \\(nested deeper than 64 levels"):
        load_checkpoint(tmp_path, torch.nn.Linear(1, 1), None)


# --- 4. a card's pixel arithmetic, 5. a card naming another network ---------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"pixel_max": 1e-45}, "pixel_max 1e-45 is outside the 32-bit range of a divisor"),
        ({"pixel_max": 1e50}, "pixel_max 1e+50 is outside the 32-bit range of a divisor"),
        ({"std": [0.2, 1e-40, 0.2]}, "std 1e-40 is outside the 32-bit range of a divisor"),
        ({"mean": [0.5, 1e39, 0.5]}, "mean [0.5, 1e+39, 0.5] must be finite numbers float32 can hold"),
    ],
)
def test_a_card_whose_pixel_arithmetic_float32_cannot_do_is_refused(
    cli,
    tmp_path,
    rasters,
    abcnet_weights,
    change,
    problem,
    one_line,
):
    weights = _with_card(abcnet_weights, tmp_path / "w.safetensors", change)
    argv = ["predict", str(rasters["nodata"]), "-m", str(weights), "--backend", "torch", "--precision", "fp32"]
    code, _, err = cli([*argv, "-o", str(tmp_path / "out.tif")])
    one_line(code, err, 1, f"{weights}: invalid model card: {problem}")
    assert not (tmp_path / "out.tif").exists()
    code, _, err = cli(["weights", "info", str(weights)])
    one_line(code, err, 1, f"{weights}: invalid model card: {problem}")


def test_a_card_naming_another_network_is_one_bounded_line(cli, tmp_path, rasters, abcnet_weights, one_line):
    weights = _with_card(abcnet_weights, tmp_path / "w.safetensors", {"arch": "manet"})
    argv = ["-q", "predict", str(rasters["nodata"]), "-m", str(weights), "--backend", "torch", "--precision", "fp32"]
    code, _, err = cli([*argv, "-o", str(tmp_path / "out.tif")])  # -q: not the engine's line, told before it opens
    line = one_line(code, err, 1, f"{weights}: tensors do not fit manet-resnet18", "missing: ", "left over: ")
    assert "more)" in line and len(line) < 1000, line
    assert not (tmp_path / "out.tif").exists()
    code, _, err = cli(["export", str(weights), "-o", str(tmp_path / "w.onnx")])
    assert one_line(code, err, 1) == line
    assert not (tmp_path / "w.onnx").exists()


def test_a_card_with_thousands_of_bad_classes_is_one_bounded_line(cli, tmp_path, abcnet_weights, one_line):
    classes = [{"name": f"class {i} " + "x" * 200, "color": [0, 0, 300]} for i in range(6000)]
    weights = _with_card(abcnet_weights, tmp_path / "w.safetensors", {"classes": classes, "bands": ["Y"] * 500})
    code, _, err = cli(["weights", "info", str(weights)])
    line = one_line(code, err, 1, f"{weights}: invalid model card: ", "(and 5999 more)", "unknown band codes")
    assert len(line) < 1000, len(line)


# --- 6. named pipes and devices are never opened as weights -----------------------------------------------


def _aerialseg(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The command line in a subprocess that may not take more than a minute (a blocked open would hang it)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "aerialseg", *argv],
            capture_output=True,
            text=True,
            env=os.environ | env,
            cwd=cwd,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"aerialseg {' '.join(argv)} hung")
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def pipes(tmp_path, weights_home) -> Path:
    """``$AERIALSEG_WEIGHTS`` with a named pipe ``pipe.safetensors`` beside ``good``; ``model.onnx`` a pipe too."""
    os.mkfifo(weights_home / "pipe.safetensors")
    os.mkfifo(tmp_path / "model.onnx")
    return weights_home


def test_a_named_pipe_in_the_weights_folder_is_listed_as_broken_and_skipped(pipes, tmp_path, one_line):
    env = {key: os.environ[key] for key in ("AERIALSEG_WEIGHTS", "XDG_DATA_HOME", "AERIALSEG_DATA")}
    code, out, err = _aerialseg(["models", "--json"], env, tmp_path)
    assert code == 0, err
    broken = {b["name"]: b["problem"] for b in json.loads(out)["broken_weights"]}
    assert broken == {"pipe": broken["pipe"]} and broken["pipe"].startswith(
        "is a named pipe (FIFO), not a weights file"
    )
    code, out, err = _aerialseg(["weights", "info", "good", "--json"], env, tmp_path)
    assert code == 0 and json.loads(out)["arch"] == "abcnet", err
    code, _, err = _aerialseg(["weights", "info", "abcnet", "--json"], env, tmp_path)
    assert code == 0, err
    code, _, err = _aerialseg(["weights", "info", "pipe"], env, tmp_path)
    one_line(code, err, 1, "pipe.safetensors: is a named pipe (FIFO), not a weights file")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["weights", "info", "{weights}/pipe.safetensors"], "pipe.safetensors"),
        (["export", "{weights}/pipe.safetensors", "-o", "out.onnx"], "pipe.safetensors"),
        (["predict", "{raster}", "-m", "{weights}/pipe.safetensors", "-o", "out.tif"], "pipe.safetensors"),
        (["predict", "{raster}", "-m", "model.onnx", "-o", "out.tif"], "model.onnx"),
        (["weights", "info", "model.onnx"], "model.onnx"),
        (["weights", "info", "/dev/zero"], "/dev/zero: is a character device, not a weights file"),
    ],
    ids=["info", "export", "predict", "predict-onnx", "info-onnx", "device"],
)
def test_a_named_pipe_or_device_given_as_the_model_is_one_line(pipes, tmp_path, rasters, argv, named, one_line):
    argv = [arg.format(weights=pipes, raster=rasters["nodata"]) for arg in argv]
    code, _, err = _aerialseg(argv, {"AERIALSEG_WEIGHTS": str(pipes)}, tmp_path)
    one_line(code, err, 1, named, "not a weights file")
    assert not (tmp_path / "out.tif").exists() and not (tmp_path / "out.onnx").exists()


# --- 7. a confidence raster on another grid ---------------------------------------------------------------


@pytest.fixture
def class_map(tmp_path, rasters) -> Path:
    """A class raster of a NEON crop named building/clutter, and beside it ``conf.tif`` on its grid."""
    classes = _class_raster(tmp_path, rasters["striped"], json.dumps(["clutter", "building"]))
    confidence = np.full((1, CROP, CROP), 200, np.uint8)
    _write_like(tmp_path / "conf.tif", classes, confidence, nodata=255)
    with rasterio.open(tmp_path / "conf.tif", "r+") as dst:
        dst.set_band_description(1, "confidence")
    return classes


def _regrid(path: Path, **changes) -> None:
    with rasterio.open(path) as src:
        profile, pixels, description = src.profile, src.read(), src.descriptions
    with rasterio.open(path, "w", **(profile | changes)) as dst:
        dst.write(pixels)
        dst.set_band_description(1, description[0])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda t, crs: {"crs": "EPSG:4326", "transform": rasterio.Affine(1e-6, 0, 8, 0, -1e-6, 50)},
            "on CRS EPSG:4326, the class raster on EPSG:",
        ),
        (lambda t, crs: {"transform": t @ rasterio.Affine.translation(10, 0)}, "its pixel (0, 0) lies at pixel (10.00"),
        (lambda t, crs: {"transform": t @ rasterio.Affine.scale(2)}, "lies at pixel (128.00, 0.00)"),
        (lambda t, crs: {"crs": "EPSG:32617" if crs != "EPSG:32617" else "EPSG:32618"}, "on CRS EPSG:3261"),
    ],
    ids=["crs-and-transform", "shifted", "pixel-size", "crs"],
)
def test_vectorize_refuses_a_confidence_raster_on_another_grid(cli, tmp_path, class_map, change, problem, one_line):
    with rasterio.open(class_map) as src:
        _regrid(tmp_path / "conf.tif", **change(src.transform, src.crs.to_string()))
    argv = ["vectorize", str(class_map), "--classes", "building", "--confidence", str(tmp_path / "conf.tif")]
    code, _, err = cli([*argv, "-o", str(tmp_path / "objects.gpkg")])
    line = one_line(code, err, 1, f"{tmp_path / 'conf.tif'}: is ", problem)
    assert f"so it is not on the grid of the class raster {class_map}; use the confidence raster" in line
    assert not (tmp_path / "objects.gpkg").exists()


def test_vectorize_takes_a_confidence_raster_on_the_same_grid(cli, tmp_path, class_map):
    argv = ["vectorize", str(class_map), "--classes", "building", "--confidence", str(tmp_path / "conf.tif")]
    code, _, err = cli([*argv, "-o", str(tmp_path / "objects.gpkg")])
    assert code == 0, err
    assert (tmp_path / "objects.gpkg").exists()
