"""Which classes become layers: the class raster's names, and a user's request resolved against them.

Users name classes as they think of them (``building``, ``car``, an id, ``roof=1`` for a
raster without names), while models name them as their data set did (UAVid has
``moving_car`` and ``static_car``, ISPRS ``building`` and ``car``). :func:`class_kind` bridges
the two, so the default (every building and car class) and ``--classes car`` mean the same
on every model's output.

Class names come from files (a card's classes, ``--classes roof=1``) and may be anything,
while a GeoPackage layer is an SQLite table beside the format's own: :func:`layer_names`
turns each class into a layer name GDAL and other readers accept, and the features keep
the original name in their ``class`` attribute. :func:`class_colors` gives each class the
colour the raster's palette shows it in, so the objects are styled like the map.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from ..conventions import CLASS_NAMES_TAG, LAYER_STYLES
from ..errors import AerialsegError
from ..jsondata import JsonProblem, parse_json

__all__ = ["class_kind", "class_names", "class_colors", "resolve_classes", "layer_names", "MAX_LAYER_NAME"]

MAX_LAYER_NAME = 63
"""Longest layer name written (PostgreSQL's identifier limit, so a GeoPackage's layers can be imported there)."""

# GeoPackage refuses layers named gpkg*, SQLite tables named sqlite_*, rtree_<layer>_<column>
# names the spatial index of another layer, and layer_styles holds QGIS's styles of the layers.
_RESERVED_PREFIXES = ("gpkg", "sqlite_", "rtree_")
_RESERVED_NAMES = (LAYER_STYLES,)

# Colours of classes a raster without a palette leaves uncoloured: ISPRS's building blue and car
# yellow, then distinct colours by class id.
_KIND_COLORS = {"building": (0, 0, 255), "car": (255, 255, 0)}
_OTHER_COLORS = ((255, 0, 0), (0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0), (128, 0, 255))


def class_kind(name: str) -> str | None:
    """``building``, ``car`` or None, from a class name (``static_car`` is a car)."""
    lower = name.lower().replace("-", "_").replace(" ", "_")
    if "building" in lower:
        return "building"
    if lower == "car" or lower.endswith("_car") or lower.startswith("car_") or lower == "cars":
        return "car"
    return None


def class_names(dataset: Any) -> list[str] | None:
    """The class names a class raster records (index = class id), or None when it has none or they are garbled."""
    tags = dataset.tags(1)
    if CLASS_NAMES_TAG in tags:
        try:
            names = parse_json(tags[CLASS_NAMES_TAG])
        except JsonProblem:
            names = None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    return None


def class_colors(dataset: Any, classes: Sequence[tuple[int, str]]) -> dict[int, tuple[int, int, int]]:
    """The RGB colour of each ``(class id, name)``: the raster's palette entry, else a colour by kind or id."""
    try:
        palette = dataset.colormap(1)
    except ValueError:  # no palette
        palette = {}
    colors = {}
    for class_id, name in classes:
        kind = class_kind(name)
        fallback = _KIND_COLORS[kind] if kind else _OTHER_COLORS[class_id % len(_OTHER_COLORS)]
        if class_id in palette:
            red, green, blue = (int(v) for v in palette[class_id][:3])
            colors[class_id] = (red, green, blue)
        else:
            colors[class_id] = fallback
    return colors


def resolve_classes(requested: Sequence[str] | None, names: list[str] | None, path: object) -> list[tuple[int, str]]:
    """``(class id, layer name)`` for each requested class of the raster at ``path``."""
    available = ", ".join(f"{i}={n}" for i, n in enumerate(names)) if names else "none recorded"
    if requested is None:
        if names is None:
            raise AerialsegError(
                "class raster has no class names in its metadata",
                path=path,
                hint="name the classes by id, e.g. --classes building=1,car=4",
            )
        chosen = [(i, n) for i, n in enumerate(names) if class_kind(n)]
        if not chosen:
            raise AerialsegError(
                f"no building or car class (classes: {available})", path=path, hint="choose with --classes"
            )
        return chosen
    out: list[tuple[int, str]] = []
    for item in requested:
        item = item.strip()
        name, _, number = item.partition("=")
        if number:
            if not number.strip().isdigit():
                raise AerialsegError(f"class {item!r}: the id after '=' must be a number", path=path)
            out.append((int(number), name.strip()))
        elif item.isdigit():
            class_id = int(item)
            if names is not None and class_id >= len(names):
                raise AerialsegError(f"no class id {class_id} (classes: {available})", path=path)
            out.append((class_id, names[class_id] if names else f"class_{class_id}"))
        elif names is None:
            raise AerialsegError(
                f"class {item!r} cannot be found: the raster has no class names",
                path=path,
                hint=f"give its id instead, e.g. --classes {item}=1",
            )
        else:
            matches = [i for i, n in enumerate(names) if n.lower() == item.lower()]
            if not matches and class_kind(item) == "car":  # "car" also means UAVid's moving/static cars
                matches = [i for i, n in enumerate(names) if class_kind(n) == "car"]
            if not matches:
                raise AerialsegError(
                    f"no class {item!r} (classes: {available})", path=path, hint="choose among the classes listed"
                )
            out += [(i, names[i]) for i in matches]
    unique = list(dict.fromkeys(out))
    if len({i for i, _ in unique}) != len(unique):
        raise AerialsegError("a class id is requested under two names", path=path)
    return unique


def layer_names(classes: Sequence[tuple[int, str]]) -> dict[int, str]:
    """A safe, distinct layer name for each ``(class id, class name)``, by class id.

    Control characters and path separators become ``_``; an empty name becomes
    ``class_<id>``; a reserved prefix (``gpkg``, ``sqlite_``, ``rtree_``) or name
    (``layer_styles``) gets ``class_`` in front; names are cut to :data:`MAX_LAYER_NAME`
    characters; a name equal to an earlier one, ignoring case as SQLite does, gets ``_<id>``
    appended. Ordinary names stay as they are.
    """
    layers: dict[int, str] = {}
    taken: set[str] = set()
    for class_id, name in classes:
        text = "".join("_" if c in "/\\" or unicodedata.category(c).startswith("C") else c for c in name).strip()
        text = text or f"class_{class_id}"
        if text.lower().startswith(_RESERVED_PREFIXES) or text.lower() in _RESERVED_NAMES:
            text = f"class_{text}"
        layer = text[:MAX_LAYER_NAME]
        suffix = 0
        while layer.lower() in taken:
            tail = f"_{class_id}" + (f"_{suffix}" if suffix else "")
            layer = text[: MAX_LAYER_NAME - len(tail)] + tail
            suffix += 1
        taken.add(layer.lower())
        layers[class_id] = layer
    return layers
