"""Bare forward throughput of every registered network: PyTorch eager, channels_last, ONNX Runtime.

Run by hand, not by CI:  python benchmarks/forward.py --models 'abcnet*' --size 512 --repeats 5

Random weights (attention gammas set non-zero so every path runs), 3-band tiles, fp32,
inference mode. Prints one table: median milliseconds per batch, megapixels per second, and
each backend's speed relative to eager PyTorch measured in the same run. The ONNX file is
made with aerialseg's own export (TorchScript exporter, opset 17, parity-checked).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.export import export_onnx
from aerialseg.models import create_model, list_models
from aerialseg.onnxrt import open_session
from aerialseg.weights import save_weights


def timed(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_model(spec, args, workdir: Path) -> list[tuple]:
    torch.manual_seed(0)
    model = create_model(spec.arch, spec.backbone, num_classes=6).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("gamma"):
                tensor.fill_(0.3)
    x = torch.rand(args.batch, 3, args.size, args.size)
    megapixels = args.batch * args.size * args.size / 1e6
    rows = []

    def eager():
        with torch.inference_mode():
            model(x)

    results = {"eager": timed(eager, args.warmup, args.repeats)}
    if "channels_last" in args.backends:
        model_cl = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def channels_last():
            with torch.inference_mode():
                model_cl(x_cl)

        results["channels_last"] = timed(channels_last, args.warmup, args.repeats)
        model = model.to(memory_format=torch.contiguous_format)
    if "onnx" in args.backends:
        info = DATASETS["potsdam"]
        card = ModelCard(arch=spec.arch, backbone=spec.backbone, classes=info.classes, bands=info.bands)
        weights = workdir / f"{spec.name}.safetensors"
        save_weights(model, card, weights, overwrite=True)
        onnx_path = workdir / f"{spec.name}.onnx"
        export_onnx(weights, onnx_path, opset=17, output="logits", overwrite=True)
        session = open_session(onnx_path, threads=args.threads)
        feed = {"image": x.numpy().astype(np.float32)}
        results["onnx"] = timed(lambda: session.run(None, feed), args.warmup, args.repeats)
    for backend, seconds in results.items():
        rows.append((spec.name, backend, seconds * 1000, megapixels / seconds, results["eager"] / seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="shell pattern over arch-backbone names")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="eager,channels_last,onnx")
    args = parser.parse_args()
    args.backends = args.backends.split(",")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in list_models(args.models):
            rows += bench_model(spec, args, Path(tmp))
    print(f"\nbatch {args.batch} x {args.size}x{args.size}, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':<20} {'backend':<14} {'ms/batch':>10} {'MP/s':>7} {'vs eager':>9}")
    for name, backend, ms, mps, ratio in rows:
        print(f"{name:<20} {backend:<14} {ms:>10.1f} {mps:>7.2f} {ratio:>8.2f}x")


if __name__ == "__main__":
    main()
