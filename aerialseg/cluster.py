"""predict on a Dask cluster: whole files as tasks, large rasters as bands of rows, one COG each.

Dask's distributed scheduler does the scheduling, retries and bookkeeping; this module only
says what a task is. A raster up to ``split_rows`` rows high is one task that runs
:func:`aerialseg.pipeline.predict` on a worker, exactly as the local path does. A higher
raster becomes one task per band of ``split_rows`` rows: each runs ``predict`` with
``rows=(start, stop)`` — the tiles reaching into the band (its halo is the overlap), blended as
in a whole-raster run, so every band equals those rows of the single-machine result — and
writes its own small GeoTIFF into a hidden folder beside the output. When all bands of a
raster are in, the client streams them into the output through the same sink as ``predict``
(:func:`aerialseg.sink.assemble_bands`: overviews, COG layout, write-then-rename), then
removes the folder. What a batch is (inputs, outputs, checks, ``skip_finished``, results) is
:func:`aerialseg.batch.predict_batch`'s, shared with the in-process path: this module is only
its :class:`OnCluster` executor (:mod:`aerialseg.executor`).

Every file a task writes goes through a temporary name and a rename, so a worker that dies
leaves nothing that looks finished; Dask reruns its task on another worker. Each worker
process opens a network once per model and keeps it (:data:`_RUNNERS`); on a GPU machine
``local`` starts one worker per GPU and each worker takes its own device.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .allocator import keep_freed_memory
from .errors import AerialsegError, MissingDependencyError, OutputWriteError
from .executor import BatchEvents, Job, Opening
from .locations import InputRef
from .options import PredictOptions
from .outputs import OutputSet
from .pipeline import run_file
from .raster import open_raster
from .results import PredictResult, failure
from .runners import Runner, RunnerSpec
from .sink import assemble_bands

__all__ = ["OnCluster", "cluster_opening", "check_address", "open_client", "close_client", "DEFAULT_SPLIT_ROWS"]

DEFAULT_SPLIT_ROWS = 4096
THREADS_ENV = "AERIALSEG_THREADS"
"""CPU threads of each worker's network. Dask starts workers with OMP_NUM_THREADS=1 (one core
each, right when a machine runs one worker per core); ``local:N`` sets this to cores / N, and
``AERIALSEG_THREADS=16 dask worker ...`` lets one worker use a whole 16-core machine."""
_RUNNERS: dict[RunnerSpec, Runner] = {}


def _runner(spec: RunnerSpec) -> Runner:
    """The calling worker's network for ``spec``, opened on first use and kept."""
    if spec not in _RUNNERS:
        keep_freed_memory(override=True)  # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers
        threads = int(os.environ.get(THREADS_ENV, "0"))
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        _RUNNERS[spec] = replace(spec, device=spec.device or _worker_device()).open()
    return _RUNNERS[spec]


def _worker_device() -> str | None:
    """One GPU per worker: worker ``i`` of a local cluster takes ``cuda:i`` (modulo the GPUs present)."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    from dask.distributed import get_worker

    name = get_worker().name
    index = name if isinstance(name, int) else int(str(name).rsplit("-", 1)[-1]) if str(name)[-1:].isdigit() else 0
    return f"cuda:{index % torch.cuda.device_count()}"


def check_address(address: str) -> None:
    """Refuse a malformed local cluster (``local:two``, ``local:0``) before anything starts."""
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2]
        if count and (not count.isdigit() or int(count) < 1):
            raise AerialsegError(
                f"bad cluster {address!r}", hint="use local, local:N with N workers (1 or more) or tcp://host:port"
            )


def open_client(address: str) -> Any:  # noqa: ANN401 (dask.distributed.Client)
    """``local`` / ``local:N`` start a local cluster of N single-threaded worker processes; else an address."""
    check_address(address)
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise MissingDependencyError(
            "the cluster mode needs Dask's distributed scheduler", hint="pip install 'aerialseg[cluster]'"
        ) from exc
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2]
        workers = int(count) if count else max(1, _default_local_workers())
        threads = max(1, (os.cpu_count() or 1) // workers)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={THREADS_ENV: str(threads)},
        )
        return Client(cluster)
    try:
        return Client(address, timeout="30s")
    except OSError as exc:
        raise AerialsegError(f"cannot reach the Dask scheduler at {address} ({exc})", hint="is it running?") from exc


def close_client(client: Any) -> None:  # noqa: ANN401
    """Disconnect; a local cluster started by :func:`open_client` is shut down too."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _default_local_workers() -> int:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    return os.cpu_count() or 1


def cluster_opening(cluster: Any, spec: RunnerSpec, split_rows: int | None) -> Opening:  # noqa: ANN401
    """How :func:`aerialseg.batch.predict_batch` opens the cluster executor; bad values refused at once.

    ``cluster``: ``local``, ``local:N`` or a scheduler address, started or reached when the
    batch has work and closed at its end; or a ``dask.distributed.Client``, used as it is.
    """
    rows = DEFAULT_SPLIT_ROWS if split_rows is None else split_rows
    if rows < 1:
        raise AerialsegError(f"split_rows {rows} is not positive", hint="pass --split-rows 1 or more")
    if isinstance(cluster, str):
        check_address(cluster)

    @contextmanager
    def opening(events: BatchEvents, files: int) -> Iterator[OnCluster]:
        client = open_client(cluster) if isinstance(cluster, str) else cluster
        try:
            executor = OnCluster(client, spec, rows, cluster if isinstance(cluster, str) else None)
            events.started(executor.engine, files)
            yield executor
        finally:
            if isinstance(cluster, str):
                close_client(client)

    return opening


class OnCluster:
    """The executor of a Dask cluster: whole files as tasks, rasters higher than ``split_rows`` as bands of rows."""

    def __init__(self, client: Any, spec: RunnerSpec, split_rows: int, address: str | None = None):  # noqa: ANN401
        self.client = client
        self.spec = spec
        self.split_rows = split_rows
        workers = len(client.scheduler_info()["workers"])
        where = f" at {address}" if address else ""
        self.engine = f"{spec.backend} backend, {spec.precision} precision, on {workers} Dask worker(s){where}"

    def gate(self) -> None:
        """Each worker settles its own network's gate: its figure is in that file's tags."""
        return None

    def run(self, jobs: Sequence[Job], options: PredictOptions, events: BatchEvents) -> Iterator[PredictResult]:
        """Every job's tasks sent at once; a row per job as its last task finishes (or as it fails).

        ``options.output.resume`` continues a whole-file task's partial raster as the local
        path does (the bands of a split raster are small and always start over).
        """
        from dask.distributed import as_completed

        futures: dict[Any, tuple[InputRef, _Split | None]] = {}
        splits: list[_Split] = []
        for job in jobs:
            try:
                height = _height(job.path)
                if height <= self.split_rows:
                    future = self.client.submit(_predict_file, self.spec, job, options, pure=False)
                    futures[future] = (job.path, None)
                else:
                    splits.append(_Split(job, _band_folder(job.outputs), time.perf_counter()))
                    self._submit_bands(splits[-1], options, height, futures)
            except Exception as exc:  # one file's error, of whatever kind, is that file's row
                yield failure(job.path, exc)
        total, done = len(futures), 0
        try:
            for future in as_completed(list(futures)):
                path, band_of = futures.pop(future)
                done += 1
                events.tasks(path.name, done, total)
                if band_of is None:
                    yield _outcome(future, path)
                elif not band_of.finished and (row := _band_done(future, band_of, options)) is not None:
                    yield row
        except BaseException:
            self.client.cancel(list(futures))
            raise
        finally:
            for started in splits:
                shutil.rmtree(started.folder, ignore_errors=True)

    def _submit_bands(self, split: _Split, options: PredictOptions, height: int, futures: dict) -> None:
        """One task per band of ``split_rows`` rows, each writing its rasters into the split's folder."""
        band_output = replace(
            options.output, vectorize=None, resume=False, skip_finished=False, overwrite=True, cog=False
        )
        for start, stop in _bands(height, self.split_rows):
            part = OutputSet.for_target(split.folder / f"{start:010d}.tif", band_output)
            band_options = replace(options, input=replace(options.input, rows=(start, stop)), output=band_output)
            future = self.client.submit(_predict_rows, self.spec, Job(split.job.path, part), band_options, pure=False)
            futures[future] = (split.job.path, split)
            split.bands.append((start, part))


def _predict_file(spec: RunnerSpec, job: Job, options: PredictOptions) -> PredictResult:
    """Task: one whole raster, as the local path runs it; a bad file is a failed result, not an error."""
    try:
        return run_file(job.path, job.outputs, _runner(spec), options)
    except AerialsegError as exc:
        return failure(job.path, exc)


def _predict_rows(spec: RunnerSpec, job: Job, options: PredictOptions) -> tuple[Any, PredictResult]:
    """Task: one band of rows into its own raster; returns the model card (for the assembly) and the result."""
    runner = _runner(spec)
    return runner.card, run_file(job.path, job.outputs, runner, options)


@dataclass
class _Split:
    """A raster predicted as bands of rows: ``(first row, outputs)`` per band and the results in so far."""

    job: Job
    folder: Path
    started: float
    bands: list[tuple[int, OutputSet]] = field(default_factory=list)
    results: list[PredictResult] = field(default_factory=list)
    card: Any = None
    finished: bool = False
    """Its row is given: all bands assembled, or one failed (the others are ignored as they finish)."""


def _bands(height: int, split_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + split_rows, height)) for start in range(0, height, split_rows)]


def _height(path: InputRef) -> int:
    """The raster's height in rows (it decides whether the raster is split)."""
    with open_raster(path) as src:
        return src.height


def _band_folder(outputs: OutputSet) -> Path:
    """The empty hidden folder for a split raster's bands (leftovers of an interrupted run go).

    The claim has refused one that holds an input (:meth:`OutputSet.refuse_inputs`).
    """
    folder = outputs.bands_folder
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.mkdir()
    except OSError as exc:
        raise OutputWriteError(f"cannot create the folder for the bands ({exc.strerror})", path=folder) from exc
    return folder


def _outcome(future: Any, path: InputRef) -> PredictResult:  # noqa: ANN401
    try:
        return future.result()
    except Exception as exc:  # a task's error, of whatever kind, fails its file only
        return failure(path, exc)


def _band_done(future: Any, split: _Split, options: PredictOptions) -> PredictResult | None:  # noqa: ANN401
    """The split's row once its last band is in (or one failed), else None."""
    path = split.job.path
    try:
        split.card, result = future.result()
    except Exception as exc:
        split.finished = True
        return failure(path, exc)
    split.results.append(result)
    if len(split.results) < len(split.bands):
        return None
    split.finished = True
    try:
        _assemble(split, options)
    except Exception as exc:
        return failure(path, exc)
    parts = split.results
    return PredictResult(
        path,
        split.job.outputs.classes,
        "ok",
        time.perf_counter() - split.started,
        sum(r.megapixels for r in parts),
        sum(r.tiles_run for r in parts),
        sum(r.tiles_skipped for r in parts),
    )


def _assemble(split: _Split, options: PredictOptions) -> None:
    """Every output of a split raster from its bands' rasters, then its objects file."""
    outputs = split.job.outputs
    for index, (target, layout) in enumerate(outputs.layouts(split.card)):
        parts = [(start, band.rasters[index]) for start, band in split.bands]
        assemble_bands(parts, target, layout, overwrite=options.output.overwrite)
    shutil.rmtree(split.folder, ignore_errors=True)
    outputs.write_objects(options.output, split.card)
