"""Resume journal: how far an interrupted predict got, so ``--resume`` continues from there.

When a run stops on an exception or Ctrl-C, the intermediate class raster beside the output
(``.<output>.partial.tif``) is closed cleanly, so every row written so far is on disk, and
``.<output>.partial.json`` records how many rows that is together with everything that
determines those rows (input file identity, weights, tiling, bands, scaling, grid). A
resumed run continues only if all of that still matches; otherwise it starts over. The
journal is deleted when a run starts, so a run killed outright (no chance to close the
file) is never resumed from a file in an unknown state: it starts again from the top.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .locations import InputRef, local_file

__all__ = ["partial_paths", "scratch_paths", "run_key", "file_identity", "load_rows_done", "save_rows_done"]


def partial_paths(output: Path) -> tuple[Path, Path]:
    """``(intermediate raster, journal)`` beside ``output``."""
    return output.with_name(f".{output.name}.partial.tif"), output.with_name(f".{output.name}.partial.json")


def scratch_paths(output: Path) -> list[Path]:
    """Every file a run writes, reopens or deletes beside ``output`` besides ``output`` itself.

    The intermediate raster and its overviews, the journal and its temporary: none of them
    may be an input (a resumed run updates the intermediate raster in place).
    """
    raster, journal = partial_paths(output)
    return [raster, raster.with_name(raster.name + ".ovr"), journal, _journal_tmp(journal)]


def _journal_tmp(journal: Path) -> Path:
    return journal.with_name(journal.name + ".tmp")


def run_key(**facts: Any) -> dict[str, Any]:
    """The facts that must match for a resume, JSON-normalised."""
    return json.loads(json.dumps(facts, default=str, sort_keys=True))


def file_identity(path: InputRef) -> dict[str, Any]:
    """Size and modification time: enough to notice a replaced or edited input.

    A remote input is known by its URL only (GDAL gives no cheap stat of it): a file replaced
    at the same URL between an interrupted run and its resume is not noticed.
    """
    local = local_file(path)
    if local is None:
        return {"url": str(path)}
    stat = local.stat()
    return {"path": str(local.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def load_rows_done(journal: Path, key: dict[str, Any]) -> int | None:
    """Rows already written by an interrupted run with the same key, or None."""
    try:
        data = json.loads(journal.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or not isinstance(data.get("rows_done"), int):
        return None
    return data["rows_done"]


def save_rows_done(journal: Path, key: dict[str, Any], rows_done: int) -> None:
    """Record progress (written atomically: a torn journal would be worse than none)."""
    tmp = _journal_tmp(journal)
    tmp.write_text(json.dumps({"key": key, "rows_done": rows_done}))
    os.replace(tmp, journal)
