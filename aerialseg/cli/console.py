"""Terminal output: the only module of aerialseg that talks to rich directly."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..card import printable

__all__ = [
    "out",
    "err",
    "error",
    "info",
    "warning",
    "table",
    "print_json",
    "TileProgress",
    "RowProgress",
    "TrainProgress",
    "ItemProgress",
]

out = Console(highlight=False, markup=False)  # file names may contain [brackets]
err = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """One line on stderr: ``error: <message>``, control characters (a path's, a file's text) escaped."""
    err.print(f"[bold red]error[/]: {escape(printable(message))}", soft_wrap=True, markup=True, emoji=False)


def info(message: str) -> None:
    """One dim line on stderr (stdout stays for tables and JSON); silent under ``-q``."""
    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:
        err.print(message, style="dim", soft_wrap=True, markup=False, emoji=False)


def warning(message: str) -> None:
    """One line on stderr: ``warning: <message>`` (shown under ``-q`` too: it concerns the result)."""
    err.print(f"[bold yellow]warning[/]: {escape(printable(message))}", soft_wrap=True, markup=True, emoji=False)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> None:
    """Print a table; columns named in ``right`` are right-aligned (numbers)."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left")
    for row in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    out.print(t)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    out.file.write(json.dumps(data, indent=2, default=str) + "\n")


_BarT = TypeVar("_BarT", bound="_Bar")


class _Bar:
    """A rich progress display on stderr with the given columns, used as a context manager."""

    def __init__(self, *columns: Any, enabled: bool):
        from rich.progress import Progress

        self.enabled = enabled
        self._bar = Progress(*columns, console=err, disable=not enabled)

    def __enter__(self: _BarT) -> _BarT:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)


def _columns(*middle: Any) -> tuple[Any, ...]:
    """Description, bar, done/total, ``middle``, time remaining."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        *middle,
        TimeRemainingColumn(),
    )


class TileProgress(_Bar):
    """A rich progress bar fed by the library's progress callback; silent when not a terminal."""

    def __init__(self, enabled: bool | None = None, files: int = 1):
        from rich.progress import TextColumn

        super().__init__(
            *_columns(TextColumn("{task.fields[rate]}")), enabled=out.is_terminal if enabled is None else enabled
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._overall = self._bar.add_task("all files", total=files, rate="", visible=files > 1)

    def file_done(self, result: Any) -> None:
        """Advance the overall bar (a batch's files) by one."""
        self._bar.advance(self._overall)

    def __call__(self, event: Any) -> None:
        """Update from a :class:`aerialseg.pipeline.Progress` event."""
        import time

        key = str(event.path)
        if key not in self._tasks:
            self._tasks[key] = self._bar.add_task(event.path.name, total=event.tiles_total, rate="")
            self._started[key] = time.perf_counter()
        elapsed = max(time.perf_counter() - self._started[key], 1e-9)
        self._bar.update(
            self._tasks[key], completed=event.tiles_done, rate=f"{event.megapixels_done / elapsed:.2f} MP/s"
        )


class RowProgress(_Bar):
    """A rich progress bar over rows (vectorize) or another ``unit`` (prepare: tiles); silent when not a terminal."""

    def __init__(self, name: str, enabled: bool | None = None, unit: str = "rows") -> None:
        from rich.progress import TextColumn

        super().__init__(
            *_columns(TextColumn(unit, markup=False)), enabled=out.is_terminal if enabled is None else enabled
        )
        self._task = self._bar.add_task(name, total=None)

    def __call__(self, rows_done: int, rows_total: int) -> None:
        """Update from the library's ``progress(rows_done, rows_total)`` callback."""
        self._bar.update(self._task, completed=rows_done, total=rows_total)


class TrainProgress(_Bar):
    """One bar per epoch (steps, loss, learning rate) and a line per finished epoch; silent when not a terminal."""

    def __init__(self, enabled: bool | None = None):
        from rich.progress import TextColumn

        super().__init__(
            *_columns(TextColumn("{task.fields[stats]}", markup=False)),
            enabled=err.is_terminal if enabled is None else enabled,
        )
        self._epoch: int | None = None
        self._task: Any = None

    def __call__(self, event: Any) -> None:
        """Update from a :class:`aerialseg.training.loop.TrainEvent`."""
        if event.kind == "step":
            if event.epoch != self._epoch:
                if self._task is not None:
                    self._bar.remove_task(self._task)
                self._epoch = event.epoch
                name = f"epoch {event.epoch + 1}/{event.epochs}"
                self._task = self._bar.add_task(name, total=event.batches, stats="")
            stats = f"loss {event.loss:.4f}  lr {event.lr:.2e}  step {event.step}"
            self._bar.update(self._task, completed=event.batch, stats=stats)
        elif self.enabled:
            row = event.row
            parts = [f"epoch {row['epoch']}", f"step {row['step']}", f"loss {row['train_loss']}"]
            parts += [f"{k} {row[k]}" for k in ("train_miou", "val_miou", "val_mean_f1", "val_oa") if k in row]
            self._bar.console.print("  ".join(parts), markup=False)


class ItemProgress(_Bar):
    """A bar over a list of named items (eval's images, a cluster's tasks); silent when not a terminal."""

    def __init__(self, title: str, enabled: bool | None = None):
        super().__init__(*_columns(), enabled=err.is_terminal if enabled is None else enabled)
        self._task = self._bar.add_task(title, total=None)

    def __call__(self, name: str, done: int, total: int) -> None:
        """Update from the library's ``progress(name, done, total)`` callback."""
        self._bar.update(self._task, completed=done, total=total, description=name)
