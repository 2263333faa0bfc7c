"""Where tiles go and how much each pixel of a tile counts: pure geometry, no I/O.

Along each axis, the fewest tiles of ``tile`` pixels that overlap by at least ``overlap``
are spread evenly from the raster's first pixel to its last (starts aligned to the
network's 32-pixel grid when asked), so every pixel is covered, no window leaves the
raster, neighbours overlap nearly equally, and all windows share one size
(``min(tile, height) x min(tile, width)``; a raster smaller than a tile is one window the
network pads internally). Windows come in strip order (row-major), which lets the blender
flush every row above the current tile row.

Blend weights are separable: ``w(r, c) = w_row(r) * w_col(c)``. With ``cosine`` (default)
or ``linear`` blending, a tile's weight ramps up across the part it shares with its
previous neighbour and down across the part it shares with its next one, complementary to
the neighbour's ramp (sin^2 against cos^2), so two overlapping tiles' weights sum to one
and a tile's unreliable border barely counts. Sides on the raster's edge are not ramped.
(Three tiles can meet where a short axis forces overlaps beyond half a tile.)
``center`` gives each pixel wholly to the tile whose owned interval holds it (the midpoint
of each overlap is the boundary): plain centre cropping. The blender divides by the summed
weights, so the result is a weighted average wherever tiles meet, also where three meet
or where nodata zeroes some weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Window", "TilePlan", "plan_tiles", "axis_spans", "axis_weights", "BLENDS", "TILE_ALIGN"]

BLENDS = ("cosine", "linear", "center")
TILE_ALIGN = 32  # the networks downsample 32x: tiles on a 32-pixel grid agree with each other


@dataclass(frozen=True)
class Window:
    """A pixel rectangle of the raster: ``rasterio.windows.Window``'s fields in its order, as integers.

    Kept separate from rasterio's (whose offsets may be fractional) so that planning tiles
    stays pure geometry; the same order means ``Window(col, row, width, height)`` reads the
    same in both.
    """

    col_off: int
    row_off: int
    width: int
    height: int

    def as_slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices into a full-raster array."""
        return slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width)


def axis_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``(start, size)`` of the tiles along one axis of ``length`` pixels.

    The fewest tiles that overlap by at least ``overlap`` are spread evenly between the
    axis's ends. With ``align`` > 1 every start but the last is a multiple of ``align``: a
    network that downsamples 32x computes the same features for a pixel in two tiles only if
    the tiles are shifted by a multiple of 32, so aligned tiles agree with each other (and
    with a whole-image pass) far better. Aligning uses a stride rounded down to a multiple of
    ``align`` and starts rounded up, so no overlap falls below ``overlap``.
    """
    if length < 1 or tile < 1 or not 0 <= overlap < tile or align < 1:
        raise ValueError(f"need length >= 1, tile >= 1 and 0 <= overlap < tile (got {length}, {tile}, {overlap})")
    size = min(tile, length)
    if length <= tile:
        return [(0, size)]
    stride = tile - overlap
    if stride // align * align < 2 * align:
        align = 1  # tiles too small to align without repeating starts
    stride = stride // align * align
    count = math.ceil((length - tile) / stride) + 1
    spacing = (length - tile) / (count - 1)
    starts = [align * math.ceil(i * spacing / align - 1e-9) for i in range(count - 1)] + [length - tile]
    return [(start, size) for start in starts]


def _ramp(width: int, blend: str) -> np.ndarray:
    """Rising weights over ``width`` pixels, strictly inside (0, 1), sampled at pixel centres."""
    t = (np.arange(width, dtype=np.float64) + 0.5) / width
    return np.sin(t * math.pi / 2) ** 2 if blend == "cosine" else t


def axis_weights(spans: list[tuple[int, int]], index: int, blend: str) -> np.ndarray:
    """The 1-D weights of tile ``index`` along one axis, float32 of the tile's size."""
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
    start, size = spans[index]
    end = start + size
    weights = np.ones(size, dtype=np.float64)
    if blend == "center":
        low = 0 if index == 0 else (start + spans[index - 1][0] + spans[index - 1][1]) // 2 - start
        high = size if index == len(spans) - 1 else (spans[index + 1][0] + end) // 2 - start
        weights[:low] = 0
        weights[high:] = 0
        return weights.astype(np.float32)
    if index > 0:
        shared = spans[index - 1][0] + spans[index - 1][1] - start
        if shared > 0:
            weights[:shared] = np.minimum(weights[:shared], _ramp(shared, blend))
    if index < len(spans) - 1:
        shared = end - spans[index + 1][0]
        if shared > 0:
            weights[size - shared :] = np.minimum(weights[size - shared :], 1 - _ramp(shared, blend))
    return weights.astype(np.float32)


@dataclass(frozen=True)
class TilePlan:
    """All windows over a ``height x width`` raster, in strip order, with their blend weights."""

    height: int
    width: int
    tile: int
    overlap: int
    blend: str = "cosine"
    align: int = 1

    @cached_property
    def row_spans(self) -> list[tuple[int, int]]:
        """``(row_off, height)`` of each tile row."""
        return axis_spans(self.height, self.tile, self.overlap, self.align)

    @cached_property
    def col_spans(self) -> list[tuple[int, int]]:
        """``(col_off, width)`` of each tile column."""
        return axis_spans(self.width, self.tile, self.overlap, self.align)

    @cached_property
    def _row_weights(self) -> list[np.ndarray]:
        return [axis_weights(self.row_spans, i, self.blend) for i in range(len(self.row_spans))]

    @cached_property
    def _col_weights(self) -> list[np.ndarray]:
        return [axis_weights(self.col_spans, j, self.blend) for j in range(len(self.col_spans))]

    @property
    def tile_shape(self) -> tuple[int, int]:
        """``(height, width)`` shared by every window."""
        return self.row_spans[0][1], self.col_spans[0][1]

    def __len__(self) -> int:
        return len(self.row_spans) * len(self.col_spans)

    def tile_rows(self) -> list[list[tuple[Window, int, int]]]:
        """Windows grouped by tile row, each as ``(window, row_index, col_index)``."""
        return [
            [(Window(col_off=c0, row_off=r0, width=w, height=h), i, j) for j, (c0, w) in enumerate(self.col_spans)]
            for i, (r0, h) in enumerate(self.row_spans)
        ]

    def windows(self) -> list[Window]:
        """Every window in strip order."""
        return [window for row in self.tile_rows() for window, _, _ in row]

    def weights(self, row_index: int, col_index: int) -> np.ndarray:
        """Blend weights ``(h, w)`` float32 of the window at (row_index, col_index); do not modify.

        Interior tiles share their 1-D profiles, so the few distinct 2-D products of the current
        row profile are cached (tiles come in strip order; the cache is dropped when the row
        profile changes, so it never grows with the raster).
        """
        row, col = self._row_weights[row_index], self._col_weights[col_index]
        row_id, col_id = self._profile_id(row), self._profile_id(col)
        cache: tuple[bytes, dict[bytes, np.ndarray]] | None = self.__dict__.get("_weight_cache")
        if cache is None or cache[0] != row_id:
            cache = self.__dict__["_weight_cache"] = (row_id, {})
        products = cache[1]
        if col_id not in products:
            products[col_id] = np.outer(row, col)
        return products[col_id]

    def _profile_id(self, profile: np.ndarray) -> bytes:
        return profile.tobytes()


def plan_tiles(height: int, width: int, tile: int, overlap: int, blend: str = "cosine", align: int = 1) -> TilePlan:
    """Validate and build a :class:`TilePlan` (``align``: see :func:`axis_spans`)."""
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
    axis_spans(height, tile, overlap, align)  # validates the numbers
    return TilePlan(height, width, tile, overlap, blend, align)
