"""Weights from a URL into the user weights folder: streamed, resumable, verified before they are installed.

- urllib3 (imported when a download starts, so the command line starts without it) follows
  redirects, as a Hugging Face ``resolve`` link needs (it answers with one to its CDN), and
  retries refused connections, timeouts, 429 and 5xx answers with exponential backoff,
  honouring ``Retry-After``. A body cut off midway is not retried: it is kept for the next call.
- The body streams into ``<name><suffix>.part`` in the weights folder, a name the weights scan
  never picks up, and the server's validator (a strong ETag, else Last-Modified) into
  ``<name><suffix>.part.json``. The next pull of the same URL asks for the rest with ``Range``
  and ``If-Range``: a 206 appends, a 200 (the file changed, or the server ignores ranges)
  starts again from the first byte.
- Nothing unverified is installed: the whole body is hashed and compared with the expected
  sha256 when one is given, its model card is read (a weights file's tensors checked against
  it), and only then is it renamed into place, so ``--model NAME`` never finds half a file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .atomic import atomic_output, check_output, make_folder
from .card import ModelCard, printable, read_card
from .errors import DownloadError, OutputExistsError, OutputWriteError, WeightsError
from .weights import user_weights_dir, verified_card

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse, PoolManager

__all__ = ["KINDS", "ByteCallback", "PulledWeights", "pull_weights"]

KINDS = (".safetensors", ".onnx")
"""The files a pull installs: aerialseg weights, or an ONNX graph with a model card."""

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CHUNK = 1 << 18  # a dropped connection loses the chunk being read: at most this much is fetched again
_RETRIED_STATUSES = (429, 500, 502, 503, 504)

ByteCallback = Callable[[int, "int | None"], None]
"""``progress(bytes_done, bytes_total)``: the total is None when the server does not say it."""


@dataclass(frozen=True)
class PulledWeights:
    """What a pull installed: the name ``--model`` takes, the file, the sha256 of its bytes, its card."""

    name: str
    path: Path
    sha256: str
    card: ModelCard


def pull_weights(
    url: str,
    *,
    sha256: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: ByteCallback | None = None,
) -> PulledWeights:
    """Download ``url`` into the user weights folder as ``<name><suffix>``, resuming an earlier partial download.

    Args:
        url: http or https address of a ``.safetensors`` or ``.onnx`` file; the kind is the
            suffix of its last path segment, else of the server's Content-Disposition filename.
        sha256: The hash the file must have (64 hexadecimal digits); on a mismatch the body is
            deleted and nothing is installed.
        name: The name to install under (default: the file's name without its suffix).
        overwrite: Replace installed weights of that name.
        progress: Called as bytes arrive with ``(bytes_done, bytes_total)``.

    Raises:
        DownloadError: Not an http(s) URL, the host cannot be reached, the server answered an
            error (after retries), or the connection dropped (the partial body is kept).
        WeightsError: A malformed ``sha256`` or ``name``, no model kind, a hash mismatch, or a
            body that is not a model.
        OutputExistsError: Weights of that name are installed and ``overwrite`` is false.
        OutputWriteError: The body cannot be written (disk full: the partial body is removed).

    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise DownloadError("not an http or https URL", path=printable(url), hint="give the file's web address")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise WeightsError(
            f"expected sha256 {printable(sha256)!r} is not 64 hexadecimal digits", hint="copy the published hash whole"
        )
    url_file = PurePosixPath(unquote(parts.path)).name
    kind = _kind(url_file)
    # the installed name; for a URL that names no model file, the partial body's until the server names the file
    stem = _checked_name(name if name is not None else url_file[: -len(kind)] if kind else url_file or "download")
    folder = make_folder(user_weights_dir(), "the weights folder")
    if kind is not None:
        _target(folder, stem, kind, overwrite)  # refused before any network access
    part = folder / f"{stem}{kind or ''}.part"
    with _pool() as pool:
        response, offset = _request(pool, url, part)
        try:
            if kind is None:
                kind, stem = _served_kind(response, name, url)
            target = _target(folder, stem, kind, overwrite)
            _receive(response, url, part, offset, progress)
        finally:
            response.close()
    from .runners.onnx_runner import file_sha256

    digest = file_sha256(part)
    if sha256 is not None and digest != sha256.lower():
        _discard(part)
        raise WeightsError(
            f"sha256 mismatch: expected {sha256.lower()}, downloaded {digest}",
            path=printable(url),
            hint="nothing was installed and the download was deleted",
        )
    return PulledWeights(stem, target, digest, _install(part, target, overwrite, url))


def _pool() -> PoolManager:
    """Connections that follow redirects and retry, with backoff, what a second try may cure."""
    import urllib3

    retries = urllib3.Retry(
        total=10,
        connect=3,
        read=3,
        status=3,
        other=0,
        redirect=5,
        backoff_factor=0.5,
        status_forcelist=_RETRIED_STATUSES,
        raise_on_status=False,  # the last answer comes back, and its status is said
    )
    return urllib3.PoolManager(retries=retries, timeout=urllib3.Timeout(connect=15, read=60))


def _kind(file_name: str) -> str | None:
    """The model kind a file name's suffix says (``.safetensors``, ``.onnx``), or None."""
    suffix = PurePosixPath(file_name).suffix.lower()
    return suffix if suffix in KINDS else None


def _checked_name(name: str) -> str:
    """``name`` when it can name one file in the weights folder: not empty, no path separators or control characters."""
    separators = {"/", os.sep, os.altsep or "/"}
    if name in ("", ".", "..") or not name.isprintable() or any(s in name for s in separators):
        raise WeightsError(
            f"{printable(name)!r} cannot name installed weights (empty, a path, or control characters)",
            hint="pass --name with a plain name",
        )
    return name


def _target(folder: Path, stem: str, kind: str, overwrite: bool) -> Path:
    """The file to install: refused when it exists (unless ``overwrite``) or when the other kind holds the name.

    ``--model NAME`` would find one of two files of that name, not necessarily the new one.
    """
    for other in KINDS:
        taken = folder / f"{stem}{other}"
        if other != kind and taken.exists():
            raise OutputExistsError(
                f"weights named {printable(stem)!r} are installed as {other}", path=taken, hint="pass another --name"
            )
    return check_output(folder / f"{stem}{kind}", overwrite)


def _served_kind(response: BaseHTTPResponse, name: str | None, url: str) -> tuple[str, str]:
    """Kind and name from the Content-Disposition filename, for a URL whose path names no model file."""
    header = Message()
    header["Content-Disposition"] = response.headers.get("Content-Disposition", "")
    served = PurePosixPath(header.get_filename() or "").name  # a name only: no folder of the server's choosing
    kind = _kind(served)
    if kind is None:
        raise WeightsError(
            "names no .safetensors or .onnx file (in its path or its Content-Disposition)",
            path=printable(url),
            hint="give the address of the file itself (convert a .ckpt or .pth with 'aerialseg weights import')",
        )
    return kind, _checked_name(name if name is not None else served[: -len(kind)])


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _resumable(part: Path, url: str) -> tuple[int, str | None]:
    """Bytes of ``url`` already in ``part`` and the validator they came with; ``(0, None)`` when none can resume."""
    try:
        saved = json.loads(_sidecar(part).read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0, None
    if not isinstance(saved, dict) or saved.get("url") != url or not isinstance(saved.get("validator"), str):
        return 0, None
    return size, saved["validator"]


def _request(pool: PoolManager, url: str, part: Path) -> tuple[BaseHTTPResponse, int]:
    """The server's answer, its body not yet read, and the offset in the file at which the body starts."""
    import urllib3

    offset, validator = _resumable(part, url)
    headers = {"Accept-Encoding": "identity"}  # offsets count the file's bytes, not a compressed stream's
    if offset and validator:
        headers |= {"Range": f"bytes={offset}-", "If-Range": validator}
    try:
        response = pool.request("GET", url, headers=headers, preload_content=False)
    except urllib3.exceptions.HTTPError as exc:
        raise DownloadError(
            f"cannot download ({_reason(exc)})", path=printable(url), hint="check the address and the network"
        ) from exc
    status = response.status
    if status == 200:
        return response, 0
    if status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        return response, offset
    response.close()
    if offset and status in (206, 416):  # a range other than the one asked for: start again from the first byte
        _discard(part)
        return _request(pool, url, part)
    retried = " (after retries)" if status in _RETRIED_STATUSES else ""
    raise DownloadError(
        f"the server answered HTTP {status} {response.reason or ''}".rstrip() + retried,
        path=printable(url),
        hint="try again later" if status in _RETRIED_STATUSES else "check the address",
    )


def _receive(response: BaseHTTPResponse, url: str, part: Path, offset: int, progress: ByteCallback | None) -> None:
    """Write the body into ``part``: appended at ``offset``, or from the start with the server's validator saved."""
    import urllib3

    length = response.length_remaining
    total = None if length is None else offset + length
    done = offset
    if progress is not None:
        progress(done, total)
    try:
        if not offset:
            etag = response.headers.get("ETag")
            validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
            _sidecar(part).write_text(json.dumps({"url": url, "validator": validator}))
        with part.open("ab" if offset else "wb") as file:
            for chunk in response.stream(_CHUNK):
                file.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib3.exceptions.HTTPError as exc:
        raise DownloadError(
            f"the connection dropped after {done} of {total or 'an unknown number of'} bytes",
            path=printable(url),
            hint="run the same command again to resume",
        ) from exc
    except OSError as exc:
        _discard(part)
        raise OutputWriteError(
            f"cannot write the download ({exc.strerror or exc}); the partial file was removed", path=part
        ) from exc


def _discard(part: Path) -> None:
    """Delete a partial body and its sidecar."""
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _install(part: Path, target: Path, overwrite: bool, url: str) -> ModelCard:
    """Rename the hashed body into place once its card reads; a body that is not a model is deleted."""
    with atomic_output(target, overwrite) as tmp:
        os.replace(part, tmp)  # the temporary name ends in the kind's suffix, which decides how the card is read
        _sidecar(part).unlink(missing_ok=True)
        try:
            return verified_card(tmp) if target.suffix == ".safetensors" else read_card(tmp)
        except WeightsError as exc:
            raise WeightsError(exc.message, path=printable(url), hint=exc.hint) from exc


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (``Connection refused``), else the error's own."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    reason = getattr(exc, "reason", None) or exc
    return str(reason).split(": ", 1)[-1]  # without urllib3's "HTTPConnection(host=..., port=...)" prefix
