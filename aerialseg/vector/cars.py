"""Touching cars told apart: a car region that holds several cars becomes one polygon per car.

A class map merges cars that touch or nearly touch (rows in a car park, queues), so one
connected region can hold many. Cars have a known size (:data:`CAR_WIDTH_M` by
:data:`CAR_LENGTH_M`), and that is all this module uses: it needs the region's shape alone,
so it works on any class raster. A region whose oriented minimum rectangle fits one car stays
whole, whatever its shape. Otherwise the rectangle is read as a grid of cars: side by side
along it or end to end, and, cutting straight across, one or two rows of them (nose to
nose); cars parked at an angle to their row are cut along their own axes, the outline's
dominant direction. For each reading, the count of typical cars that fills the rectangle, one
fewer and one more are tried. A cut goes where the least of the rectangle's cross-section is
car, near the even spacing: cars meet at rounded corners, so a row of touching cars pinches
where one ends and the next begins. The reading whose worst cut runs through the least car
(and whose cells are nearest a typical car) wins; a cut through more than :data:`_MAX_CUT` of
its cross-section is through a car, and a region no reading splits (a lorry, a car and a
trailer, a blob) stays one object flagged ``merged``.

With the car score surface at hand (the network's car probability, or its confidence in
the pixel's class), the cross-section is weighed by it: a network's scores dip where one
car ends and the next begins even where the class map shows no gap at all, so the cuts find
the seams the outline alone cannot show. Scores are read relative to the region's own high
scores, so a confidently mapped car still counts as whole car. Everything here is in ground
metres (see :mod:`.frame`); the split is a region's own, so a car cut by a strip boundary is
split as in the whole raster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from .shapes import dominant_angle

if TYPE_CHECKING:
    from shapely import Polygon

__all__ = ["CAR_LENGTH_M", "CAR_WIDTH_M", "CarSplit", "ScoreAt", "split_cars"]

ScoreAt: TypeAlias = Callable[[np.ndarray], np.ndarray]
"""The car score (0 to 1) at each of ``(n, 2)`` points in metres: the score surface under a region."""

CAR_WIDTH_M = (1.5, 2.3)
"""A car's width, narrowest to widest (mirrors excluded), in metres."""

CAR_LENGTH_M = (3.4, 5.6)
"""A car's length, smallest to largest (vans included, lorries not), in metres."""

_LEAST_CAR_M2 = 0.8 * CAR_WIDTH_M[0] * CAR_LENGTH_M[0]
"""The smallest car's footprint, rounded corners and all."""

_LEAST_PART_M2 = 2.0
"""A cell's part of the region smaller than this is a sliver of a car, not a car."""

_FILL = 0.55
"""The least share of its rectangle a group of cars square to it covers (cars are nearly rectangular)."""

_SLANTED_FILL = 0.7 * _FILL
"""The same for cars parked at an angle to their row, whose ends leave the rectangle's corners empty."""

_SEARCH = 0.3
"""How far from the even spacing a cut may move, as a share of a cell."""

_MAX_CUT = 0.95
"""The most of its cross-section a cut between two cars may run through (rounded corners leave gaps)."""


@dataclass(frozen=True)
class CarSplit:
    """The cars of one region (metric polygons) and whether the region could not be split as cars."""

    cars: list[Polygon]
    merged: bool


def split_cars(region: Polygon, pixel_m: float, score_at: ScoreAt | None = None) -> CarSplit:
    """The cars of ``region`` (a car region in metres, ``pixel_m`` its raster's pixel size).

    ``score_at``, when given, weighs the region's cross-sections by the car score under them.
    """
    import shapely

    box = shapely.oriented_envelope(region)
    if not isinstance(box, shapely.Polygon) or len(box.exterior.coords) != 5:
        return CarSplit([region], False)
    corners = np.asarray(box.exterior.coords)[:4]
    a, b = corners[1] - corners[0], corners[3] - corners[0]
    if np.hypot(*a) < np.hypot(*b):
        a, b = b, a
    length, width = float(np.hypot(*a)), float(np.hypot(*b))
    if _one_car(length, width):
        return CarSplit([region], False)
    if region.area < max(2 * _LEAST_CAR_M2, _SLANTED_FILL * length * width):  # too small for two, or too hollow
        return CarSplit([region], True)
    origin, u, v = corners[0], a / length, b / width
    if u[0] * v[1] - u[1] * v[0] < 0:  # v a quarter turn anticlockwise from u, as slants are measured
        origin, v = origin + b, -v
    mask, step = _rasterized(region, (origin, u, v), length, width, pixel_m, score_at)
    top = mask.shape[0] * step
    rows_share = mask.sum(axis=1) / mask.shape[1]
    counts_across = {1, *_counts(width, CAR_WIDTH_M), *_counts(width, CAR_LENGTH_M)}
    across_cuts = {n: _cuts(rows_share, n, 0.0, top, step) for n in counts_across}  # the same for every slant
    readings: list[tuple[float, list[float], list[float], float]] = []  # worst cut, cuts along, cuts across, slant
    for slant in _slants(region, u, pixel_m):
        if slant == _STRAIGHT and region.area < _FILL * length * width:
            continue
        share, t0, t1 = _profile(mask, step, slant)
        extent = (t1 - t0) * math.sin(slant)
        for along_sizes, across_sizes in ((CAR_WIDTH_M, CAR_LENGTH_M), (CAR_LENGTH_M, CAR_WIDTH_M)):
            across_counts = _counts(width, across_sizes) if slant == _STRAIGHT else [1]
            for along in _counts(extent, along_sizes):
                cuts_t, worst_t = _cuts(share, along, t0, t1, step)
                for across in across_counts:
                    cuts_y, worst_y = across_cuts[across]
                    if along * across >= 2 and max(worst_t, worst_y) <= _MAX_CUT:  # no cut through a car
                        readings.append((max(worst_t, worst_y), cuts_t, cuts_y, slant))
    best: tuple[float, list[Polygon]] | None = None
    for cut_cost, cuts_t, cuts_y, slant in sorted(readings, key=lambda r: r[0])[:_READINGS]:
        cells = _cells(cuts_t, cuts_y, slant, top, (origin, u, v))
        pieces = [region.intersection(cell) for cell in cells]
        rough = [p for p in (_largest(piece) for piece in pieces) if p is not None and p.area >= _LEAST_PART_M2]
        if len(rough) < 2:
            continue
        unexplained = math.log(region.area / sum(part.area for part in rough))  # what no car holds
        cost = _misfit(rough) + unexplained + cut_cost / 2
        if best is None or cost < best[0]:
            best = (cost, pieces)
    if best is None:
        return CarSplit([region], True)
    cars = [car for car in (_part(region, piece, pixel_m) for piece in best[1]) if car is not None]
    return CarSplit(cars, False) if len(cars) >= 2 else CarSplit([region], True)


_READINGS = 12
"""How many readings, those whose cuts run through the least car, are cut out and compared by their cars' shapes."""


def _misfit(cars: list[Polygon]) -> float:
    """How far the parts are from a car, on average (0: all typical): by area, then by their sides.

    Area comes first, as its distance from a typical car's: a cell's part may keep a sliver of
    its neighbour, which stretches its box but hardly changes its area. A side within a car's
    range costs little (its distance from the typical side, a tenth as much); beyond the range,
    the distance to it counts in full.
    """
    from .shapes import oriented_boxes

    def off(value: float, low: float, high: float) -> float:
        typical = math.log(value / ((low + high) / 2))
        return abs(typical) / 10 + max(0.0, math.log(low / value), math.log(value / high))

    typical_area = sum(CAR_LENGTH_M) / 2 * sum(CAR_WIDTH_M) / 2
    by_area = [abs(math.log(car.area / typical_area)) for car in cars]
    by_sides = [
        off(max(box.length_m, 1e-3), *CAR_LENGTH_M) + off(max(box.width_m, 1e-3), *CAR_WIDTH_M)
        for box in oriented_boxes(cars)
    ]
    return float(np.mean(by_area) + np.mean(by_sides) / 2)


_STRAIGHT = math.pi / 2
"""Cuts straight across the rectangle (cars parked square to their row, or end to end)."""


def _counts(extent: float, sizes: tuple[float, float]) -> list[int]:
    """How many cars of ``sizes`` (their side along ``extent``) may fill it: the typical count, one fewer, one more."""
    low, high = sizes
    typical = max(1, round(extent / ((low + high) / 2)))
    return [n for n in (typical - 1, typical, typical + 1) if n >= 1 and low * 0.8 <= extent / n <= high * 1.2]


def _one_car(length: float, width: float) -> bool:
    """Whether a rectangle of these sides holds one car and no more."""
    return length <= CAR_LENGTH_M[1] * 1.1 and width <= CAR_WIDTH_M[1] * 1.25


def _slants(region: Polygon, u: np.ndarray, pixel_m: float) -> list[float]:
    """Directions to cut along (radians from the rectangle's length): across it, and the cars' own axes.

    Cars parked at an angle to their row meet along their own axes, which the outline's
    dominant direction gives once its pixel steps are smoothed away.
    """
    import shapely

    simple = shapely.simplify(region, 1.5 * pixel_m, preserve_topology=True)
    ring = np.asarray(simple.exterior.coords) if isinstance(simple, shapely.Polygon) else None
    slants = [_STRAIGHT]
    if ring is None or len(ring) < 4:
        return slants
    axis = dominant_angle(ring)
    relative = (axis - math.atan2(u[1], u[0])) % (math.pi / 2)
    for slant in (relative, relative + math.pi / 2):
        slant %= math.pi
        if math.radians(20) < slant < math.radians(160) and abs(slant - _STRAIGHT) > math.radians(20):
            slants.append(slant)
    return slants


def _rasterized(
    region: Polygon,
    frame: tuple[np.ndarray, np.ndarray, np.ndarray],
    length: float,
    width: float,
    pixel_m: float,
    score_at: ScoreAt | None,
) -> tuple[np.ndarray, float]:
    """The region drawn in its rectangle's ``frame`` (columns along ``u``, rows along ``v``) and the cell size.

    A cell is 1 inside the region, 0 outside, or with ``score_at`` its score relative to the
    region's high scores (:data:`_HIGH_SCORE`), at most 1.
    """
    import shapely
    from affine import Affine
    from rasterio.features import rasterize

    origin, u, v = frame
    step = max(pixel_m / 2, min(length, width) / 200)
    columns, rows = max(1, math.ceil(length / step)), max(1, math.ceil(width / step))
    turned = shapely.transform(region, lambda xy: np.column_stack([(xy - origin) @ u, (xy - origin) @ v]))
    mask = rasterize([(turned, 1)], out_shape=(rows, columns), transform=Affine.scale(step), fill=0, dtype="uint8")
    if score_at is None or not mask.any():
        return mask, step
    y, x = np.nonzero(mask)
    scores = score_at(origin + np.outer((x + 0.5) * step, u) + np.outer((y + 0.5) * step, v))
    high = float(np.quantile(scores, _HIGH_SCORE))
    weighed = np.zeros(mask.shape, np.float64)
    weighed[y, x] = np.clip(scores / high, 1e-3, 1.0) if high > 0 else 1.0  # in the region: > 0
    return weighed, step


_HIGH_SCORE = 0.75
"""The quantile of a region's scores that counts as whole car: most of a car region is inside a car."""


def _profile(mask: np.ndarray, step: float, slant: float) -> tuple[np.ndarray, float, float]:
    """The share of the rectangle's cross-section that is car, along the row, in bins of ``step``.

    Cross-sections run at ``slant``; a bin's position is where its cross-section meets the
    rectangle's first side (``t``), from ``t0`` to ``t1``.
    """
    rows, columns = mask.shape
    cot = math.cos(slant) / math.sin(slant)
    y, x = (np.mgrid[0:rows, 0:columns] + 0.5) * step
    t = x - y * cot
    inside = mask > 0
    t0, t1 = float(t[inside].min()), float(t[inside].max()) + step
    bins = np.clip(np.floor((t - t0) / step + 1e-6).astype(np.int64), 0, None)
    car = np.bincount(bins[inside], weights=mask[inside], minlength=bins.max() + 1)
    total = np.bincount(bins.ravel(), minlength=bins.max() + 1)
    return np.where(total > 0, car / np.maximum(total, 1), 1.0), t0, t1  # an empty bin is no place to cut


def _cells(
    cuts_t: list[float], cuts_y: list[float], slant: float, top: float, frame: tuple[np.ndarray, ...]
) -> list[Polygon]:
    """The grid's cells in metres: slanted strips between ``cuts_t``, cut by ``cuts_y`` across the row."""
    import shapely

    origin, u, v = frame
    cot = math.cos(slant) / math.sin(slant)
    cells = []
    for a, b in zip(cuts_t[:-1], cuts_t[1:], strict=True):
        strip = shapely.Polygon([(a, 0.0), (b, 0.0), (b + top * cot, top), (a + top * cot, top)])
        for c, d in zip(cuts_y[:-1], cuts_y[1:], strict=True):
            cell = strip.intersection(shapely.box(-1e9, c, 1e9, d)) if len(cuts_y) > 2 else strip
            cells.append(shapely.transform(cell, lambda xy: origin + np.outer(xy[:, 0], u) + np.outer(xy[:, 1], v)))
    return cells


def _cuts(share: np.ndarray, count: int, start: float, stop: float, step: float) -> tuple[list[float], float]:
    """``count`` cells' bounds from ``start`` to ``stop``, and the largest ``share`` a cut runs through.

    Each cut goes, within :data:`_SEARCH` of a cell from the even spacing, where the share is
    least (cars meet at rounded corners), nearest the even spacing among equals.
    """
    cell = (stop - start) / count
    cuts, worst = [start - step], 0.0
    for k in range(1, count):
        even = start + k * cell
        lo = max(0, int((even - _SEARCH * cell - start) / step))
        hi = min(len(share), int((even + _SEARCH * cell - start) / step) + 1)
        if hi <= lo:
            return [], 1.0
        window = share[lo:hi]
        lowest = np.flatnonzero(window <= window.min() + 1e-9)
        nearest = lo + int(lowest[np.argmin(np.abs(start + (lo + lowest + 0.5) * step - even))])
        cuts.append(start + (nearest + 0.5) * step)
        worst = max(worst, float(share[nearest]))
    cuts.append(stop + step)
    return cuts, worst


def _largest(geometry: object) -> Polygon | None:
    """The largest polygon of an intersection, None if it has none."""
    import shapely

    parts = [g for g in shapely.get_parts(geometry) if isinstance(g, shapely.Polygon) and not g.is_empty]
    return max(parts, key=lambda g: g.area) if parts else None


def _part(region: Polygon, piece: object, pixel_m: float) -> Polygon | None:
    """The car in a cell's ``piece`` of the region, without the slivers of neighbours a slanted cut leaves.

    Slivers thinner than three pixels go (an opening); of what is left, the largest polygon
    (within the region), if it is big enough to be a car.
    """
    opened = _opening(piece, 1.5 * pixel_m)
    largest = _largest(opened)
    return _largest(largest.intersection(region)) if largest is not None and largest.area >= _LEAST_PART_M2 else None


def _opening(geometry: Any, distance: float) -> Any:  # noqa: ANN401 (a shapely geometry)
    """``geometry`` shrunk and grown back by ``distance``: what is thinner than twice that goes."""
    return geometry.buffer(-distance, join_style="mitre").buffer(distance, join_style="mitre")
