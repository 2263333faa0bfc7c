"""ModelCard: what a weights file says about itself.

A card travels inside every weights file (safetensors metadata) and every exported ONNX
file (``metadata_props``). It holds what inference needs to use a network correctly —
which bands in which order, the ground sampling distance it was trained at, how pixels
are normalised, the classes with their colours, default tiling — and what a reader needs
to trust it: training data, measured metrics, the aerialseg version, and the sha256 of
the tensors. Torch-free, so the command line can list weights without loading torch.

:func:`read_card` is the one reader of both containers: every caller (weights loading,
the runners, ``doctor``, the command line) gets the same errors for a missing or damaged card.
Files are untrusted input: only regular files are opened (:func:`refuse_special_file`: a named
pipe would block the reader forever), their JSON is parsed with bounded nesting
(:func:`aerialseg.jsondata.parse_json`), the safetensors header is checked entry by entry, every
card field for its JSON type, the pixel arithmetic for what float32 can do, class and band
counts against the tensors' shapes, and text for control characters, so a bad file is one
:class:`WeightsError` line and never a traceback, nor escape codes on the reader's terminal
(:func:`printable` makes what is echoed safe).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .conventions import CARD_KEY, PRECISION_KEY
from .errors import WeightsError
from .jsondata import Check, JsonProblem, fields_problem, is_int, is_number, is_text, list_of, parse_json, shown

if TYPE_CHECKING:
    from .deepness import GraphShapes

__all__ = [
    "ClassInfo",
    "ModelCard",
    "BAND_NAMES",
    "CARD_SCHEMA",
    "TensorEntry",
    "SafetensorsHeader",
    "read_card",
    "read_safetensors_header",
    "refuse_special_file",
    "CLASS_FORM",
    "class_from_json",
    "fit_problems",
    "printable",
    "card_from_metadata",
    "onnx_metadata",
    "onnx_graph",
    "exported_precision",
    "scale_problem",
]

CARD_SCHEMA = 1
ORIGINS = ("aerialseg", "deepness")
"""Who wrote a card: aerialseg, or a Deepness/GeoDeep ONNX file's metadata read as one."""
_MAX_SAFETENSORS_HEADER = 100_000_000
_EXPORT_HINT = "export it with 'aerialseg export'"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHA256 = re.compile(r"[0-9a-f]{64}")

BAND_NAMES = {
    "R": "red",
    "G": "green",
    "B": "blue",
    "NIR": "near infrared",
    "PAN": "panchromatic",
    "DSM": "digital surface model",
}

# Bytes per element of the safetensors dtype codes, and their torch names (which the tensors' sha256 hashes).
SAFETENSORS_DTYPES = {
    "BOOL": (1, "bool"),
    "U8": (1, "uint8"),
    "I8": (1, "int8"),
    "F8_E5M2": (1, "float8_e5m2"),
    "F8_E4M3": (1, "float8_e4m3fn"),
    "I16": (2, "int16"),
    "U16": (2, "uint16"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "I32": (4, "int32"),
    "U32": (4, "uint32"),
    "F32": (4, "float32"),
    "I64": (8, "int64"),
    "U64": (8, "uint64"),
    "F64": (8, "float64"),
}

# The tensors whose shapes say what a card says: the first convolution reads the bands, the
# classifier writes the classes (ABCNet's writes an 8 x 8 sub-pixel block, 64 channels, per class).
_FIRST_CONVOLUTIONS = ("backbone.conv1.weight", "cp.resnet.conv1.weight")
_CLASSIFIERS = {"finalconv3.weight": 1, "conv_out.conv_out.weight": 64}


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

    The class of a pixel is the argmax of its blended probabilities, where those below
    ``threshold`` count as 0 (0: off; a pixel where no class reaches it is class 0). A
    ``binary`` network writes one channel, the probability of ``classes[1]``; ``classes[0]``
    is its complement, and a pixel is ``classes[1]`` where that probability reaches the
    threshold (0.5 when off). ``min_segment``: the default smallest object, in model pixels,
    that vectorizing keeps (0: the class's own default). ``origin``: ``aerialseg`` for a card
    aerialseg wrote; ``deepness`` for one read from a Deepness/GeoDeep ONNX file's metadata
    (:mod:`aerialseg.deepness`): its graph does not standardise, so the runner does, and
    pixels of types other than 8-bit need an explicit ``--scale``.
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
    threshold: float = 0.0
    binary: bool = False
    min_segment: int = 0
    origin: str = "aerialseg"
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
    def network(self) -> str:
        """What runs, as people name it: ``manet-resnet50``; ``ONNX network (Deepness metadata)``."""
        return "ONNX network (Deepness metadata)" if self.origin == "deepness" else f"{self.arch}-{self.backbone}"

    @property
    def class_names(self) -> list[str]:
        """Class names in class-id order."""
        return [c.name for c in self.classes]

    def problems(self) -> list[str]:
        """Everything inconsistent in the card, as sentences (empty when valid); echoed text is escaped."""
        found = []
        if not self.arch or not self.backbone:
            found.append("arch and backbone must be named")
        if not self.classes:
            found.append("no classes")
        if len({c.name for c in self.classes}) != len(self.classes):
            found.append("class names repeat")
        unfit = list(dict.fromkeys(c.name for c in self.classes if not c.name.strip() or _CONTROL.search(c.name)))
        if unfit:
            found.append(f"class names {shown(unfit)} are empty or hold control characters")
        odd = [c for c in self.classes if len(c.color) != 3 or not all(0 <= v <= 255 for v in c.color)]
        if odd:  # the first, shortened: a file may hold thousands
            more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
            found.append(f"class {shown(odd[0].name)} colour {shown(list(odd[0].color))} is not RGB 0-255{more}")
        if not self.bands:
            found.append("no bands")
        unknown = [b for b in self.bands if b not in BAND_NAMES]
        if unknown:
            found.append(f"unknown band codes {shown(unknown)} (known: {', '.join(BAND_NAMES)})")
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            found.append(f"mean/std need one value per band ({len(self.bands)})")
        if self.gsd_m is not None and not (math.isfinite(self.gsd_m) and self.gsd_m > 0):
            found.append("gsd_m must be a positive, finite number")
        found += self._scaling_problems()
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            found.append("need tile_size >= 1 and 0 <= overlap < tile_size")
        if not (math.isfinite(self.threshold) and 0 <= self.threshold <= 1):
            found.append("threshold must be a number from 0 to 1")
        if self.binary and len(self.classes) != 2:
            found.append("a binary (one-channel) network has exactly two classes, background and its own")
        if self.min_segment < 0:
            found.append("min_segment must be 0 or more pixels")
        if self.origin not in ORIGINS:
            found.append(f"origin must be one of {', '.join(ORIGINS)}")
        if self.sha256 and not _SHA256.fullmatch(self.sha256):
            found.append("sha256 is not 64 lowercase hexadecimal digits")
        texts = ("arch", "backbone", "bands", "dataset", "training", "source", "aerialseg_version", "metrics")
        found += [f"{name} holds control characters" for name in texts if _holds_control(getattr(self, name))]
        return found

    def _scaling_problems(self) -> list[str]:
        """Why the card's pixel arithmetic, ``(pixels / pixel_max - mean) / std`` in float32, would be meaningless.

        A divisor float32 cannot hold (1e-45, 1e50) becomes 0 or inf there, and a mean beyond
        float32's range inf: every pixel would become NaN or the same value, one class all over
        the map. The divisors get the check ``--scale`` gets (:func:`scale_problem`).
        """
        divisors = [("pixel_max", self.pixel_max), *(("std", value) for value in self.std)]
        found = [f"{name} {problem}" for name, value in divisors if (problem := scale_problem(value))][:2]
        if not all(_float32(value) for value in self.mean):
            found.append(f"mean {shown(list(self.mean))} must be finite numbers float32 can hold")
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
        """Build from a dict as written by :meth:`to_dict`: every field of its JSON type, none unknown."""
        if not isinstance(data, dict):
            raise WeightsError("model card is not a JSON object")
        schema = data.get("schema", CARD_SCHEMA)
        if is_int(schema) and schema > CARD_SCHEMA:
            raise WeightsError(
                f"model card schema {schema} is newer than this aerialseg understands", hint="upgrade aerialseg"
            )
        problem = fields_problem(data, _FIELD_TYPES, cls)
        if problem:
            raise WeightsError(f"model card {problem}")
        classes = tuple(_class_info(index, entry) for index, entry in enumerate(data["classes"]))
        values = dict(data, classes=classes)
        for key in ("bands", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse :meth:`to_json` output."""
        try:
            data = parse_json(text)
        except JsonProblem as exc:
            raise WeightsError(f"model card is not valid JSON ({exc})") from exc
        return cls.from_dict(data)


# Each card field's JSON type, as said in errors, and its test (classes' entries are checked by _class_info).
_FIELD_TYPES: dict[str, tuple[str, Check]] = {
    "arch": ("a string", is_text),
    "backbone": ("a string", is_text),
    "classes": ("a list of classes", lambda value: isinstance(value, list)),
    "bands": ("a list of band codes", list_of(is_text)),
    "mean": ("a list of finite numbers", list_of(is_number)),
    "std": ("a list of finite numbers", list_of(is_number)),
    "pixel_max": ("a finite number", is_number),
    "gsd_m": ("a finite number or null", lambda value: value is None or is_number(value)),
    "tile_size": ("an integer", is_int),
    "overlap": ("an integer", is_int),
    "dataset": ("a string or null", lambda value: value is None or is_text(value)),
    "training": ("a string", is_text),
    "metrics": ("an object", lambda value: isinstance(value, dict)),
    "source": ("a string", is_text),
    "aerialseg_version": ("a string", is_text),
    "sha256": ("a string", is_text),
    "threshold": ("a finite number", is_number),
    "binary": ("true or false", lambda value: isinstance(value, bool)),
    "min_segment": ("an integer", is_int),
    "origin": ("a string", is_text),
    "schema": ("an integer", is_int),
}


CLASS_FORM = '{"name": text, "color": [r, g, b], "in_mean": true or false}'
"""A class as JSON holds it (cards, manifests), as errors describe it."""


def class_from_json(entry: object) -> ClassInfo | None:
    """One class as read from JSON (see :data:`CLASS_FORM`), or None when ``entry`` has another form.

    Cards and prepared datasets' manifests share the form; a colour of another length is
    reported by :meth:`ModelCard.problems`.
    """
    if (
        not isinstance(entry, dict)
        or not set(entry) >= {"name", "color"}
        or not set(entry) <= {"name", "color", "in_mean"}
        or not is_text(entry["name"])
        or not list_of(is_int)(entry["color"])
        or not isinstance(entry.get("in_mean", True), bool)
    ):
        return None
    return ClassInfo(entry["name"], cast("tuple[int, int, int]", tuple(entry["color"])), entry.get("in_mean", True))


def _class_info(index: int, entry: object) -> ClassInfo:
    """One class of a card's JSON, refused in words when it has another form."""
    info = class_from_json(entry)
    if info is None:
        raise WeightsError(f"model card classes[{index}] must be {CLASS_FORM}, not {shown(entry)}")
    return info


_FLOAT32_TINY, _FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38
"""The smallest normal and the largest float32: a divisor beyond them becomes 0 or inf."""


def scale_problem(scale: float) -> str | None:
    """Why ``scale`` cannot divide the pixels, or None: it must be a positive float32 number.

    ``nan`` and ``inf`` make every pixel the same; a divisor beyond float32 (1e-50, 1e50)
    becomes 0 or inf in the float32 arithmetic and gives NaN or 0 pixels, a meaningless map.
    """
    if not (math.isfinite(scale) and scale > 0):
        return f"{scale:g} is not a positive number"
    if not _FLOAT32_TINY <= scale <= _FLOAT32_MAX:
        return f"{scale:g} is outside the 32-bit range of a divisor ({_FLOAT32_TINY:.3g} to {_FLOAT32_MAX:.3g})"
    return None


def _float32(value: float) -> bool:
    """Whether ``value`` is finite as a float32 (beyond its range it would become inf)."""
    try:
        return math.isfinite(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return False


def _holds_control(value: object) -> bool:
    """Whether a string, or any key or string inside lists and objects, holds a control character."""
    if isinstance(value, str):
        return _CONTROL.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_control(k) or _holds_control(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_control(v) for v in value)
    return False


def printable(text: str) -> str:
    r"""``text`` with every non-printable character escaped (``\x1b``), safe to echo on a terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def fit_problems(card: ModelCard, shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """What the card says that its tensors' shapes contradict: the class count, the band count.

    Only the tensors of the networks aerialseg builds are looked at; others are left to loading.
    """
    found = []
    for name, per_class in _CLASSIFIERS.items():
        shape = shapes.get(name)
        if shape and shape[0] != card.num_classes * per_class:
            written = f"{shape[0]} output channels" + (f" ({shape[0] / per_class:g} classes)" if per_class > 1 else "")
            found.append(f"the card lists {card.num_classes} classes but {name} has {written}")
    for name in _FIRST_CONVOLUTIONS:
        shape = shapes.get(name)
        if shape and len(shape) > 1 and shape[1] != len(card.bands):
            found.append(f"the card lists {len(card.bands)} bands but {name} reads {shape[1]}")
    return found


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header places it: dtype code, shape, byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked safetensors header: the metadata, the tensors, and where their data section starts."""

    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]
    data_start: int


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of a safetensors weights file or of an exported ``.onnx`` file, without tensors or torch.

    A weights file's card is checked against its tensors' shapes too (see :func:`fit_problems`).
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return card_from_metadata(*onnx_graph(path), path)
    header = read_safetensors_header(path)
    text = header.metadata.get(CARD_KEY)
    if text is None:
        raise WeightsError(
            "has no aerialseg model card",
            path=path,
            hint="convert foreign checkpoints with 'aerialseg weights import'",
        )
    card = _parse(text, path)
    problems = fit_problems(card, {name: entry.shape for name, entry in header.tensors.items()})
    if problems:
        raise WeightsError("model card does not fit the tensors: " + "; ".join(problems), path=path)
    return card


def card_from_metadata(
    metadata: Mapping[str, str], shapes: GraphShapes | None, path: str | os.PathLike[str]
) -> ModelCard:
    """The card of an ONNX graph from its metadata (``metadata_props``, or ONNX Runtime's custom metadata map).

    An aerialseg export carries its card; a file of the Deepness/GeoDeep contract gets one read
    from its metadata and its graph's ``shapes`` (:mod:`aerialseg.deepness`; read from the file
    when None). ONNX Runtime hands its session's metadata and shapes over directly, so a runner
    does not parse the file twice.
    """
    text = metadata.get(CARD_KEY)
    if text is not None:
        return _parse(text, path)
    from .deepness import deepness_card, is_deepness

    if not is_deepness(metadata):
        raise WeightsError(
            "ONNX file has neither an aerialseg model card nor Deepness metadata (model_type, class_names)",
            path=path,
            hint=_EXPORT_HINT + ", or add the Deepness metadata keys",
        )
    return deepness_card(metadata, shapes or onnx_graph(path)[1], path)


def exported_precision(metadata: Mapping[str, str]) -> str:
    """The precision an exported graph was written at; files exported before it was recorded are fp32."""
    return metadata.get(PRECISION_KEY, "fp32")


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (its graph is parsed, external tensor data is not loaded)."""
    return onnx_graph(path)[0]


def onnx_graph(path: str | os.PathLike[str]) -> tuple[dict[str, str], GraphShapes]:
    """The ``metadata_props`` of an ONNX file and the shapes of its graph's inputs and outputs.

    Initializers that old exporters also list as inputs are not inputs; a dimension is its
    number when fixed, else its symbolic name (or None).
    """
    import onnx

    from .deepness import GraphShapes

    refuse_special_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 (protobuf and onnx raise several types)
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        raise WeightsError(f"not a readable ONNX file ({printable(reason)})", path=path, hint=_EXPORT_HINT) from exc
    weights = {tensor.name for tensor in model.graph.initializer}

    def shape(value: Any) -> tuple[int | str | None, ...]:  # noqa: ANN401 (an onnx ValueInfoProto)
        dims = value.type.tensor_type.shape.dim
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)

    inputs = tuple(shape(v) for v in model.graph.input if v.name not in weights)
    shapes = GraphShapes(inputs, tuple(shape(v) for v in model.graph.output))
    return {prop.key: prop.value for prop in model.metadata_props}, shapes


def refuse_special_file(path: str | os.PathLike[str]) -> None:
    """Refuse a path that exists but is no regular file, before anything opens it as weights.

    Opening a named pipe waits for a writer (``aerialseg models`` and every lookup by name
    would hang on one in a weights folder) and a device never ends. A path that cannot be
    looked at is left to the reader, whose error says why.
    """
    from .atomic import special_kind

    kind = "a folder" if os.path.isdir(path) else special_kind(path)
    if kind is not None:
        raise WeightsError(
            f"is {kind}, not a weights file",
            path=path,
            hint="give a weights file (.safetensors) or an exported .onnx file",
        )


def read_safetensors_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """A safetensors file's header, every entry checked: plain JSON behind an 8-byte little-endian length.

    The tensors must tile the data section exactly (no gap, no overlap, nothing missing at the end),
    each as many bytes as its dtype and shape say, so a truncated file is caught without reading it.
    """
    path = Path(path)
    refuse_special_file(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise WeightsError("not a safetensors file (too short)", path=path)
            (size,) = struct.unpack("<Q", raw)
            if size > _MAX_SAFETENSORS_HEADER:
                raise WeightsError("not a safetensors file (header size implausible)", path=path)
            text = fh.read(size)
            file_size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise WeightsError(f"cannot read ({printable(exc.strerror or str(exc))})", path=path) from exc
    if len(text) != size:
        raise WeightsError("not a safetensors file (header cut short)", path=path)
    try:
        header = parse_json(text)
    except JsonProblem as exc:
        raise WeightsError("not a safetensors file (header is not JSON)", path=path) from exc
    if not isinstance(header, dict):
        raise WeightsError("not a safetensors file (header is not a JSON object)", path=path)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(is_text(k) and is_text(v) for k, v in metadata.items()):
        raise WeightsError("damaged safetensors header (__metadata__ is not an object of strings)", path=path)
    tensors = {name: _tensor_entry(name, entry, path) for name, entry in header.items()}
    data_start = 8 + size
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: item[1].begin):
        if entry.begin != position:
            raise WeightsError(f"damaged safetensors header (tensor {shown(name)} overlaps or leaves a gap)", path=path)
        position = entry.end
    if data_start + position != file_size:
        state = "truncated" if data_start + position > file_size else "longer than its header says"
        raise WeightsError(
            f"damaged safetensors file ({state}: {file_size} bytes, header needs {data_start + position})", path=path
        )
    return SafetensorsHeader(metadata, tensors, data_start)


def _tensor_entry(name: str, entry: object, path: Path) -> TensorEntry:
    """One tensor's header entry, refused unless its dtype is known and its byte range fits its shape."""
    problem = f"damaged safetensors header (tensor {shown(name)}: {shown(entry)})"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise WeightsError(problem, path=path)
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if (
        dtype not in SAFETENSORS_DTYPES
        or not list_of(is_int)(shape)
        or any(n < 0 for n in shape)
        or not list_of(is_int)(offsets)
        or len(offsets) != 2
        or not 0 <= offsets[0] <= offsets[1]
        or offsets[1] - offsets[0] != SAFETENSORS_DTYPES[dtype][0] * math.prod(shape)
    ):
        raise WeightsError(problem, path=path)
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _parse(text: str, path: str | os.PathLike[str]) -> ModelCard:
    """A card from its JSON, its errors naming the file it came from."""
    try:
        return ModelCard.from_json(text)
    except WeightsError as exc:
        raise WeightsError(exc.message, path=path, hint=exc.hint) from exc
