"""predict(): source -> tile plan -> runner -> blender -> sink, stages overlapped by bounded queues.

A reader thread decodes windows (GDAL releases the GIL), the calling thread runs the
network on batches, and a writer thread blends and writes finished strips; queues of a
few tiles (:class:`TileJob` in, :class:`TileScores` out) keep memory flat and let the three
overlap, so the pipeline runs at the network's speed. Tiles with no valid pixel never reach
the network. Output goes to a temporary file beside the target and is renamed only when
complete: a crash or Ctrl-C leaves no partial file posing as a result (the intermediate file
and its journal stay, hidden, for ``resume``; see :mod:`aerialseg.journal`).

:func:`predict` is one raster with its own checks; :func:`run_file` is the same work for a
caller that has made them: the batch (:func:`aerialseg.batch.predict_batch`, which checks a
whole batch once, before any work) and a cluster's tasks.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
from affine import Affine

from .atomic import InputFiles
from .blend import ClassRule, LeanStripAccumulator, Strip, StripAccumulator
from .conventions import NODATA_CLASS
from .errors import AerialsegError
from .journal import file_identity, load_rows_done, partial_paths, run_key, save_rows_done
from .locations import InputRef, RasterRef, reading
from .options import PredictOptions
from .outputs import OutputSet, check_settings, files_read
from .provenance import provenance_tags
from .raster import block_cache, block_cache_mb
from .resample import ScoreResampler
from .results import PredictResult
from .runners import Runner
from .sink import RasterSink, raster_sinks
from .source import RasterSource
from .stages import DONE, Stage, Stopped, put, take
from .tiling import TILE_ALIGN, TilePlan, Window, plan_tiles

__all__ = [
    "PredictOptions",
    "PredictResult",
    "Progress",
    "TileJob",
    "TileScores",
    "predict",
    "run_file",
    "uses_dense_accumulator",
]

_DEFAULT_OPTIONS = PredictOptions()

TileRow = list[tuple[Window, int, int]]
"""One row of the tile plan: ``(window, row index, column index)`` per tile."""


@dataclass(frozen=True)
class Progress:
    """Reported after every batch: tiles handled (run or skipped) out of the total."""

    path: InputRef
    tiles_done: int
    tiles_total: int
    megapixels_done: float


@dataclass(frozen=True)
class TileJob:
    """A tile read for the network: its place in the plan, its pixels (None: no valid pixel) and mask."""

    window: Window
    row_index: int
    col_index: int
    pixels: np.ndarray | None
    valid: np.ndarray

    def scored(self, probabilities: np.ndarray | None) -> TileScores:
        """The tile's network output, for the writer (the pixels are not needed any more)."""
        return TileScores(self.window, self.row_index, self.col_index, probabilities, self.valid)


@dataclass(frozen=True)
class TileScores:
    """A tile's class probabilities ``(K, h, w)`` (None: skipped, no valid pixel) on its way to the blender."""

    window: Window
    row_index: int
    col_index: int
    probabilities: np.ndarray | None
    valid: np.ndarray


def class_rule(runner: Runner, options: PredictOptions) -> ClassRule:
    """How this run turns probabilities into classes: the card's threshold unless ``options`` sets one."""
    card = runner.card
    threshold = card.threshold if options.threshold is None else options.threshold
    if not 0 <= threshold <= 1:  # also refuses NaN
        raise AerialsegError(f"threshold {threshold:g} is not from 0 to 1", hint="pass --threshold 0.5, or 0 for none")
    return ClassRule(threshold, card.binary)


def uses_dense_accumulator(options: PredictOptions, *, resampled: bool) -> bool:
    """Whether a run blends with the dense :class:`StripAccumulator` (``doctor`` sizes memory from this).

    Dense when probabilities are needed: to resample them back from the model's grid
    (``resampled``) or to write probability or uncertainty rasters. Else the
    :class:`LeanStripAccumulator`, which keeps class scores for a window of tiles only.
    """
    return resampled or options.output.probabilities or options.output.uncertainty


def predict(
    input_path: str | os.PathLike[str] | RasterRef,
    output_path: str | os.PathLike[str],
    runner: Runner,
    options: PredictOptions = _DEFAULT_OPTIONS,
    progress: Callable[[Progress], None] | None = None,
) -> PredictResult:
    """Predict one raster into a class GeoTIFF; raises :class:`AerialsegError` on bad input or output.

    ``input_path`` may be a URL or ``/vsi`` path (given as a string), read window by window
    (see :mod:`aerialseg.locations`), or a STAC item (its ``options.input.asset``). Nothing is
    written when an output (or its scratch file) is the input itself or a file it reads,
    whatever ``overwrite`` says, or when the settings do not suit the model (see
    :mod:`aerialseg.outputs`). Many rasters: :func:`aerialseg.batch.predict_batch`.
    """
    from .stac import input_of

    source = input_of(input_path, options.input.asset)
    outputs = OutputSet.for_target(output_path, options.output)
    outputs.refuse_inputs(InputFiles(files_read([source])))
    outputs.check(options.output.overwrite)
    check_settings(options.output, runner.card)
    return run_file(source, outputs, runner, options, progress)


def run_file(
    input_path: InputRef,
    outputs: OutputSet,
    runner: Runner,
    options: PredictOptions,
    progress: Callable[[Progress], None] | None = None,
) -> PredictResult:
    """:func:`predict`'s work without its checks: the caller has refused what may not be written.

    Writes every raster of ``outputs`` (continuing a journalled partial run when
    ``options.output.resume`` finds one), then the objects file.
    """
    import rasterio

    start = time.perf_counter()
    with reading(input_path), rasterio.Env(**block_cache(block_cache_mb(input_path))):
        card = runner.card
        tiling = options.tiling.resolve(card)
        reading_options = options.input
        with RasterSource(
            input_path,
            card,
            bands=reading_options.bands,
            scale=reading_options.scale,
            allow_no_crs=reading_options.allow_no_crs,
            gsd=reading_options.gsd,
        ) as source:
            plan = plan_tiles(source.height, source.width, tiling.tile, tiling.overlap, tiling.blend, align=TILE_ALIGN)
            source.check_memory(plan, card, options)  # a raster too wide for the memory free stops here, in one line
            rows = _row_range(options, source.native_height, input_path)
            gate = getattr(runner, "gate", None)
            if gate is not None:  # reduced precision proves itself before anything is written (once: then at once)
                from .sampling import RasterTileSample

                gate.settle(RasterTileSample(source, plan, input_path.name))
            counts = _write_rasters(source, plan, runner, outputs, options, tiling.batch_size, rows, progress)
    outputs.write_objects(options.output, runner.card)
    megapixels = (rows[1] - rows[0]) * source.native_width / 1e6
    return PredictResult(input_path, outputs.classes, "ok", time.perf_counter() - start, megapixels, *counts)


def _row_range(options: PredictOptions, height: int, input_path: InputRef) -> tuple[int, int]:
    """The input rows to predict: ``options.input.rows`` checked against the raster, else all."""
    if options.input.rows is None:
        return 0, height
    first, stop = options.input.rows
    if not 0 <= first < stop <= height:
        raise AerialsegError(f"rows {first}..{stop} are not within the raster's {height} rows", path=input_path)
    if options.output.vectorize is not None:
        raise AerialsegError("vectorize needs the whole raster, not a band of rows", path=input_path)
    return first, stop


def _write_rasters(
    source: RasterSource,
    plan: TilePlan,
    runner: Runner,
    outputs: OutputSet,
    options: PredictOptions,
    batch_size: int,
    rows: tuple[int, int],
    progress: Callable[[Progress], None] | None,
) -> tuple[int, int]:
    """Every raster of ``outputs``, continuing a journalled partial run when ``resume`` finds one.

    Returns (tiles run, tiles skipped). A run that stops after writing rows keeps its
    intermediate files and records how far it got (see :mod:`aerialseg.journal`).
    """
    card = runner.card
    layouts = outputs.layouts(card)
    first, stop = rows
    journal = partial_paths(outputs.classes)[1]
    key = run_key(
        input=file_identity(source.path),
        weights=card.sha256,
        tiling=[plan.tile, plan.overlap, plan.blend],
        grid=[source.height, source.width],
        bands=source.indexes,
        scaling=source.scaling.rule,
        outputs=[layout.name for _, layout in layouts],
        rows=[first, stop],
        precision=getattr(runner, "precision", "fp32"),
        classes=class_rule(runner, options).describe(card.class_names),
    )
    rows_done = load_rows_done(journal, key) if options.output.resume else None
    journal.unlink(missing_ok=True)  # a run killed from here on must start over
    with raster_sinks(
        layouts,
        overwrite=options.output.overwrite,
        width=source.native_width,
        height=stop - first,
        crs=source.crs,
        transform=source.transform @ Affine.translation(0, first),
        tags=provenance_tags(runner, source, plan, class_rule(runner, options), options.output.extra_tags),
        resume=rows_done is not None,
        cog=options.output.cog,
    ) as sinks:
        resumed = rows_done is not None and all(sink.resumed for sink in sinks)
        written = rows_done if resumed and rows_done is not None else first
        resampler = (
            ScoreResampler(
                (source.height, source.width),
                (source.native_height, source.native_width),
                card.num_classes,
                probabilities=len(sinks) > 1,
                rule=class_rule(runner, options),
            )
            if source.grid is not None
            else None
        )
        writer = _StripWriter(sinks, source, rows, written, resampler)
        try:
            return _run(source, plan, runner, writer, options, batch_size, progress)
        except BaseException:
            if writer.written > 0:
                for sink in sinks:
                    sink.suspend()
                save_rows_done(journal, key, writer.written)
            raise


class _StripWriter:
    """Finished strips into the sinks: back on the input grid, only rows in range, none twice.

    Output rows above ``written`` are on disk (a resumed run, or rows written so far): they
    are not rewritten. Only input rows ``rows[0]`` to ``rows[1]`` are written, at sink row
    ``row - rows[0]``. With a ``resampler`` the strips arrive on the model's grid and leave
    resampled to the input's, its nodata restored.
    """

    def __init__(
        self,
        sinks: list[RasterSink],
        source: RasterSource,
        rows: tuple[int, int],
        written: int,
        resampler: ScoreResampler | None,
    ):
        self.sinks = sinks
        self.source = source
        self.rows = rows
        self.written = written
        self.resampler = resampler

    def model_rows_needed(self) -> tuple[int, int]:
        """The first and last row of the grid the network sees that the rows still to write need."""
        last = self.rows[1] - 1
        if self.resampler is None:
            return self.written, last
        return self.resampler.first_model_row(self.written), self.resampler.last_model_row(last)

    def start_at(self, model_row: int) -> None:
        """Strips will start at ``model_row`` (the first tile row run)."""
        if self.resampler is not None:
            self.resampler.resume(model_row, self.written)

    def emit(self, strip: Strip) -> None:
        """Take a finished strip of the grid the network sees."""
        if self.resampler is None:
            self._write(strip)
            return
        for out in self.resampler.push(strip):
            native = self.source.native_valid(out.row_off, out.classes.shape[0])
            out.classes[~native] = NODATA_CLASS
            if out.valid is not None:
                out.valid[~native] = False
            self._write(out)

    def _write(self, strip: Strip) -> None:
        skip = self.written - strip.row_off
        keep = min(strip.classes.shape[0], self.rows[1] - strip.row_off)
        if skip >= keep:
            return
        if skip > 0 or keep < strip.classes.shape[0]:
            part = slice(max(skip, 0), keep)
            strip = Strip(
                strip.row_off + part.start,
                strip.classes[part],
                None if strip.probabilities is None else strip.probabilities[:, part],
                None if strip.valid is None else strip.valid[part],
            )
        for sink in self.sinks:
            sink.write(strip.row_off - self.rows[0], sink.layout.encode(strip))
        self.written = strip.row_off + strip.classes.shape[0]


def _run(
    source: RasterSource,
    plan: TilePlan,
    runner: Runner,
    writer: _StripWriter,
    options: PredictOptions,
    batch_size: int,
    progress: Callable[[Progress], None] | None,
) -> tuple[int, int]:
    """Reader thread -> network on this thread -> writer thread; returns (tiles run, tiles skipped).

    Only the tile rows that reach the rows still to write are run.
    """
    first_model_row, last_model_row = writer.model_rows_needed()
    tile_rows = [
        row
        for row in plan.tile_rows()
        if row[0][0].row_off + row[0][0].height > first_model_row and row[0][0].row_off <= last_model_row
    ]
    start_row = tile_rows[0][0][0].row_off if tile_rows else plan.height
    writer.start_at(start_row)
    num_classes = runner.card.num_classes
    rule = class_rule(runner, options)
    if uses_dense_accumulator(options, resampled=writer.resampler is not None):
        accumulator: StripAccumulator | LeanStripAccumulator = StripAccumulator(
            plan, num_classes, True, start_row, rule
        )
    else:
        accumulator = LeanStripAccumulator(plan, num_classes, start_row, rule)
    stop = threading.Event()
    tiles: queue.Queue = queue.Queue(maxsize=options.queue_tiles)
    results: queue.Queue = queue.Queue(maxsize=options.queue_tiles)
    stages = [
        Stage(partial(_read_tiles, source, tile_rows, tiles, stop), stop, "aerialseg-reader"),
        Stage(partial(_blend_tiles, results, plan, accumulator, writer, stop), stop, "aerialseg-writer"),
    ]
    for stage in stages:
        stage.start()
    run = skipped_tiles = 0
    done_before = len(plan) - sum(len(row) for row in tile_rows)
    area = source.native_height * source.native_width / 1e6  # of the raster, as in the results
    try:
        for batch in _batches(tiles, stop, batch_size):
            pixels = [job.pixels for job in batch if job.pixels is not None]
            scores = iter(runner(np.stack(pixels)) if pixels else ())
            for job in batch:
                put(results, job.scored(None if job.pixels is None else next(scores)), stop)
            run += len(pixels)
            skipped_tiles += len(batch) - len(pixels)
            if progress:
                done = done_before + run + skipped_tiles
                progress(Progress(source.path, done, len(plan), area * done / len(plan)))
        put(results, DONE, stop)
        stages[1].join()
    except Stopped:
        pass  # a stage failed: its error is raised below
    finally:
        stop.set()
        for stage in stages:
            stage.join()
    for stage in stages:
        if stage.error is not None:
            raise stage.error
    return run, skipped_tiles


def _read_tiles(source: RasterSource, tile_rows: list[TileRow], tiles: queue.Queue, stop: threading.Event) -> None:
    """Reader stage: every tile of ``tile_rows``, in order, as a :class:`TileJob`."""
    for row in tile_rows:
        for window, i, j in row:
            if stop.is_set():
                return
            pixels, valid = source.read(window)
            put(tiles, TileJob(window, i, j, pixels if valid.any() else None, valid), stop)
    put(tiles, DONE, stop)


def _blend_tiles(
    results: queue.Queue,
    plan: TilePlan,
    accumulator: StripAccumulator | LeanStripAccumulator,
    writer: _StripWriter,
    stop: threading.Event,
) -> None:
    """Writer stage: blend each :class:`TileScores`; every strip a new tile row finishes goes to ``writer``."""
    row_off = -1
    while (scores := take(results, stop)) is not DONE:
        if scores.window.row_off != row_off:
            row_off = scores.window.row_off
            strip = accumulator.begin_row(row_off)
            if strip is not None:
                writer.emit(strip)
        if scores.probabilities is not None:
            weight = plan.weights(scores.row_index, scores.col_index)
            accumulator.add(
                scores.window, scores.probabilities, weight if scores.valid.all() else weight * scores.valid
            )
    writer.emit(accumulator.finish())


def _batches(tiles: queue.Queue, stop: threading.Event, size: int) -> Iterator[list[TileJob]]:
    """Group queued tiles into batches holding at most ``size`` tiles that need the network."""
    batch: list[TileJob] = []
    full = 0
    while (job := take(tiles, stop)) is not DONE:
        batch.append(job)
        full += job.pixels is not None
        if full >= size:
            yield batch
            batch, full = [], 0
    if batch:
        yield batch
