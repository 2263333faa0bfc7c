"""Where prepared datasets and training runs live when the user names no folder.

``$AERIALSEG_DATA`` (default ``$XDG_DATA_HOME/aerialseg/data``, i.e.
``~/.local/share/aerialseg/data``, beside the weights folder) holds each prepared dataset in a
folder of its name (``potsdam``, ``vaihingen``, ``uavid``, or the name given to a ``folder``
dataset) and the training runs under ``runs/`` (:mod:`aerialseg.training.runs`). So
``aerialseg prepare potsdam --root RAW`` and ``aerialseg train --dataset potsdam`` need no
paths, and ``--out`` / ``--data`` still choose any folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..card import printable
from ..errors import AerialsegError, DatasetLayoutError, UnknownDatasetError
from .classes import DATASETS
from .manifest import MANIFEST_NAME, Manifest

__all__ = [
    "DATA_ENV",
    "data_home",
    "dataset_folder",
    "resolve_dataset",
    "PreparedDataset",
    "list_prepared",
]

DATA_ENV = "AERIALSEG_DATA"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def data_home() -> Path:
    """The data folder: ``$AERIALSEG_DATA``, else ``$XDG_DATA_HOME/aerialseg/data``."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "aerialseg" / "data"


def dataset_folder(name: str) -> Path:
    """Where the prepared dataset ``name`` lives (lower case; letters, digits, ``.``, ``_``, ``-``)."""
    key = name.strip().lower()
    if not _NAME.match(key) or key == "runs":
        raise AerialsegError(
            f"{printable(name)!r} cannot name a dataset",
            hint="use letters, digits, '.', '_' or '-' (up to 64), and not 'runs'",
        )
    return data_home() / key


def resolve_dataset(name: str) -> Path:
    """The folder of the prepared dataset ``name``, with a one-line error giving the command that makes it."""
    folder = dataset_folder(name)
    if (folder / MANIFEST_NAME).is_file():
        return folder
    key = folder.name
    prepared = ", ".join(entry.name for entry in list_prepared()) or "none"
    if key in DATASETS:
        raise DatasetLayoutError(
            f"dataset {key!r} is not prepared (prepared: {prepared})",
            path=folder,
            hint=f"run 'aerialseg prepare {key} --root FOLDER_WITH_THE_{key.upper()}_ARCHIVES', or pass --data FOLDER",
        )
    raise UnknownDatasetError(
        f"no prepared dataset {key!r} (prepared: {prepared}; benchmarks: {', '.join(DATASETS)})",
        path=folder,
        hint="prepare your own with 'aerialseg prepare folder --name NAME ...', or pass --data FOLDER",
    )


@dataclass(frozen=True)
class PreparedDataset:
    """A folder of the data folder with a manifest, or the reason it cannot be read."""

    name: str
    folder: Path
    manifest: Manifest | None
    problem: str | None = None


def list_prepared() -> list[PreparedDataset]:
    """Every prepared dataset in the data folder, by name (unreadable manifests with their reason)."""
    home = data_home()
    try:
        folders = sorted(path for path in home.iterdir() if (path / MANIFEST_NAME).is_file())
    except OSError:  # no data folder yet
        return []
    found = []
    for folder in folders:
        try:
            found.append(PreparedDataset(folder.name, folder, Manifest.load(folder)))
        except AerialsegError as exc:
            found.append(PreparedDataset(folder.name, folder, None, exc.message))
    return found
