"""Write-then-rename, so a crash, a full disk or Ctrl-C never leaves a half file posing as output.

The temporary file lives in the destination's folder (same filesystem, so the final
``os.replace`` is atomic) and keeps the destination's suffix (GDAL and ONNX tools pick
drivers by extension).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AerialsegError, OutputExistsError, OutputWriteError

__all__ = ["atomic_output", "check_output"]


def check_output(dest: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse before any work: an existing output without ``overwrite``, or a folder we cannot write."""
    path = Path(dest)
    if path.exists() and not overwrite:
        raise OutputExistsError("output exists", path=path, hint="pass --overwrite to replace it")
    if path.is_dir():
        raise OutputWriteError("output is a folder", path=path, hint="give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputWriteError("output folder does not exist", path=path, hint=f"create {folder} first")
    if not os.access(folder, os.W_OK):
        raise OutputWriteError("output folder is not writable", path=path, hint="choose another folder")
    return path


@contextmanager
def atomic_output(dest: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``, else delete it."""
    path = check_output(dest, overwrite)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, AerialsegError):
            raise
        raise OutputWriteError(f"cannot write ({exc.strerror or exc})", path=path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
