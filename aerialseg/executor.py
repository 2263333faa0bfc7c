"""Where a batch's network runs: the executor contract, this process's executor, and what a batch reports as it goes.

:func:`aerialseg.batch.predict_batch` hands its checked jobs (an input and its claimed
outputs) to an :class:`Executor`: :class:`InProcess` runs them one after another in this
process; :class:`aerialseg.cluster.OnCluster` sends them to Dask workers. Both yield a row per
job as it finishes and tell :class:`BatchEvents` how far they are, so the mosaic and the
per-file loop run on either without knowing which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .locations import InputRef
from .options import PredictOptions
from .outputs import OutputSet
from .results import PredictResult, failure
from .runners import Runner, gate_result

if TYPE_CHECKING:
    from .catalog import WeightsChoice
    from .pipeline import Progress
    from .runners.gate import GateResult

__all__ = ["BatchEvents", "SilentEvents", "Executor", "InProcess", "Job", "Opening"]


class BatchEvents(Protocol):
    """What a batch tells its caller as it goes (the command line draws its bars and lines from these).

    An API caller passes any object with these methods, or subclasses :class:`SilentEvents`
    and overrides what it shows.
    """

    def chose(self, choice: WeightsChoice) -> None:
        """A model name chose these weights (before any input is read)."""
        ...

    def started(self, engine: str, files: int) -> None:
        """The network is open (``engine`` says which and why) for a batch of ``files`` inputs."""
        ...

    def tiles(self, progress: Progress) -> None:
        """In this process: a batch of tiles of one file has been handled."""
        ...

    def tasks(self, name: str, done: int, total: int) -> None:
        """On a cluster: ``done`` of ``total`` tasks have finished, the last one of the input ``name``."""
        ...

    def finished(self, result: PredictResult) -> None:
        """An input's row is final (in the order inputs finish, which on a cluster is not the input order)."""
        ...


class SilentEvents:
    """:class:`BatchEvents` that show nothing: a batch's default."""

    def chose(self, choice: WeightsChoice) -> None:
        """Nothing."""

    def started(self, engine: str, files: int) -> None:
        """Nothing."""

    def tiles(self, progress: Progress) -> None:
        """Nothing."""

    def tasks(self, name: str, done: int, total: int) -> None:
        """Nothing."""

    def finished(self, result: PredictResult) -> None:
        """Nothing."""


@dataclass(frozen=True)
class Job:
    """One input to predict, with the outputs its claim checked."""

    path: InputRef
    outputs: OutputSet


class Executor(Protocol):
    """Where the network runs: rasters in, rows out (:class:`InProcess`, :class:`aerialseg.cluster.OnCluster`)."""

    @property
    def engine(self) -> str:
        """The engine as the run's summary names it."""
        ...

    def run(self, jobs: Sequence[Job], options: PredictOptions, events: BatchEvents) -> Iterator[PredictResult]:
        """A row per job, as each finishes; one job's error is its failed row."""
        ...

    def gate(self) -> GateResult | None:
        """The accuracy gate's outcome, once a reduced-precision network has run in this process."""
        ...


class InProcess:
    """The executor of this process: files one after another through :func:`aerialseg.pipeline.run_file`."""

    def __init__(self, runner: Runner):
        self.runner = runner

    @property
    def engine(self) -> str:
        """The runner's description (its precision is the one the gate settled, once it has run)."""
        return self.runner.description

    def run(self, jobs: Sequence[Job], options: PredictOptions, events: BatchEvents) -> Iterator[PredictResult]:
        """Each job in turn; a failed accuracy gate stops the batch with nothing written (every file would fail)."""
        from .pipeline import run_file
        from .runners.gate import PrecisionGateError

        for job in jobs:
            try:
                yield run_file(job.path, job.outputs, self.runner, options, events.tiles)
            except PrecisionGateError:
                raise
            except Exception as exc:  # one file's error, of whatever kind, is that file's row
                yield failure(job.path, exc)

    def gate(self) -> GateResult | None:
        """The runner's gate result (None for fp32, or before the first file)."""
        return gate_result(self.runner)


Opening = Callable[[BatchEvents, int], AbstractContextManager[Executor]]
"""Opens the executor when some input needs the network (none is started for a batch with nothing to do).

Called with the batch's events and its number of inputs, it tells ``events.started`` which engine
runs as soon as that is known."""
