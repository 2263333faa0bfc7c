"""A finished region as an output feature: its polygon cleaned, measured in metres, with its attributes.

A region comes out of :func:`~.regions.iter_regions` in pixel coordinates; here it goes to
the raster's CRS, to ground metres for clean-up and measurement (:mod:`.frame`,
:mod:`.shapes`) and back. Without clean-up the polygon is written exactly as found, so a
clean-up-free output is the class raster's own footprints.
"""

from __future__ import annotations

from typing import Any

from .classes import class_kind
from .frame import Frame
from .regions import Region
from .shapes import Cleanup, canonical, clean, oriented_box

__all__ = ["columns", "feature"]


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


def feature(
    region: Region, name: str, cleanup: Cleanup, frame: Frame, width: int, height: int, confidence: bool
) -> dict[str, Any] | None:
    """The output row of one region of a ``width`` x ``height`` raster, or None when clean-up drops it."""
    pixel = canonical(region.geometry)
    x0, y0, x1, y1 = pixel.bounds
    world = frame.pixel_to_world(pixel)
    plain = not (cleanup.min_area_m2 or cleanup.fill_holes_m2 or cleanup.simplify or cleanup.regularize)
    metric = frame.to_metric(world)
    shape = metric if plain else clean(metric, cleanup, frame.pixel_m)
    if shape is None:
        return None
    row: dict[str, Any] = {
        "class": name,
        "class_id": region.class_id,
        "area_m2": float(shape.area),
        "perimeter_m": float(shape.length),
        "touches_nodata": region.touches_nodata,
        "touches_raster_edge": bool(x0 <= 0 or y0 <= 0 or x1 >= width or y1 >= height),
    }
    if confidence:
        row["mean_confidence"] = region.confidence_sum / region.pixels if region.pixels else 0.0
        row["max_confidence"] = region.confidence_max
    if class_kind(name) == "car":
        box = oriented_box(shape)
        row |= {"length_m": box.length_m, "width_m": box.width_m, "heading_deg": box.heading_deg}
        if cleanup.box:
            shape = box.polygon
    row["geometry"] = world if plain and shape is metric else frame.from_metric(shape)
    return row
