"""Reading the class raster, and the confidence raster beside it, strip by strip.

:func:`~.regions.iter_regions` needs each strip's classes and nodata with one halo row
above and below (to join regions across strips and to see nodata next to a pixel) and
the confidence of the strip's own rows. The confidence raster is one predict wrote with
the class raster: a probability raster (a ``p(name)`` band per class) or an uncertainty
raster (one ``confidence`` band), both uint8 in units of :data:`PROBABILITY_SCALE`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..conventions import PROBABILITY_SCALE
from ..errors import InputRasterError
from ..raster import open_raster, read_bands, read_mask
from .features import ScoreReader
from .regions import Strip

__all__ = [
    "strip_height",
    "open_confidence",
    "grid_problem",
    "confidence_bands",
    "read_strips",
    "score_reader",
    "reporting",
]

_GRID_TOLERANCE = 0.01  # pixels


def strip_height(dataset: Any, requested: int) -> int:
    """Rows per strip: ``requested`` (at least 1), rounded down to whole blocks when it spans several."""
    rows = max(1, requested)
    block = dataset.block_shapes[0][0]
    if block > 1 and rows > block:
        rows -= rows % block
    return rows


def open_confidence(
    path: str | os.PathLike[str], classes_ds: Any, classes: list[tuple[int, str]], raster: object
) -> tuple[Any, dict[int, int]]:
    """The confidence raster at ``path``, open, and its band for each class id; refused if its grid differs.

    ``classes_ds`` is the class raster ``raster`` (as the user spelled it), open.
    """
    dataset = open_raster(path)
    try:
        problem = grid_problem(dataset, classes_ds)
        if problem:
            raise InputRasterError(
                f"is {problem}, so it is not on the grid of the class raster {raster}",
                path=path,
                hint="use the confidence raster written with this class raster",
            )
        return dataset, confidence_bands(dataset, classes, Path(path))
    except BaseException:
        dataset.close()
        raise


def grid_problem(dataset: Any, reference: Any) -> str | None:
    """How ``dataset``'s pixel grid differs from ``reference``'s (size, CRS, place on the map), or None.

    The answer follows "is": ``40x39, the class raster 40x40``.

    Confidences are read pixel by pixel beside the classes, so a raster of the same size but
    another CRS or transform would attach the confidence of other ground to each region. The
    corners are compared in ``reference``'s pixels: within a hundredth of a pixel is the same grid,
    at any pixel size.
    """
    if (dataset.width, dataset.height) != (reference.width, reference.height):
        return f"{dataset.width}x{dataset.height}, the class raster {reference.width}x{reference.height}"
    if dataset.crs != reference.crs:
        return f"on CRS {dataset.crs or 'none'}, the class raster on {reference.crs or 'none'}"
    if reference.transform.is_degenerate:  # no pixel grid to measure in: only the same transform fits
        same = dataset.transform == reference.transform
        return None if same else f"on transform {tuple(dataset.transform)[:6]}, the class raster on a degenerate one"
    back = ~reference.transform
    corners = [(0, 0), (dataset.width, 0), (0, dataset.height), (dataset.width, dataset.height)]
    for col, row in corners:
        x, y = back @ (dataset.transform @ (col, row))
        if abs(x - col) > _GRID_TOLERANCE or abs(y - row) > _GRID_TOLERANCE:
            return f"shifted or scaled: its pixel ({col}, {row}) lies at pixel ({x:.2f}, {y:.2f}) of the class raster"
    return None


def confidence_bands(dataset: Any, classes: list[tuple[int, str]], path: Path) -> dict[int, int]:
    """Band (1-based) of the confidence raster holding each class's confidence."""
    descriptions = [d or "" for d in dataset.descriptions]
    if "confidence" in descriptions:
        band = descriptions.index("confidence") + 1
        return {class_id: band for class_id, _ in classes}
    bands = {}
    for class_id, name in classes:
        label = f"p({name})"
        if label in descriptions:
            bands[class_id] = descriptions.index(label) + 1
        elif class_id < dataset.count and len(descriptions) > class_id and descriptions[class_id].startswith("p("):
            bands[class_id] = class_id + 1
        else:
            raise InputRasterError(
                f"has no band for class {name!r} (bands: {', '.join(descriptions)})",
                path=path,
                hint="pass the _probabilities.tif or _uncertainty.tif written by predict with this class raster",
            )
    return bands


def read_strips(dataset: Any, confidence_ds: Any, bands: dict[int, int], rows_per_strip: int) -> Iterator[Strip]:
    """``(row_off, classes with halo, nodata with halo, confidence)`` for consecutive strips.

    Halo rows outside the raster are padding (class 0, not nodata); ``confidence`` is
    None without a confidence raster, else each pixel's confidence in its own class (0 for
    the classes not vectorized).
    """
    from rasterio.windows import Window

    height, width = dataset.height, dataset.width
    for row_off in range(0, height, rows_per_strip):
        rows = min(rows_per_strip, height - row_off)
        top, bottom = max(row_off - 1, 0), min(row_off + rows + 1, height)
        window = Window(0, top, width, bottom - top)
        classes = read_bands(dataset, 1, window=window)
        nodata = read_mask(dataset, 1, window=window) == 0
        pad = ((row_off - top == 0) * 1, (row_off + rows + 1 - bottom))
        classes = np.pad(classes, (pad, (0, 0)))
        nodata = np.pad(nodata, (pad, (0, 0)))
        confidence = None
        if confidence_ds is not None:
            inner = classes[1:-1]
            confidence = np.zeros(inner.shape, np.float32)
            own = Window(0, row_off, width, rows)
            for band in sorted(set(bands.values())):
                values = read_bands(confidence_ds, band, window=own).astype(np.float32) / PROBABILITY_SCALE
                where = np.isin(inner, [c for c, b in bands.items() if b == band])
                confidence[where] = values[where]
        yield row_off, classes, nodata, confidence


def score_reader(confidence_ds: Any, bands: dict[int, int]) -> ScoreReader:
    """Reads the window of the confidence raster under a region: the class's scores, 0 to 1.

    Read from the file when a region asks (GDAL's block cache keeps the strip's blocks), so
    the scores of a region that spans strips cost no more memory than its own window.
    """
    from rasterio.windows import Window

    def read(class_id: int, bounds: tuple[int, int, int, int]) -> np.ndarray:
        col0, row0, col1, row1 = bounds
        window = Window(col0, row0, max(1, col1 - col0), max(1, row1 - row0))
        return read_bands(confidence_ds, bands[class_id], window=window).astype(np.float32) / PROBABILITY_SCALE

    return read


def reporting(
    strips: Iterator[Strip], rows_per_strip: int, height: int, progress: Callable[[int, int], None]
) -> Iterator[Strip]:
    """``strips`` unchanged, calling ``progress(rows_done, height)`` after each."""
    for strip in strips:
        yield strip
        progress(min(strip[0] + rows_per_strip, height), height)
