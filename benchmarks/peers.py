"""aerialseg against GeoDeep, side by side in one run: every engine and precision, interleaved rounds.

Run by hand, not by CI:
    pip install geodeep   # optional: without it the GeoDeep rows are left out
    python benchmarks/peers.py --sizes 4096 8192 --model manet-resnet50 --rounds 2
    python benchmarks/peers.py --deepness --sizes 4096 8192   # both tools on one Deepness-contract file

On a real-content mosaic orthophoto at 5 cm (benchmarks/_data.py), each round runs every
configuration once, in a fresh process (peak RSS is that run's alone), in the same order, so
machine noise spreads over all of them. GeoDeep is fed aerialseg's own ``export
--static-size`` file, which it loads unchanged; its time includes writing its mask as a
GeoTIFF, as aerialseg's includes writing a cloud-optimised GeoTIFF. aerialseg's time includes
opening the network and, for reduced precision, the accuracy gate (its time shown apart, its
threshold 0 by default: random weights measure speed, not accuracy; the figure is printed). ONNX
exports and int8 models are made before the first round (cached, as for a user's second
run). Columns: wall seconds, megapixels per second, peak RSS, system CPU time and its share
of the wall time, speed relative to GeoDeep in the same round, and the pipeline's wall time
against the bare forward of the same runner over the same tiles (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
from pathlib import Path

from _child import run_child
from _data import SAMPLE_WEIGHTS, make_ortho, make_weights

AERIALSEG = r"""
import json, resource, sys, time
import numpy as np
from aerialseg.options import OutputOptions, PredictOptions
from aerialseg.pipeline import predict
from aerialseg.runners import RunnerSpec, describe_precision, gate_result
from aerialseg.source import RasterSource
from aerialseg.tiling import TILE_ALIGN, plan_tiles
weights, backend, precision, raster, out, samples, min_agreement = sys.argv[1:8]
start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
runner = RunnerSpec(weights, backend, precision=precision, min_agreement=float(min_agreement)).open()
result = predict(raster, out, runner, PredictOptions(output=OutputOptions(overwrite=True)))
wall = time.perf_counter() - start
end = resource.getrusage(resource.RUSAGE_SELF)
rss = peak_rss_mb()
with RasterSource(raster, runner.card) as source:
    plan = plan_tiles(source.height, source.width, runner.card.tile_size, runner.card.overlap, align=TILE_ALIGN)
    windows = plan.windows()
    picks = [windows[int(i)] for i in np.linspace(0, len(windows) - 1, int(samples))]
    tiles = [source.read(w)[0][None] for w in picks]
runner(tiles[0])
forward = []
for tile in tiles:
    t = time.perf_counter()
    runner(tile)
    forward.append(time.perf_counter() - t)
gate = gate_result(runner)
print(json.dumps(dict(wall=wall, user=end.ru_utime - usage.ru_utime, sys=end.ru_stime - usage.ru_stime, rss_mb=rss,
                      megapixels=result.megapixels, tiles=result.tiles_run, forward=float(np.median(forward)),
                      gate=gate.seconds if gate else 0.0, precision=describe_precision(runner),
                      engine=runner.description)))
"""

GEODEEP = r"""
import json, resource, sys, time
import numpy as np, rasterio
import geodeep
onnx_path, raster, out = sys.argv[1:4]
start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
mask = geodeep.segment(raster, onnx_path)
with rasterio.open(raster) as src:
    profile = dict(driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, dtype="uint8", crs=src.crs,
                   transform=src.transform, tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    megapixels = src.width * src.height / 1e6
with rasterio.open(out, "w", **profile) as dst:
    dst.write(mask.astype(np.uint8), 1)
wall = time.perf_counter() - start
end = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(wall=wall, user=end.ru_utime - usage.ru_utime, sys=end.ru_stime - usage.ru_stime,
                      rss_mb=peak_rss_mb(), megapixels=megapixels, engine="GeoDeep " + geodeep.__version__)))
"""

PREPARE = r"""
import json, sys
from aerialseg.runners import RunnerSpec
from aerialseg.options import InputOptions, OutputOptions, PredictOptions
from aerialseg.pipeline import predict
weights, backend, precision, raster, out, min_agreement = sys.argv[1:7]
runner = RunnerSpec(weights, backend, precision=precision, min_agreement=float(min_agreement)).open()
# settle the gate (and make an int8 model from this raster's tiles) on a band of rows only
predict(raster, out, runner, PredictOptions(input=InputOptions(rows=(0, 1024)), output=OutputOptions(overwrite=True)))
print(json.dumps({}))
"""

CONFIGS = {  # label -> (backend, precision); "geodeep" is the peer
    "default": ("auto", "auto"),
    "fp32": ("auto", "fp32"),
    "torch-fp32": ("torch", "fp32"),
    "torch-bf16": ("torch", "bf16"),
    "onnx-fp32": ("onnx", "fp32"),
    "int8": ("auto", "int8"),
}


AGREEMENT = r"""
import json, sys
import numpy as np, rasterio
from geodeep.segmentation import filter_small_segments
from geodeep.utils import median_filter
ours, theirs, small_segment = sys.argv[1:4]
with rasterio.open(ours) as a, rasterio.open(theirs) as b:
    x, y = a.read(1), b.read(1)
valid = x != 255
# aerialseg's map through GeoDeep's own post-processing: its 5x5 median (in bands of rows, 2 rows of real
# neighbours each side, as on the whole mask), then its sieve of (2 * seg_small_segment)^2 pixels
filtered = np.empty_like(x)
for r0 in range(0, x.shape[0], 256):
    lo, hi = max(r0 - 2, 0), min(r0 + 258, x.shape[0])
    filtered[r0 : r0 + 256] = median_filter(x[lo:hi], 5)[r0 - lo : r0 - lo + 256]
filtered = filter_small_segments(filtered, {"seg_small_segment": int(small_segment)})
print(json.dumps(dict(agreement=float((x[valid] == y[valid]).mean()),
                      filtered_agreement=float((filtered[valid] == y[valid]).mean()))))
"""


GEODEEP_SMALL_SEGMENT = 11
"""GeoDeep's ``seg_small_segment`` when the metadata has none (aerialseg's exports write none)."""


def deepness_contract(workdir: Path) -> Path:
    """The trained sample weights as a file of the Deepness contract: a static 512 export, its card removed."""
    import onnx

    from aerialseg.conventions import CARD_KEY
    from aerialseg.export import export_onnx

    path = workdir / f"{SAMPLE_WEIGHTS}-deepness.onnx"
    if not path.exists():
        export_onnx(SAMPLE_WEIGHTS, workdir / "with-card.onnx", static_size=512, overwrite=True)
        graph = onnx.load(str(workdir / "with-card.onnx"))
        kept = [(p.key, p.value) for p in graph.metadata_props if p.key != CARD_KEY]
        del graph.metadata_props[:]
        for key, value in kept:
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(path))
    return path


def deepness_runs(args: argparse.Namespace) -> None:
    """aerialseg and GeoDeep on the same Deepness-contract file: time, memory, and where their masks agree.

    GeoDeep keeps the last tile's labels in overlaps and median-filters the mask; aerialseg blends
    the tiles' probabilities: the agreement is reported, not forced. ``same after GeoDeep filters``
    is the agreement once aerialseg's map has been through GeoDeep's own post-processing (its
    5 x 5 median, then its sieve of regions under (2 x 11)² pixels), which says how much of the
    difference those filters make.
    """
    if not importlib.util.find_spec("geodeep"):
        raise SystemExit("--deepness compares with GeoDeep: pip install geodeep")
    contract = deepness_contract(args.workdir)
    from aerialseg.card import read_card

    card = read_card(contract)
    rows = []
    for size in args.sizes:
        raster = make_ortho(size, args.workdir)
        for round_ in range(1, args.rounds + 1):
            ours, theirs = (
                args.workdir / f"deepness_aerialseg_{size}.tif",
                args.workdir / f"deepness_geodeep_{size}.tif",
            )
            peer = run_child(GEODEEP, contract, raster, theirs, label="geodeep")
            own = run_child(AERIALSEG, contract, "auto", "auto", raster, ours, args.samples, 0.99, label="aerialseg")
            same = run_child(AGREEMENT, ours, theirs, GEODEEP_SMALL_SEGMENT, label="agreement")
            rows.append((size, round_, peer, own, same))
            print(
                f"{size} round {round_}: GeoDeep {peer['wall']:.1f} s, aerialseg {own['wall']:.1f} s", file=sys.stderr
            )
    print(
        f"\n{contract.name} (tile {card.tile_size}, overlap {card.overlap}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"{'size':>6} {'round':>5} {'tool':<10} {'wall s':>7} {'MP/s':>6} {'peak RSS MB':>11} {'vs GeoDeep':>10}"
        f" {'same class':>10} {'same after GeoDeep filters':>26}  engine"
    )
    for size, round_, peer, own, same in rows:
        for tool, r in (("GeoDeep", peer), ("aerialseg", own)):
            versus = f"{peer['wall'] / r['wall']:.2f}x"
            agree, median = (
                (f"{100 * same['agreement']:.1f} %", f"{100 * same['filtered_agreement']:.1f} %")
                if tool == "aerialseg"
                else ("", "")
            )
            print(
                f"{size:>6} {round_:>5} {tool:<10} {r['wall']:>7.1f} {r['megapixels'] / r['wall']:>6.2f} "
                f"{r['rss_mb']:>11.0f} {versus:>10} {agree:>10} {median:>26}  {r['engine']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--model", default="manet-resnet50")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["geodeep", "default", "fp32", "torch-fp32", "int8"],
        help=f"geodeep and any of {', '.join(CONFIGS)}",
    )
    parser.add_argument("--samples", type=int, default=6, help="tiles timed for the bare forward")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.0,
        help="accuracy gate threshold (default 0: random weights measure speed; the figure is shown)",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aerialseg-bench")
    parser.add_argument(
        "--deepness",
        action="store_true",
        help="instead: GeoDeep and aerialseg on one Deepness-contract file (the trained sample weights' static "
        "export without its card), with the share of pixels where their masks agree",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", str(args.workdir / "cache"))
    if args.deepness:
        deepness_runs(args)
        return
    runs = [r for r in args.runs if r != "geodeep" or importlib.util.find_spec("geodeep")]
    if len(runs) < len(args.runs):
        print("geodeep is not installed (pip install geodeep): its rows are left out", file=sys.stderr)
    weights = make_weights(args.model, args.workdir)
    static = args.workdir / f"{args.model}-static512.onnx"
    if "geodeep" in runs and not static.exists():
        from aerialseg.export import export_onnx

        export_onnx(weights, static, static_size=512)
    rows = []
    for size in args.sizes:
        raster = make_ortho(size, args.workdir)
        for label in runs:
            if label != "geodeep":
                run_child(
                    PREPARE,
                    weights,
                    *CONFIGS[label],
                    raster,
                    args.workdir / "prepare.tif",
                    args.min_agreement,
                    label=label,
                )
        for round_ in range(1, args.rounds + 1):
            for label in runs:
                out = args.workdir / f"out_{label}_{size}.tif"
                if label == "geodeep":
                    r = run_child(GEODEEP, static, raster, out, label=label)
                else:
                    r = run_child(
                        AERIALSEG, weights, *CONFIGS[label], raster, out, args.samples, args.min_agreement, label=label
                    )
                rows.append((size, round_, label, r))
                print(f"{size} round {round_} {label}: {r['wall']:.1f} s", file=sys.stderr)
    print_table(rows, args.model)


def print_table(rows: list, model: str) -> None:
    print(f"\n{model}, 512 tiles, overlap 64; {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(
        f"{'size':>6} {'round':>5} {'run':<11} {'wall s':>7} {'MP/s':>6} {'peak RSS MB':>11} {'sys s':>6} "
        f"{'sys %':>5} {'vs GeoDeep':>10} {'gate s':>6} {'pipe/fwd':>8} {'pipe/fwd ex gate':>16}  precision"
    )
    peers = {(size, round_): r["wall"] for size, round_, label, r in rows if label == "geodeep"}
    for size, round_, label, r in rows:
        peer = peers.get((size, round_))
        versus = f"{peer / r['wall']:.2f}x" if peer else ""
        forward = r.get("forward", 0) * r.get("tiles", 0)
        ratio = f"{forward / r['wall']:.2f}" if forward else ""
        steady = f"{forward / (r['wall'] - r['gate']):.2f}" if forward else ""
        print(
            f"{size:>6} {round_:>5} {label:<11} {r['wall']:>7.1f} {r['megapixels'] / r['wall']:>6.2f} "
            f"{r['rss_mb']:>11.0f} {r['sys']:>6.1f} {100 * r['sys'] / r['wall']:>5.1f} {versus:>10} "
            f"{r.get('gate', 0):>6.1f} {ratio:>8} {steady:>16}  {r.get('precision', r['engine'])}"
        )


if __name__ == "__main__":
    main()
