"""Polygon clean-up and measurement in a metric frame.

Holes, small objects, simplification, right-angle regularisation of buildings, oriented
boxes of cars. Everything here works on shapely polygons whose coordinates are ground
metres with y pointing north (the :class:`~aerialseg.vector.frame.Frame` provides them),
so areas are m², tolerances are metres and right angles are right angles on the ground.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .settings import Cleanup

if TYPE_CHECKING:
    from shapely import Polygon

__all__ = ["canonical", "clean", "dominant_angle", "fill_holes", "regularize", "oriented_box", "oriented_boxes"]


def canonical(polygon: Polygon) -> Polygon:
    """The same polygon however it was assembled: start vertex fixed, collinear vertices gone.

    A region merged from strips has extra vertices where the strip edges crossed it; after
    this, it has exactly the vertices of the same region polygonised in one piece, so any
    later simplification gives the same result.
    """
    import shapely

    return shapely.normalize(shapely.simplify(shapely.normalize(polygon), 0.0, preserve_topology=False))


def fill_holes(polygon: Polygon, max_area: float) -> Polygon:
    """``polygon`` without the holes smaller than ``max_area``."""
    import shapely

    if max_area <= 0 or not polygon.interiors:
        return polygon
    keep = [ring for ring in polygon.interiors if shapely.Polygon(ring).area >= max_area]
    return shapely.Polygon(polygon.exterior, keep)


def clean(polygon: Polygon, cleanup: Cleanup, pixel_m: float) -> Polygon | None:
    """Apply ``cleanup`` to a metric polygon; None when it is too small to keep."""
    import shapely

    polygon = fill_holes(polygon, cleanup.fill_holes_m2)
    if polygon.area < cleanup.min_area_m2:
        return None
    tolerance = cleanup.simplify * (pixel_m if cleanup.simplify_unit == "px" else 1.0)
    if tolerance > 0:
        polygon = shapely.simplify(polygon, tolerance, preserve_topology=True)
    if cleanup.regularize:
        polygon = regularize(polygon, max(tolerance, 1.5 * pixel_m))
    return polygon if isinstance(polygon, shapely.Polygon) and not polygon.is_empty else None


def dominant_angle(ring: np.ndarray) -> float:
    """The outline's dominant direction modulo 90 degrees (radians), edges weighted by length."""
    d = np.diff(ring, axis=0)
    length = np.hypot(d[:, 0], d[:, 1])
    angle = np.arctan2(d[:, 1], d[:, 0])
    return math.atan2(float((length * np.sin(4 * angle)).sum()), float((length * np.cos(4 * angle)).sum())) / 4


def _square_ring(ring: np.ndarray) -> np.ndarray | None:
    """An axis-aligned ring through ``ring``'s runs of horizontal and vertical edges (None if < 4 runs)."""
    d = np.diff(ring, axis=0)
    keep = np.hypot(d[:, 0], d[:, 1]) > 0
    d, starts = d[keep], ring[:-1][keep]
    if len(d) < 4:
        return None
    horizontal = np.abs(d[:, 0]) >= np.abs(d[:, 1])
    change = np.flatnonzero(horizontal != np.roll(horizontal, 1))
    if len(change) < 4:
        return None
    order = np.roll(np.arange(len(d)), -change[0])  # start at a change of direction
    d, starts, horizontal = d[order], starts[order], horizontal[order]
    bounds = np.flatnonzero(horizontal != np.roll(horizontal, 1)).tolist() + [len(d)]
    runs = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        length = np.hypot(d[a:b, 0], d[a:b, 1])
        middle = starts[a:b] + d[a:b] / 2
        axis = 1 if horizontal[a] else 0  # a horizontal run sits at a y, a vertical one at an x
        runs.append((bool(horizontal[a]), float((middle[:, axis] * length).sum() / length.sum())))
    corners = []
    for (h1, v1), (_, v2) in zip(runs, runs[1:] + runs[:1], strict=True):
        corners.append((v2, v1) if h1 else (v1, v2))
    corners.append(corners[0])
    return np.array(corners)


def regularize(polygon: Polygon, tolerance: float) -> Polygon:
    """Square a building outline: every edge parallel or perpendicular to its dominant direction.

    The outline (simplified by ``tolerance`` metres) is rotated so its dominant direction
    is horizontal, each run of near-horizontal or near-vertical edges becomes one straight
    side at the run's length-weighted mean position, and the corners are where sides meet.
    A result that is invalid or departs from the outline (IoU below 0.8) is not used: the
    simplified outline is returned instead.
    """
    import shapely
    from shapely import affinity

    simple = shapely.simplify(polygon, tolerance, preserve_topology=True)
    exterior = np.asarray(simple.exterior.coords)
    theta = dominant_angle(exterior)
    origin = simple.centroid
    turned = affinity.rotate(simple, -theta, origin=origin, use_radians=True)
    shell = _square_ring(np.asarray(turned.exterior.coords))
    if shell is None:
        return simple
    holes = [h for h in (_square_ring(np.asarray(r.coords)) for r in turned.interiors) if h is not None]
    squared = affinity.rotate(shapely.Polygon(shell, holes), theta, origin=origin, use_radians=True)
    if not squared.is_valid or squared.is_empty:
        return simple
    union = squared.union(polygon).area
    if union == 0 or squared.intersection(polygon).area / union < 0.8:
        return simple
    return squared


@dataclass(frozen=True)
class OrientedBox:
    """Minimum-area rectangle: its polygon, long side, short side (metres), heading of the long side."""

    polygon: Polygon
    length_m: float
    width_m: float
    heading_deg: float


def oriented_box(polygon: Polygon) -> OrientedBox:
    """The minimum rotated rectangle; heading in degrees clockwise from north, 0-180 (a car's axis)."""
    return oriented_boxes([polygon])[0]


def oriented_boxes(polygons: Sequence[Polygon]) -> list[OrientedBox]:
    """:func:`oriented_box` of every polygon, the rectangles and their sides computed for all at once."""
    import shapely

    shapes = np.array(polygons, dtype=object)
    boxes = shapely.oriented_envelope(shapes)
    rectangles = (shapely.get_type_id(boxes) == shapely.GeometryType.POLYGON) & (
        shapely.get_num_coordinates(boxes) == 5
    )
    corners = shapely.get_coordinates(boxes[rectangles]).reshape(-1, 5, 2)
    a, b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1]
    len_a, len_b = np.hypot(a[:, 0], a[:, 1]), np.hypot(b[:, 0], b[:, 1])
    long_side = np.where((len_a >= len_b)[:, None], a, b)
    headings = np.degrees(np.arctan2(long_side[:, 0], long_side[:, 1])) % 180.0
    sides = iter(
        zip(np.maximum(len_a, len_b).tolist(), np.minimum(len_a, len_b).tolist(), headings.tolist(), strict=True)
    )
    result = []
    for polygon, box, rectangle in zip(shapes, boxes, rectangles.tolist(), strict=True):
        if rectangle:
            length, width, heading = next(sides)
            result.append(OrientedBox(box, length, width, heading))
        else:  # degenerate (a line): its extent is the length
            x0, y0, x1, y1 = polygon.bounds
            dx, dy = x1 - x0, y1 - y0
            result.append(OrientedBox(polygon, max(dx, dy), min(dx, dy), 0.0 if dy >= dx else 90.0))
    return result
