"""The one place aerialseg opens rasters with rasterio: GDAL's errors become aerialseg's.

Every caller used to catch rasterio's exception types itself and word the message its own
way; :func:`open_raster` names the file, keeps only the first line of GDAL's message and
raises :class:`~aerialseg.errors.InputRasterError` for reading or
:class:`~aerialseg.errors.OutputWriteError` for writing, so the command line prints one
line whatever went wrong. A URL or ``/vsi`` path opens through GDAL's virtual file systems
with the settings of :func:`aerialseg.locations.reading`, and fails naming the URL as the
user wrote it, with the fix (credentials, reachability). Pixels and masks are read through :func:`read_bands` and
:func:`read_mask`, which do the same for a file that opens but fails to decode (truncated,
corrupt blocks) and work around a GDAL defect (below); :func:`block_cache_mb` sizes GDAL's
block cache for streaming one raster and :func:`block_cache` sets it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from .errors import InputRasterError, OutputWriteError
from .locations import RasterRef, as_input, reading, remote_hint

__all__ = ["open_raster", "read_bands", "read_mask", "first_line", "block_cache_mb", "block_cache"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (GDAL's can run to several), or its type."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def open_raster(  # noqa: ANN401 (returns a rasterio dataset)
    path: str | os.PathLike[str] | RasterRef,
    mode: str = "r",
    *,
    plain_pictures: bool = False,
    named: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Any:
    """Open ``path`` with rasterio (``mode`` r, r+ or w; ``options`` as rasterio takes them).

    ``plain_pictures`` silences the warning for files without georeferencing (PNG patches,
    UAVid frames) where none is expected. ``named`` is the path errors name when it is not
    ``path``: the final name of a file written under a temporary one. A URL or ``/vsi`` path
    (read only) opens remotely (see :mod:`aerialseg.locations`); reading its pixels later
    needs the same settings: run the reads inside :func:`~aerialseg.locations.reading`.
    """
    import rasterio

    source = as_input(path) if mode == "r" else path
    opened = source.gdal_path if isinstance(source, RasterRef) else source
    try:
        with warnings.catch_warnings(), reading(source) if isinstance(source, RasterRef) else nullcontext():
            if plain_pictures:
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(opened, mode, **options)
    except (rasterio.errors.RasterioError, OSError) as exc:
        shown = source if named is None else named
        if isinstance(source, RasterRef):
            detail = first_line(exc).replace(f"'{source.gdal_path}' ", "").replace(source.gdal_path, str(source))
            hint = remote_hint(source) if source.remote else None
            raise InputRasterError(f"cannot open as a raster ({detail})", path=shown, hint=hint) from exc
        if mode == "r":
            raise InputRasterError(f"cannot open as a raster ({first_line(exc)})", path=shown) from exc
        action = "create" if mode == "w" else "update"
        raise OutputWriteError(f"cannot {action} ({first_line(exc)})", path=shown) from exc


@contextmanager
def _decoding(dataset: Any) -> Iterator[None]:  # noqa: ANN401 (a rasterio dataset)
    """GDAL's decoding errors (several rasterio types, or OSError) as one InputRasterError naming the file."""
    try:
        yield
    except (MemoryError, InputRasterError):
        raise
    except Exception as exc:
        raise InputRasterError(f"cannot read pixels ({first_line(exc)})", path=dataset.name) from exc


def read_bands(dataset: Any, indexes: int | Sequence[int], **options: Any) -> np.ndarray:  # noqa: ANN401
    """``dataset.read(indexes, **options)``, reading a band named twice (``--bands 1,1,1``) only once.

    GDAL's multi-threaded decoding (``NUM_THREADS``) returns wrong pixels for the repeated
    entries of a band list such as ``(1, 1, 1)`` on band-interleaved files, and differently
    from run to run; reading each band once and repeating it in memory is exact. One band
    index (an int) gives a 2-D array, as rasterio does.
    """
    with _decoding(dataset):
        if isinstance(indexes, int):
            return dataset.read(indexes, **options)
        unique = sorted(set(indexes))
        if len(unique) == len(indexes):
            return dataset.read(list(indexes), **options)
        if "out_shape" in options:
            options = {**options, "out_shape": (len(unique), *options["out_shape"][1:])}
        data = dataset.read(unique, **options)
        return data[[unique.index(i) for i in indexes]]


def read_mask(dataset: Any, band: int | None = None, **options: Any) -> np.ndarray:  # noqa: ANN401
    """GDAL's validity mask (0: nodata, 255: valid): the dataset's, or ``band``'s own."""
    with _decoding(dataset):
        return dataset.dataset_mask(**options) if band is None else dataset.read_masks(band, **options)


def block_cache_mb(path: str | os.PathLike[str] | RasterRef) -> int:
    """GDAL block cache (``GDAL_CACHEMAX``, MB) for streaming ``path`` row of tiles by row of tiles.

    GDAL's default, 5 % of RAM, would fill with the whole raster; ``predict`` re-reads at most
    one row of input blocks (overlapping windows) and leaves one row of output blocks partly
    written, so twice a row of blocks (32 MB to 1 GB) is enough. An unreadable local file gets
    the minimum: opening it for real reports the problem properly. A remote one's error is raised
    here: GDAL remembers a URL that failed, and only the first attempt's message says why.
    """
    source = as_input(path)
    try:
        with open_raster(source) as probe:
            item = probe.count * np.dtype(probe.dtypes[0]).itemsize + 1 if probe.count else 1
            row_bytes = probe.width * max(probe.block_shapes[0][0] if probe.count else 0, 512) * item
    except InputRasterError:
        if isinstance(source, RasterRef) and source.remote:
            raise
        row_bytes = 0
    return int(min(1024, max(32, 2 * row_bytes / 2**20)))


def block_cache(megabytes: int) -> dict[str, int]:
    """The ``rasterio.Env`` settings for a GDAL block cache of ``megabytes`` MB.

    rasterio hands an integer ``GDAL_CACHEMAX`` straight to ``GDALSetCacheMax64``, which counts
    bytes: ``GDAL_CACHEMAX=64`` is a 64-byte cache, so every overlapping window decodes (and,
    for a remote file, downloads) its blocks again.
    """
    return {"GDAL_CACHEMAX": megabytes * 2**20}
