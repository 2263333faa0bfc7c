"""Runners: one contract for every inference engine.

A runner maps a batch of model-ready tiles ``(N, bands, H, W)`` float32 in [0, 1] (pixels
already scaled as the card says, not yet standardised) to class probabilities
``(N, K, H, W)`` float32. PyTorch and ONNX Runtime runners both standardise with the
card's mean/std (the ONNX graph does it inside), so the pipeline never knows which engine
runs; test-time augmentation wraps any runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..card import ModelCard
from ..errors import AerialsegError

__all__ = ["Runner", "open_runner", "BACKENDS"]

BACKENDS = ("torch", "onnx")


class Runner(Protocol):
    """Tiles in, probabilities out (see the module docstring)."""

    card: ModelCard
    description: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` probabilities."""
        ...


def open_runner(
    model: str | os.PathLike[str],
    backend: str = "torch",
    device: str | None = None,
    tta: str | None = None,
) -> Runner:
    """A runner for a weights name/path or an exported ``.onnx`` file.

    ``backend="onnx"`` with a weights file exports it once into the cache folder
    (``$XDG_CACHE_HOME/aerialseg/onnx``, keyed by the tensors' sha256) through the parity-gated
    export. A ``.onnx`` model always runs on ONNX Runtime.
    """
    if backend not in BACKENDS:
        raise AerialsegError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    if backend == "onnx" or Path(model).suffix == ".onnx":
        from ..onnxrt import import_onnxruntime

        import_onnxruntime()  # fail before any export work when the extra is missing
    if Path(model).suffix == ".onnx":
        from .onnx_runner import OnnxRunner

        runner: Runner = OnnxRunner(Path(model), device)
    elif backend == "onnx":
        from .onnx_runner import OnnxRunner, cached_export

        runner = OnnxRunner(cached_export(model), device)
    else:
        from .torch_runner import TorchRunner

        runner = TorchRunner.from_weights(model, device)
    if tta:
        from .tta import TTARunner

        runner = TTARunner(runner, tta)
    return runner
