"""ONNX Runtime runner: CUDA/TensorRT providers when present, else CPU; same contract as PyTorch.

A weights file runs on ONNX Runtime through a parity-gated export kept in a cache folder.
The cache is content-addressed: an entry's key covers everything that shapes the graph (the
tensors' sha256 as hashed from the file, the whole card, the export settings and the
aerialseg, torch, onnx and onnxscript versions), and an entry is used only once verified
(its bytes against the sha256 recorded beside it when it was written, the key and card in its
metadata against the ones expected). Anything else is exported again, saying why at ``-v``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..atomic import atomic_output, make_folder
from ..card import ModelCard, card_from_metadata, exported_precision, onnx_metadata, printable
from ..conventions import OUTPUT_KEY
from ..errors import AerialsegError, WeightsError
from ..onnxrt import import_onnxruntime, open_session

__all__ = [
    "OnnxRunner",
    "CacheEntry",
    "CACHE_KEY",
    "cached_export",
    "export_cache_entry",
    "onnx_cache_dir",
    "cache_key",
    "cache_entry_intact",
    "make_cache_dir",
    "seal_cache_entry",
    "file_sha256",
]

_ALIGN = 32
"""Tiles smaller than the tile size (a small raster) reach a Deepness graph padded to a multiple of this."""

CACHE_KEY = "aerialseg.cache_key"
"""ONNX metadata property of a cached graph: the key it was made for."""

_log = logging.getLogger(__name__)


def onnx_cache_dir() -> Path:
    """Where on-the-fly exports and int8 models are kept."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aerialseg" / "onnx"


@dataclass(frozen=True)
class CacheEntry:
    """A cached graph: where it lives, the key it must carry, and the card it must embed."""

    path: Path
    key: str
    card: ModelCard


def cache_key(**parts: object) -> str:
    """sha256 of the named parts (JSON, keys sorted) and the versions of every package that shapes a graph."""
    from .. import __version__

    versions = {name: _version(name) for name in ("torch", "onnx", "onnxscript")}
    text = json.dumps(parts | {"versions": versions, "aerialseg": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def make_cache_dir(folder: Path) -> None:
    """Create the cache folder, or say in one line that it cannot be."""
    make_folder(folder, "the ONNX cache folder", hint="set XDG_CACHE_HOME to a writable folder")


def seal_cache_entry(path: Path) -> None:
    """Record a freshly written entry's sha256 beside it (``sha256sum`` format)."""
    with atomic_output(_sidecar(path), overwrite=True) as tmp:
        tmp.write_text(f"{file_sha256(path)}  {path.name}\n")


def cache_entry_intact(entry: CacheEntry) -> bool:
    """Whether the entry's file exists and is the one made for its key and card; logs what is wrong."""
    if not entry.path.is_file():
        return False
    problem = None
    try:
        recorded = _sidecar(entry.path).read_text().split()[0]
        if file_sha256(entry.path) != recorded:
            problem = "its bytes do not match the sha256 recorded when it was written"
        else:
            metadata = onnx_metadata(entry.path)
            if metadata.get(CACHE_KEY) != entry.key:
                problem = "it was made for another key"
            elif card_from_metadata(metadata, None, entry.path) != entry.card:
                problem = "its model card differs from the weights'"
    except (OSError, IndexError):
        problem = "it has no recorded sha256"
    except WeightsError as exc:
        problem = exc.message
    if problem:
        _log.info("%s: cached graph not used (%s); making it again", entry.path, problem)
    return problem is None


def export_cache_entry(weights: str | os.PathLike[str], fp16: bool = False) -> CacheEntry:
    """The cache entry a weights file (name or path) exports to; its tensors are checked against its card."""
    from ..conventions import ONNX_OPSET
    from ..weights import resolve_weights, verified_card

    card = verified_card(resolve_weights(weights))
    key = cache_key(
        kind="export",
        tensors_sha256=card.sha256,
        card=card.to_json(),
        opset=ONNX_OPSET,
        static_size=None,
        precision="fp16" if fp16 else "fp32",
        output="probabilities",
    )
    name = f"{card.arch}-{card.backbone}-{key[:24]}{'-fp16' if fp16 else ''}.onnx"
    return CacheEntry(onnx_cache_dir() / name, key, card)


def cached_export(weights: str | os.PathLike[str], fp16: bool = False) -> Path:
    """The ONNX file of a weights file (fp16 graph with ``fp16``), exported (parity-gated) unless cached intact."""
    from ..export import export_onnx
    from ..weights import resolve_weights

    entry = export_cache_entry(weights, fp16)
    if not cache_entry_intact(entry):
        make_cache_dir(entry.path.parent)
        export_onnx(
            resolve_weights(weights), entry.path, fp16=fp16, overwrite=True, extra_metadata={CACHE_KEY: entry.key}
        )
        seal_cache_entry(entry.path)
    return entry.path


def _providers(device: str | None) -> list[str]:
    available = import_onnxruntime().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device in (None, "cuda") else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def _check_graph(inputs: list[object], outputs: list[object], card: ModelCard, path: Path) -> None:
    """Refuse a graph whose input or output is not (batch, channels, height, width) as its card says."""
    problems = []
    if len(inputs) != 4 or len(outputs) != 4:
        problems.append("its input and output are not (batch, channels, height, width)")
    else:
        if isinstance(inputs[1], int) and inputs[1] != len(card.bands):
            problems.append(f"it reads {inputs[1]} bands but its card lists {len(card.bands)}")
        if isinstance(outputs[1], int) and outputs[1] != card.num_classes:
            problems.append(f"it outputs {outputs[1]} classes but its card lists {card.num_classes}")
    if problems:
        raise WeightsError("graph does not fit its model card: " + "; ".join(problems), path=path)


class OnnxRunner:
    """Runs an ONNX graph: an aerialseg export, or a file of the Deepness/GeoDeep contract.

    An aerialseg export gives probabilities or logits, at fp32, fp16 or int8. A Deepness
    (:mod:`aerialseg.deepness`) graph reads pixels as they are, so this runner standardises them with the card's
    mean and std; a graph with a fixed batch size gets its tiles in batches of that size; a
    one-channel (sigmoid) output becomes its class's probability and the background's complement.
    """

    gate = None  # a runner that is already what it is; reduced precision is gated by the caller

    def __init__(self, path: Path, device: str | None = None) -> None:
        from ..deepness import GraphShapes, overlap_percent, overlap_pixels

        providers = _providers(device)
        try:
            self.session = open_session(path, providers)
        except Exception as exc:  # noqa: BLE001 (ONNX Runtime's errors derive from Exception alone)
            reason = printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise WeightsError(f"ONNX Runtime cannot load this graph ({reason})", path=path) from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shapes = GraphShapes(tuple(tuple(i.shape) for i in inputs), tuple(tuple(o.shape) for o in outputs))
        card = card_from_metadata(meta, shapes, path)
        self.precision = exported_precision(meta)
        self.logits = meta.get(OUTPUT_KEY) == "logits"
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.static_size = shape[2] if isinstance(shape[2], int) else None
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.standardise: tuple[np.ndarray, np.ndarray] | None = None
        if card.origin == "deepness":
            if inputs[0].type != "tensor(float)":
                raise WeightsError(f"its input is {inputs[0].type}; aerialseg feeds float32 tiles", path=path)
            self.standardise = (
                np.asarray(card.mean, np.float32).reshape(1, -1, 1, 1),
                np.asarray(card.std, np.float32).reshape(1, -1, 1, 1),
            )
            card = card.replace(sha256=file_sha256(path))  # what the provenance tags name
        else:
            _check_graph(shape, outputs[0].shape, card, path)
            if self.static_size:  # a --static-size export takes only that tile size, at the overlap it records
                overlap = overlap_percent(self.static_size, min(card.overlap, self.static_size // 4))
                card = card.replace(tile_size=self.static_size, overlap=overlap_pixels(self.static_size, overlap))
        self.card = card
        self.description = f"ONNX Runtime ({self.session.get_providers()[0]}), {self.precision}"

    def feeds(self, batch: np.ndarray) -> list[np.ndarray]:
        """The arrays the graph is fed for ``batch`` ``(N, bands, H, W)`` in [0, 1].

        Padded to a static size, standardised for a Deepness graph, in batches of its fixed size
        (the last filled up). int8 calibration feeds the graph through this too, so it sees what inference gives it.
        """
        count, _, height, width = batch.shape
        if self.static_size:
            if max(height, width) > self.static_size:
                raise AerialsegError(
                    f"this ONNX file takes tiles of {self.static_size} pixels, not {height} x {width}",
                    hint=f"pass --tile-size {self.static_size} or less, or export without --static-size",
                )
            padded = (self.static_size, self.static_size)
        elif self.standardise is not None:  # a foreign network may need sizes its downsampling divides
            padded = (-(-height // _ALIGN) * _ALIGN, -(-width // _ALIGN) * _ALIGN)
        else:
            padded = (height, width)
        if padded != (height, width):  # rasters smaller than a tile
            batch = np.pad(batch, ((0, 0), (0, 0), (0, padded[0] - height), (0, padded[1] - width)), mode="edge")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.standardise is not None:
            mean, std = self.standardise
            batch = (batch - mean) / std
        step = self.batch or count
        parts = [batch[start : start + step] for start in range(0, count, step)]
        if len(parts[-1]) < step:  # a graph of fixed batch size: fill the last batch
            parts[-1] = np.concatenate([parts[-1], np.repeat(parts[-1][-1:], step - len(parts[-1]), axis=0)])
        return parts

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, bands, H, W)`` in [0, 1] -> ``(N, K, H, W)`` float32 probabilities."""
        count, _, height, width = batch.shape
        feeds = self.feeds(batch)
        try:
            out = np.concatenate([self.session.run(None, {self.input_name: feed})[0] for feed in feeds])[:count]
        except Exception as exc:  # noqa: BLE001 (ONNX Runtime's errors derive from Exception alone)
            reason = printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise AerialsegError(
                f"ONNX Runtime failed on a {list(feeds[0].shape)} batch ({reason[:300]})",
                hint="try another --tile-size (the network may need a multiple of its downsampling)",
            ) from exc
        channels = 1 if self.card.binary else self.card.num_classes
        if out.ndim != 4 or out.shape[2:] != feeds[0].shape[2:] or out.shape[1] != channels:
            raise AerialsegError(
                f"the ONNX graph returned {list(out.shape)} for a {list(feeds[0].shape)} batch; "
                f"aerialseg needs (batch, {channels} classes, height, width) at the input's size"
            )
        out = out[:, :, :height, :width].astype(np.float32, copy=False)
        if self.logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        elif self.card.binary:
            probability = np.clip(out[:, :1], 0.0, 1.0)
            out = np.concatenate([1.0 - probability, probability], axis=1)
        return out
