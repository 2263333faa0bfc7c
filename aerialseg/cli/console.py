"""Terminal output: the only module of aerialseg that talks to rich directly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["out", "err", "error", "table", "print_json"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """One line on stderr: ``error: <message>``."""
    err.print(f"[bold red]error[/]: {message}", soft_wrap=True, markup=True, emoji=False)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> None:
    """Print a table; columns named in ``right`` are right-aligned (numbers)."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    out.file.write(json.dumps(data, indent=2, default=str) + "\n")
