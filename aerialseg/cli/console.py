"""Terminal output: the only module of aerialseg that talks to rich directly.

Rich is imported when something is printed, not when the command line starts: ``--help`` and
``--version`` never load it. ``out`` (stdout: tables, JSON) and ``err`` (stderr: lines, bars)
are made on first use.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "error",
    "info",
    "warning",
    "table",
    "print_json",
    "BatchProgress",
    "RowProgress",
    "TrainProgress",
    "ItemProgress",
    "ByteProgress",
    "JsonProgress",
    "PROGRESS_STYLES",
    "bar_style",
]


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    if stderr:
        return Console(stderr=True, highlight=False)
    return Console(highlight=False, markup=False)  # file names may contain [brackets]


def _on_terminal(stderr: bool) -> bool:
    """Whether stdout (or stderr) is a terminal: progress bars are drawn only there."""
    return _console(stderr).is_terminal


def __getattr__(name: str) -> Console:
    """``out`` and ``err``, made on first use."""
    if name in ("out", "err"):
        return _console(name == "err")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _marked(label: str, message: str) -> str:
    """``label: message`` as rich markup, control characters (a path's, a file's text) escaped."""
    from rich.markup import escape

    from ..card import printable

    return f"{label}: {escape(printable(message))}"


def error(message: str) -> None:
    """One line on stderr: ``error: <message>``."""
    _console(True).print(_marked("[bold red]error[/]", message), soft_wrap=True, markup=True, emoji=False)


def info(message: str) -> None:
    """One dim line on stderr (stdout stays for tables and JSON); silent under ``-q``."""
    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:
        _console(True).print(message, style="dim", soft_wrap=True, markup=False, emoji=False)


def warning(message: str) -> None:
    """One line on stderr: ``warning: <message>`` (shown under ``-q`` too: it concerns the result)."""
    _console(True).print(_marked("[bold yellow]warning[/]", message), soft_wrap=True, markup=True, emoji=False)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> None:
    """Print a table; columns named in ``right`` are right-aligned (numbers)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left")
    for row in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    _console(False).print(t)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    _console(False).file.write(json.dumps(data, indent=2, default=str) + "\n")


PROGRESS_STYLES = ("auto", "json", "none")
"""``--progress``: bars on a terminal (auto), one JSON object per line on stderr, or nothing."""

JSON_PROGRESS_INTERVAL_S = 0.2
"""Least time between two JSON progress lines of one task; its first and last lines always go out."""


def bar_style(progress: str, json_output: bool) -> str:
    """The progress style of a command: ``--progress`` as given, but no bars by default under ``--json``."""
    return "none" if json_output and progress == "auto" else progress


class JsonProgress:
    """The part of rich's ``Progress`` the bars use, writing one JSON object per line on stderr.

    For programs that drive aerialseg (the QGIS provider): each line is
    ``{"stage": ..., "item": ..., "done": ..., "total": ...}``, where ``stage`` is what is
    counted (``files``, ``tiles``, ``tasks``, ``rows``, ``images``, ``steps``, ``bytes``), ``item``
    what it belongs to (a file name, an epoch), ``total`` null while unknown. Lines of one task
    come at most every :data:`JSON_PROGRESS_INTERVAL_S`, its first and its last always.
    """

    def __init__(self) -> None:
        self._tasks: dict[int, dict[str, Any]] = {}
        self._sent: dict[int, float] = {}

    def __enter__(self) -> JsonProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, visible: bool = True, **fields: Any) -> int:
        """A new task; nothing is written until it moves (an overall bar may never be shown)."""
        task = len(self._tasks)
        self._tasks[task] = {"stage": fields.get("stage", "steps"), "item": description, "done": 0, "total": total}
        return task

    def update(
        self,
        task: int,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Record the task's state and write it unless its last line is too recent."""
        state = self._tasks[task]
        for key, value in (("done", completed), ("total", total), ("item", description)):
            if value is not None:
                state[key] = value
        self._send(task)

    def advance(self, task: int, advance: float = 1) -> None:
        """One more done."""
        self.update(task, completed=self._tasks[task]["done"] + advance)

    def reset(self, task: int, completed: float = 0, total: float | None = None, **fields: Any) -> None:
        """Start the task again from ``completed``."""
        self.update(task, completed=completed, total=total)

    def remove_task(self, task: int) -> None:
        """Forget a finished task."""
        self._tasks.pop(task, None)

    def _send(self, task: int) -> None:
        import time

        state, now = self._tasks[task], time.monotonic()
        last = self._sent.get(task)
        finished = state["total"] is not None and state["done"] >= state["total"]
        if last is None or finished or now - last >= JSON_PROGRESS_INTERVAL_S:
            self._sent[task] = now
            out = _console(True).file
            out.write(json.dumps({k: _plain(v) for k, v in state.items()}) + "\n")
            out.flush()


def _plain(value: Any) -> Any:
    """Counts as integers where they are whole (rich keeps floats)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_BarT = TypeVar("_BarT", bound="_Bar")


class _Bar:
    """A progress display on stderr with the given columns, used as a context manager.

    ``style`` (see :data:`PROGRESS_STYLES`): ``auto`` draws rich bars when the stream the
    command's output goes to (``stderr`` or stdout) is a terminal, ``json`` writes
    :class:`JsonProgress` lines, ``none`` nothing. Tasks carry a ``stage`` field, what they count.
    """

    def __init__(self, *columns: Any, style: str, stderr: bool):
        from rich.progress import Progress

        self.enabled = style == "auto" and _on_terminal(stderr)
        self._bar: Any = (
            JsonProgress() if style == "json" else Progress(*columns, console=_console(True), disable=not self.enabled)
        )

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


class BatchProgress(_Bar):
    """What a predict batch tells (:class:`aerialseg.executor.BatchEvents`), on stderr; bars only on a terminal.

    The weights a model name chose and the engine are one line each (unless ``announce`` is
    false, as under ``--json``; sample weights' warning is printed anyway). In this process
    each file gets a bar of its tiles, under an overall bar of the batch's files; on a
    cluster one bar follows the tasks.
    """

    def __init__(self, style: str = "auto", announce: bool = True):
        from rich.progress import TextColumn

        super().__init__(*_columns(TextColumn("{task.fields[rate]}")), style=style, stderr=False)
        self.announce = announce
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._overall = self._bar.add_task("all files", total=None, rate="", visible=False, stage="files")
        self._cluster: Any = None

    def chose(self, choice: Any) -> None:
        """The weights a model name chose (a :class:`aerialseg.catalog.WeightsChoice`), and its warning."""
        if self.announce:
            info(choice.describe())
        if (warned := choice.warning()) is not None:
            warning(warned)

    def started(self, engine: str, files: int) -> None:
        """The engine's line; the overall bar counts ``files``."""
        if self.announce:
            info(f"engine: {engine}")
        self._bar.update(self._overall, total=files, visible=files > 1)

    def tiles(self, event: Any) -> None:
        """Update a file's bar from a :class:`aerialseg.pipeline.Progress` event."""
        import time

        key = str(event.path)
        if key not in self._tasks:
            self._tasks[key] = self._bar.add_task(event.path.name, total=event.tiles_total, rate="", stage="tiles")
            self._started[key] = time.perf_counter()
        elapsed = max(time.perf_counter() - self._started[key], 1e-9)
        self._bar.update(
            self._tasks[key], completed=event.tiles_done, rate=f"{event.megapixels_done / elapsed:.2f} MP/s"
        )

    def tasks(self, name: str, done: int, total: int) -> None:
        """Update the cluster's bar: ``done`` of ``total`` tasks, the last one of ``name``."""
        if self._cluster is None:
            self._cluster = self._bar.add_task("cluster tasks", total=total, rate="", stage="tasks")
        self._bar.update(self._cluster, completed=done, total=total, description=name)

    def finished(self, result: Any) -> None:
        """Advance the overall bar (a batch's files) by one."""
        self._bar.advance(self._overall)


class RowProgress(_Bar):
    """A rich progress bar over rows (vectorize) or another ``unit`` (prepare: tiles); silent when not a terminal."""

    def __init__(self, name: str, style: str = "auto", unit: str = "rows") -> None:
        from rich.progress import TextColumn

        super().__init__(*_columns(TextColumn(unit, markup=False)), style=style, stderr=False)
        self._task = self._bar.add_task(name, total=None, stage=unit)

    def __call__(self, rows_done: int, rows_total: int) -> None:
        """Update from the library's ``progress(rows_done, rows_total)`` callback."""
        self._bar.update(self._task, completed=rows_done, total=rows_total)


class TrainProgress(_Bar):
    """One bar per epoch (steps, loss, learning rate) and a line per finished epoch; silent when not a terminal."""

    def __init__(self, style: str = "auto"):
        from rich.progress import TextColumn

        super().__init__(*_columns(TextColumn("{task.fields[stats]}", markup=False)), style=style, stderr=True)
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
                self._task = self._bar.add_task(name, total=event.batches, stats="", stage="steps")
            stats = f"loss {event.loss:.4f}  lr {event.lr:.2e}  step {event.step}"
            self._bar.update(self._task, completed=event.batch, stats=stats)
        elif self.enabled:
            row = event.row
            parts = [f"epoch {row['epoch']}", f"step {row['step']}", f"loss {row['train_loss']}"]
            parts += [f"{k} {row[k]}" for k in ("train_miou", "val_miou", "val_mean_f1", "val_oa") if k in row]
            self._bar.console.print("  ".join(parts), markup=False)


class ItemProgress(_Bar):
    """A bar over a list of named items (eval's images); silent when not a terminal."""

    def __init__(self, title: str, style: str = "auto", stage: str = "images"):
        super().__init__(*_columns(), style=style, stderr=True)
        self._task = self._bar.add_task(title, total=None, stage=stage)

    def __call__(self, name: str, done: int, total: int) -> None:
        """Update from the library's ``progress(name, done, total)`` callback."""
        self._bar.update(self._task, completed=done, total=total, description=name)


class ByteProgress(_Bar):
    """A bar over a download's bytes: size, speed, time left; silent when stderr is not a terminal.

    A resumed download starts at the bytes already on disk: the first call resets the bar
    there, so the speed counts only what arrives now.
    """

    def __init__(self, title: str, style: str = "auto"):
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        super().__init__(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            style=style,
            stderr=True,
        )
        self._task = self._bar.add_task(title, total=None, stage="bytes")
        self._started = False

    def __call__(self, done: int, total: int | None) -> None:
        """Update from the library's ``progress(bytes_done, bytes_total)`` callback."""
        if self._started:
            self._bar.update(self._task, completed=done, total=total)
        else:
            self._bar.reset(self._task, completed=done, total=total)
            self._started = True
