"""End-to-end predict vs bare forward, peak memory, and how both grow with raster size.

Run by hand, not by CI:
    python benchmarks/predict.py --sizes 4096 16384 --models abcnet-resnet18 manet-resnet50 --backends torch onnx

Builds the real-content orthophotos of ``_data.py`` (5 cm, tiled DEFLATE GeoTIFFs), then for
every (model, backend, size) runs ``aerialseg.predict`` in a fresh process (so peak RSS is
that run's alone) and, in the same process, times the bare forward pass of the runner on
sample tiles of the same plan. Weights are random (attention on); throughput does not depend
on them. Prints one table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _child import run_child
from _data import make_ortho, make_weights

CHILD = r"""
import json, sys, time
import numpy as np
from aerialseg.options import OutputOptions, PredictOptions
from aerialseg.pipeline import predict
from aerialseg.runners import open_runner
from aerialseg.source import RasterSource
from aerialseg.tiling import plan_tiles
weights, backend, raster, out, samples = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
runner = open_runner(weights, backend=backend)
runner(np.random.rand(1, 3, 512, 512).astype(np.float32))  # warm-up (and ONNX session start)
start = time.perf_counter()
result = predict(raster, out, runner, PredictOptions(output=OutputOptions(overwrite=True)))
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
                rows.append(
                    (
                        model,
                        backend,
                        size,
                        r["seconds"],
                        r["megapixels"] / r["seconds"],
                        r["megapixels"] / forward_total,
                        forward_total / r["seconds"],
                        r["rss_mb"],
                    )
                )
                print(f"done {model} {backend} {size} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(
        f"\n{'model':<17} {'backend':<7} {'size':>6} {'predict s':>10} {'MP/s':>6} {'fwd MP/s':>9} "
        f"{'pipe/fwd':>9} {'peak RSS MB':>12}"
    )
    for model, backend, size, seconds, mps, fwd_mps, ratio, rss in rows:
        print(
            f"{model:<17} {backend:<7} {size:>6} {seconds:>10.1f} {mps:>6.2f} {fwd_mps:>9.2f} {ratio:>9.2f} "
            f"{rss:>12.0f}"
        )


if __name__ == "__main__":
    main()
