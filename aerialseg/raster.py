"""The one place aerialseg opens rasters with rasterio: GDAL's errors become aerialseg's.

Every caller used to catch rasterio's exception types itself and word the message its own
way; :func:`open_raster` names the file, keeps only the first line of GDAL's message and
raises :class:`~aerialseg.errors.InputRasterError` for reading or
:class:`~aerialseg.errors.OutputWriteError` for writing, so the command line prints one
line whatever went wrong. :func:`read_bands` works around a GDAL defect (below).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .errors import InputRasterError, OutputWriteError

__all__ = ["open_raster", "read_bands", "first_line"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (GDAL's can run to several), or its type."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def open_raster(path: str | os.PathLike[str], mode: str = "r", *, plain_pictures: bool = False, **options: Any) -> Any:  # noqa: ANN401 (a rasterio dataset)
    """Open ``path`` with rasterio (``mode`` r, r+ or w; ``options`` as rasterio takes them).

    ``plain_pictures`` silences the warning for files without georeferencing (PNG patches,
    UAVid frames) where none is expected.
    """
    import rasterio

    try:
        with warnings.catch_warnings():
            if plain_pictures:
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path, mode, **options)
    except (rasterio.errors.RasterioError, OSError) as exc:
        if mode == "r":
            raise InputRasterError(f"cannot open as a raster ({first_line(exc)})", path=path) from exc
        raise OutputWriteError(
            f"cannot {'create' if mode == 'w' else 'update'} ({first_line(exc)})", path=path
        ) from exc


def read_bands(dataset: Any, indexes: tuple[int, ...] | list[int], **options: Any) -> np.ndarray:  # noqa: ANN401
    """``dataset.read(indexes, **options)``, reading a band named twice (``--bands 1,1,1``) only once.

    GDAL's multi-threaded decoding (``NUM_THREADS``) returns wrong pixels for the repeated
    entries of a band list such as ``(1, 1, 1)`` on band-interleaved files, and differently
    from run to run; reading each band once and repeating it in memory is exact.
    """
    unique = sorted(set(indexes))
    if len(unique) == len(indexes):
        return dataset.read(list(indexes), **options)
    if "out_shape" in options:
        options = {**options, "out_shape": (len(unique), *options["out_shape"][1:])}
    data = dataset.read(unique, **options)
    return data[[unique.index(i) for i in indexes]]
