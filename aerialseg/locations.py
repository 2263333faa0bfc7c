"""Where an input raster lives: a local file, or a URL or GDAL virtual path read window by window.

GDAL reads remote rasters through its virtual file systems (``/vsicurl/``, ``/vsis3/``,
``/vsigs/``, ``/vsiaz/``), fetching only the byte ranges of the blocks a window needs. Such an
input never becomes a :class:`pathlib.Path`, which would collapse ``https://h/a.tif`` into
``https:/h/a.tif``: it is a :class:`RasterRef`, which keeps the user's spelling for messages,
the GDAL path for opening and the stem outputs are named after. This module is the one place
where URLs become GDAL paths (:func:`remote_ref`), where the GDAL settings for remote reads are
chosen (:func:`reading`) and where the fix for a remote file that fails to open is worded
(:func:`remote_hint`). A STAC item's asset is a :class:`RasterRef` too (see :mod:`aerialseg.stac`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "RASTER_SUFFIXES",
    "REMOTE_SCHEMES",
    "VSI_CACHE_BYTES",
    "CONNECT_TIMEOUT_S",
    "STALL_TIMEOUT_S",
    "InputRef",
    "RasterRef",
    "StacOrigin",
    "as_input",
    "remote_ref",
    "looks_remote",
    "local_file",
    "local_files",
    "public_url",
    "remote_settings",
    "reading",
    "remote_hint",
]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png")
"""The files a folder given as input contributes, and the only names GDAL probes on a remote server."""

REMOTE_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/"}
"""URL scheme -> GDAL virtual file system; ``/vsicurl/`` takes the whole URL, the others the bucket and key."""

VSI_CACHE_BYTES = 64 * 2**20
"""``VSI_CACHE_SIZE`` per open remote file: re-read header and overlapping windows stay in memory, bounded."""

CONNECT_TIMEOUT_S = 30
"""``GDAL_HTTP_CONNECTTIMEOUT``: a server that does not accept the connection fails the file, not the batch."""

STALL_TIMEOUT_S = 60
"""``GDAL_HTTP_LOW_SPEED_TIME`` (below 1 byte/s): a server that accepts and never answers fails the file.

A transfer that goes on slowly is left alone: a total-time limit would cut a large block
fetched over a slow link."""

_REMOTE_SPELLING = re.compile(r"^(?:(?:https?|s3|gs|az):/|/vsi)", re.IGNORECASE)


@dataclass(frozen=True)
class StacOrigin:
    """The STAC item an input comes from: its id, the asset's key and its href as resolved."""

    item: str
    asset: str
    href: str


@dataclass(frozen=True)
class RasterRef:
    """An input raster not named by a plain local path: a URL, a ``/vsi`` path or a STAC item's asset.

    ``spelling`` is what the user wrote (messages name it), ``gdal_path`` what GDAL opens, and
    ``stem`` what outputs are named after (``<stem>_classes.tif``). ``local`` is the local file
    GDAL reads, if any (a STAC item's local asset: it must exist and no output may replace it);
    ``folder`` is where outputs go without ``-o``/``--out-dir`` (a local STAC item's folder),
    None when nothing may be written beside the input.
    """

    spelling: str
    gdal_path: str
    stem: str
    local: Path | None = None
    folder: Path | None = None
    stac: StacOrigin | None = None

    @property
    def name(self) -> str:
        """The label of the input in tables and progress bars: its stem with the raster's suffix."""
        return self.stem + Path(_last_component(self.gdal_path)).suffix

    @property
    def remote(self) -> bool:
        """Whether GDAL reads it through a virtual file system (not a local file)."""
        return self.local is None

    def __str__(self) -> str:
        """The user's spelling (a STAC input also names its asset)."""
        return self.spelling if self.stac is None else f"{self.spelling} (asset {self.stac.asset})"


InputRef = Path | RasterRef
"""An input raster as the batch layer carries it: a local path, or a :class:`RasterRef`."""


def _last_component(text: str) -> str:
    """The last path component of a URL or GDAL path, without query string or fragment."""
    path = urlsplit(text).path if "://" in text and not text.startswith("/") else text.split("?", 1)[0]
    return path.rstrip("/").rsplit("/", 1)[-1]


def remote_ref(text: str) -> RasterRef | None:
    """``text`` as a :class:`RasterRef` when it is a URL of :data:`REMOTE_SCHEMES` or a ``/vsi`` path, else None."""
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() in REMOTE_SCHEMES:
        prefix = REMOTE_SCHEMES[scheme.lower()]
        gdal_path = prefix + (text if prefix == "/vsicurl/" else rest)
    elif text.startswith("/vsi"):
        gdal_path = text
    else:
        return None
    stem = Path(_last_component(gdal_path)).stem or "raster"
    return RasterRef(text, gdal_path, stem)


def as_input(item: str | os.PathLike[str] | RasterRef) -> InputRef:
    """``item`` as an input: a :class:`RasterRef` for a URL or ``/vsi`` path (or one given), else a Path.

    A :class:`~pathlib.Path` given is taken as local: its spelling may already have lost a URL's ``//``.
    """
    if isinstance(item, (RasterRef, Path)):
        return item
    text = os.fspath(item)
    return remote_ref(text) or Path(text)


def looks_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is spelt as a URL or ``/vsi`` path, even one a Path has collapsed (``s3:/bucket``)."""
    return bool(_REMOTE_SPELLING.match(os.fspath(path)))


def local_file(item: InputRef) -> Path | None:
    """The local file an input reads, or None for a remote one."""
    return item if isinstance(item, Path) else item.local


def local_files(items: Iterable[InputRef]) -> list[Path]:
    """The local files among ``items`` (the ones no output may replace)."""
    return [path for path in map(local_file, items) if path is not None]


def public_url(text: str) -> str:
    """A URL without user, password, query string or fragment: safe to record (signed URLs carry keys)."""
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text.split("?", 1)[0]
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


def remote_settings(ref: RasterRef) -> dict[str, str]:
    """The GDAL configuration for reading ``ref`` remotely, less what the user has set.

    No directory listing or sidecar probing on open (``GDAL_DISABLE_READDIR_ON_OPEN``, and
    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` when the name has a raster suffix: GDAL then never asks
    for ``.ovr``/``.aux.xml`` files that are not there); the blocks of one window fetched in
    parallel ranges, neighbouring ones merged into one request; a bounded per-file cache; and a
    server that does not connect or stops sending fails the read (:data:`CONNECT_TIMEOUT_S`,
    :data:`STALL_TIMEOUT_S`) instead of hanging the batch. A value set in the environment or an
    enclosing ``rasterio.Env`` is left as it is.
    """
    import rasterio.env

    wanted = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MULTIRANGE": "PARALLEL",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "VSI_CACHE": "TRUE",
        "VSI_CACHE_SIZE": str(VSI_CACHE_BYTES),
        "GDAL_HTTP_CONNECTTIMEOUT": str(CONNECT_TIMEOUT_S),
        "GDAL_HTTP_LOW_SPEED_TIME": str(STALL_TIMEOUT_S),
        "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    }
    if Path(_last_component(ref.gdal_path)).suffix.lower() in RASTER_SUFFIXES:
        wanted["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = ",".join(RASTER_SUFFIXES)
    active = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    return {key: value for key, value in wanted.items() if key not in os.environ and key not in active}


@contextmanager
def reading(item: InputRef) -> Iterator[None]:
    """GDAL's settings for reading ``item`` (see :func:`remote_settings`) while the block runs; none for a local file.

    GDAL's configuration is process-wide, so reader threads started inside the block see it too.
    """
    if not isinstance(item, RasterRef) or not item.remote:
        yield
        return
    import rasterio

    with rasterio.Env(**remote_settings(item)):
        yield


_HINTS = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or AWS_NO_SIGN_REQUEST=YES for a "
    "public bucket, and AWS_REGION if the bucket is elsewhere",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS (or GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY), or "
    "GS_NO_SIGN_REQUEST=YES for a public bucket",
    "az": "set AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_ACCESS_KEY or AZURE_STORAGE_SAS_TOKEN, or "
    "AZURE_NO_SIGN_REQUEST=YES for a public container",
    "http": "check that the URL is reachable and serves a raster (curl -I URL); a private server needs "
    "GDAL_HTTP_HEADERS or GDAL_HTTP_USERPWD",
}


def remote_hint(ref: RasterRef) -> str:
    """The fix to suggest when ``ref`` does not open: credentials for a bucket, reachability for a URL."""
    kind = ref.gdal_path[len("/vsi") :].split("/", 1)[0]
    key = {"s3": "s3", "gs": "gs", "az": "az", "adls": "az", "curl": "http"}.get(kind)
    if key is None:
        return "check the path (GDAL virtual file systems: https://gdal.org/user/virtual_file_systems.html)"
    return _HINTS[key]
