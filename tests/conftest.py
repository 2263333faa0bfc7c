"""Shared fixtures: paths to the real sample data in ../shared (read there, never copied)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AERIALSEG_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"


def pytest_collection_modifyitems(config, items):
    if not (REFERENCE.is_dir() and DATA.is_dir()):
        raise pytest.UsageError(f"the shared reference data is missing: expected {SHARED} (set AERIALSEG_SHARED)")


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """ONNX exports and int8 models of the session go to a temporary folder, never the user's cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


def reference_keys(filename: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Parse a ref_keys_*.txt dump: name -> (shape, dtype)."""
    entries = {}
    for line in (REFERENCE / filename).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, dtype = line.split("\t")
        entries[name] = (tuple(int(v) for v in re.findall(r"\d+", shape)), dtype)
    return entries


def reference_param_counts() -> dict[tuple[str, str], int]:
    """The published parameter counts (6 classes) from ../shared/reference/README.md."""
    counts = {}
    names = {"MANet": "manet", "MAResU-Net": "maresunet", "ABCNet": "abcnet"}
    for line in (REFERENCE / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in names and cells[2].replace(",", "").isdigit():
            arch, backbone = names[cells[0]], "resnet" + re.match(r"ResNet-(\d+)", cells[1]).group(1)
            key = (arch, backbone, "inference" if "inference" in cells[1] else "total")
            counts[key] = int(cells[2].replace(",", ""))
    return counts


@pytest.fixture(scope="session")
def neon_tif() -> Path:
    return DATA / "neon-deepforest" / "OSBS_029.tif"


@pytest.fixture(scope="session")
def vaihingen_png() -> Path:
    return DATA / "isprs-mmseg-fixtures" / "vaihingen" / "img" / "area1_0_0_512_512.png"


def requires_cuda(test):
    """Mark a test ``cuda`` and skip it where no CUDA GPU is present."""
    import torch

    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return pytest.mark.cuda(skip(test))


def attention_on(model, gamma: float = 0.3):
    """Set every attention gamma (0 at initialisation) so the attention paths contribute."""
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("gamma"):
                tensor.fill_(gamma)
    return model


def make_weights(
    path: Path,
    arch: str = "abcnet",
    backbone: str = "resnet18",
    dataset: str = "potsdam",
    tile_size: int = 128,
    overlap: int = 32,
    gsd_m: float | None = None,
) -> Path:
    """A weights file with random but fixed tensors, attention switched on (gamma != 0).

    The GSD is unknown unless given, so rasters of any resolution are predicted as they are.
    """
    import torch

    from aerialseg.card import ModelCard
    from aerialseg.data.classes import DATASETS
    from aerialseg.models import create_model
    from aerialseg.weights import save_weights

    torch.manual_seed(0)
    model = attention_on(create_model(arch, backbone, num_classes=6))
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
def abcnet_weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "abcnet-test.safetensors")


@pytest.fixture(scope="session")
def rasters() -> dict[str, Path]:
    return {
        "nodata": DATA / "rasterio-testdata" / "RGB.byte.tif",
        "alpha": DATA / "rasterio-testdata" / "RGBA.byte.tif",
        "jpeg_3857": DATA / "rasterio-testdata" / "cogeo.tif",
        "striped": DATA / "neon-deepforest" / "OSBS_029.tif",
        "uint16_single": DATA / "spacenet-solaris" / "sample_geotiff.tif",
    }


def run_cli(argv, capsys):
    """Run the command line in-process: ``(exit code, stdout, stderr)``."""
    from aerialseg.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.fixture(scope="session")
def potsdam_prepared(tmp_path_factory):
    """A prepared dataset (manifest + 128 px patches) cut from the real Potsdam sample patch."""
    from isprs_samples import write_prepared

    return write_prepared(tmp_path_factory.mktemp("potsdam_prepared"))
