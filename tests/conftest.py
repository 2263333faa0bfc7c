"""Fixtures every test module shares: where the test data lives, the command line, weights files.

Two kinds of data. The repository carries openly licensed rasters (tests/data_files, each folder's
README names source and licence), so a fresh clone runs most of the suite. The ISPRS and LoveDA
patches and the reference key lists stay in ../shared (``AERIALSEG_SHARED`` points elsewhere):
their terms forbid copying them here, so the fixtures that hand them out skip their test when
the folder is missing instead of stopping the run.

Helpers reach test modules as fixtures, never by importing this file or another test module.
The ISPRS builders, the stand-in runner and the local HTTP server with Range support (remote
rasters without the internet) are plugin modules beside this file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from aerialseg.card import ModelCard
from aerialseg.conventions import SAMPLE_ORTHOPHOTO

pytest_plugins = ["isprs_samples", "fake_runners", "range_server"]

_ROOT = Path(__file__).resolve().parents[1]
_SHARED = Path(os.environ.get("AERIALSEG_SHARED", _ROOT.parent / "shared"))
_CARRIED = Path(__file__).resolve().parent / "data_files"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``cuda`` skip where no CUDA GPU is present (torch is imported only for them)."""
    if item.get_closest_marker("cuda") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")


def _shared_folder(name: str) -> Path:
    folder = _SHARED / name
    if not folder.is_dir():
        pytest.skip(
            f"needs {folder}: set AERIALSEG_SHARED to the folder holding data/ and reference/ "
            "(ISPRS, LoveDA and reference files cannot be redistributed with the repository)"
        )
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (ISPRS and LoveDA patches); the test skips without it."""
    return _shared_folder("data")


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """../shared/reference (the reference code's state-dict keys and parameter counts); skips without it."""
    return _shared_folder("reference")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder (examples/, weights/)."""
    return _ROOT


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """ONNX exports and int8 models of the session go to a temporary folder, never the user's cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def rasters(neon_tif) -> dict[str, Path]:
    """Real georeferenced inputs carried by the repository, by the property each one tests."""
    return {
        "nodata": _CARRIED / "rasterio" / "RGB.byte.tif",
        "alpha": _CARRIED / "rasterio" / "RGBA.byte.tif",
        "jpeg_3857": _CARRIED / "rasterio" / "cogeo.tif",
        "striped": neon_tif,
        "uint16_single": _CARRIED / "spacenet" / "sample_geotiff.tif",
    }


@pytest.fixture(scope="session")
def neon_tif(tmp_path_factory) -> Path:
    """The package's sample orthophoto: 10 cm RGB (NEON, CC0), striped, nodata 255; the parity image of exports.

    A copy in a temporary folder, so outputs written beside their input never land in the package.
    """
    path = tmp_path_factory.mktemp("neon") / SAMPLE_ORTHOPHOTO.name
    shutil.copyfile(SAMPLE_ORTHOPHOTO, path)
    return path


@dataclass(frozen=True)
class NeonMap:
    """The sample orthophoto predicted with the stand-in runner: its files and the card they came from."""

    classes: Path
    objects: Path
    card: ModelCard
    layers: tuple[str, ...]


@pytest.fixture(scope="session")
def neon_map(tmp_path_factory, neon_tif, context_runner) -> NeonMap:
    """``predict`` of the NEON orthophoto (stand-in runner, Potsdam classes) with its objects GeoPackage.

    The objects are the building, car and clutter layers: the stand-in finds clutter on this
    forest tile, so one layer has polygons and the others are empty. Shared by the session:
    copy the files before changing them.
    """
    from aerialseg.options import OutputOptions, TilingOptions
    from aerialseg.pipeline import PredictOptions, predict
    from aerialseg.vector import VectorizeOptions

    folder = tmp_path_factory.mktemp("neon_map")
    runner = context_runner()
    layers = ("building", "car", "clutter")
    output = OutputOptions(vectorize=VectorizeOptions(classes=layers))
    predict(neon_tif, folder / "neon_classes.tif", runner, PredictOptions(TilingOptions(tile_size=128), output=output))
    return NeonMap(folder / "neon_classes.tif", folder / "neon_objects.gpkg", runner.card, layers)


@pytest.fixture(scope="session")
def spacenet() -> Path:
    """Folder of the SpaceNet pan image (sample_geotiff.tif) and its building footprints (geotiff_labels.geojson)."""
    return _CARRIED / "spacenet"


@pytest.fixture(scope="session")
def vaihingen_png(shared_data) -> Path:
    """An IR-R-G PNG without georeferencing (ISPRS Vaihingen); skips without ../shared."""
    return shared_data / "isprs-mmseg-fixtures" / "vaihingen" / "img" / "area1_0_0_512_512.png"


@pytest.fixture(scope="session")
def reference_keys(shared_reference) -> Callable[[str], dict[str, tuple[tuple[int, ...], str]]]:
    """Parser of the reference's ref_keys_*.txt dumps: file name -> {name: (shape, dtype)}."""

    def parse(filename: str) -> dict[str, tuple[tuple[int, ...], str]]:
        entries = {}
        for line in (shared_reference / filename).read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, shape, dtype = line.split("\t")
            entries[name] = (tuple(int(v) for v in re.findall(r"\d+", shape)), dtype)
        return entries

    return parse


@pytest.fixture(scope="session")
def reference_param_counts(shared_reference) -> dict[tuple[str, str, str], int]:
    """The published parameter counts (6 classes): (arch, backbone, "total" | "inference") -> count."""
    counts = {}
    names = {"MANet": "manet", "MAResU-Net": "maresunet", "ABCNet": "abcnet"}
    for line in (shared_reference / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        depth = re.match(r"ResNet-(\d+)", cells[1]) if len(cells) == 4 else None
        if depth and cells[0] in names and cells[2].replace(",", "").isdigit():
            key = (names[cells[0]], "resnet" + depth.group(1), "inference" if "inference" in cells[1] else "total")
            counts[key] = int(cells[2].replace(",", ""))
    return counts


def _attention_on(model, gamma: float = 0.3):
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("gamma"):
                tensor.fill_(gamma)
    return model


@pytest.fixture(scope="session")
def attention_on() -> Callable:
    """``attention_on(model, gamma=0.3)``: every attention gamma (0 at initialisation) set, so attention counts."""
    return _attention_on


def _make_weights(
    path: Path,
    arch: str = "abcnet",
    backbone: str = "resnet18",
    dataset: str = "potsdam",
    tile_size: int = 128,
    overlap: int = 32,
    gsd_m: float | None = None,
) -> Path:
    import torch

    from aerialseg.card import ModelCard
    from aerialseg.data.classes import DATASETS
    from aerialseg.models import create_model
    from aerialseg.weights import save_weights

    torch.manual_seed(0)
    model = _attention_on(create_model(arch, backbone, num_classes=6))
    info = DATASETS[dataset]
    card = ModelCard(
        arch=arch,
        backbone=backbone,
        classes=info.classes,
        bands=info.bands,
        gsd_m=gsd_m,
        dataset=dataset,
        tile_size=tile_size,
        overlap=overlap,
    )
    save_weights(model, card, path, overwrite=True)
    return path


@pytest.fixture(scope="session")
def make_weights() -> Callable[..., Path]:
    """Factory of weights files with fixed random tensors and attention switched on (gamma != 0).

    ``make_weights(path, arch="abcnet", backbone="resnet18", dataset="potsdam", tile_size=128,
    overlap=32, gsd_m=None)``. The GSD is unknown unless given, so rasters of any resolution are
    predicted as they are.
    """
    return _make_weights


@pytest.fixture(scope="session")
def abcnet_weights(tmp_path_factory) -> Path:
    """ABCNet-R18 weights with fixed random tensors, Potsdam classes, 128-pixel tiles, no GSD."""
    return _make_weights(tmp_path_factory.mktemp("weights") / "abcnet-test.safetensors")


def _has_qgis(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import qgis.core"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def qgis_python() -> str:
    """A Python that imports ``qgis.core``: $AERIALSEG_QGIS_PYTHON, this one, or the system's; else skip."""
    candidates = [os.environ.get("AERIALSEG_QGIS_PYTHON"), sys.executable, "/usr/bin/python3"]
    for python in dict.fromkeys(c for c in candidates if c):
        if _has_qgis(python):
            return python
    pytest.skip("needs QGIS's Python bindings (qgis.core): apt-get install python3-qgis, or set AERIALSEG_QGIS_PYTHON")


@pytest.fixture
def cli(capsys) -> Callable[[list[str]], tuple[int, str, str]]:
    """The command line run in-process: ``cli(argv) -> (exit code, stdout, stderr)``."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        from aerialseg.cli.main import main

        with pytest.raises(SystemExit) as info:
            main(argv)
        captured = capsys.readouterr()
        return info.value.code, captured.out, captured.err

    return run


def _one_line(code: int, err: str, expected_code: int, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == expected_code, err
    assert len(lines) == 1 and "Traceback" not in err and "unexpected error" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def one_line() -> Callable[..., str]:
    """``one_line(code, err, expected_code, *needles)``: the command's one error line, checked and returned.

    The exit code is ``expected_code``, stderr is one line (no traceback, not the catch-all
    "unexpected error") and the line holds every needle.
    """
    return _one_line
