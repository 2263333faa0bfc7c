"""Terminal output: the only module of aerialseg that talks to rich directly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["out", "err", "error", "table", "print_json", "TileProgress", "RowProgress", "TrainProgress", "ItemProgress"]

out = Console(highlight=False, markup=False)  # file names may contain [brackets]
err = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """One line on stderr: ``error: <message>``."""
    err.print(f"[bold red]error[/]: {escape(message)}", soft_wrap=True, markup=True, emoji=False)


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


class TileProgress:
    """A rich progress bar fed by the library's progress callback; silent when not a terminal."""

    def __init__(self, enabled: bool | None = None, files: int = 1):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.enabled = out.is_terminal if enabled is None else enabled
        self._bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
            disable=not self.enabled,
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._overall = self._bar.add_task("all files", total=files, rate="", visible=files > 1)

    def __enter__(self) -> TileProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

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


class RowProgress:
    """A rich progress bar over rows (vectorize) or another ``unit`` (prepare: tiles); silent when not a terminal."""

    def __init__(self, name: str, enabled: bool | None = None, unit: str = "rows") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn(name, markup=False), BarColumn(), MofNCompleteColumn(), TextColumn(unit, markup=False),
            TimeRemainingColumn(), console=err, disable=not (out.is_terminal if enabled is None else enabled),
        )  # fmt: skip
        self._task = self._bar.add_task(name, total=None)

    def __enter__(self) -> RowProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def __call__(self, rows_done: int, rows_total: int) -> None:
        self._bar.update(self._task, completed=rows_done, total=rows_total)


class TrainProgress:
    """One bar per epoch (steps, loss, learning rate) and a line per finished epoch; silent when not a terminal."""

    def __init__(self, enabled: bool | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.enabled = err.is_terminal if enabled is None else enabled
        self._bar = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}", markup=False), TimeRemainingColumn(), console=err,
            disable=not self.enabled,
        )  # fmt: skip
        self._epoch: int | None = None
        self._task: Any = None

    def __enter__(self) -> TrainProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

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


class ItemProgress:
    """A bar over a list of named items (eval's images); silent when not a terminal."""

    def __init__(self, title: str, enabled: bool | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=err, disable=not (err.is_terminal if enabled is None else enabled),
        )  # fmt: skip
        self._task = self._bar.add_task(title, total=None)

    def __enter__(self) -> ItemProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def __call__(self, name: str, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total, description=name)
