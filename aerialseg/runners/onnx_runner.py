"""ONNX Runtime runner: CUDA/TensorRT providers when present, else CPU; same contract as PyTorch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..card import card_from_metadata, exported_precision, read_card
from ..conventions import OUTPUT_KEY
from ..errors import AerialsegError
from ..onnxrt import import_onnxruntime, open_session

__all__ = ["OnnxRunner", "cached_export", "onnx_cache_dir"]


def onnx_cache_dir() -> Path:
    """Where on-the-fly exports are kept."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aerialseg" / "onnx"


def cached_export(weights: str | os.PathLike[str], fp16: bool = False) -> Path:
    """The ONNX file of a weights file (fp16 graph with ``fp16``), exported (parity-gated) on first use."""
    from ..export import DEFAULT_OPSET, export_onnx
    from ..weights import resolve_weights

    path = resolve_weights(weights)
    card = read_card(path)
    precision = "-fp16" if fp16 else ""
    target = onnx_cache_dir() / f"{card.arch}-{card.backbone}-{card.sha256[:16]}-opset{DEFAULT_OPSET}{precision}.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(path, target, fp16=fp16, overwrite=True)
    return target


def _providers(device: str | None) -> list[str]:
    available = import_onnxruntime().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device in (None, "cuda") else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxRunner:
    """Runs an aerialseg-exported graph (probabilities or logits output, fp32, fp16 or int8)."""

    gate = None  # a runner that is already what it is; reduced precision is gated by the caller

    def __init__(self, path: Path, device: str | None = None) -> None:
        self.session = open_session(path, _providers(device))
        meta = self.session.get_modelmeta().custom_metadata_map
        card = card_from_metadata(meta, path)
        self.precision = exported_precision(meta)
        self.logits = meta.get(OUTPUT_KEY) == "logits"
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.static_size = shape[2] if isinstance(shape[2], int) else None
        if self.static_size:  # a --static-size export takes only that tile size
            card = card.replace(tile_size=self.static_size, overlap=min(card.overlap, self.static_size // 4))
        self.card = card
        self.description = f"ONNX Runtime ({self.session.get_providers()[0]}), {self.precision}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` float32 probabilities."""
        height, width = batch.shape[2:]
        if self.static_size:
            if max(height, width) > self.static_size:
                raise AerialsegError(
                    f"this ONNX file takes tiles of {self.static_size} pixels, not {height} x {width}",
                    hint=f"pass --tile-size {self.static_size} or less, or export without --static-size",
                )
            pad = ((0, 0), (0, 0), (0, self.static_size - height), (0, self.static_size - width))
            batch = np.pad(batch, pad, mode="edge")  # rasters smaller than a tile
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        out = out[:, :, :height, :width]
        if self.logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out
