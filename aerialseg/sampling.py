"""Real tiles of a raster, spread over it, for the accuracy gate and int8 calibration.

Tiles are the tile plan's own windows (same size, same scaling and band order as the run
reads), taken evenly from the plan so that they cover the raster's top, middle and
bottom, preferring tiles that are at least half valid; mostly-nodata tiles are used only
when nothing better exists. At most four windows per wanted tile are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .card import ModelCard
from .errors import GSDMismatchError
from .source import RasterSource
from .tiling import TILE_ALIGN, TilePlan, plan_tiles

__all__ = ["RasterTileSample", "CalibrationRaster"]

_MIN_VALID_SHARE = 0.5


class RasterTileSample:
    """A :class:`aerialseg.runners.gate.TileSample` over an open raster and its tile plan."""

    def __init__(self, source: RasterSource, plan: TilePlan, name: str) -> None:
        self._source = source
        self._plan = plan
        self.name = name
        self.tile_count = len(plan)

    def tiles(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Up to ``count`` ``(pixels, valid)`` tiles spread over the raster (see the module docstring)."""
        windows = self._plan.windows()
        if count < 1 or not windows:
            return []
        first = np.unique(np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int))
        more = np.unique(np.linspace(0, len(windows) - 1, min(4 * count, len(windows))).round().astype(int))
        good: list[tuple[np.ndarray, np.ndarray]] = []
        poor: list[tuple[np.ndarray, np.ndarray]] = []
        for index in [*first, *np.setdiff1d(more, first)]:
            data, valid = self._source.read(windows[index])
            share = float(valid.mean())
            if share >= _MIN_VALID_SHARE:
                good.append((data, valid))
            elif share > 0:
                poor.append((data, valid))
            if len(good) >= count:
                break
        return (good + poor)[:count]


class CalibrationRaster:
    """A :class:`aerialseg.runners.gate.TileSample` of a raster named by ``--calibration``, read on first use."""

    def __init__(self, path: str | os.PathLike[str], card: ModelCard, bands: tuple[int, ...] | None = None) -> None:
        self.name = Path(path).name
        self._path = path
        self._card = card
        self._bands = bands
        self.tile_count = 0
        self._cache: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def _open(self) -> RasterSource:
        """At the model's GSD as predict reads its inputs; as it is when too far from it to resample."""
        try:
            return RasterSource(self._path, self._card, bands=self._bands, allow_no_crs=True)
        except GSDMismatchError:
            return RasterSource(self._path, self._card, bands=self._bands, allow_no_crs=True, gsd="native")

    def tiles(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Up to ``count`` tiles spread over the calibration raster (predict's band and pixel rules)."""
        if count not in self._cache:
            with self._open() as source:
                plan = plan_tiles(
                    source.height, source.width, self._card.tile_size, self._card.overlap, align=TILE_ALIGN
                )
                self.tile_count = len(plan)
                self._cache[count] = RasterTileSample(source, plan, self.name).tiles(count)
        return self._cache[count]
