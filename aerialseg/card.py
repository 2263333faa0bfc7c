"""ModelCard: what a weights file says about itself.

A card travels inside every weights file (safetensors metadata) and every exported ONNX
file (``metadata_props``). It holds what inference needs to use a network correctly —
which bands in which order, the ground sampling distance it was trained at, how pixels
are normalised, the classes with their colours, default tiling — and what a reader needs
to trust it: training data, measured metrics, the aerialseg version, and the sha256 of
the tensors. Torch-free, so the command line can list weights without loading torch.

:func:`read_card` is the one reader of both containers: every caller (weights loading,
the runners, ``doctor``, the command line) gets the same errors for a missing or damaged card.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from .conventions import CARD_KEY, PRECISION_KEY
from .errors import WeightsError

__all__ = [
    "ClassInfo",
    "ModelCard",
    "BAND_NAMES",
    "CARD_SCHEMA",
    "read_card",
    "card_from_metadata",
    "onnx_metadata",
    "exported_precision",
]

CARD_SCHEMA = 1
_MAX_SAFETENSORS_HEADER = 100_000_000
_EXPORT_HINT = "export it with 'aerialseg export'"

BAND_NAMES = {
    "R": "red",
    "G": "green",
    "B": "blue",
    "NIR": "near infrared",
    "PAN": "panchromatic",
    "DSM": "digital surface model",
}


@dataclass(frozen=True)
class ClassInfo:
    """One output class: its name, display colour, and whether mean F1/mIoU count it."""

    name: str
    color: tuple[int, int, int]
    in_mean: bool = True


@dataclass(frozen=True)
class ModelCard:
    """Self-description of a trained network (see the module docstring).

    ``bands`` are codes from :data:`BAND_NAMES` in the order the network reads them
    (Vaihingen: ``("NIR", "R", "G")``). Input pixels are divided by ``pixel_max`` and then
    standardised with ``mean``/``std`` (one value per band). ``gsd_m`` is the training
    ground sampling distance in metres (None: unknown, no resampling). ``tile_size`` and
    ``overlap`` are the inference defaults in pixels.
    """

    arch: str
    backbone: str
    classes: tuple[ClassInfo, ...]
    bands: tuple[str, ...] = ("R", "G", "B")
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    pixel_max: float = 255.0
    gsd_m: float | None = None
    tile_size: int = 1024
    overlap: int = 128
    dataset: str | None = None
    training: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    aerialseg_version: str = ""
    sha256: str = ""
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise WeightsError("invalid model card: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        """Number of output classes K."""
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """Class names in class-id order."""
        return [c.name for c in self.classes]

    def problems(self) -> list[str]:
        """Everything inconsistent in the card, as sentences (empty when valid)."""
        found = []
        if not self.classes:
            found.append("no classes")
        if len({c.name for c in self.classes}) != len(self.classes):
            found.append("class names repeat")
        for c in self.classes:
            if len(c.color) != 3 or not all(0 <= v <= 255 for v in c.color):
                found.append(f"class {c.name!r} colour {c.color} is not RGB 0-255")
        if not self.bands:
            found.append("no bands")
        unknown = [b for b in self.bands if b not in BAND_NAMES]
        if unknown:
            found.append(f"unknown band codes {unknown} (known: {', '.join(BAND_NAMES)})")
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            found.append(f"mean/std need one value per band ({len(self.bands)})")
        if any(s <= 0 for s in self.std) or self.pixel_max <= 0:
            found.append("std and pixel_max must be positive")
        if self.gsd_m is not None and self.gsd_m <= 0:
            found.append("gsd_m must be positive")
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            found.append("need tile_size >= 1 and 0 <= overlap < tile_size")
        return found

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        data = asdict(self)
        data["classes"] = [asdict(c) | {"color": list(c.color)} for c in self.classes]
        return data

    def to_json(self) -> str:
        """Compact, key-sorted JSON (stable bytes for the same card)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build from a dict as written by :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise WeightsError("model card is not a JSON object")
        if data.get("schema", CARD_SCHEMA) > CARD_SCHEMA:
            raise WeightsError(
                f"model card schema {data['schema']} is newer than this aerialseg understands",
                hint="upgrade aerialseg",
            )
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known)
        if extra:
            raise WeightsError(f"model card has unknown fields {extra}")
        try:
            classes = tuple(
                ClassInfo(c["name"], _color(c["color"]), bool(c.get("in_mean", True))) for c in data["classes"]
            )
            fields = dict(data, classes=classes)
            for key in ("bands", "mean", "std"):
                if key in fields:
                    fields[key] = tuple(fields[key])
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, WeightsError):
                raise
            raise WeightsError(f"model card is malformed ({exc})") from exc

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WeightsError(f"model card is not valid JSON ({exc})") from exc
        return cls.from_dict(data)


def _color(values: list[int]) -> tuple[int, int, int]:
    """A colour as read from JSON; one of another length is reported by :meth:`ModelCard.problems`."""
    return cast("tuple[int, int, int]", tuple(int(v) for v in values))


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of a safetensors weights file or of an exported ``.onnx`` file, without tensors or torch."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return card_from_metadata(onnx_metadata(path), path)
    text = _safetensors_metadata(path).get(CARD_KEY)
    if text is None:
        raise WeightsError(
            "has no aerialseg model card",
            path=path,
            hint="convert foreign checkpoints with 'aerialseg weights import'",
        )
    return _parse(text, path)


def card_from_metadata(metadata: Mapping[str, str], path: str | os.PathLike[str]) -> ModelCard:
    """The card in an exported graph's metadata (``metadata_props``, or ONNX Runtime's custom metadata map).

    ONNX Runtime hands its session's metadata over directly, so a runner does not parse the file twice.
    """
    text = metadata.get(CARD_KEY)
    if text is None:
        raise WeightsError("ONNX file has no aerialseg model card", path=path, hint=_EXPORT_HINT)
    return _parse(text, path)


def exported_precision(metadata: Mapping[str, str]) -> str:
    """The precision an exported graph was written at; files exported before it was recorded are fp32."""
    return metadata.get(PRECISION_KEY, "fp32")


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (its graph is parsed, external tensor data is not loaded)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 (protobuf and onnx raise several types)
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        raise WeightsError(f"not a readable ONNX file ({reason})", path=path, hint=_EXPORT_HINT) from exc
    return {prop.key: prop.value for prop in graph.metadata_props}


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header: plain JSON behind an 8-byte little-endian length."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise WeightsError("not a safetensors file (too short)", path=path)
            (size,) = struct.unpack("<Q", raw)
            if size > _MAX_SAFETENSORS_HEADER:
                raise WeightsError("not a safetensors file (header size implausible)", path=path)
            header = json.loads(fh.read(size))
    except OSError as exc:
        raise WeightsError(f"cannot read ({exc.strerror or exc})", path=path) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError("not a safetensors file (header is not JSON)", path=path) from exc
    return header.get("__metadata__") or {}


def _parse(text: str, path: str | os.PathLike[str]) -> ModelCard:
    """A card from its JSON, its errors naming the file it came from."""
    try:
        return ModelCard.from_json(text)
    except WeightsError as exc:
        raise WeightsError(exc.message, path=path, hint=exc.hint) from exc
