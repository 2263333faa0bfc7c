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
removes the folder. What a batch is (outputs, checks, ``skip_finished``, results, the objects
file) is the batch layer's (:mod:`aerialseg.batch`), shared with the local path.

Every file a task writes goes through a temporary name and a rename, so a worker that dies
leaves nothing that looks finished; Dask reruns its task on another worker. Each worker
process opens a network once per model and keeps it (:data:`_RUNNERS`); on a GPU machine
``local`` starts one worker per GPU and each worker takes its own device.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .allocator import keep_freed_memory
from .batch import (
    Batch,
    InputFiles,
    OutputSet,
    PredictResult,
    batch_targets,
    check_settings,
    failure,
    skipped,
    vectorize_outputs,
)
from .card import read_card
from .errors import AerialsegError, MissingDependencyError, OutputWriteError
from .locations import InputRef, RasterRef
from .options import PredictOptions
from .pipeline import predict
from .raster import open_raster
from .runners import Runner, RunnerSpec
from .sink import assemble_bands

__all__ = ["RunnerSpec", "check_address", "open_client", "close_client", "predict_on_cluster", "DEFAULT_SPLIT_ROWS"]

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


def _predict_file(spec: RunnerSpec, path: InputRef, target: Path, options: PredictOptions) -> PredictResult:
    """Task: one whole raster, as the local path runs it; a bad file is a failed result, not an error."""
    try:
        return predict(path, target, _runner(spec), options)
    except AerialsegError as exc:
        return failure(path, exc)


def _predict_rows(spec: RunnerSpec, path: InputRef, target: Path, options: PredictOptions) -> tuple[Any, PredictResult]:
    """Task: one band of rows into its own raster; returns the model card (for the assembly) and the result."""
    runner = _runner(spec)
    return runner.card, predict(path, target, runner, options)


@dataclass
class _Split:
    """A raster predicted as bands of rows: ``(first row, output)`` per band and the results in so far."""

    path: InputRef
    target: Path
    folder: Path
    started: float
    bands: list[tuple[int, Path]] = field(default_factory=list)
    results: list[PredictResult] = field(default_factory=list)
    card: Any = None


def _bands(height: int, split_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + split_rows, height)) for start in range(0, height, split_rows)]


def predict_on_cluster(
    inputs: Iterable[str | os.PathLike[str] | RasterRef],
    spec: RunnerSpec,
    options: PredictOptions,
    client: Any,  # noqa: ANN401 (dask.distributed.Client)
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    split_rows: int = DEFAULT_SPLIT_ROWS,
    progress: Callable[[str, int, int], None] | None = None,
    on_result: Callable[[PredictResult], None] | None = None,
) -> list[PredictResult]:
    """Predict every input on the cluster; one result per input, in input order (failures included).

    ``options.output.skip_finished`` reports inputs whose class raster exists as ``skipped``;
    ``options.output.resume`` continues a whole-file task's partial raster as the local path
    does (the bands of a split raster are small and always start over).
    ``progress(name, tasks_done, tasks_total)`` follows the cluster's tasks as they finish.
    The batch layer's checks run here, before any task: the settings against the model's card
    (read from its file on this machine), each file's outputs against every input.
    """
    from dask.distributed import as_completed

    if split_rows < 1:
        raise AerialsegError(f"split_rows {split_rows} is not positive", hint="pass --split-rows 1 or more")
    if options.input.mosaic:  # the mosaic is one raster to the cluster: split by rows like any other
        from .mosaic import mosaic_batch

        def run(source: Path, target: Path, inner: PredictOptions) -> PredictResult:
            return predict_on_cluster(
                [source], spec, inner, client, output=target, split_rows=split_rows, progress=progress
            )[0]

        card = read_card(spec.model_file)
        return mosaic_batch(
            inputs, card, run, options, out_dir=out_dir, output=output, reads=spec.files, on_result=on_result
        )
    targets = batch_targets(inputs, out_dir=out_dir, output=output, asset=options.input.asset)
    batch = Batch(targets, options.output, spec.files)
    if options.output.vectorize is not None:
        check_settings(options.output, read_card(spec.model_file))
    results: dict[InputRef, PredictResult] = {}
    futures: dict[Any, tuple[str, InputRef, _Split | None]] = {}
    splits: dict[InputRef, _Split] = {}
    for path, target in batch.files:
        try:
            if batch.start_file(path, target) is None:
                results[path] = skipped(path, target)
                continue
            height = _height(path)
            if height <= split_rows:
                future = client.submit(_predict_file, spec, path, target, options, pure=False)
                futures[future] = ("file", path, None)
            else:
                splits[path] = _Split(path, target, _band_folder(target, batch.inputs), time.perf_counter())
                _submit_bands(client, spec, splits[path], options, height, split_rows, futures)
        except Exception as exc:  # one file's error, of whatever kind, is that file's row
            results[path] = failure(path, exc)
            if path in splits:  # its bands already sent are ignored as they finish
                shutil.rmtree(splits.pop(path).folder, ignore_errors=True)
    total, done = len(futures), 0
    try:
        for future in as_completed(list(futures)):
            kind, path, split = futures.pop(future)
            done += 1
            if progress:
                progress(path.name, done, total)
            if kind == "file":
                results[path] = _outcome(future, path)
            elif split is not None and path not in results:
                _band_done(future, split, options, results)
    except BaseException:
        client.cancel(list(futures))
        for started in splits.values():
            shutil.rmtree(started.folder, ignore_errors=True)
        raise
    ordered = [results[path] for path, _ in batch.files]
    if on_result:
        for result in ordered:
            on_result(result)
    return ordered


def _height(path: InputRef) -> int:
    """The raster's height in rows (it decides whether the raster is split)."""
    with open_raster(path) as src:
        return src.height


def _band_folder(target: Path, inputs: InputFiles) -> Path:
    """The empty hidden folder beside ``target`` for its bands' rasters (leftovers of an interrupted run go).

    Refused when it would empty a folder that holds an input.
    """
    folder = target.with_name(f".{target.name}.bands")
    inside = inputs.inside(folder)
    if inside is not None:
        raise OutputWriteError(
            f"the cluster's folder for the bands of this output holds the input {inside}",
            path=folder,
            hint="move the input elsewhere, or choose another -o or --out-dir",
        )
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.mkdir()
    except OSError as exc:
        raise OutputWriteError(f"cannot create the folder for the bands ({exc.strerror})", path=folder) from exc
    return folder


def _submit_bands(
    client: Any,  # noqa: ANN401
    spec: RunnerSpec,
    split: _Split,
    options: PredictOptions,
    height: int,
    split_rows: int,
    futures: dict,
) -> None:
    """One task per band of ``split_rows`` rows, each writing its rasters into the split's folder."""
    band_output = replace(options.output, vectorize=None, resume=False, skip_finished=False, overwrite=True, cog=False)
    for start, stop in _bands(height, split_rows):
        part = split.folder / f"{start:010d}.tif"
        band_options = replace(options, input=replace(options.input, rows=(start, stop)), output=band_output)
        future = client.submit(_predict_rows, spec, split.path, part, band_options, pure=False)
        futures[future] = ("band", split.path, split)
        split.bands.append((start, part))


def _outcome(future: Any, path: InputRef) -> PredictResult:  # noqa: ANN401
    try:
        return future.result()
    except Exception as exc:  # a task's error, of whatever kind, fails its file only
        return failure(path, exc)


def _band_done(future: Any, split: _Split, options: PredictOptions, results: dict) -> None:  # noqa: ANN401
    try:
        split.card, result = future.result()
    except Exception as exc:
        shutil.rmtree(split.folder, ignore_errors=True)
        results[split.path] = failure(split.path, exc)
        return
    split.results.append(result)
    if len(split.results) < len(split.bands):
        return
    try:
        _assemble(split, options)
    except Exception as exc:
        results[split.path] = failure(split.path, exc)
        return
    finally:
        shutil.rmtree(split.folder, ignore_errors=True)
    parts = split.results
    results[split.path] = PredictResult(
        split.path,
        split.target,
        "ok",
        time.perf_counter() - split.started,
        sum(r.megapixels for r in parts),
        sum(r.tiles_run for r in parts),
        sum(r.tiles_skipped for r in parts),
    )


def _assemble(split: _Split, options: PredictOptions) -> None:
    """Every output of a split raster from its bands' rasters, then its objects file."""
    outputs = OutputSet.for_target(split.target, options.output)
    bands = [(start, OutputSet.for_target(part, options.output).rasters) for start, part in split.bands]
    for index, (target, layout) in enumerate(outputs.layouts(split.card)):
        parts = [(start, rasters[index]) for start, rasters in bands]
        assemble_bands(parts, target, layout, overwrite=options.output.overwrite)
    vectorize_outputs(outputs, options.output)
