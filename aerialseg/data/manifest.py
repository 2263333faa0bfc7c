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
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..card import ClassInfo
from ..errors import DatasetLayoutError
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
        """Read ``folder/manifest.json``, with an error saying how to make one when it is missing."""
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise DatasetLayoutError(
                "is not a prepared dataset (no manifest.json)",
                path=folder,
                hint="run 'aerialseg prepare' first",
            )
        try:
            data = json.loads(path.read_text())
            if data.pop("format", MANIFEST_FORMAT) > MANIFEST_FORMAT:
                raise DatasetLayoutError(
                    "manifest is newer than this aerialseg",
                    path=path,
                    hint="upgrade aerialseg, or prepare the dataset again with this version (prepare ... --overwrite)",
                )
            classes = tuple(
                ClassInfo(c["name"], tuple(c["color"]), bool(c.get("in_mean", True))) for c in data.pop("classes")
            )
            splits = {}
            for name, s in data.pop("splits").items():
                scenes = tuple(Scene(**sc) for sc in s.pop("scenes", ()))
                splits[name] = SplitInfo(
                    **{
                        **s,
                        "tiles": tuple(s["tiles"]),
                        "patches": tuple(s["patches"]),
                        "class_pixels": tuple(s["class_pixels"]),
                        "scenes": scenes,
                    }
                )
            data["bands"] = tuple(data["bands"])
            return cls(classes=classes, splits=splits, folder=folder, **data)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetLayoutError(f"manifest is malformed ({exc})", path=path) from exc
