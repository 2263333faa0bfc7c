"""Connected regions of a class raster as exact polygons, strip by strip, merged across strips.

A region is a 4-connected set of pixels of one class. Each strip of rows is polygonised by
GDAL (``rasterio.features.shapes``) in pixel coordinates, so every vertex is an integer
and unions are exact. The pieces are rasterised back to a label image, which gives, for
every pixel, the piece it belongs to: per-piece pixel statistics (count, confidence sum
and maximum, contact with nodata) come from it, and so does the merging: a piece with
pixels in the strip's last row may continue below, so it stays open; the next strip's
first row says which of its pieces share a pixel edge with which open region. A region
with no piece in the current strip's last row is complete and is yielded at once, as the
coverage union of its pieces. Memory is one strip plus the open regions; the result is the
same set of polygons as polygonising the whole raster at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from shapely import Geometry, Polygon

__all__ = ["Region", "Strip", "iter_regions"]

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

    def region(self) -> Region:
        import shapely

        geometry = self.pieces[0] if len(self.pieces) == 1 else shapely.union_all(self.pieces)
        if not isinstance(geometry, shapely.Polygon) or not geometry.is_valid:
            geometry = _polygon(shapely.make_valid(geometry))
        return Region(
            self.class_id, geometry, self.pixels, self.confidence_sum, self.confidence_max, self.touches_nodata
        )


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
    """Regions of ``class_ids`` from consecutive strips covering rows ``0..height``.

    Each strip is ``(row_off, classes, nodata, confidence)``: ``classes`` ``(rows + 2, width)``
    with one halo row above and below (rows outside the raster marked nodata=False,
    class ids anything), ``nodata`` the same shape (bool), ``confidence`` ``(rows, width)``
    float32 in [0, 1] for the strip's own rows, or None.
    """
    import rasterio.features
    import shapely
    from affine import Affine

    wanted = np.array(sorted(set(class_ids)), np.int64)
    open_regions: dict[int, _Open] = {}  # id -> region with pixels in the previous strip's last row
    last_ids: np.ndarray | None = None  # previous strip's last row: open region id per pixel, -1 none
    last_classes: np.ndarray | None = None
    next_id = 0
    for row_off, halo_classes, halo_nodata, confidence in strips:
        classes = halo_classes[1:-1]
        rows, width = classes.shape
        mask = np.isin(classes, wanted)
        shift = Affine.translation(0, row_off)
        pieces = [
            (shapely.geometry.shape(geojson), int(value))
            for geojson, value in rasterio.features.shapes(classes, mask=mask, connectivity=4, transform=shift)
        ]
        labels = (
            rasterio.features.rasterize(
                ((geom, i + 1) for i, (geom, _) in enumerate(pieces)),
                out_shape=(rows, width),
                transform=shift,
                fill=0,
                dtype="int32",
            )
            if pieces
            else np.zeros((rows, width), np.int32)
        )
        n = len(pieces) + 1
        flat = labels.ravel()
        pixels = np.bincount(flat, minlength=n)
        conf_sum: np.ndarray = np.zeros(n)
        conf_max: np.ndarray = np.zeros(n)
        if confidence is not None and pieces:
            inside = np.flatnonzero(flat)  # only the pieces' pixels: sorting them is cheap
            ids, values = flat[inside], confidence.ravel()[inside].astype(np.float64)
            conf_sum = np.bincount(ids, weights=values, minlength=n)
            order = np.argsort(ids, kind="stable")
            present = np.flatnonzero(pixels[1:]) + 1
            starts = np.concatenate([[0], np.cumsum(pixels[present])[:-1]])
            conf_max[present] = np.maximum.reduceat(values[order], starts)
        near_nodata = _next_to(halo_nodata)
        touches = np.bincount(flat[near_nodata.ravel()], minlength=n) > 0

        parent = list(range(n + len(open_regions)))
        old_ids = list(open_regions)
        old_index = {rid: n + k for k, rid in enumerate(old_ids)}
        if last_ids is not None and pieces:
            first = labels[0]
            joined = (last_ids >= 0) & (first > 0) & (last_classes == classes[0])
            if joined.any():
                pairs = np.unique(np.stack([last_ids[joined], first[joined]]), axis=1)
                for rid, label in pairs.T:
                    a, b = _find(parent, old_index[int(rid)]), _find(parent, int(label))
                    if a != b:
                        parent[a] = b
        continuing = set(np.unique(labels[-1]).tolist()) - {0} if row_off + rows < height else set()

        groups: dict[int, _Open] = {}
        for i, (geom, value) in enumerate(pieces, start=1):
            root = _find(parent, i)
            piece = _Open(value, [geom], int(pixels[i]), float(conf_sum[i]), float(conf_max[i]), bool(touches[i]))
            if root in groups:
                groups[root].absorb(piece)
            else:
                groups[root] = piece
        for rid in old_ids:
            root = _find(parent, old_index[rid])
            if root in groups:
                groups[root].absorb(open_regions[rid])
            else:
                groups[root] = open_regions[rid]
        open_roots = {_find(parent, label) for label in continuing}
        open_regions = {}
        root_to_id: dict[int, int] = {}
        for root, group in groups.items():
            if root in open_roots:
                root_to_id[root] = next_id
                open_regions[next_id] = group
                next_id += 1
            else:
                yield group.region()
        if continuing:
            lookup = np.full(n, -1, np.int64)
            for label in continuing:
                lookup[label] = root_to_id[_find(parent, label)]
            last_ids = lookup[labels[-1]]
            last_classes = classes[-1].copy()
        else:
            last_ids = last_classes = None
    for group in open_regions.values():  # strips ended early (a caller's bug) or a one-strip raster
        yield group.region()


def _next_to(nodata: np.ndarray) -> np.ndarray:
    """Pixels of the inner rows of ``nodata`` (halo rows above and below) with a nodata 4-neighbour."""
    inner = nodata[1:-1]
    near = nodata[:-2] | nodata[2:]
    near[:, 1:] |= inner[:, :-1]
    near[:, :-1] |= inner[:, 1:]
    return near & ~inner
