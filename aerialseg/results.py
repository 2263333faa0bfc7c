"""The row a batch reports for each input (ok, skipped or failed, with its time and tiles), and the batch's rows.

One module says what a row holds and how an error becomes one, so the in-process and cluster
paths, the mosaic and every caller of :func:`aerialseg.batch.predict_batch` report alike: any
error of one file, expected or not, is that file's failed row while the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

from .errors import AerialsegError, first_line
from .locations import InputRef

if TYPE_CHECKING:
    from .runners.gate import GateResult

__all__ = ["BatchRun", "PredictResult", "failed", "failure", "skipped"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictResult:
    """One input's outcome; ``error`` holds the one-line message when ``status`` is 'failed'.

    ``status`` is ``ok``, ``skipped`` (``skip_finished`` found its class raster: a success) or ``failed``.
    """

    input: InputRef
    output: Path | None
    status: str
    seconds: float = 0.0
    megapixels: float = 0.0
    tiles_run: int = 0
    tiles_skipped: int = 0
    error: str | None = None

    @property
    def megapixels_per_second(self) -> float:
        """Throughput over the whole file."""
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class BatchRun(Sequence[PredictResult]):
    """A batch's rows in input order (the run is a sequence of them), the engine that ran and its gate."""

    results: tuple[PredictResult, ...]
    engine: str = ""
    """Empty when nothing needed the network (every input skipped or refused)."""
    gate: GateResult | None = None

    @overload
    def __getitem__(self, index: int) -> PredictResult: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PredictResult]: ...

    def __getitem__(self, index: int | slice) -> PredictResult | Sequence[PredictResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[PredictResult]:
        """The rows of inputs that failed."""
        return [result for result in self.results if result.status == "failed"]


def failed(path: InputRef, message: str) -> PredictResult:
    """The row of an input that failed with ``message`` (one line naming the file)."""
    return PredictResult(path, None, "failed", error=message)


def failure(path: InputRef, exc: BaseException) -> PredictResult:
    """The row of an input whose work raised ``exc``: aerialseg's one line, or an unexpected error.

    An unexpected error (a bug, or a library's error aerialseg does not word) keeps its
    traceback in the log, which ``-v`` shows; the row says so in one line.
    """
    if isinstance(exc, AerialsegError):
        return failed(path, str(exc))
    _log.info("the unexpected error on %s", path, exc_info=exc)
    detail = f"{type(exc).__name__}: {first_line(exc)}" if str(exc) else type(exc).__name__
    return failed(path, f"{path}: unexpected error ({detail}); rerun with -v for the traceback")


def skipped(path: InputRef, target: Path) -> PredictResult:
    """The row of an input left alone because its class raster exists (``skip_finished``)."""
    return PredictResult(path, target, "skipped")
