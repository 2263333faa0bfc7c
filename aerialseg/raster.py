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

A local input that is no regular file (a FIFO, a socket, a device) is refused before GDAL
opens it: GDAL would wait forever for a FIFO's writer. A VRT is refused when a local file
it reads is missing or no regular file, naming that file, rather than failing at its first
pixel with "Read failed". GDAL's "See previous exception" messages are replaced by the
message they point to, which names the file and the cause.

Writes go through :func:`writing`: a failed write (a full disk, a file-size limit) is one
:class:`~aerialseg.errors.OutputWriteError` naming the output and the OS's reason, also where
GDAL itself lets it pass (see :class:`_TiffErrors`), and neither libtiff nor GDAL prints a
line of its own about it (GDAL's warnings on a torn file are not logged from inside the block).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import special_kind
from .errors import AerialsegError, InputRasterError, OutputWriteError, first_line
from .locations import RasterRef, as_input, local_file, looks_remote, reading, remote_hint

__all__ = ["open_raster", "read_bands", "read_mask", "writing", "block_cache_mb", "block_cache"]


def _refuse_special(path: Path, shown: object) -> None:
    """Refuse a local input that is no regular file, before GDAL opens it (see the module docstring)."""
    kind = special_kind(path)
    if kind is not None:
        raise InputRasterError(
            f"is {kind}, not a raster file; reading it could wait forever",
            path=shown,
            hint="save the raster to a regular file and give that",
        )


def _refuse_broken_vrt(dataset: Any, shown: object) -> None:  # noqa: ANN401 (a rasterio dataset)
    """Refuse a VRT whose local source files are missing or no regular files (see the module docstring)."""
    for source in dataset.files[1:]:
        if looks_remote(source):
            continue
        kind = special_kind(source)
        problem = "does not exist" if not os.path.exists(source) else f"is {kind}" if kind else None
        if problem:
            raise InputRasterError(
                f"the VRT reads {source}, which {problem}",
                path=shown,
                hint="restore that file, or rebuild the VRT (gdalbuildvrt) from the files there are",
            )


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
    local = local_file(as_input(path)) if mode == "r" else None
    if local is not None:
        _refuse_special(local, source if named is None else named)
    try:
        with warnings.catch_warnings(), reading(source) if isinstance(source, RasterRef) else nullcontext():
            if plain_pictures:
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dataset = rasterio.open(opened, mode, **options)
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
    if local is not None and dataset.driver == "VRT":
        try:
            _refuse_broken_vrt(dataset, source if named is None else named)
        except InputRasterError:
            dataset.close()
            raise
    return dataset


@contextmanager
def _decoding(dataset: Any) -> Iterator[None]:  # noqa: ANN401 (a rasterio dataset)
    """GDAL's decoding errors (several rasterio types, or OSError) as one InputRasterError naming the file."""
    try:
        yield
    except (MemoryError, InputRasterError):
        raise
    except Exception as exc:
        raise InputRasterError(f"cannot read pixels ({first_line(exc)})", path=dataset.name) from exc


_TIFF_ERROR_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, use_errno=True)


class _TiffErrors:
    """libtiff's global error reports, counted with the OS error instead of printed raw.

    GDAL gives libtiff an error handler per file, but its write and seek callbacks report a
    failed write through libtiff's global handler, which prints lines such as
    ``_tiffWriteProc: No space left on device.`` to stderr; and GDAL's multi-threaded copy
    (the final COG copy) goes on as if the write had succeeded, leaving a torn file. The
    handler installed here records the failure and its ``errno`` for :func:`writing`.
    Installed on the libtiff libraries loaded with GDAL (found in ``/proc/self/maps``, or in
    the folder of a macOS wheel's libraries); where none is found, GDAL's own errors remain.
    """

    def __init__(self) -> None:
        self.count = 0
        self.errno = 0
        self._handler = _TIFF_ERROR_HANDLER(self._record)  # kept: libtiff holds only its address
        for library in _libtiffs():
            library.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
            library.TIFFSetErrorHandler.restype = ctypes.c_void_p
            library.TIFFSetErrorHandler(ctypes.cast(self._handler, ctypes.c_void_p))

    def _record(self, module: bytes | None, fmt: bytes | None, args: int | None) -> None:
        self.errno = ctypes.get_errno()
        self.count += 1

    def reason(self, since: int) -> str | None:
        """The OS's reason for the last failure recorded after count ``since``, or None."""
        if self.count == since:
            return None
        return os.strerror(self.errno) if self.errno else "the file could not be written"


def _libtiffs() -> list[ctypes.CDLL]:
    """The libtiff libraries of this process (GDAL is loaded first)."""
    import rasterio

    try:
        maps = Path("/proc/self/maps").read_text()
        paths = set(re.findall(r"(/\S*/libtiff[^/\s]*\.so[^/\s]*)$", maps, re.MULTILINE))
    except OSError:
        paths = {str(p) for p in Path(rasterio.__file__).parent.joinpath(".dylibs").glob("libtiff*.dylib")}
    libraries = []
    for path in sorted(paths):
        try:
            libraries.append(ctypes.CDLL(path))
        except OSError:
            continue
    return [library for library in libraries if hasattr(library, "TIFFSetErrorHandler")]


class _QuietWhileWriting(logging.Filter):
    """Drops rasterio's log records of GDAL messages made by a thread inside :func:`writing`.

    GDAL's warnings about a file being written that failed (a torn directory, a short block)
    would print as raw log lines beside aerialseg's one; on success there are none worth
    showing. Other threads (the reader's warnings about the input) are left alone.
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth: dict[int, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless its thread is writing."""
        return not self.depth.get(threading.get_ident())

    @contextmanager
    def active(self) -> Iterator[None]:
        """Drop this thread's records for the block (blocks nest)."""
        ident = threading.get_ident()
        self.depth[ident] = self.depth.get(ident, 0) + 1
        try:
            yield
        finally:
            self.depth[ident] -= 1


@lru_cache(maxsize=1)
def _tiff_errors() -> _TiffErrors:
    return _TiffErrors()


@lru_cache(maxsize=1)
def _quiet_while_writing() -> _QuietWhileWriting:
    quiet = _QuietWhileWriting()
    logging.getLogger("rasterio._env").addFilter(quiet)
    return quiet


@contextmanager
def writing(output: object) -> Iterator[None]:
    """Writes to the raster delivered as ``output``: any failure is one OutputWriteError naming it.

    The reason is the OS's when libtiff reported one (a full disk: "No space left on device"),
    else GDAL's first line; a failure GDAL let pass is raised at the end of the block.
    """
    errors = _tiff_errors()
    since = errors.count
    try:
        with _quiet_while_writing().active():
            yield
    except (MemoryError, AerialsegError):
        raise
    except Exception as exc:
        problem = errors.reason(since) or first_line(exc)
        raise OutputWriteError(f"cannot write ({problem})", path=output, hint=_write_hint(problem)) from exc
    reason = errors.reason(since)
    if reason is not None:
        raise OutputWriteError(f"cannot write ({reason})", path=output, hint=_write_hint(reason))


_WRITE_HINTS = {
    os.strerror(errno.ENOSPC): "free some space, or write to another disk",
    os.strerror(errno.EDQUOT): "free some of your quota, or write to another disk",
    os.strerror(errno.EFBIG): "raise the file-size limit (ulimit -f), or write to a disk that takes larger files",
}


def _write_hint(reason: str) -> str | None:
    """The fix for a write that failed for ``reason`` (the OS's wording), where there is one."""
    return _WRITE_HINTS.get(reason)


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
