"""Class tables, band orders and ground sampling distances of the supported datasets.

Colours are those of the official label images (architecture.md §2.1), which are also
what a GIS user expects to see: ISPRS impervious surfaces white, buildings blue, low
vegetation cyan, trees green, cars yellow, clutter red. ISPRS clutter is trained as a
class but excluded from mean F1 and mIoU; UAVid averages all eight classes. UAVid's
clutter is black while ISPRS's black means "boundary, ignore": never share one
colour-to-id table between them.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

from ..card import ClassInfo
from ..errors import UnknownDatasetError

__all__ = ["DatasetInfo", "DATASETS", "IGNORE_INDEX", "dataset_info", "generic_classes", "named_classes"]

IGNORE_INDEX = 255
"""Label value of pixels that count in neither loss nor metrics, in every prepared dataset:
ISPRS eroded boundaries, UAVid padding, the padding of patches cut from a tile's edge."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a dataset should put in its card."""

    name: str
    classes: tuple[ClassInfo, ...]
    bands: tuple[str, ...]
    gsd_m: float | None


ISPRS_CLASSES = (
    ClassInfo("impervious_surfaces", (255, 255, 255)),
    ClassInfo("building", (0, 0, 255)),
    ClassInfo("low_vegetation", (0, 255, 255)),
    ClassInfo("tree", (0, 255, 0)),
    ClassInfo("car", (255, 255, 0)),
    ClassInfo("clutter", (255, 0, 0), in_mean=False),
)

UAVID_CLASSES = (
    ClassInfo("building", (128, 0, 0)),
    ClassInfo("road", (128, 64, 128)),
    ClassInfo("tree", (0, 128, 0)),
    ClassInfo("low_vegetation", (128, 128, 0)),
    ClassInfo("moving_car", (64, 0, 128)),
    ClassInfo("static_car", (192, 0, 192)),
    ClassInfo("human", (64, 64, 0)),
    ClassInfo("clutter", (0, 0, 0)),
)

DATASETS = {
    "vaihingen": DatasetInfo("vaihingen", ISPRS_CLASSES, ("NIR", "R", "G"), 0.09),
    "potsdam": DatasetInfo("potsdam", ISPRS_CLASSES, ("R", "G", "B"), 0.05),
    "uavid": DatasetInfo("uavid", UAVID_CLASSES, ("R", "G", "B"), None),
}


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name (case-insensitive)."""
    key = name.lower()
    if key not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}", hint=f"choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def _hue_colour(step: int) -> tuple[int, int, int]:
    hue = (step * 0.618033988749895) % 1.0  # golden-ratio steps keep neighbours distinct
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def generic_classes(num_classes: int) -> tuple[ClassInfo, ...]:
    """``class_0 .. class_{K-1}`` with well-separated colours, for models of unknown data."""
    return tuple(ClassInfo(f"class_{i}", _hue_colour(i)) for i in range(num_classes))


_KNOWN_COLOURS = {c.name: c.color for c in (*UAVID_CLASSES, *ISPRS_CLASSES)} | {
    "background": (0, 0, 0),
    "water": (30, 110, 230),
    "woodland": (0, 128, 0),
    "forest": (0, 128, 0),
    "roads": (128, 64, 128),
    "buildings": (0, 0, 255),
}
"""Colours users know for common class names (the datasets' own first); other names get generated ones."""


def named_classes(names: list[str]) -> tuple[ClassInfo, ...]:
    """Classes of these names with distinct colours that depend on the names alone (stable across runs).

    A common name keeps its usual colour (building blue, tree green) unless an earlier class
    took it; every other class gets the next unused golden-ratio hue.
    """
    used: set[tuple[int, int, int]] = set()
    classes = []
    step = 0
    for name in names:
        colour = _KNOWN_COLOURS.get(name.strip().lower())
        while colour is None or colour in used:
            colour, step = _hue_colour(step), step + 1
        used.add(colour)
        classes.append(ClassInfo(name, colour))
    return tuple(classes)
