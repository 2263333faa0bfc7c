"""What the benchmarks share: real-content orthophotos of any size, and weights to run on them.

The orthophoto is a mosaic of real aerial imagery from ../shared/data (read there, never
copied into the project): NEON 10 cm (Yellowstone and Florida), LoveDA 0.3 m and the ISPRS
Potsdam patch, arranged in a 3072-pixel block that is mirrored to the requested size, written
as a tiled DEFLATE GeoTIFF at 5 cm. Network throughput does not depend on the weights, so
speed rows use random weights (attention switched on); agreement figures also use the
trained sample weights, since only trained weights say what reduced precision costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aerialseg.conventions import SAMPLE_ORTHOPHOTO

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAMPLE_WEIGHTS = "manet-r18-potsdam-sample"
NEON_TILE = SAMPLE_ORTHOPHOTO
GSD_M = 0.05


def tiled_profile(size: int, count: int, crs: str, transform: object) -> dict:
    """A tiled (512-pixel blocks), DEFLATE, ``size`` x ``size`` uint8 GeoTIFF of ``count`` bands."""
    return dict(
        driver="GTiff",
        width=size,
        height=size,
        count=count,
        dtype="uint8",
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )


def class_raster_profile(size: int, transform: object) -> dict:
    """A class raster in UTM zone 32 (nodata 255), as the vectorize benchmarks write."""
    return tiled_profile(size, 1, "EPSG:32632", transform) | {"nodata": 255}


def potsdam_class_names() -> list[str]:
    """The ISPRS Potsdam classes, as a class raster names them (``CLASS_NAMES``)."""
    from aerialseg.data.classes import DATASETS

    return [c.name for c in DATASETS["potsdam"].classes]


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read([1, 2, 3])


def _block() -> np.ndarray:
    """A 3 x 3072 x 3072 block of real imagery (see the module docstring)."""
    block = np.zeros((3, 3072, 3072), np.uint8)
    yell = _read(DATA / "neon-deepforest" / "2019_YELL_2_528000_4978000_image_crop2.png")
    block[:, :2048, :2048] = yell[:, :2048, :2048]
    loveda = [_read(DATA / "loveda-mmseg-fixtures" / "img" / f"{i}.png") for i in range(3)]
    for i, image in enumerate(loveda):
        block[:, 2048:, i * 1024 : (i + 1) * 1024] = image
    block[:, :1024, 2048:] = loveda[0][:, :, ::-1]
    potsdam = _read(DATA / "isprs-mmseg-fixtures" / "potsdam" / "img" / "2_10_0_0_512_512.png")
    osbs = _read(NEON_TILE)
    osbs = np.pad(osbs, ((0, 0), (0, 112), (0, 112)), mode="symmetric")
    block[:, 1024:1536, 2048:2560] = potsdam
    block[:, 1024:1536, 2560:3072] = potsdam[:, ::-1]
    block[:, 1536:2048, 2048:2560] = osbs
    block[:, 1536:2048, 2560:3072] = osbs[:, :, ::-1]
    return block


def make_ortho(size: int, folder: Path) -> Path:
    """A tiled DEFLATE RGB GeoTIFF of ``size`` x ``size`` real-content pixels at 5 cm, written in strips."""
    import rasterio
    from rasterio.transform import from_origin

    path = folder / f"mosaic_{size}.tif"
    if path.exists():
        return path
    block = _block()
    top = np.concatenate([block, block[:, :, ::-1]], axis=2)
    period = np.concatenate([top, top[:, ::-1]], axis=1)  # mirrored 2x2: seamless when repeated
    transform = from_origin(528000, 4978000, GSD_M, GSD_M)
    profile = tiled_profile(size, 3, "EPSG:32612", transform) | {"photometric": "RGB"}
    cols = np.arange(size) % period.shape[2]
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, 1024):
            rows = np.arange(row, min(row + 1024, size)) % period.shape[1]
            dst.write(period[:, rows][:, :, cols], window=rasterio.windows.Window(0, row, size, len(rows)))
    tmp.rename(path)
    return path


def make_weights(name: str, folder: Path, tile_size: int = 512, overlap: int = 64) -> Path:
    """Random weights for ``arch-backbone`` (attention on) with a Potsdam card at 5 cm."""
    import torch

    from aerialseg.card import ModelCard
    from aerialseg.data.classes import DATASETS
    from aerialseg.models import create_model
    from aerialseg.weights import save_weights

    arch, backbone = name.split("-")
    path = folder / f"{name}-{tile_size}.safetensors"
    if path.exists():
        return path
    torch.manual_seed(0)
    model = create_model(arch, backbone)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("gamma"):
                tensor.fill_(0.3)
    info = DATASETS["potsdam"]
    card = ModelCard(
        arch=arch,
        backbone=backbone,
        classes=info.classes,
        bands=info.bands,
        gsd_m=GSD_M,
        tile_size=tile_size,
        overlap=overlap,
    )
    save_weights(model, card, path, overwrite=True)
    return path
