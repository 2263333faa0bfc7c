"""Label images to class ids: colour tables per dataset, and the class table of a user's folder.

Official labels are RGB images whose colours name the classes (architecture.md §2.1). A
:class:`LabelTable` turns a window of such an image into class ids ``0..K-1`` or
:data:`~aerialseg.data.classes.IGNORE_INDEX` (255) by packing each pixel's RGB into one
integer and looking it up in the sorted table keys, so a 6000-pixel-wide strip costs a few
vectorised passes, not a Python loop. Unlike GeoSeg, which files any unlisted colour under
"impervious surfaces", an unknown colour is an error naming the colour, its pixel count and
the file: a wrong or damaged label file should stop preparation, not teach the network
wrong pixels. Real ISPRS label files have been reported with slightly off colours
(lossy re-encoding), so ``tolerance`` snaps a colour whose every channel is within that
distance of a table colour; tolerances large enough to make two table colours ambiguous
are refused. Single-band labels hold values that a value table maps to class ids (by
default ``0..K-1`` as they are, and 255 as ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike

import numpy as np

from ..card import BAND_NAMES, ClassInfo
from ..errors import DatasetLayoutError, LabelColourError, MissingDependencyError
from .classes import IGNORE_INDEX, dataset_info

__all__ = ["LabelTable", "FolderClasses", "IGNORE_COLOURS", "dataset_table", "read_folder_classes"]

IGNORE_COLOURS = {
    "vaihingen": (0, 0, 0),  # boundary of the eroded ("noBoundary") labels
    "potsdam": (0, 0, 0),
    "uavid": (255, 255, 255),  # padding; black is UAVid's clutter class
}

RGB = tuple[int, int, int]


def _pack(rgb: np.ndarray) -> np.ndarray:
    """``(3, ...)`` RGB values -> one int32 per pixel, ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _unpack(packed: np.ndarray) -> np.ndarray:
    """Packed colours ``(M,)`` -> ``(M, 3)`` RGB."""
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)


@dataclass(frozen=True)
class LabelTable:
    """How one dataset's label images become class ids ``0..K-1`` or 255.

    ``name`` appears in error messages; ``colours`` are ``(rgb, id)`` pairs for RGB label
    images; ``values`` are ``(value, id)`` pairs for single-band label images, where empty
    means ``0..K-1`` stay as they are and 255 is ignore.
    """

    name: str
    num_classes: int
    colours: tuple[tuple[RGB, int], ...]
    values: tuple[tuple[int, int], ...] = field(default=())

    @cached_property
    def _colour_keys(self) -> tuple[np.ndarray, np.ndarray]:
        keys = _pack(np.array([c for c, _ in self.colours], np.int32).T)
        order = np.argsort(keys)
        return keys[order], np.array([i for _, i in self.colours], np.uint8)[order]

    @cached_property
    def _value_lut(self) -> np.ndarray:
        pairs = self.values or tuple((k, k) for k in range(self.num_classes)) + ((IGNORE_INDEX, IGNORE_INDEX),)
        lut = np.full(256, -1, np.int16)
        for value, class_id in pairs:
            lut[value] = class_id
        return lut

    def max_tolerance(self) -> int:
        """Largest colour tolerance that keeps every colour within reach of one table colour only."""
        rgb = np.array([c for c, _ in self.colours], np.int32)
        if len(rgb) < 2:
            return 255
        gaps = np.abs(rgb[:, None, :] - rgb[None, :, :]).max(-1)
        return int((gaps[~np.eye(len(rgb), dtype=bool)].min() - 1) // 2)

    def to_ids(
        self,
        label: np.ndarray,
        *,
        tolerance: int = 0,
        path: str | PathLike[str] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Class ids ``(H, W)`` uint8 of a label window ``(bands, H, W)`` as rasterio reads it.

        One band is read as values, three or more as RGB (a fourth, alpha, is ignored).
        ``path`` and ``rows`` (first, last row of the window) only make errors precise.
        """
        where = f" of rows {rows[0]}-{rows[1]}" if rows else ""
        if label.shape[0] == 1:
            return self._values_to_ids(label[0], path, where)
        if label.shape[0] >= 3:
            return self._rgb_to_ids(label[:3], tolerance, path, where)
        raise LabelColourError(f"label has {label.shape[0]} bands", path=path, hint="give 1 band of ids or RGB")

    def _rgb_to_ids(self, rgb: np.ndarray, tolerance: int, path: str | PathLike[str] | None, where: str) -> np.ndarray:
        packed = _pack(rgb)
        keys, ids = self._colour_keys
        pos = np.searchsorted(keys, packed).clip(max=len(keys) - 1)
        known = keys[pos] == packed
        out = ids[pos]
        if known.all():
            return out
        colours, inverse, counts = np.unique(packed[~known], return_inverse=True, return_counts=True)
        snapped = self._snap(colours, tolerance)
        bad = snapped < 0
        if bad.any():
            order = np.argsort(-counts[bad])[:3]
            found = ", ".join(
                f"{tuple(int(v) for v in rgb)} in {n} pixels"
                for rgb, n in zip(_unpack(colours[bad][order]), counts[bad][order], strict=True)
            )
            more = f" and {int(bad.sum()) - len(order)} more" if bad.sum() > len(order) else ""
            table = ", ".join(f"{c}={i}" for c, i in self.colours)
            raise LabelColourError(
                f"colour not in the {self.name} table: {found}{more}{where}",
                path=path,
                hint=f"known colours (RGB=id, 255 ignore): {table}; "
                "fix the file, or allow near colours with a colour tolerance",
            )
        out[~known] = snapped[inverse.ravel()].astype(np.uint8)
        return out

    def _snap(self, colours: np.ndarray, tolerance: int) -> np.ndarray:
        """Id of the nearest table colour (largest channel difference) per packed colour; -1 beyond tolerance."""
        if tolerance <= 0:
            return np.full(len(colours), -1, np.int16)
        table = np.array([c for c, _ in self.colours], np.int32)
        ids = np.array([i for _, i in self.colours], np.int16)
        gaps = np.abs(_unpack(colours)[:, None, :] - table[None, :, :]).max(-1)
        nearest = gaps.argmin(1)
        return np.where(gaps[np.arange(len(colours)), nearest] <= tolerance, ids[nearest], -1)

    def _values_to_ids(self, band: np.ndarray, path: str | PathLike[str] | None, where: str) -> np.ndarray:
        if band.dtype != np.uint8:
            if not np.issubdtype(band.dtype, np.integer) or band.min() < 0 or band.max() > 255:
                raise LabelColourError(
                    f"single-band label of type {band.dtype} holds values outside 0-255{where}",
                    path=path,
                    hint="labels must be integer class values 0-255 or RGB colours",
                )
            band = band.astype(np.uint8)
        out = self._value_lut[band]
        bad = out < 0
        if bad.any():
            values, counts = np.unique(band[bad], return_counts=True)
            found = ", ".join(f"{int(v)} in {int(n)} pixels" for v, n in list(zip(values, counts, strict=True))[:5])
            known = ", ".join(str(v) for v in np.flatnonzero(self._value_lut >= 0))
            raise LabelColourError(
                f"label value not in the {self.name} table: {found}{where}",
                path=path,
                hint=f"known values: {known}",
            )
        return out.astype(np.uint8)


def dataset_table(name: str) -> LabelTable:
    """Build the colour table of a benchmark: its classes' colours, plus its ignore colour as 255."""
    info = dataset_info(name)
    colours = tuple((c.color, i) for i, c in enumerate(info.classes))
    return LabelTable(info.name, len(info.classes), (*colours, (IGNORE_COLOURS[info.name], IGNORE_INDEX)))


@dataclass(frozen=True)
class FolderClasses:
    """What a user's ``classes.toml`` declares: classes, band order, pixel size, and the label table."""

    classes: tuple[ClassInfo, ...]
    bands: tuple[str, ...]
    gsd_m: float | None
    table: LabelTable


def read_folder_classes(path: str | PathLike[str]) -> FolderClasses:
    """Read and check a classes TOML (format in the README, ``aerialseg prepare folder``).

    Class ids follow the order of ``[[classes]]``. RGB labels are matched by ``color``;
    single-band labels by each class's ``id`` (default: its position), and 255 is ignore
    unless a class claims it. ``ignore`` adds an RGB colour or a value meaning ignore.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise MissingDependencyError(
                "reading classes TOML needs Python 3.11+ or tomli", hint="pip install tomli"
            ) from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise DatasetLayoutError(f"cannot read the classes file ({exc.strerror or exc})", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise DatasetLayoutError(f"is not valid TOML ({exc})", path=path) from exc
    except RecursionError as exc:  # the parser recurses once per level of nested arrays and tables
        raise DatasetLayoutError("is not valid TOML (nested too deeply)", path=path) from exc
    try:
        return _folder_classes(data)
    except (TypeError, ValueError, KeyError) as exc:
        message = f"a class entry lacks {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise DatasetLayoutError(
            message, path=path, hint="the format is in the README under 'aerialseg prepare'"
        ) from exc


def _rgb(value: object, what: str) -> RGB:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value)):
        raise ValueError(f"{what} must be [R, G, B] with integers 0-255, not {value!r}")
    return (value[0], value[1], value[2])


def _folder_classes(data: dict) -> FolderClasses:
    entries = data.get("classes")
    if not isinstance(entries, list) or not entries:
        raise ValueError("needs at least one [[classes]] entry with name and color")
    if len(entries) >= IGNORE_INDEX:
        raise ValueError(f"has {len(entries)} classes; at most {IGNORE_INDEX - 1} fit in uint8 labels with 255 ignore")
    classes = tuple(
        ClassInfo(str(e["name"]), _rgb(e["color"], f"class {e['name']!r} color"), bool(e.get("in_mean", True)))
        for e in entries
    )
    if len({c.name for c in classes}) < len(classes):
        raise ValueError("class names repeat")
    with_ids = ["id" in e for e in entries]
    if any(with_ids) and not all(with_ids):
        raise ValueError("give every class an id, or none")
    ids = [e["id"] if all(with_ids) else i for i, e in enumerate(entries)]
    if not all(isinstance(v, int) and 0 <= v <= 255 for v in ids):
        raise ValueError(f"class ids must be integers 0-255, not {ids}")
    ignore = data.get("ignore")
    colours = [(c.color, i) for i, c in enumerate(classes)]
    values = [(v, i) for i, v in enumerate(ids)]
    if isinstance(ignore, list):
        colours.append((_rgb(ignore, "ignore"), IGNORE_INDEX))
    elif isinstance(ignore, int):
        values.append((ignore, IGNORE_INDEX))
    elif ignore is not None:
        raise ValueError(f"ignore must be [R, G, B] or an id value, not {ignore!r}")
    if IGNORE_INDEX not in ids:
        values.append((IGNORE_INDEX, IGNORE_INDEX))
    for what, pairs in (("colour", colours), ("id", values)):
        seen: dict[object, int] = {}
        for key, class_id in pairs:
            if seen.setdefault(key, class_id) != class_id:
                raise ValueError(f"{what} {key} is given twice (to two classes, or to a class and ignore)")
    bands = tuple(data.get("bands", ("R", "G", "B")))
    unknown = [b for b in bands if b not in BAND_NAMES]
    if not bands or unknown:
        raise ValueError(f"unknown band codes {unknown or bands} (known: {', '.join(BAND_NAMES)})")
    gsd_m = data.get("gsd_m")
    if gsd_m is not None and not (isinstance(gsd_m, int | float) and gsd_m > 0):
        raise ValueError(f"gsd_m must be a positive number of metres, not {gsd_m!r}")
    table = LabelTable("classes.toml", len(classes), tuple(dict(colours).items()), tuple(dict(values).items()))
    return FolderClasses(classes, bands, None if gsd_m is None else float(gsd_m), table)
