"""Connected regions of a class raster as exact polygons, strip by strip, merged across strips.

A region is a 4-connected set of pixels of one class. Each strip of rows is polygonised by
GDAL (``rasterio.features.shapes``) in pixel coordinates, so every vertex is an integer,
areas are pixel counts and unions are exact. A piece with pixels in the strip's last row may
continue below, so it stays open; the next strip's first row says which of its pieces share
a pixel edge with which open region (both rows are drawn back from the pieces that reach
them). Per-pixel statistics (confidence sum and maximum, contact with nodata) come from a
label image of the whole strip, drawn only when a confidence raster or nodata asks for them.
A region with no piece in the current strip's last row is complete and is yielded at once,
as the coverage union of its pieces. Memory is a few strips (the next ones are polygonised
meanwhile) plus the open regions; the result is the same set of polygons as polygonising the whole
raster at once.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from shapely import Geometry, Polygon

    from .polygonizer import Rings

__all__ = ["Region", "Strip", "iter_regions", "iter_region_batches"]

Strip: TypeAlias = tuple[int, np.ndarray, np.ndarray, np.ndarray | None]
"""``(row_off, classes, nodata, confidence)``: one strip of rows, as :func:`iter_regions` takes it."""


@dataclass
class Region:
    """One connected region: class id, polygon in pixel coordinates (x = column, y = row).

    ``pixels`` counts its pixels; ``confidence_sum`` / ``confidence_max`` summarise the
    confidence raster over them (0 when there is none); ``touches_nodata`` says whether a
    4-neighbour of one of its pixels is nodata.
    """

    class_id: int
    geometry: Polygon
    pixels: int
    confidence_sum: float = 0.0
    confidence_max: float = 0.0
    touches_nodata: bool = False


@dataclass
class _Open:
    """A region still growing downwards: its pieces so far and their merged statistics."""

    class_id: int
    pieces: list[Polygon] = field(default_factory=list)
    pixels: int = 0
    confidence_sum: float = 0.0
    confidence_max: float = 0.0
    touches_nodata: bool = False

    def absorb(self, other: _Open) -> None:
        self.pieces += other.pieces
        self.pixels += other.pixels
        self.confidence_sum += other.confidence_sum
        self.confidence_max = max(self.confidence_max, other.confidence_max)
        self.touches_nodata |= other.touches_nodata


def _polygon(geometry: Geometry) -> Polygon:
    """The largest polygon of a repaired geometry (a 4-connected region is one polygon)."""
    import shapely

    parts = [g for g in shapely.get_parts(geometry) if isinstance(g, shapely.Polygon)]
    return max(parts, key=lambda g: g.area)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def iter_regions(
    strips: Iterator[Strip],
    class_ids: Sequence[int],
    height: int,
) -> Iterator[Region]:
    """Regions of ``class_ids`` from strips covering rows ``0..height``, one at a time (:func:`iter_region_batches`)."""
    for batch in iter_region_batches(strips, class_ids, height):
        yield from batch


def iter_region_batches(
    strips: Iterator[Strip],
    class_ids: Sequence[int],
    height: int,
    parallel: bool = True,
) -> Iterator[list[Region]]:
    """The regions that each strip completes, one list per strip, in order.

    Each strip is ``(row_off, classes, nodata, confidence)``: ``classes`` ``(rows + 2, width)``
    with one halo row above and below (rows outside the raster marked nodata=False,
    class ids anything), ``nodata`` the same shape (bool), ``confidence`` ``(rows, width)``
    float32 in [0, 1] for the strip's own rows, or None.

    With ``parallel``, strips are polygonised in a second process (:mod:`.polygonizer`), a
    few strips ahead, while this process merges the previous strip's pieces and the caller
    measures and writes its regions; the merging stays in strip order, so the result is the
    same as in one process. A raster of fewer than :data:`_PARALLEL_FROM` strips, or a
    process whose interpreter is not a plain Python, polygonises here.
    """
    from .polygonizer import Polygonizer, polygonize

    wanted = np.array(sorted(set(class_ids)), np.int64)
    merger = _Merger(height)
    strips = iter(strips)
    first = [strip for _, strip in zip(range(_PARALLEL_FROM), strips, strict=False)]
    if not parallel or len(first) < _PARALLEL_FROM or not Polygonizer.available():
        for strip in itertools.chain(first, strips):
            yield merger.add(strip, _pieces(polygonize(strip[1][1:-1], wanted, strip[0])))
        yield merger.rest()
        return
    worker = Polygonizer()
    try:
        ahead: deque[Strip] = deque()
        for strip in itertools.chain(first, strips):
            worker.submit(strip[1][1:-1], wanted, strip[0])
            ahead.append(strip)
            if len(ahead) > 2:
                yield merger.add(ahead.popleft(), _pieces(worker.receive()))
        while ahead:
            yield merger.add(ahead.popleft(), _pieces(worker.receive()))
    finally:
        worker.close()
    yield merger.rest()


_PARALLEL_FROM = 3
"""Strips from which a second process pays for its start."""


@dataclass(frozen=True)
class _Pieces:
    """One strip's 4-connected polygons of the wanted classes, in pixel coordinates, and their class ids."""

    geometries: np.ndarray
    values: np.ndarray


def _pieces(rings: Rings) -> _Pieces:
    """The flat arrays as shapely polygons, built in one call."""
    import shapely

    points, ring_ends, polygon_ends, values = rings
    if not len(values):
        return _Pieces(np.empty(0, object), values)
    geometries = shapely.from_ragged_array(shapely.GeometryType.POLYGON, points, (ring_ends, polygon_ends))
    return _Pieces(geometries, values)


class _Merger:
    """The regions still open at the last strip's bottom, joined with the pieces of each next strip."""

    def __init__(self, height: int) -> None:
        self.height = height
        self.open: dict[int, _Open] = {}  # id -> region with pixels in the previous strip's last row
        self.last_ids: np.ndarray | None = None  # previous strip's last row: open region id per pixel, -1 none
        self.last_classes: np.ndarray | None = None
        self.next_id = 0

    def add(self, strip: Strip, found: _Pieces) -> list[Region]:
        """The regions this strip completes; the others stay open."""
        row_off, halo_classes, halo_nodata, confidence = strip
        classes = halo_classes[1:-1]
        rows, width = classes.shape
        pieces, values = found.geometries, found.values
        n = len(pieces) + 1
        stats = _statistics(pieces, row_off, rows, width, halo_nodata, confidence)

        parent = list(range(n + len(self.open)))
        old_ids = list(self.open)
        old_index = {rid: n + k for k, rid in enumerate(old_ids)}
        if self.last_ids is not None and len(pieces):
            first = stats.first_row
            joined = (self.last_ids >= 0) & (first > 0) & (self.last_classes == classes[0])
            if joined.any():
                pairs = np.unique(np.stack([self.last_ids[joined], first[joined]]), axis=1)
                for rid, label in pairs.T:
                    a, b = _find(parent, old_index[int(rid)]), _find(parent, int(label))
                    if a != b:
                        parent[a] = b
        last = row_off + rows >= self.height
        continuing = set() if last else set(np.unique(stats.last_row).tolist()) - {0}

        groups: dict[int, _Open] = {}
        for i in range(1, n):
            root = _find(parent, i)
            piece = _Open(
                int(values[i - 1]),
                [pieces[i - 1]],
                int(stats.pixels[i]),
                float(stats.confidence_sum[i]),
                float(stats.confidence_max[i]),
                bool(stats.touches[i]),
            )
            if root in groups:
                groups[root].absorb(piece)
            else:
                groups[root] = piece
        for rid in old_ids:
            root = _find(parent, old_index[rid])
            if root in groups:
                groups[root].absorb(self.open[rid])
            else:
                groups[root] = self.open[rid]
        open_roots = {_find(parent, label) for label in continuing}
        self.open = {}
        root_to_id: dict[int, int] = {}
        finished = []
        for root, group in groups.items():
            if root in open_roots:
                root_to_id[root] = self.next_id
                self.open[self.next_id] = group
                self.next_id += 1
            else:
                finished.append(group)
        if continuing:
            lookup = np.full(n, -1, np.int64)
            for label in continuing:
                lookup[label] = root_to_id[_find(parent, label)]
            self.last_ids = lookup[stats.last_row]
            self.last_classes = classes[-1].copy()
        else:
            self.last_ids = self.last_classes = None
        return _regions(finished)

    def rest(self) -> list[Region]:
        """Regions left open when the strips ended early (a caller's bug) or a one-strip raster."""
        rest, self.open = list(self.open.values()), {}
        return _regions(rest)


@dataclass(frozen=True)
class _Statistics:
    """Per piece (1..n; 0 is none): pixels, confidence sum and maximum, nodata contact; the edge rows' labels."""

    pixels: np.ndarray
    confidence_sum: np.ndarray
    confidence_max: np.ndarray
    touches: np.ndarray
    first_row: np.ndarray
    last_row: np.ndarray


def _statistics(
    pieces: np.ndarray,
    row_off: int,
    rows: int,
    width: int,
    halo_nodata: np.ndarray,
    confidence: np.ndarray | None,
) -> _Statistics:
    """The pieces' statistics, from a label image only where one is needed.

    A piece's pixel count is its area (its vertices are pixel corners). The label image (each
    pixel's piece) is drawn only for a confidence raster or when nodata lies next to the
    strip's pixels; otherwise only the first and last rows are drawn, from the pieces that
    reach them, which is all the merging needs.
    """
    import rasterio.features
    import shapely
    from affine import Affine

    n = len(pieces) + 1
    pixels = np.zeros(n, np.int64)
    pixels[1:] = np.rint(shapely.area(pieces)).astype(np.int64)
    conf_sum: np.ndarray = np.zeros(n)
    conf_max: np.ndarray = np.zeros(n)
    near_nodata = _next_to(halo_nodata)
    if not len(pieces):
        empty = np.zeros(width, np.int32)
        return _Statistics(pixels, conf_sum, conf_max, np.zeros(n, bool), empty, empty)
    if confidence is None and not near_nodata.any():
        bounds = shapely.bounds(pieces)
        first, last = (_row_labels(pieces, bounds, row, width) for row in (row_off, row_off + rows - 1))
        return _Statistics(pixels, conf_sum, conf_max, np.zeros(n, bool), first, last)
    shift = Affine.translation(0, row_off)
    labels = rasterio.features.rasterize(
        ((geom, i + 1) for i, geom in enumerate(pieces)),
        out_shape=(rows, width),
        transform=shift,
        fill=0,
        dtype="int32",
    )
    flat = labels.ravel()
    if confidence is not None:
        inside = np.flatnonzero(flat)  # only the pieces' pixels: sorting them is cheap
        ids, values = flat[inside], confidence.ravel()[inside].astype(np.float64)
        conf_sum = np.bincount(ids, weights=values, minlength=n)
        order = np.argsort(ids, kind="stable")
        present = np.flatnonzero(pixels[1:]) + 1
        starts = np.concatenate([[0], np.cumsum(pixels[present])[:-1]])
        conf_max[present] = np.maximum.reduceat(values[order], starts)
    touches = np.bincount(flat[near_nodata.ravel()], minlength=n) > 0
    return _Statistics(pixels, conf_sum, conf_max, touches, labels[0], labels[-1])


def _row_labels(pieces: np.ndarray, bounds: np.ndarray, row: int, width: int) -> np.ndarray:
    """Row ``row`` of the label image: 1 + the index of the piece each pixel belongs to, 0 for none.

    Each piece that reaches the row is cut by a thin band along the row's pixel centres (all
    at once, in GEOS): the parts are its runs of pixels in the row, whose ends are pixel
    corners.
    """
    import shapely

    labels = np.zeros(width, np.int32)
    reach = np.flatnonzero((bounds[:, 1] <= row) & (bounds[:, 3] >= row + 1))
    if not len(reach):
        return labels
    runs, owner = shapely.get_parts(
        shapely.intersection(pieces[reach], shapely.box(0, row + 0.25, width, row + 0.75)), return_index=True
    )
    x0, _, x1, _ = np.rint(shapely.bounds(runs)).astype(np.int64).T
    for start, stop, piece in zip(x0.tolist(), x1.tolist(), reach[owner].tolist(), strict=True):
        labels[start:stop] = piece + 1
    return labels


def _regions(groups: list[_Open]) -> list[Region]:
    """The finished groups as regions: pieces united, each a valid polygon (checked for all at once)."""
    import shapely

    if not groups:
        return []
    geometries = np.array(
        [g.pieces[0] if len(g.pieces) == 1 else shapely.union_all(g.pieces) for g in groups], dtype=object
    )
    fine = shapely.is_valid(geometries) & (shapely.get_type_id(geometries) == shapely.GeometryType.POLYGON)
    regions = []
    for group, geometry, ok in zip(groups, geometries, fine, strict=True):
        polygon = geometry if ok else _polygon(shapely.make_valid(geometry))
        regions.append(
            Region(
                group.class_id, polygon, group.pixels, group.confidence_sum, group.confidence_max, group.touches_nodata
            )
        )
    return regions


def _next_to(nodata: np.ndarray) -> np.ndarray:
    """Pixels of the inner rows of ``nodata`` (halo rows above and below) with a nodata 4-neighbour."""
    inner = nodata[1:-1]
    near = nodata[:-2] | nodata[2:]
    near[:, 1:] |= inner[:, :-1]
    near[:, :-1] |= inner[:, 1:]
    return near & ~inner
