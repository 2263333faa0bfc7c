"""End-to-end predict vs bare forward, peak memory, and how both grow with raster size.

Run by hand, not by CI:
    python benchmarks/predict.py --sizes 4096 16384 --models abcnet-resnet18 manet-resnet50 --backends torch onnx

Builds real-content orthophotos (the NEON 10 cm RGB crop from ../shared/data, mirrored to
the requested size) as tiled DEFLATE GeoTIFFs, then for every (model, backend, size) runs
``aerialseg.predict`` in a fresh process (so peak RSS is that run's alone) and, in the same
process, times the bare forward pass of the runner on sample tiles of the same plan. Weights
are random (attention on); throughput does not depend on them. Prints one table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _child import run_child

ROOT = Path(__file__).resolve().parents[1]
YELL = ROOT.parent / "shared" / "data" / "neon-deepforest" / "2019_YELL_2_528000_4978000_image_crop2.png"

CHILD = r"""
import json, sys, time
import numpy as np
from aerialseg.pipeline import PredictOptions, predict
from aerialseg.runners import open_runner
from aerialseg.source import RasterSource
from aerialseg.tiling import plan_tiles
weights, backend, raster, out, samples = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
runner = open_runner(weights, backend=backend)
runner(np.random.rand(1, 3, 512, 512).astype(np.float32))  # warm-up (and ONNX session start)
start = time.perf_counter()
result = predict(raster, out, runner, PredictOptions(overwrite=True))
seconds = time.perf_counter() - start
rss = peak_rss_mb()
with RasterSource(raster, runner.card) as source:
    plan = plan_tiles(source.height, source.width, runner.card.tile_size, runner.card.overlap)
    windows = plan.windows()
    picks = [windows[int(i)] for i in np.linspace(0, len(windows) - 1, samples)]
    tiles = [source.read(w)[0][None] for w in picks]
forward = []
for tile in tiles:
    t = time.perf_counter()
    runner(tile)
    forward.append(time.perf_counter() - t)
print(json.dumps(dict(seconds=seconds, rss_mb=rss, tiles=len(plan), forward_per_tile=float(np.median(forward)),
                      megapixels=result.megapixels, description=runner.description)))
"""


def make_ortho(size: int, folder: Path) -> Path:
    """A tiled DEFLATE GeoTIFF of real 10 cm imagery, mirrored to ``size`` x ``size``, written in strips."""
    import rasterio
    from rasterio.transform import from_origin

    path = folder / f"ortho_{size}.tif"
    if path.exists():
        return path
    with rasterio.open(YELL) as src:
        image = src.read()
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32612",
                   transform=from_origin(528000, 4978000, 0.1, 0.1), tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", photometric="RGB")
    top = np.concatenate([image, image[:, :, ::-1]], axis=2)
    period = np.concatenate([top, top[:, ::-1]], axis=1)  # mirrored 2x2 block: seamless when repeated
    cols = np.arange(size) % period.shape[2]
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 1024):
            rows = np.arange(row, min(row + 1024, size)) % period.shape[1]
            dst.write(period[:, rows][:, :, cols], window=rasterio.windows.Window(0, row, size, len(rows)))
    return path


def make_weights(name: str, folder: Path) -> Path:
    import torch

    from aerialseg.card import ModelCard
    from aerialseg.data.classes import DATASETS
    from aerialseg.models import create_model
    from aerialseg.weights import save_weights

    arch, backbone = name.split("-")
    path = folder / f"{name}.safetensors"
    torch.manual_seed(0)
    model = create_model(arch, backbone)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("gamma"):
                tensor.fill_(0.3)
    info = DATASETS["potsdam"]
    card = ModelCard(arch=arch, backbone=backbone, classes=info.classes, bands=info.bands, tile_size=512, overlap=64)
    save_weights(model, card, path, overwrite=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--models", nargs="+", default=["abcnet-resnet18", "manet-resnet50"])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--samples", type=int, default=8, help="tiles timed for the bare forward")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aerialseg-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        weights = make_weights(model, args.workdir)
        for backend in args.backends:
            for size in args.sizes:
                raster = make_ortho(size, args.workdir)
                out = args.workdir / f"classes_{model}_{backend}_{size}.tif"
                start = time.perf_counter()
                r = run_child(CHILD, weights, backend, raster, out, args.samples, label=f"{model} {backend} {size}")
                forward_total = r["forward_per_tile"] * r["tiles"]
                rows.append((model, backend, size, r["seconds"], r["megapixels"] / r["seconds"],
                             r["megapixels"] / forward_total, forward_total / r["seconds"], r["rss_mb"]))
                print(f"done {model} {backend} {size} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"\n{'model':<17} {'backend':<7} {'size':>6} {'predict s':>10} {'MP/s':>6} {'fwd MP/s':>9} "
          f"{'pipe/fwd':>9} {'peak RSS MB':>12}")
    for model, backend, size, seconds, mps, fwd_mps, ratio, rss in rows:
        print(f"{model:<17} {backend:<7} {size:>6} {seconds:>10.1f} {mps:>6.2f} {fwd_mps:>9.2f} {ratio:>9.2f} "
              f"{rss:>12.0f}")


if __name__ == "__main__":
    main()
