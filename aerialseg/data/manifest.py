"""The manifest of a prepared dataset: what ``aerialseg prepare`` wrote and where it came from.

``train``, ``eval`` and the sample-weights script read a prepared folder only through this
file, so the folder layout is written down in one place::

    DATA/manifest.json
    DATA/<split>/images/<name>.tif          patches, uint8, bands in the model's order
    DATA/<split>/labels/<name>.tif          class ids, uint8, 255 = ignore (boundaries, padding)
    DATA/<split>/labels_eroded/<name>.tif   ISPRS only: eroded ("noBoundary") labels of the same patches
    DATA/scenes/<split>/<id>_label.tif      the whole tile's class ids (and ``<id>_label_eroded.tif``)

Scenes are the full tiles before cutting: ``eval`` runs the tiled, blended predict path over
them (so no pixel is counted twice, as it would be on overlapping patches). Their images are
not copied; a scene records the absolute path of the source image.

The file may have been edited or damaged: :meth:`Manifest.load` checks every entry for the
JSON type :meth:`Manifest.save` writes, so ``train``, ``eval`` and ``models`` say in one line
which entry is wrong and that ``aerialseg prepare`` makes it again, instead of failing later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..card import CLASS_FORM, ClassInfo, class_from_json
from ..errors import DatasetLayoutError
from ..jsondata import Check, JsonProblem, fields_problem, is_int, is_number, is_text, list_of, parse_json, shown
from .classes import IGNORE_INDEX

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "Scene", "SplitInfo", "Manifest"]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Scene:
    """One full tile: its source image (absolute path) and its label rasters (relative to DATA)."""

    id: str
    image: str
    label: str | None
    label_eroded: str | None = None


@dataclass(frozen=True)
class SplitInfo:
    """One split: the tile ids in it, its patches, and label statistics over those patches.

    ``class_pixels[k]`` counts pixels of class k in the split's (full) patch labels;
    ``ignored_pixels`` those labelled 255.
    """

    name: str
    tiles: tuple[str, ...]
    patches: tuple[str, ...]
    class_pixels: tuple[int, ...]
    ignored_pixels: int
    scenes: tuple[Scene, ...] = ()
    has_eroded: bool = False


@dataclass(frozen=True)
class Manifest:
    """Everything ``prepare`` records (see the module docstring). ``folder`` is where it was loaded from."""

    dataset: str
    classes: tuple[ClassInfo, ...]
    bands: tuple[str, ...]
    gsd_m: float | None
    patch_size: int
    stride: int
    splits: dict[str, SplitInfo]
    sources: dict[str, Any] = field(default_factory=dict)
    ignore_index: int = IGNORE_INDEX
    created: str = ""
    aerialseg_version: str = ""
    folder: Path | None = None

    def split(self, name: str) -> SplitInfo:
        """A split by name, or an error listing those prepared."""
        if name not in self.splits:
            raise DatasetLayoutError(
                f"has no {name!r} split",
                path=self.folder,
                hint=f"prepared splits: {', '.join(self.splits) or 'none'}",
            )
        return self.splits[name]

    def patch_pairs(self, split: str, eroded: bool = False) -> list[tuple[Path, Path]]:
        """``(image, label)`` paths of a split's patches; ``eroded`` picks the eroded labels."""
        info = self.split(split)
        if eroded and not info.has_eroded:
            raise DatasetLayoutError(f"split {split!r} has no eroded labels", path=self.folder)
        base = Path(self.folder or ".") / split
        labels = base / ("labels_eroded" if eroded else "labels")
        return [(base / "images" / f"{p}.tif", labels / f"{p}.tif") for p in info.patches]

    def resolve(self, relative: str) -> Path:
        """A path recorded relative to the prepared folder."""
        return Path(self.folder or ".") / relative

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``folder`` left out: it is wherever the file is)."""
        data = asdict(self)
        data.pop("folder")
        data["format"] = MANIFEST_FORMAT
        data["classes"] = [asdict(c) | {"color": list(c.color)} for c in self.classes]
        return data

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/manifest.json``."""
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        """Read ``folder/manifest.json``, every entry of the type :meth:`save` writes; one line naming it if not."""
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise DatasetLayoutError(
                "is not a prepared dataset (no manifest.json)",
                path=folder,
                hint="run 'aerialseg prepare' first",
            )
        try:
            data = parse_json(path.read_bytes())
        except OSError as exc:
            raise DatasetLayoutError(f"cannot read the manifest ({exc.strerror or exc})", path=path) from exc
        except JsonProblem as exc:
            raise DatasetLayoutError(f"manifest is not valid JSON ({exc})", path=path, hint=_PREPARE_AGAIN) from exc
        written = data.get("format") if isinstance(data, dict) else None
        if is_int(written) and written > MANIFEST_FORMAT:
            raise DatasetLayoutError(
                "manifest is newer than this aerialseg",
                path=path,
                hint="upgrade aerialseg, or prepare the dataset again with this version (prepare ... --overwrite)",
            )
        try:
            return _manifest(data, folder)
        except _Malformed as exc:
            raise DatasetLayoutError(f"manifest is malformed ({exc})", path=path, hint=_PREPARE_AGAIN) from exc


_PREPARE_AGAIN = "prepare the dataset again with 'aerialseg prepare ... --overwrite'"


class _Malformed(ValueError):
    """Where a manifest departs from what :meth:`Manifest.save` writes, in words."""


def _text_or_null(value: object) -> bool:
    return value is None or is_text(value)


def _positive_int(value: object) -> bool:
    return is_int(value) and value > 0


# Each entry's JSON type, as said in errors, and its test; lists of classes, splits and scenes are read below.
_MANIFEST_TYPES: dict[str, tuple[str, Check]] = {
    "format": ("an integer", is_int),
    "dataset": ("a string", is_text),
    "classes": ("a list of classes", lambda value: isinstance(value, list)),
    "bands": ("a list of band codes", list_of(is_text)),
    "gsd_m": ("a finite number or null", lambda value: value is None or is_number(value)),
    "patch_size": ("a positive integer", _positive_int),
    "stride": ("a positive integer", _positive_int),
    "splits": ("an object of splits by name", lambda value: isinstance(value, dict)),
    "sources": ("an object", lambda value: isinstance(value, dict)),
    "ignore_index": ("an integer", is_int),
    "created": ("a string", is_text),
    "aerialseg_version": ("a string", is_text),
}
_SPLIT_TYPES: dict[str, tuple[str, Check]] = {
    "name": ("a string", is_text),
    "tiles": ("a list of strings", list_of(is_text)),
    "patches": ("a list of strings", list_of(is_text)),
    "class_pixels": ("a list of integers", list_of(is_int)),
    "ignored_pixels": ("an integer", is_int),
    "scenes": ("a list of scenes", lambda value: isinstance(value, list)),
    "has_eroded": ("true or false", lambda value: isinstance(value, bool)),
}
_SCENE_TYPES: dict[str, tuple[str, Check]] = {
    "id": ("a string", is_text),
    "image": ("a string", is_text),
    "label": ("a string or null", _text_or_null),
    "label_eroded": ("a string or null", _text_or_null),
}


def _entries(value: object, where: str, types: dict[str, tuple[str, Check]], kind: type) -> dict[str, Any]:
    """``value`` as a JSON object of ``kind``'s fields, each of its type in ``types``; :class:`_Malformed` if not."""
    if not isinstance(value, dict):
        raise _Malformed(f"{where} must be an object, not {shown(value)}")
    problem = fields_problem(value, types, kind)
    if problem:
        raise _Malformed(f"{where} {problem}")
    return dict(value)


def _manifest(data: object, folder: Path) -> Manifest:
    """A manifest from its checked JSON (``format`` already compared with :data:`MANIFEST_FORMAT`)."""
    values = _entries(data, "the manifest", _MANIFEST_TYPES, Manifest)
    values.pop("format", None)
    classes = []
    for index, entry in enumerate(values["classes"]):
        info = class_from_json(entry)
        if info is None:
            raise _Malformed(f"classes[{index}] must be {CLASS_FORM}, not {shown(entry)}")
        classes.append(info)
    splits = {name: _split(split, f"splits[{shown(name)}]") for name, split in values["splits"].items()}
    values |= {"classes": tuple(classes), "bands": tuple(values["bands"]), "splits": splits}
    return Manifest(**values, folder=folder)


def _split(data: object, where: str) -> SplitInfo:
    values = _entries(data, where, _SPLIT_TYPES, SplitInfo)
    scenes = tuple(
        Scene(**_entries(scene, f"{where}.scenes[{index}]", _SCENE_TYPES, Scene))
        for index, scene in enumerate(values.get("scenes", ()))
    )
    for key in ("tiles", "patches", "class_pixels"):
        values[key] = tuple(values[key])
    return SplitInfo(**values | {"scenes": scenes})
