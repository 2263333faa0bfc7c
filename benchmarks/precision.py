"""Every network at every CPU precision and engine: speed, and argmax agreement with fp32 on real imagery.

Run by hand, not by CI:
    python benchmarks/precision.py --models '*' --repeats 5

Rows: each registered network with random weights (attention on), and the trained sample
weights (MANet-R18 on Potsdam), on PyTorch fp32 (channels-last), PyTorch bf16 (the inference
form predict uses: BatchNorm folded, bf16 weights), ONNX Runtime fp32 and ONNX Runtime int8
(static QDQ, calibrated on 16 mosaic tiles). Speed: median seconds per 512² tile at batch 1
over real tiles, and the ratio to PyTorch fp32 in the same run. Agreement: the share of
pixels whose class equals PyTorch fp32's, on the NEON 10 cm tile read at the model's 5 cm
(four tiles) and on six tiles of the real-content mosaic (none of them calibration tiles).
Random weights say what precision does to the arithmetic; only trained weights say what it
does to a map, so the sample-weights row is the one to read for accuracy. bf16 rows on a CPU
without native bf16 are emulated (slow): the table says which the CPU has.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import NEON_TILE, SAMPLE_WEIGHTS, make_ortho, make_weights

from aerialseg.hardware import detect_hardware
from aerialseg.models import list_models
from aerialseg.runners.onnx_runner import OnnxRunner, cached_export
from aerialseg.runners.quantize import cached_int8
from aerialseg.runners.torch_runner import TorchRunner
from aerialseg.sampling import RasterTileSample
from aerialseg.source import RasterSource
from aerialseg.tiling import TILE_ALIGN, plan_tiles
from aerialseg.weights import read_card, resolve_weights


def tiles_of(path: Path, card, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    with RasterSource(path, card, gsd="auto") as source:
        plan = plan_tiles(source.height, source.width, 512, 64, align=TILE_ALIGN)
        return RasterTileSample(source, plan, path.name).tiles(count)


def agreement(runner, reference: list[np.ndarray], tiles: list[tuple[np.ndarray, np.ndarray]]) -> float:
    agree = total = 0
    for expected, (data, valid) in zip(reference, tiles, strict=True):
        got = runner(data[None])[0].argmax(0)
        agree += int((got == expected)[valid].sum())
        total += int(valid.sum())
    return agree / total


def seconds_per_tile(runner, tiles: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> float:
    runner(tiles[0][0][None])
    samples = []
    for k in range(repeats):
        tile = tiles[k % len(tiles)][0][None]
        start = time.perf_counter()
        runner(tile)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench(name: str, weights: str, mosaic: Path, args: argparse.Namespace) -> list[tuple]:
    card = read_card(resolve_weights(weights))
    neon = tiles_of(NEON_TILE, card, 4)
    picked = tiles_of(mosaic, card, 22)
    test, calibration = picked[::4][:6], [t for i, t in enumerate(picked) if i % 4][:16]
    fp32 = TorchRunner.from_weights(weights, "cpu", "fp32")
    references = {
        key: [fp32(d[None])[0].argmax(0) for d, _ in tiles] for key, tiles in (("neon", neon), ("mosaic", test))
    }
    onnx_path = cached_export(weights)
    runners = {
        "PyTorch fp32": lambda: fp32,
        "PyTorch bf16": lambda: fp32.converted("bf16"),
        "ONNX Runtime fp32": lambda: OnnxRunner(onnx_path, "cpu"),
        "ONNX Runtime int8": lambda: OnnxRunner(cached_int8(onnx_path, [d for d, _ in calibration]), "cpu"),
    }
    rows = []
    base = None
    for engine, make in runners.items():
        if args.engines and not any(word in engine for word in args.engines):
            continue
        runner = make()
        seconds = seconds_per_tile(runner, test, args.repeats)
        base = base or seconds
        rows.append(
            (
                name,
                engine,
                seconds,
                0.262144 / seconds,
                base / seconds,
                agreement(runner, references["neon"], neon),
                agreement(runner, references["mosaic"], test),
            )
        )
        print(f"{name} {engine}: {seconds:.3f} s/tile", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="shell pattern over arch-backbone names")
    parser.add_argument("--no-sample", action="store_true", help="leave out the trained sample weights")
    parser.add_argument("--engines", nargs="*", default=[], help="only engines whose name contains one of these")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aerialseg-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    mosaic = make_ortho(4096, args.workdir)
    rows = []
    if not args.no_sample:
        rows += bench(f"{SAMPLE_WEIGHTS} (trained)", SAMPLE_WEIGHTS, mosaic, args)
    for spec in list_models(args.models):
        rows += bench(spec.name, str(make_weights(spec.name, args.workdir)), mosaic, args)
    hardware = detect_hardware(use_torch=True)
    print(f"\n{hardware.describe()}; 512² tiles, batch 1, median of {args.repeats}")
    print(
        f"{'network':<36} {'engine':<18} {'s/tile':>7} {'MP/s':>6} {'vs fp32':>8} {'agree NEON':>10} "
        f"{'agree mosaic':>12}"
    )
    for name, engine, seconds, mps, ratio, neon, mosaic_agree in rows:
        print(f"{name:<36} {engine:<18} {seconds:>7.3f} {mps:>6.2f} {ratio:>7.2f}x {neon:>10.2%} {mosaic_agree:>12.2%}")


if __name__ == "__main__":
    main()
