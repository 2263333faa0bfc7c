"""A finished region as an output feature: its polygon cleaned, measured in metres, with its attributes.

A region comes out of :func:`~.regions.iter_regions` in pixel coordinates; here it goes to
the raster's CRS, to ground metres for clean-up and measurement (:mod:`.frame`,
:mod:`.shapes`) and back. Without clean-up the polygon is written exactly as found, so a
clean-up-free output is the class raster's own footprints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np

from .cars import ScoreAt, split_cars
from .classes import class_kind
from .frame import Frame
from .regions import Region
from .shapes import Cleanup, canonical, clean, oriented_boxes

__all__ = ["ScoreReader", "columns", "features"]

ScoreReader: TypeAlias = Callable[[int, tuple[int, int, int, int]], np.ndarray]
"""``(class_id, (col0, row0, col1, row1))`` -> that window's scores of the class (0 to 1), rows by columns."""

_EDGE = 1e-6
"""Pixels: a bound this near the raster's edge is on it (a split car's bounds come back through two transforms)."""


def columns(name: str, confidence: bool, instances: bool = False) -> dict[str, str]:
    """Attribute columns (name -> numpy dtype) of layer ``name``, declared so even an empty layer has them."""
    declared = {
        "class": "object",
        "class_id": "int64",
        "area_m2": "float64",
        "perimeter_m": "float64",
        "touches_nodata": "bool",
        "touches_raster_edge": "bool",
    }
    if confidence:
        declared |= {"mean_confidence": "float64", "max_confidence": "float64"}
    if class_kind(name) == "car":
        declared |= {"length_m": "float64", "width_m": "float64", "heading_deg": "float64"}
        if instances:
            declared |= {"car_id": "int64", "merged": "bool"}
    return declared


def features(
    regions: list[Region],
    names: dict[int, str],
    cleanups: dict[str, Cleanup],
    frame: Frame,
    width: int,
    height: int,
    confidence: bool,
    scores: ScoreReader | None = None,
) -> list[list[dict[str, Any]]]:
    """The output rows of each of ``regions`` of a ``width`` x ``height`` raster.

    A region gives one row, none when clean-up drops it, or, for a car region split into
    single cars (``Cleanup.instances``, see :mod:`.cars`), a row per car; each car row says
    whether its region was ``merged`` cars that could not be split (its ``car_id`` is the
    caller's to number); ``scores``, when given, reads the score surface under a car region
    for the split. The geometric work common to all (canonical form, the raster's CRS,
    metres, areas and perimeters) is done for the whole batch in shapely's vectorised
    functions; clean-up, splitting and the cars' boxes go region by region.
    """
    import shapely

    if not regions:
        return []
    pixel = canonical(np.array([r.geometry for r in regions], dtype=object))
    bounds = shapely.bounds(pixel)
    world = frame.pixel_to_world(pixel)
    metric = frame.to_metric(world)
    areas, lengths = shapely.area(metric), shapely.length(metric)
    pieces: list[list[tuple[Any, bool, bool]]] = []  # per region: (metric shape, exact as found, merged)
    for i, region in enumerate(regions):
        cleanup = cleanups[names[region.class_id]]
        plain = not (cleanup.min_area_m2 or cleanup.fill_holes_m2 or cleanup.simplify or cleanup.regularize)
        split = None
        if cleanup.instances:
            score_at = _score_at(scores, region.class_id, bounds[i], frame) if scores is not None else None
            split = split_cars(metric[i], frame.pixel_m, score_at)
        parts = [(metric[i], False)] if split is None else [(car, split.merged) for car in split.cars]
        whole = split is None or len(split.cars) == 1
        found = []
        for shape, merged in parts:
            kept = shape if plain else clean(shape, cleanup, frame.pixel_m)
            if kept is not None:
                found.append((kept, plain and whole, merged))
        pieces.append(found)
    cars = [
        (i, k)
        for i, region in enumerate(regions)
        if class_kind(names[region.class_id]) == "car"
        for k in range(len(pieces[i]))
    ]
    boxes = dict(zip(cars, oriented_boxes([pieces[i][k][0] for i, k in cars]), strict=True))
    rows: list[list[dict[str, Any]]] = []
    for i, region in enumerate(regions):
        name = names[region.class_id]
        cleanup = cleanups[name]
        out: list[dict[str, Any]] = []
        for k, (shape, exact, merged) in enumerate(pieces[i]):
            outline = world[i] if exact else frame.from_metric(shape)
            own_place = len(pieces[i]) > 1  # a car split from its region
            x0, y0, x1, y1 = shapely.bounds(frame.world_to_pixel(outline)) if own_place else bounds[i]
            row: dict[str, Any] = {
                "class": name,
                "class_id": region.class_id,
                "area_m2": float(areas[i] if exact else shape.area),
                "perimeter_m": float(lengths[i] if exact else shape.length),
                "touches_nodata": region.touches_nodata,
                "touches_raster_edge": bool(min(x0, y0) <= _EDGE or x1 >= width - _EDGE or y1 >= height - _EDGE),
            }
            if confidence:
                row["mean_confidence"] = region.confidence_sum / region.pixels if region.pixels else 0.0
                row["max_confidence"] = region.confidence_max
            geometry = outline
            if (i, k) in boxes:
                box = boxes[(i, k)]
                row |= {"length_m": box.length_m, "width_m": box.width_m, "heading_deg": box.heading_deg}
                if cleanup.instances:
                    row["merged"] = merged
                if cleanup.box:
                    geometry = frame.from_metric(box.polygon)
            row["geometry"] = geometry
            out.append(row)
        rows.append(out)
    return rows


def _score_at(scores: ScoreReader, class_id: int, bounds: np.ndarray, frame: Frame) -> ScoreAt:
    """The score at points in metres, from the window of ``scores`` under a region's pixel ``bounds``.

    The window is read only when the split asks (most car regions are one car, which needs
    no scores).
    """
    import shapely

    col0, row0, col1, row1 = (int(v) for v in np.rint(bounds))
    window: list[np.ndarray] = []

    def score_at(points: np.ndarray) -> np.ndarray:
        if not window:
            window.append(scores(class_id, (col0, row0, col1, row1)))
        patch = window[0]
        carrier = shapely.linestrings(np.concatenate([points, points[:1]]))  # one geometry: one transform call
        pixel = shapely.get_coordinates(frame.world_to_pixel(frame.from_metric(carrier)))[:-1]
        rows = np.clip(np.floor(pixel[:, 1]).astype(np.int64) - row0, 0, patch.shape[0] - 1)
        cols = np.clip(np.floor(pixel[:, 0]).astype(np.int64) - col0, 0, patch.shape[1] - 1)
        return patch[rows, cols]

    return score_at
