"""A finished region as an output feature: its polygon cleaned, measured in metres, with its attributes.

A region comes out of :func:`~.regions.iter_regions` in pixel coordinates; here it goes to
the raster's CRS, to ground metres for clean-up and measurement (:mod:`.frame`,
:mod:`.shapes`) and back. Without clean-up the polygon is written exactly as found, so a
clean-up-free output is the class raster's own footprints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .classes import class_kind
from .frame import Frame
from .regions import Region
from .shapes import Cleanup, canonical, clean, oriented_boxes

__all__ = ["columns", "features"]


def columns(name: str, confidence: bool) -> dict[str, str]:
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
    return declared


def features(
    regions: list[Region],
    names: dict[int, str],
    cleanups: dict[str, Cleanup],
    frame: Frame,
    width: int,
    height: int,
    confidence: bool,
) -> list[dict[str, Any] | None]:
    """The output rows of ``regions`` of a ``width`` x ``height`` raster (None where clean-up drops one).

    The geometric work common to all (canonical form, the raster's CRS, metres, areas and
    perimeters) is done for the whole batch in shapely's vectorised functions; only clean-up
    and the cars' boxes go region by region.
    """
    import shapely

    if not regions:
        return []
    pixel = canonical(np.array([r.geometry for r in regions], dtype=object))
    bounds = shapely.bounds(pixel)
    world = frame.pixel_to_world(pixel)
    metric = frame.to_metric(world)
    areas, lengths = shapely.area(metric), shapely.length(metric)
    shapes = []
    for i, region in enumerate(regions):
        cleanup = cleanups[names[region.class_id]]
        plain = not (cleanup.min_area_m2 or cleanup.fill_holes_m2 or cleanup.simplify or cleanup.regularize)
        shapes.append((plain, metric[i] if plain else clean(metric[i], cleanup, frame.pixel_m)))
    cars = [i for i, region in enumerate(regions) if class_kind(names[region.class_id]) == "car" and shapes[i][1]]
    boxes = dict(zip(cars, oriented_boxes([shapes[i][1] for i in cars]), strict=True))
    rows: list[dict[str, Any] | None] = []
    for i, region in enumerate(regions):
        name = names[region.class_id]
        cleanup = cleanups[name]
        plain, shape = shapes[i]
        if shape is None:
            rows.append(None)
            continue
        x0, y0, x1, y1 = bounds[i]
        row: dict[str, Any] = {
            "class": name,
            "class_id": region.class_id,
            "area_m2": float(areas[i] if plain else shape.area),
            "perimeter_m": float(lengths[i] if plain else shape.length),
            "touches_nodata": region.touches_nodata,
            "touches_raster_edge": bool(x0 <= 0 or y0 <= 0 or x1 >= width or y1 >= height),
        }
        if confidence:
            row["mean_confidence"] = region.confidence_sum / region.pixels if region.pixels else 0.0
            row["max_confidence"] = region.confidence_max
        boxed = False
        if i in boxes:
            box = boxes[i]
            row |= {"length_m": box.length_m, "width_m": box.width_m, "heading_deg": box.heading_deg}
            if cleanup.box:
                shape, boxed = box.polygon, True
        row["geometry"] = world[i] if plain and not boxed else frame.from_metric(shape)
        rows.append(row)
    return rows
