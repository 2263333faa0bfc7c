"""Safe outputs: never an input, and written then renamed so no half file poses as output.

:class:`InputFiles` recognises a command's inputs (rasters, the weights file, a checkpoint)
under any spelling, so no output may replace one even with ``--overwrite``.

The temporary file lives in the destination's folder (same filesystem, so the final
``os.replace`` is atomic) and keeps the destination's suffix (GDAL and ONNX tools pick
drivers by extension).
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AerialsegError, OutputExistsError, OutputWriteError

__all__ = ["atomic_output", "check_output", "make_folder", "InputFiles", "name_key", "special_kind", "refuse_special"]

_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (a named pipe, a device ...), else None.

    Such a path must never be opened as an input (reading a named pipe waits for a writer, a
    device never ends) nor replaced as an output. A path that cannot be looked at gives None:
    opening it says why.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for test, kind in _SPECIAL_FILES if test(mode)), None)


def refuse_special(path: str | os.PathLike[str]) -> None:
    """Refuse as an output a path that is a device, named pipe or socket (see :func:`check_output`)."""
    kind = special_kind(path)
    if kind is not None:
        raise OutputWriteError(
            f"is {kind}, not a file aerialseg can replace", path=path, hint="give the name of a regular file"
        )


def check_output(dest: str | os.PathLike[str], overwrite: bool, inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse before any work: an input, a special file, an existing output without ``overwrite``, an unwritable folder.

    ``inputs`` (the files the command reads) are refused whatever ``overwrite`` says, and so is
    a device, named pipe or socket: the rename at the end would replace it with a regular file
    (``-o /dev/null --overwrite`` run as root would replace ``/dev/null``).
    """
    path = Path(dest)
    InputFiles(Path(item) for item in inputs).refuse(path)
    refuse_special(path)
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


def name_key(path: Path) -> str:
    """A path with links, ``..`` and (on a case-insensitive system) case resolved, for comparing spellings."""
    return os.path.normcase(os.path.realpath(path))


def _file_id(path: Path) -> tuple[int, int] | None:
    """Device and inode of the file ``path`` leads to (through links), or None when there is none."""
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


class InputFiles:
    """The inputs of a batch, recognised under any spelling: ``..``, a symbolic or hard link, another case.

    An existing file is the same file when device and inode agree (as :func:`os.path.samefile`
    decides); a path that does not exist is compared by its resolved, case-normalised name.
    """

    def __init__(self, paths: Iterable[Path]):
        self._by_id: dict[tuple[int, int], Path] = {}
        self._by_name: dict[str, Path] = {}
        for path in paths:
            file_id = _file_id(path)
            if file_id is not None:
                self._by_id.setdefault(file_id, path)
            self._by_name.setdefault(name_key(path), path)

    def find(self, path: Path) -> Path | None:
        """The input ``path`` is (as the batch spells it), or None."""
        file_id = _file_id(path)
        if file_id is not None and file_id in self._by_id:
            return self._by_id[file_id]
        return self._by_name.get(name_key(path))

    def refuse(self, path: Path, role: str = "output", hint: str = "choose another output name") -> None:
        """Raise :class:`OutputWriteError` when ``path`` is one of the inputs, whatever ``--overwrite`` says."""
        source = self.find(path)
        if source is not None:
            raise OutputWriteError(
                f"this {role} is the input {source}; writing it would destroy the input",
                path=path,
                hint=hint,
            )

    def inside(self, folder: Path) -> Path | None:
        """An input within ``folder`` (a folder about to be emptied), or None."""
        prefix = name_key(folder) + os.sep
        return next((path for key, path in self._by_name.items() if key.startswith(prefix)), None)


def make_folder(folder: str | os.PathLike[str], what: str, hint: str | None = None) -> Path:
    """Create ``folder`` and its parents for outputs, or say in one line that it cannot: ``cannot create <what>``."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create {what} ({exc.strerror or exc})", path=path, hint=hint) from exc
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
