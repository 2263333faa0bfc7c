"""Weights files: safetensors tensors plus a ModelCard in the header, and name resolution.

One format, data not code: loading never runs Python from the file. The card sits in the
safetensors metadata under :data:`~aerialseg.conventions.CARD_KEY` with the sha256 of the
tensors, checked on every load, so a file whose tensors were altered after the card was
written is refused. The header is plain JSON behind an 8-byte length, so cards are read
without torch (:func:`aerialseg.card.read_card`, re-exported here; this is how
``aerialseg models`` lists local weights quickly).

Names resolve through, in order: the folders in ``AERIALSEG_WEIGHTS`` (``os.pathsep``
separated), the user folder (``$XDG_DATA_HOME/aerialseg/weights``, by default
``~/.local/share/aerialseg/weights``), and the weights shipped with aerialseg.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_output
from .card import ModelCard, read_card
from .conventions import CARD_KEY
from .errors import UnknownModelError, WeightsError

if TYPE_CHECKING:
    import torch

    from .models.blocks import SegmentationModel

__all__ = [
    "CARD_KEY",
    "WeightsEntry",
    "weights_dirs",
    "list_weights",
    "resolve_weights",
    "read_card",
    "tensors_sha256",
    "save_weights",
    "read_weights",
    "load_model",
]

WEIGHTS_ENV = "AERIALSEG_WEIGHTS"
SUFFIX = ".safetensors"


@dataclass(frozen=True)
class WeightsEntry:
    """A weights file found on the search path."""

    name: str
    path: Path
    card: ModelCard


def weights_dirs() -> list[Path]:
    """Folders searched for weights by name, highest priority first."""
    dirs = [Path(p).expanduser() for p in os.environ.get(WEIGHTS_ENV, "").split(os.pathsep) if p]
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    dirs.append(data_home / "aerialseg" / "weights")
    package = Path(__file__).resolve().parent
    dirs.append(package / "bundled_weights")  # wheel installs
    dirs.append(package.parent / "weights")  # source checkouts and editable installs
    return dirs


def list_weights() -> list[WeightsEntry]:
    """Every readable weights file on the search path; a name shadowed by an earlier folder is skipped."""
    seen: dict[str, WeightsEntry] = {}
    for folder in weights_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            name = path.name[: -len(SUFFIX)]
            if name in seen:
                continue
            try:
                seen[name] = WeightsEntry(name, path, read_card(path))
            except WeightsError:
                continue
    return list(seen.values())


def resolve_weights(name_or_path: str | os.PathLike[str]) -> Path:
    """A path to an existing file, or a name found on the search path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    text = str(name_or_path)
    looks_like_path = os.sep in text or text.endswith(SUFFIX)
    if not looks_like_path:
        for entry in list_weights():
            if entry.name == text:
                return entry.path
    available = ", ".join(e.name for e in list_weights()) or "none installed"
    if looks_like_path:
        raise WeightsError("no such weights file", path=path)
    raise UnknownModelError(
        f"no weights named {text!r}",
        hint=f"available: {available}; see 'aerialseg models', or give a file path",
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


def save_weights(
    state: dict[str, torch.Tensor] | SegmentationModel,
    card: ModelCard,
    path: str | os.PathLike[str],
    *,
    half: bool = False,
    overwrite: bool = False,
) -> ModelCard:
    """Write tensors and card (version and sha256 filled in) atomically; return the written card.

    ``half`` stores floating tensors as float16 (half the size; loading casts back up).
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
    card = card.replace(aerialseg_version=__version__, sha256=tensors_sha256(tensors))
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={CARD_KEY: card.to_json()})
    return card


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Tensors and card of a weights file, after checking the tensors against the card's sha256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    card = read_card(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"tensors cannot be read ({exc})", path=path) from exc
    if card.sha256 and tensors_sha256(tensors) != card.sha256:
        raise WeightsError(
            "tensors do not match the sha256 in the model card (file altered or damaged)",
            path=path,
            hint="obtain the file again",
        )
    return tensors, card


def load_model(
    name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[SegmentationModel, ModelCard]:
    """The network of a weights file (name or path) in eval mode on ``device``, with its card."""
    from .models import create_model

    path = resolve_weights(name_or_path)
    tensors, card = read_weights(path)
    model = create_model(card.arch, card.backbone, card.num_classes, len(card.bands))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"tensors do not fit {card.arch}-{card.backbone}: {' '.join(first)}", path=path) from exc
    return model.to(device).eval(), card
