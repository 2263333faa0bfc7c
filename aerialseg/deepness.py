"""Models from the QGIS Deepness / GeoDeep ecosystem: their ONNX metadata read as a model card.

GIS users hold trained segmentation networks as ONNX files whose ``metadata_props`` follow a
small contract (JSON-encoded values): ``model_type``, ``class_names``, ``resolution`` (cm per
pixel), ``tile_size`` (or ``tiles_size``), ``tiles_overlap`` (percent of the tile),
``standardization_mean``/``_std``, ``seg_thresh`` and ``seg_small_segment``. This module turns
such a file into a :class:`~aerialseg.card.ModelCard` (``origin="deepness"``), so the whole
pipeline runs it as it runs aerialseg's own exports. The rules, where the two tools differ
(see the README, "Models from Deepness and GeoDeep"):

- ``model_type`` must be ``Segmentor`` (any capitalisation, as Deepness reads it).
- Classes come from ``class_names`` (a JSON object id -> name, or the Python-literal form
  Deepness also accepts; a list holding one such object). A one-channel output is the
  probability of its one named class, with ``background`` as class 0 (a ``binary`` card).
  Colours are generated (:func:`aerialseg.data.classes.named_classes`).
- ``seg_thresh``: scores below it count as 0 before the argmax (absent: 0.5; 0: off).
- ``resolution`` is the model's GSD (absent: none, predicted at the input's own, with a warning).
- Tile size: the graph's static input size, else ``tile_size``/``tiles_size``, else 512;
  overlap: ``tiles_overlap`` percent of the tile (absent: 15, Deepness's default).
- Input: the graph reads NCHW float32, 8-bit pixels / 255, standardised by the runner with
  ``standardization_mean``/``_std`` (absent: 0 and 1). 1, 3 or 4 channels: PAN; R, G, B;
  R, G, B, NIR.

Everything else is one :class:`~aerialseg.errors.WeightsError` line naming what was found.
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .card import ModelCard
from .conventions import CARD_KEY, NODATA_CLASS
from .errors import WeightsError
from .jsondata import shown

__all__ = [
    "GraphShapes",
    "is_deepness",
    "deepness_card",
    "overlap_pixels",
    "overlap_percent",
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP_PERCENT",
]

DEFAULT_TILE = 512
DEFAULT_OVERLAP_PERCENT = 15
"""Deepness's default overlap; GeoDeep's is 5 %."""
DEFAULT_THRESHOLD = 0.5
"""Both tools' default ``seg_thresh``."""
_BANDS = {1: ("PAN",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "NIR")}
_CONTRACT_KEYS = ("model_type", "class_names", "names")

Dim = int | str | None


@dataclass(frozen=True)
class GraphShapes:
    """The shapes of a graph's inputs and outputs, one tuple each; a dimension is an int when fixed."""

    inputs: tuple[tuple[Dim, ...], ...]
    outputs: tuple[tuple[Dim, ...], ...]


def overlap_pixels(tile: int, percent: float) -> int:
    """The overlap in pixels of ``percent`` of a tile (below the tile)."""
    return min(round(tile * percent / 100), tile - 1)


def overlap_percent(tile: int, overlap: int) -> int:
    """The whole percentage the contract records for an overlap (Deepness reads an integer)."""
    return round(100 * overlap / tile)


def is_deepness(metadata: Mapping[str, str]) -> bool:
    """Whether an ONNX file's metadata follows the Deepness contract rather than carrying an aerialseg card."""
    return CARD_KEY not in metadata and any(key in metadata for key in _CONTRACT_KEYS)


def deepness_card(metadata: Mapping[str, str], shapes: GraphShapes, path: str | os.PathLike[str]) -> ModelCard:
    """The card a Deepness-contract file's metadata and graph say (see the module docstring)."""
    from .data.classes import named_classes

    def fail(message: str, hint: str | None = None) -> WeightsError:
        return WeightsError(message, path=path, hint=hint)

    kind = _value(metadata, "model_type", path, str)
    if kind is None:
        raise fail("Deepness metadata without model_type", hint='set model_type to "Segmentor" in its metadata')
    if kind.capitalize() != "Segmentor":
        raise fail(
            f"is a Deepness {shown(kind)} model; aerialseg runs segmentation models (model_type Segmentor)",
            hint="run detectors and regressors in Deepness or GeoDeep",
        )
    channels, height, width, outputs = _graph(shapes, path)
    names = _class_names(metadata, path)
    binary = outputs == 1
    if binary and len(names) == 1:
        names = ["background", *names]
    expected = 2 if binary else outputs
    if isinstance(outputs, int) and len(names) != expected:
        said = "one channel (one name, or background and one)" if binary else f"{outputs} channels"
        raise fail(f"class_names lists {len(names)} classes but its output has {said}")
    if len(names) >= NODATA_CLASS:
        raise fail(f"{len(names)} classes; a class raster holds at most {NODATA_CLASS - 1}")
    if channels not in _BANDS:
        raise fail(f"reads {channels} channels; aerialseg maps 1 (PAN), 3 (R, G, B) or 4 (R, G, B, NIR) bands")
    if isinstance(height, int) and height != width:
        raise fail(f"takes {height} x {width} tiles; aerialseg's tiles are square")
    tile = height if isinstance(height, int) else _value(metadata, "tile_size", path, int)
    tile = tile or _value(metadata, "tiles_size", path, int) or DEFAULT_TILE
    percent = _value(metadata, "tiles_overlap", path, float)
    percent = DEFAULT_OVERLAP_PERCENT if percent is None else percent
    if not 0 <= percent < 100:
        raise fail(f"tiles_overlap {percent:g} is not a percentage from 0 to 99")
    mean = _vector(metadata, "standardization_mean", channels, 0.0, path)
    std = _vector(metadata, "standardization_std", channels, 1.0, path)
    resolution = _value(metadata, "resolution", path, float)
    if resolution is not None and not (math.isfinite(resolution) and resolution > 0):
        raise fail(f"resolution {resolution:g} cm/px is not a positive number")
    threshold = _value(metadata, "seg_thresh", path, float)
    min_segment = _value(metadata, "seg_small_segment", path, int)
    try:
        return ModelCard(
            arch="deepness",
            backbone="onnx",
            classes=named_classes(names),
            bands=_BANDS[channels],
            mean=mean,
            std=std,
            gsd_m=None if resolution is None else resolution / 100,
            tile_size=tile,
            overlap=overlap_pixels(tile, percent),
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            binary=binary,
            min_segment=max(min_segment or 0, 0),
            source="Deepness/GeoDeep ONNX metadata (no aerialseg card)",
            origin="deepness",
        )
    except WeightsError as exc:
        raise fail(exc.message.replace("model card", "Deepness metadata")) from exc


def _graph(shapes: GraphShapes, path: str | os.PathLike[str]) -> tuple[Dim, Dim, Dim, Dim]:
    """Input channels, height, width and output channels of a one-input, one-output NCHW graph."""
    found = f"inputs {_shapes(shapes.inputs)}, outputs {_shapes(shapes.outputs)}"
    if len(shapes.inputs) != 1 or len(shapes.inputs[0]) != 4:
        raise WeightsError(f"needs one (batch, channels, height, width) input; the graph has {found}", path=path)
    if len(shapes.outputs) != 1:
        raise WeightsError(f"has several output heads; aerialseg reads one ({found})", path=path)
    if len(shapes.outputs[0]) != 4:
        raise WeightsError(f"needs one (batch, classes, height, width) output; the graph has {found}", path=path)
    _, channels, height, width = shapes.inputs[0]
    if not isinstance(channels, int):
        raise WeightsError(f"its input's channel count is not fixed ({found})", path=path)
    out_size = shapes.outputs[0][2:]
    if all(isinstance(d, int) for d in (height, width, *out_size)) and tuple(out_size) != (height, width):
        raise WeightsError(f"its output is not at its input's size; aerialseg needs it so ({found})", path=path)
    return channels, height, width, shapes.outputs[0][1]


def _shapes(shapes: Sequence[tuple[Dim, ...]]) -> str:
    return ", ".join("[" + ", ".join("?" if d is None else str(d) for d in shape) + "]" for shape in shapes) or "none"


def _decoded(metadata: Mapping[str, str], key: str) -> Any:  # noqa: ANN401 (JSON of any type)
    """A metadata value as JSON, or the bare text when it is not JSON (``model_type=Segmentor``)."""
    text = metadata[key]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _value(metadata: Mapping[str, str], key: str, path: str | os.PathLike[str], kind: type) -> Any:  # noqa: ANN401
    """A scalar metadata value of ``kind`` (str, int or float), None when absent; refused in words when malformed."""
    if key not in metadata:
        return None
    value = _decoded(metadata, key)
    if isinstance(value, str) and kind is not str:
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is str and isinstance(value, str):
        return value
    if kind in (int, float) and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return kind(value)
    raise WeightsError(f"Deepness metadata {key} is {shown(metadata[key])}, not {_KINDS[kind]}", path=path)


_KINDS = {str: "a string", int: "a number", float: "a number"}


def _vector(
    metadata: Mapping[str, str], key: str, channels: int, default: float, path: str | os.PathLike[str]
) -> tuple[float, ...]:
    """One finite number per input channel (``default`` for each when absent)."""
    if key not in metadata:
        return (default,) * channels
    value = _decoded(metadata, key)
    numbers = value if isinstance(value, list) else None
    if (
        numbers is None
        or len(numbers) != channels
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)
    ):
        raise WeightsError(
            f"Deepness metadata {key} is {shown(metadata[key])}, not a list of {channels} numbers (one per channel)",
            path=path,
        )
    return tuple(float(v) for v in numbers)


def _class_names(metadata: Mapping[str, str], path: str | os.PathLike[str]) -> list[str]:
    """The class names in id order, from ``class_names`` (or ``names``): ids 0 .. n-1, each once."""
    key = "class_names" if "class_names" in metadata else "names" if "names" in metadata else None
    if key is None:
        raise WeightsError("Deepness metadata without class_names", path=path, hint='add {"0": "name", ...}')
    text = metadata[key]
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)  # Deepness also reads Python literals ({0: 'road'})
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]  # one dict per output head; one head
    if isinstance(value, list) and len(value) > 1 and all(isinstance(v, dict) for v in value):
        raise WeightsError(f"{key} names classes for {len(value)} output heads; aerialseg reads one", path=path)
    ids: dict[int, str] = {}
    if isinstance(value, dict) and all(isinstance(name, str) for name in value.values()):
        for raw, name in value.items():
            try:
                ids[int(raw)] = name
            except (TypeError, ValueError):
                ids = {}
                break
    if not ids or sorted(ids) != list(range(len(value))):
        raise WeightsError(
            f"Deepness metadata {key} is {shown(text)}, not an object of class ids 0 .. n-1 to names",
            path=path,
            hint='write it as {"0": "background", "1": "building"}',
        )
    return [ids[i] for i in range(len(ids))]
