"""Every network on a CUDA GPU: PyTorch fp32/fp16/bf16, ONNX Runtime CUDA and TensorRT, batch 1-16.

Run by hand on a CUDA machine (``benchmarks/gpu.sh`` runs the CUDA tests first, then this):
    python benchmarks/gpu.py --budget 300

Installs and downloads nothing: engines that are not importable (ONNX Runtime's CUDA
provider, TensorRT) are listed as skipped with the reason. Random weights (attention on),
512² tiles of random pixels in [0, 1]; timing with CUDA events after warm-up, the median of
repeats (ONNX Runtime rows: host clock around its synchronous run); GPU memory is the peak
PyTorch allocated for the batch (PyTorch rows) or the device memory the session holds
(ONNX Runtime rows, which allocate outside PyTorch). Work is ordered by what decides the
engine rules (PyTorch precisions for every network first, then ONNX Runtime, then TensorRT)
and stops adding rows when ``--budget`` seconds are spent, saying what it left out. Prints
one table naming the card, and writes it to ``$OUT/gpu_table.txt`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aerialseg.models import create_model, list_models

BATCHES = (1, 2, 4, 8, 16)
TILE = 512


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``fn`` measured with CUDA events, after three warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def host_timed(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of a call that returns only when its GPU work is done (ONNX Runtime's run)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def device_used_mib() -> float:
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def network(name: str) -> torch.nn.Module:
    arch, backbone = name.split("-")
    torch.manual_seed(0)
    model = create_model(arch, backbone, num_classes=6).eval()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("gamma"):
                tensor.fill_(0.3)
    return model


def torch_rows(name: str, repeats: int, deadline: float) -> list[tuple]:
    model = network(name).cuda()
    rows = []
    variants = [
        ("fp32", None, False),
        ("fp16 autocast", torch.float16, False),
        ("fp16 autocast, channels_last", torch.float16, True),
        ("bf16 autocast", torch.bfloat16, False),
    ]
    for label, dtype, channels_last in variants:
        net = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        for batch in BATCHES:
            if time.perf_counter() > deadline:
                return rows
            x = torch.rand(batch, 3, TILE, TILE, device="cuda")
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            def forward(net=net, x=x, dtype=dtype) -> None:  # noqa: ANN001 (bound now, called below)
                with (
                    torch.inference_mode(),
                    torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
                ):
                    torch.softmax(net(x).float(), dim=1)

            torch.cuda.reset_peak_memory_stats()
            ms = timed(forward, repeats)
            rows.append((name, f"PyTorch {label}", batch, ms, torch.cuda.max_memory_allocated() / 2**20))
    return rows


def onnx_rows(name: str, provider: str, workdir: Path, repeats: int, deadline: float) -> list[tuple]:
    """ONNX Runtime with ``provider`` on graphs made by aerialseg's own (parity-checked) export."""
    import onnxruntime as ort

    from aerialseg.card import ModelCard
    from aerialseg.data.classes import DATASETS
    from aerialseg.export import export_onnx
    from aerialseg.weights import save_weights

    arch, backbone = name.split("-")
    info = DATASETS["potsdam"]
    weights = workdir / f"{name}.safetensors"
    save_weights(
        network(name),
        ModelCard(arch=arch, backbone=backbone, classes=info.classes, bands=info.bands),
        weights,
        overwrite=True,
    )
    rows = []
    torch.cuda.empty_cache()
    baseline = device_used_mib()  # what PyTorch still holds; the rest is the session's
    for fp16 in (False, True):
        path = workdir / f"{name}{'-fp16' if fp16 else ''}.onnx"
        export_onnx(weights, path, fp16=fp16, overwrite=True)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=[provider, "CPUExecutionProvider"])
        if session.get_providers()[0] != provider:
            return rows + [(name, f"{provider} (fell back to the CPU: skipped)", 0, float("nan"), float("nan"))]
        for batch in BATCHES:
            if time.perf_counter() > deadline:
                return rows
            feed = {"image": np.random.default_rng(0).random((batch, 3, TILE, TILE), dtype=np.float32)}
            ms = host_timed(lambda feed=feed, run=session.run: run(None, feed), repeats)
            used = device_used_mib() - baseline
            rows.append(
                (
                    name,
                    f"ORT {provider.removesuffix('ExecutionProvider')} {'fp16' if fp16 else 'fp32'}",
                    batch,
                    ms,
                    used,
                )
            )
        del session
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="shell pattern over arch-backbone names")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=300, help="seconds of measuring before rows are left out")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_table.txt")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark needs one")
    deadline = time.perf_counter() + args.budget
    names = [spec.name for spec in list_models(args.models)]
    rows: list[tuple] = []
    skipped: list[str] = []
    torch.backends.cudnn.benchmark = True
    for name in names:
        rows += torch_rows(name, args.repeats, deadline)
    providers = []
    if importlib.util.find_spec("onnxruntime") is None:
        skipped.append("ONNX Runtime: not installed")
    else:
        import onnxruntime as ort

        available = ort.get_available_providers()
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            (providers if provider in available else skipped).append(
                provider if provider in available else f"{provider}: not in this onnxruntime ({ort.__version__})"
            )
        if providers and importlib.util.find_spec("rasterio") is None:
            skipped.append("ONNX Runtime rows: rasterio missing (the export's parity check reads a real tile)")
            providers = []
    with tempfile.TemporaryDirectory(prefix="aerialseg-gpu-") as workdir:
        for provider in providers:
            for name in names:
                if time.perf_counter() > deadline:
                    break
                try:
                    rows += onnx_rows(name, provider, Path(workdir), args.repeats, deadline)
                except Exception as exc:  # noqa: BLE001 (one engine's failure is a row, not the end of the table)
                    skipped.append(f"{name} on {provider}: {type(exc).__name__}: {str(exc)[:160]}")
    done = {(row[0], row[1].split(" ")[0]) for row in rows}
    if time.perf_counter() > deadline:
        skipped.append(f"budget of {args.budget:g} s spent; rows after the last one shown were not measured")
    left = [n for n in names if (n, "PyTorch") not in done]
    if left:
        skipped.append(f"PyTorch rows not reached: {', '.join(left)}")
    lines = [
        f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), "
        f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}; {TILE}² tiles, median of {args.repeats}",
        f"{'network':<20} {'engine':<34} {'batch':>5} {'ms/batch':>9} {'MP/s':>7} {'GPU MiB':>8}",
    ]
    for name, engine, batch, ms, mem in rows:
        mps = batch * TILE * TILE / 1e6 / (ms / 1000) if batch else float("nan")
        lines.append(f"{name:<20} {engine:<34} {batch:>5} {ms:>9.2f} {mps:>7.1f} {mem:>8.0f}")
    lines += [f"skipped: {reason}" for reason in skipped]
    text = "\n".join(lines)
    print(text)
    try:
        args.out.write_text(text + "\n")
    except OSError as exc:
        print(f"could not write {args.out}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
