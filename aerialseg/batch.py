"""One entry for a batch of rasters, in this process or on a Dask cluster: :func:`predict_batch`.

A batch is what a user names (files, folders, glob patterns, URLs, STAC items and their
``asset``), where the outputs go, the options, the model and where the network runs. Here,
exactly once per batch and before any work: a model name is pinned to the weights it
chooses, the inputs are expanded (:mod:`aerialseg.inputs`), the outputs placed and claimed
(:mod:`aerialseg.outputs`) and the settings checked against the model's card. Then the inputs
are predicted as one mosaic (:mod:`aerialseg.mosaic`), or each file goes to the executor
(:mod:`aerialseg.executor`): this process (one file after another) or a Dask cluster
(:class:`aerialseg.cluster.OnCluster`: files as tasks, large rasters as bands of rows). Each
input gets one row (:mod:`aerialseg.results`); one file's error is its failed row while the
others go on, but a network that fails its accuracy gate (every file would) and Ctrl-C stop
the batch. The command line only turns its strings into these arguments and prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .conventions import Tag
from .errors import AerialsegError
from .executor import BatchEvents, InProcess, Job, Opening, SilentEvents
from .inputs import expand_inputs
from .locations import InputRef, RasterRef
from .options import PredictOptions
from .outputs import OutputClaims, check_settings, place_outputs
from .results import BatchRun, PredictResult, failure, skipped
from .runners import Runner, RunnerSpec

__all__ = ["BatchEvents", "BatchRun", "SilentEvents", "predict_batch"]

_DEFAULT_OPTIONS = PredictOptions()


def predict_batch(
    inputs: Sequence[str | os.PathLike[str] | RasterRef],
    model: Runner | RunnerSpec | str | os.PathLike[str],
    options: PredictOptions = _DEFAULT_OPTIONS,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    cluster: Any = None,  # noqa: ANN401 (an address, or a dask.distributed.Client)
    split_rows: int | None = None,
    events: BatchEvents | None = None,
) -> BatchRun:
    """Predict every raster ``inputs`` name; one row per input, in input order (see the module docstring).

    ``model``: an open :class:`~aerialseg.runners.Runner` (in this process), or a
    :class:`~aerialseg.runners.RunnerSpec` or model name/file, which is opened here or on each
    cluster worker. ``output``: the class raster of a single input (or of the whole mosaic);
    ``out_dir``: the folder of ``<input>_classes.tif`` (default: beside each input; remote
    inputs need one or the other). ``cluster``: None runs in this process; ``local``,
    ``local:N`` or ``tcp://host:port`` start or reach a Dask cluster that is closed at the end;
    a ``dask.distributed.Client`` is used as it is. ``split_rows``: on a cluster, rasters
    higher than this are split into bands of rows (default
    :data:`aerialseg.cluster.DEFAULT_SPLIT_ROWS`).

    Raises :class:`~aerialseg.errors.AerialsegError` before any work for what concerns the
    whole batch: no input found, outputs that cannot be placed, settings the model cannot
    satisfy, a model name that chooses nothing. ``options.output.skip_finished`` reports an
    input whose class raster exists as ``skipped``.
    """
    events = events or SilentEvents()
    model, options = _pinned(model, options, events)
    paths = expand_inputs(inputs, options.input.asset)
    if not paths:
        named = ", ".join(map(str, inputs)) or "nothing"
        raise AerialsegError(f"no input rasters found in {named}", hint="name files, folders or glob patterns")
    if options.output.objects_path is not None and output is None:
        raise AerialsegError(
            f"{options.output.objects_path}: an objects file of its own goes with one class raster",
            hint="give the class raster's path too (-o), or leave the objects beside each raster",
        )
    targets = place_outputs(paths, out_dir=out_dir, output=output, mosaic=options.input.mosaic)
    card = model.card if not isinstance(model, RunnerSpec) else model.card()
    check_settings(options.output, card)
    claims = OutputClaims(paths, options.output, model.files if isinstance(model, RunnerSpec) else ())
    opening = _executor(model, cluster, split_rows)
    if options.input.mosaic:
        from .mosaic import mosaic_rows

        return mosaic_rows(paths, targets, claims, card, opening, options, events, one_output=output is not None)
    return _files(targets, claims, opening, options, events)


def _files(
    targets: list[tuple[InputRef, Path]],
    claims: OutputClaims,
    opening: Opening,
    options: PredictOptions,
    events: BatchEvents,
) -> BatchRun:
    """Every input claimed, then the ones with work run by the executor; the rows in input order."""
    rows: dict[InputRef, PredictResult] = {}
    jobs = []
    for path, target in targets:
        try:
            outputs = claims.claim(path, target)
        except Exception as exc:  # refused outputs, a missing file: this input's row
            rows[path] = failure(path, exc)
        else:
            if outputs is None:
                rows[path] = skipped(path, target)
            else:
                jobs.append(Job(path, outputs))
    for row in rows.values():
        events.finished(row)
    if not jobs:
        return BatchRun(tuple(rows[path] for path, _ in targets))
    with opening(events, len(targets)) as executor:
        for row in executor.run(jobs, options, events):
            rows[row.input] = row
            events.finished(row)
        return BatchRun(tuple(rows[path] for path, _ in targets), executor.engine, executor.gate())


def _pinned(
    model: Runner | RunnerSpec | str | os.PathLike[str], options: PredictOptions, events: BatchEvents
) -> tuple[Runner | RunnerSpec, PredictOptions]:
    """A model name replaced by the weights it chooses (told to ``events``, recorded in the outputs' tags)."""
    if not isinstance(model, (RunnerSpec, str, os.PathLike)):
        return model, options  # an open runner
    spec, choice = (model if isinstance(model, RunnerSpec) else RunnerSpec(os.fspath(model))).pinned()
    if choice is None:
        return spec, options
    events.chose(choice)
    tags = {**options.output.extra_tags, Tag.MODEL_CHOICE: choice.describe()}
    return spec, replace(options, output=replace(options.output, extra_tags=tags))


def _executor(model: Runner | RunnerSpec, cluster: Any, split_rows: int | None) -> Opening:  # noqa: ANN401
    """The :data:`Opening` of the executor ``cluster`` asks for (refused at once when it cannot work)."""
    if cluster is not None:
        if not isinstance(model, RunnerSpec):
            raise AerialsegError(
                "a cluster opens the network on each worker, so it needs the model's name or file, not an open runner",
                hint="pass a RunnerSpec or the model's name",
            )
        from .cluster import cluster_opening

        return cluster_opening(cluster, model, split_rows)
    if split_rows is not None:
        raise AerialsegError("split_rows applies on a cluster only", hint="pass --cluster, or drop --split-rows")
    return lambda events, files: _in_process(model, events, files)


@contextmanager
def _in_process(model: Runner | RunnerSpec, events: BatchEvents, files: int) -> Iterator[InProcess]:
    """The executor of this process: the runner given, or the one the spec describes.

    The engine is told as soon as it is chosen, before the network opens (an ONNX export or an
    int8 calibration may take a while).
    """
    if not isinstance(model, RunnerSpec):
        events.started(model.description, files)
        yield InProcess(model)
        return
    choice = model.resolve()
    events.started(choice.describe(), files)
    yield InProcess(model.open(choice))
