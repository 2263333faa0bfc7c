"""Weights files: safetensors tensors plus a ModelCard in the header, and name resolution.

One format, data not code: loading never runs Python from the file. The card sits in the
safetensors metadata under :data:`~aerialseg.conventions.CARD_KEY` with the sha256 of the
tensors, which :func:`save_weights` always writes and every load checks: a file whose tensors
were altered or damaged after the card was written is refused, and a card without a hash gets
the one computed from its tensors, never a skipped check. The header is plain JSON behind an
8-byte length, so cards are read without torch (:func:`aerialseg.card.read_card`, re-exported
here; this is how ``aerialseg models`` lists local weights quickly), and
:func:`verified_card` hashes the tensors straight from the file, also without torch.

Names resolve through, in order: the folders in ``AERIALSEG_WEIGHTS`` (``os.pathsep``
separated), the user folder (``$XDG_DATA_HOME/aerialseg/weights``, by default
``~/.local/share/aerialseg/weights``), and the weights shipped with aerialseg. A broken file
on that path is listed with its reason and skipped by lookups of other names; asking for its
own name gives its error rather than another folder's file of that name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_output
from .card import (
    SAFETENSORS_DTYPES,
    ModelCard,
    fit_problems,
    printable,
    read_card,
    read_safetensors_header,
    refuse_special_file,
)
from .conventions import CARD_KEY
from .errors import UnknownModelError, WeightsError

if TYPE_CHECKING:
    import torch

    from .catalog import WeightsChoice
    from .models.blocks import SegmentationModel

__all__ = [
    "CARD_KEY",
    "WeightsEntry",
    "BrokenWeights",
    "weights_dirs",
    "user_weights_dir",
    "installed_name",
    "scan_weights",
    "list_weights",
    "resolve_weights",
    "choose_weights",
    "read_card",
    "verified_card",
    "tensors_sha256",
    "file_tensors_sha256",
    "save_weights",
    "read_weights",
    "load_model",
]

WEIGHTS_ENV = "AERIALSEG_WEIGHTS"
SUFFIX = ".safetensors"
SUFFIXES = (SUFFIX, ".onnx")
"""Files found by name: weights, and ONNX files (aerialseg exports, Deepness-contract models)."""


@dataclass(frozen=True)
class WeightsEntry:
    """A weights file found on the search path."""

    name: str
    path: Path
    card: ModelCard


@dataclass(frozen=True)
class BrokenWeights:
    """A file on the search path whose header or card cannot be used, with the error saying why."""

    name: str
    path: Path
    error: WeightsError

    @property
    def reason(self) -> str:
        """The error's one line without the file name."""
        return f"{self.error.message}; {self.error.hint}" if self.error.hint else self.error.message


def user_weights_dir() -> Path:
    """The user's weights folder, where ``train`` installs what it trained: ``$XDG_DATA_HOME/aerialseg/weights``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "aerialseg" / "weights"


def installed_name(arch: str, backbone: str, dataset: str | None, suffix: str | None = None) -> str:
    """The name installed weights get: ``manet-r50-vaihingen`` (and ``-<suffix>``, e.g. a run's time)."""
    parts = [arch, backbone.replace("resnet", "r"), (dataset or "unknown").lower(), *([suffix] if suffix else [])]
    return "-".join(parts)


def weights_dirs() -> list[Path]:
    """Folders searched for weights by name, highest priority first."""
    dirs = [Path(p).expanduser() for p in os.environ.get(WEIGHTS_ENV, "").split(os.pathsep) if p]
    dirs.append(user_weights_dir())
    package = Path(__file__).resolve().parent
    dirs.append(package / "bundled_weights")  # wheel installs
    dirs.append(package.parent / "weights")  # source checkouts and editable installs
    return dirs


def scan_weights() -> tuple[list[WeightsEntry], list[BrokenWeights]]:
    """Every weights file on the search path, usable or broken; a name an earlier folder holds is skipped."""
    seen: set[str] = set()
    entries: list[WeightsEntry] = []
    broken: list[BrokenWeights] = []
    for folder in weights_dirs():
        try:
            paths = sorted(p for suffix in SUFFIXES for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []
        except OSError:  # an unreadable folder holds nothing we can use
            continue
        for path in paths:
            name = path.stem
            if name in seen:
                continue
            seen.add(name)
            try:
                entries.append(WeightsEntry(name, path, read_card(path)))
            except WeightsError as exc:
                broken.append(BrokenWeights(name, path, exc))
    return entries, broken


def list_weights() -> list[WeightsEntry]:
    """Every usable weights file on the search path (see :func:`scan_weights` for the broken ones)."""
    return scan_weights()[0]


def resolve_weights(name_or_path: str | os.PathLike[str]) -> Path:
    """The weights file a model argument means (see :func:`choose_weights`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    choice = choose_weights(name_or_path)
    assert choice is not None  # only an existing file gives None
    return choice.entry.path


def choose_weights(name_or_path: str | os.PathLike[str]) -> WeightsChoice | None:
    """What a model argument chose: None for a file path; a name's own weights; else a query's best.

    In order: an existing file (None: nothing was chosen); the weights file of that name on
    the search path (a broken file's name gives its error); a query such as ``manet`` or
    ``manet-potsdam`` answered by :func:`aerialseg.catalog.choose`. Raises
    :class:`~aerialseg.errors.WeightsError` for a path that does not exist or is no regular
    file (a named pipe or a device would block or never end when read), and
    :class:`~aerialseg.errors.UnknownModelError` when nothing matches, naming what is
    installed and the ways to get weights.
    """
    from .catalog import ModelQuery, WeightsChoice, choose, how_to_get

    path = Path(name_or_path).expanduser()
    if path.is_file():
        return None
    text = str(name_or_path)
    if os.sep in text or text.endswith(SUFFIXES) or (path.exists() and not path.is_dir()):
        refuse_special_file(path)  # a named pipe or a device is said to be one, not looked up by name
        raise WeightsError("no such weights file", path=printable(str(path)))
    entries, broken = scan_weights()
    for entry in entries:
        if entry.name == text:
            return WeightsChoice(ModelQuery(text), entry, by_name=True)
    for bad in broken:
        if bad.name == text:
            raise bad.error
    chosen = choose(text, entries)
    if chosen is not None:
        return chosen
    available = ", ".join(printable(e.name) for e in entries) or "none installed"
    raise UnknownModelError(
        f"no weights named {printable(text)!r} and no architecture, backbone or dataset of that name; "
        f"installed: {available}",
        hint=how_to_get(None, None),
    )


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes, in name order (independent of file layout)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_tensors_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`tensors_sha256` of a weights file's tensors, read from the file's bytes without torch.

    safetensors stores each tensor's elements contiguous and little-endian, which is what
    :func:`tensors_sha256` hashes on the little-endian machines torch runs on.
    """
    path = Path(path)
    header = read_safetensors_header(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for name in sorted(header.tensors):
                entry = header.tensors[name]
                digest.update(f"{name}|{SAFETENSORS_DTYPES[entry.dtype][1]}|{entry.shape}|".encode())
                fh.seek(header.data_start + entry.begin)
                remaining = entry.end - entry.begin
                while remaining:
                    chunk = fh.read(min(remaining, 1 << 24))
                    if not chunk:
                        raise WeightsError("damaged safetensors file (truncated while reading)", path=path)
                    digest.update(chunk)
                    remaining -= len(chunk)
    except OSError as exc:
        raise WeightsError(f"cannot read ({printable(exc.strerror or str(exc))})", path=path) from exc
    return digest.hexdigest()


def _checked(card: ModelCard, computed: str, path: Path) -> ModelCard:
    """The card with the tensors' hash: refused when its own differs, filled in when it has none."""
    if not card.sha256:
        return card.replace(sha256=computed)
    if computed != card.sha256:
        raise WeightsError(
            "tensors do not match the sha256 in its model card (damaged or edited)",
            path=path,
            hint="obtain the file again",
        )
    return card


def verified_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of a weights file once its tensors, hashed from the file, match it (without torch).

    The card's ``sha256`` is the tensors' computed one when the file's card had none, so it
    always says which tensors it describes (cache keys, provenance tags).
    """
    path = Path(path)
    return _checked(read_card(path), file_tensors_sha256(path), path)


def save_weights(
    state: dict[str, torch.Tensor] | SegmentationModel,
    card: ModelCard,
    path: str | os.PathLike[str],
    *,
    half: bool = False,
    overwrite: bool = False,
) -> ModelCard:
    """Write tensors and card (version and sha256 filled in) atomically; return the written card.

    ``half`` stores floating tensors as float16 (half the size; loading casts back up). A card
    whose class or band count contradicts the tensors' shapes is refused before anything is written.
    """
    import torch
    from safetensors.torch import save_file

    from . import __version__

    if not isinstance(state, dict):
        state = state.state_dict()
    tensors = {}
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        tensors[name] = t
    problems = fit_problems(card, {name: tuple(t.shape) for name, t in tensors.items()})
    if problems:
        raise WeightsError("model card does not fit the tensors: " + "; ".join(problems), path=path)
    card = card.replace(aerialseg_version=__version__, sha256=tensors_sha256(tensors))
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={CARD_KEY: card.to_json()})
    return card


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Tensors and card of a weights file, after checking the tensors against the card's sha256.

    The card comes back with the tensors' sha256 (computed when the file's card had none), and
    tensors holding NaN or infinite values are refused: they would map every pixel to one class.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    card = read_card(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"tensors cannot be read ({printable(str(exc))})", path=path) from exc
    card = _checked(card, tensors_sha256(tensors), path)
    unfinite = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if unfinite:
        raise WeightsError(f"tensors hold NaN or infinite values ({printable(', '.join(unfinite[:3]))})", path=path)
    return tensors, card


def load_model(
    name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[SegmentationModel, ModelCard]:
    """The network of a weights file (name or path) in eval mode on ``device``, with its card."""
    from .models import create_model, state_mismatch

    path = resolve_weights(name_or_path)
    tensors, card = read_weights(path)
    model = create_model(card.arch, card.backbone, card.num_classes, len(card.bands))
    mismatch = state_mismatch(tensors, model.state_dict())
    if mismatch:
        raise WeightsError(
            f"tensors do not fit {card.arch}-{card.backbone}, the network its card names: " + "; ".join(mismatch),
            path=path,
            hint="obtain the file again, or convert the checkpoint with 'aerialseg weights import --arch ...'",
        )
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), card
