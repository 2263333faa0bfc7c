"""The settings of one vectorization, and the clean-up each class gets from them.

One options object serves the CLI, ``predict --vectorize`` and the API, so all three clean
the same class the same way: the class's kind picks the defaults
(:data:`DEFAULT_CLEANUP`), and the options a user gave override them. Import-light (no numpy):
the command line declares its options from these defaults when it starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import AerialsegError
from .classes import class_kind

__all__ = [
    "Cleanup",
    "DEFAULT_CLEANUP",
    "VectorizeOptions",
    "STRIP_ROWS",
    "CAR_GEOMETRIES",
    "check_car_geometry",
    "check_sizes",
    "cleanup_for",
]

STRIP_ROWS = 512
"""Rows of the class raster read and polygonised at once (memory is one strip plus the open regions)."""

CAR_GEOMETRIES = ("outline", "box")
"""What a car's polygon is: its outline, or its oriented minimum rectangle."""


@dataclass(frozen=True)
class Cleanup:
    """Per-class clean-up; areas in m², ``simplify`` in metres or pixels (``simplify_unit``).

    ``min_area_m2``: smaller objects are dropped. ``fill_holes_m2``: holes smaller than this
    are filled. ``simplify``: Douglas-Peucker tolerance (topology-preserving: a polygon stays
    valid and keeps its holes apart). ``regularize``: square the outline to the object's
    dominant orientation (buildings). ``box``: output the oriented minimum rectangle instead
    of the outline (cars; its length, width and heading are attributes either way).
    ``instances``: split a region of touching cars into one object per car (:mod:`.cars`).
    """

    min_area_m2: float = 0.0
    fill_holes_m2: float = 0.0
    simplify: float = 0.0
    simplify_unit: str = "px"
    regularize: bool = False
    box: bool = False
    instances: bool = False


# What a GIS user wants without thinking about it: no specks, no pinholes, no staircases.
DEFAULT_CLEANUP = {
    "building": Cleanup(min_area_m2=4.0, fill_holes_m2=2.0, simplify=1.0),
    "car": Cleanup(min_area_m2=1.0, fill_holes_m2=1.0, simplify=1.0),
}


@dataclass(frozen=True)
class VectorizeOptions:
    """Settings of one vectorization (shared by the CLI, ``predict --vectorize`` and the API).

    ``classes``: names, ids, or ``name=id`` (None: every building and car class). The
    clean-up defaults depend on the class (:data:`DEFAULT_CLEANUP`); ``min_area_m2``,
    ``fill_holes_m2``, ``simplify`` (with ``simplify_unit`` px or m) and ``regularize``
    override them for every class, ``cleanup`` per class name. ``car_geometry``: ``outline``
    or ``box`` (the oriented rectangle). ``confidence``: a probability raster (band per
    class) or uncertainty raster (``confidence`` band) of the same grid, for mean/max
    confidence attributes and the car scores a split follows. ``car_instances``: touching cars
    become one object each (a region that cannot be split is one object flagged ``merged``).
    ``parallel``: polygonise the next strips in a second process while this one's regions are
    merged and written (the same output; off: all in this process).
    """

    classes: tuple[str, ...] | None = None
    confidence: str | os.PathLike[str] | None = None
    min_area_m2: float | None = None
    fill_holes_m2: float | None = None
    simplify: float | None = None
    simplify_unit: str = "px"
    regularize: bool = False
    car_geometry: str = "outline"
    cleanup: dict[str, Cleanup] = field(default_factory=dict)
    strip_rows: int = STRIP_ROWS
    overwrite: bool = False
    parallel: bool = True
    car_instances: bool = True


def check_car_geometry(options: VectorizeOptions) -> None:
    """Refuse an unknown ``car_geometry`` before any work."""
    if options.car_geometry not in CAR_GEOMETRIES:
        raise AerialsegError(
            f"unknown car geometry {options.car_geometry!r}", hint=f"use {' or '.join(CAR_GEOMETRIES)}"
        )


def check_sizes(options: VectorizeOptions) -> None:
    """Refuse a clean-up size or tolerance below 0 or not a number before any work (NaN drops nothing, silently)."""
    for name, flag, value in (
        ("min_area_m2", "--min-area", options.min_area_m2),
        ("fill_holes_m2", "--fill-holes", options.fill_holes_m2),
        ("simplify", "--simplify", options.simplify),
    ):
        if value is not None and not value >= 0:
            raise AerialsegError(f"{name} ({flag}) is {value}", hint="give 0 or more")
    if options.simplify_unit not in ("px", "m"):
        raise AerialsegError(f"unknown simplify unit {options.simplify_unit!r}", hint="use px or m")


def cleanup_for(name: str, options: VectorizeOptions) -> Cleanup:
    """The clean-up of class ``name``: its own or its kind's defaults, overridden by ``options``."""
    kind = class_kind(name)
    base = options.cleanup.get(name) or DEFAULT_CLEANUP.get(kind or "", Cleanup())
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("min_area_m2", options.min_area_m2),
            ("fill_holes_m2", options.fill_holes_m2),
            ("simplify", options.simplify),
        )
        if value is not None
    }
    if options.simplify is not None:
        changes["simplify_unit"] = options.simplify_unit
    if options.regularize and kind == "building":
        changes["regularize"] = True
    if kind == "car":
        changes["box"] = options.car_geometry == "box"
        changes["instances"] = options.car_instances
    return replace(base, **changes)
