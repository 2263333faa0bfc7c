"""predict on a local Dask cluster: throughput of 1 and 2 worker processes against the in-process path.

Run by hand, not by CI:
    python benchmarks/cluster.py --files 4 --size 2048 --model abcnet-resnet18

Builds real-content orthophotos as ``benchmarks/predict.py`` does, then predicts the same
batch (and one larger raster split into bands of rows) in process and on ``local:1`` and
``local:2`` clusters. Workers run one torch thread each (Dask sets OMP_NUM_THREADS=1), the
in-process run uses every core. Cluster start-up (worker processes, the network loaded once
per worker) is timed apart from the work. Prints one table with the machine's core count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from predict import make_ortho, make_weights


def batch(args: argparse.Namespace) -> list[Path]:
    source = make_ortho(args.size, args.workdir)
    paths = []
    for i in range(args.files):
        path = args.workdir / f"batch_{args.size}_{i}.tif"
        if not path.exists():
            shutil.copy(source, path)
        paths.append(path)
    return paths


def run(mode: str, inputs: list[Path], weights: Path, out: Path, split_rows: int) -> tuple[float, float, float]:
    """``(start-up seconds, work seconds, megapixels)`` of one batch."""
    from aerialseg.batch import predict_batch
    from aerialseg.cluster import RunnerSpec, close_client, open_client
    from aerialseg.options import OutputOptions, PredictOptions
    from aerialseg.runners import open_runner

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    options = PredictOptions(output=OutputOptions(overwrite=True))
    start = time.perf_counter()
    if mode == "in-process":
        runner = open_runner(weights)
        ready = time.perf_counter()
        results = predict_batch(inputs, runner, options, out_dir=out)
    else:
        client = open_client(mode)
        spec = RunnerSpec(str(weights))
        client.run(lambda: __import__("aerialseg.cluster").cluster._runner(spec) and None)  # load the network
        ready = time.perf_counter()
        results = predict_batch(inputs, spec, options, cluster=client, out_dir=out, split_rows=split_rows)
        close_client(client)
    done = time.perf_counter()
    if any(r.status != "ok" for r in results):
        raise SystemExit(f"{mode}: {[r.error for r in results if r.error]}")
    return ready - start, done - ready, sum(r.megapixels for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--split-size", type=int, default=4096, help="side of the raster split into bands")
    parser.add_argument("--split-rows", type=int, default=1024)
    parser.add_argument("--model", default="abcnet-resnet18")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aerialseg-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    weights = make_weights(args.model, args.workdir)
    jobs = {
        f"batch of {args.files} x {args.size}²": (batch(args), 10**9),
        f"one {args.split_size}² in bands of {args.split_rows} rows": (
            [make_ortho(args.split_size, args.workdir)],
            args.split_rows,
        ),
    }
    rows = []
    for job, (inputs, split_rows) in jobs.items():
        base = None
        for mode in ("in-process", "local:1", "local:2"):
            startup, seconds, megapixels = run(mode, inputs, weights, args.workdir / "cluster_out", split_rows)
            base = seconds if mode == "local:1" else base
            rows.append((job, mode, startup, seconds, megapixels / seconds, base / seconds if base else None))
            print(f"done {job} {mode}", flush=True)
    print(f"\n{os.cpu_count()} CPU cores, model {args.model}, 512-pixel tiles with 64 of overlap")
    print(f"{'job':<34} {'mode':<11} {'start-up s':>10} {'work s':>8} {'MP/s':>6} {'vs local:1':>10}")
    for job, mode, startup, seconds, mps, speedup in rows:
        ratio = f"{speedup:.2f}" if speedup else ""
        print(f"{job:<34} {mode:<11} {startup:>10.1f} {seconds:>8.1f} {mps:>6.3f} {ratio:>10}")


if __name__ == "__main__":
    main()
