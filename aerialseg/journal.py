"""Scratch files beside an output: the resume journal, and the lock that keeps two runs off one output.

Resume journal: how far an interrupted predict got, so ``--resume`` continues from there.

When a run stops on an exception or Ctrl-C, the intermediate class raster beside the output
(``.<output>.partial.tif``) is closed cleanly, so every row written so far is on disk, and
``.<output>.partial.json`` records how many rows that is together with everything that
determines those rows (input file identity, weights, tiling, bands, scaling, grid). A
resumed run continues only if all of that still matches; otherwise it starts over. The
journal is deleted when a run starts, so a run killed outright (no chance to close the
file) is never resumed from a file in an unknown state: it starts again from the top.

Lock: the intermediate raster's name is fixed (a resume must find it), so two runs writing
the same output would write one file. :func:`output_lock` holds an exclusive ``flock`` on
``.<output>.lock`` while a run writes; a second run is refused in one line. The kernel
releases the lock when its process ends, however it ends, so a killed run never blocks the
next one (its leftover lock file is simply locked again, and removed by the run that ends).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputWriteError
from .jsondata import JsonProblem, parse_json
from .locations import InputRef, local_file

__all__ = [
    "partial_paths",
    "scratch_paths",
    "output_lock",
    "run_key",
    "file_identity",
    "load_rows_done",
    "save_rows_done",
]


_RASTER_SUFFIX, _JOURNAL_SUFFIX = ".partial.tif", ".partial.json"


def partial_paths(output: Path) -> tuple[Path, Path]:
    """``(intermediate raster, journal)`` beside ``output``."""
    return output.with_name(f".{output.name}{_RASTER_SUFFIX}"), output.with_name(f".{output.name}{_JOURNAL_SUFFIX}")


def scratch_paths(output: Path) -> list[Path]:
    """Every file a run writes, reopens or deletes beside ``output`` besides ``output`` itself.

    The intermediate raster and its overviews, the journal and its temporary, the lock file:
    none of them may be an input (a resumed run updates the intermediate raster in place).
    """
    raster, journal = partial_paths(output)
    return [raster, raster.with_name(raster.name + ".ovr"), journal, _journal_tmp(journal), _lock_path(output)]


def _journal_tmp(journal: Path) -> Path:
    return journal.with_name(journal.name + ".tmp")


def _lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock")


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold the lock on ``output`` for the block (see the module docstring); refuse it when another run holds it.

    The lock file is removed when the block ends. A run that opened it just before its holder
    removed it would lock a file no longer there, so the lock is taken again until the file
    locked is the one at the path.
    """
    path = _lock_path(output)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            problem = f"cannot create its lock file {path.name} ({exc.strerror or exc})"
            raise OutputWriteError(problem, path=output) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputWriteError(
                "another aerialseg run is writing this output", path=output, hint="wait for it or choose another -o"
            ) from None
        if _is_file_at(fd, path):
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one ``path`` names now."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def run_key(**facts: Any) -> dict[str, Any]:
    """The facts that must match for a resume, JSON-normalised."""
    return json.loads(json.dumps(facts, default=str, sort_keys=True))


def file_identity(path: InputRef) -> dict[str, Any]:
    """Size, modification time, inode and inode change time: enough to notice a replaced or edited input.

    Size and modification time alone miss a file rewritten in place with its old time set back
    (``touch -d``, ``os.utime``, a copy keeping times); the inode change time moves on every
    write and every time change and cannot be set back, and a replaced file has a new inode.
    A remote input is known by its URL only (GDAL gives no cheap stat of it): a file replaced
    at the same URL between an interrupted run and its resume is not noticed.
    """
    local = local_file(path)
    if local is None:
        return {"url": str(path)}
    stat = local.stat()
    return {
        "path": str(local.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "inode": stat.st_ino,
        "ctime_ns": stat.st_ctime_ns,
    }


def load_rows_done(journal: Path, key: dict[str, Any]) -> int | None:
    """Rows already written by an interrupted run with the same key, or None."""
    try:
        data = parse_json(journal.read_bytes())
    except (OSError, JsonProblem):
        return None  # a damaged journal: the run starts over
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("rows_done"), int):
        return None
    return data["rows_done"]


def save_rows_done(journal: Path, key: dict[str, Any], rows_done: int) -> None:
    """Record progress (written atomically: a torn journal would be worse than none).

    Called while a run stops on an error, so it never raises: with no intermediate raster
    kept (a write to it failed) or no room for the journal (a full disk), there is no journal
    and a resumed run starts over, and the error that stopped the run is the one reported.
    """
    if not journal.with_name(journal.name.removesuffix(_JOURNAL_SUFFIX) + _RASTER_SUFFIX).exists():
        return
    tmp = _journal_tmp(journal)
    try:
        tmp.write_text(json.dumps({"key": key, "rows_done": rows_done}))
        os.replace(tmp, journal)
    except OSError:
        tmp.unlink(missing_ok=True)
