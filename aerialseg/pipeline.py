"""predict(): source -> tile plan -> runner -> blender -> sink, stages overlapped by bounded queues.

A reader thread decodes windows (GDAL releases the GIL), the calling thread runs the
network on batches, and a writer thread blends and writes finished strips; queues of a
few tiles keep memory flat and let the three overlap, so the pipeline runs at the
network's speed. Tiles with no valid pixel never reach the network. Output goes to a
temporary file beside the target and is renamed only when complete: a crash or Ctrl-C
leaves no partial file posing as a result (the intermediate file and its journal stay, hidden,
for ``resume``; see :mod:`aerialseg.journal`). :func:`predict_many` runs a batch of files and reports one result
per file, so one bad file does not stop the others.
"""

from __future__ import annotations

import glob
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from affine import Affine

from .atomic import atomic_output, check_output
from .blend import NODATA, LeanStripAccumulator, Strip, StripAccumulator
from .card import ModelCard
from .errors import AerialsegError, InputRasterError, OutputWriteError
from .journal import file_identity, load_rows_done, partial_paths, run_key, save_rows_done
from .resample import ScoreResampler
from .runners import Runner, describe_precision, gate_result
from .runners.gate import PrecisionGateError
from .sink import RasterSink, SinkLayout, class_raster, probability_raster, uncertainty_raster
from .source import RasterSource
from .stages import DONE, Stage, Stopped, put, take
from .tiling import TILE_ALIGN, TilePlan, plan_tiles
from .vector import VectorizeOptions

__all__ = [
    "PredictOptions",
    "PredictResult",
    "Progress",
    "predict",
    "predict_many",
    "expand_inputs",
    "output_for",
    "output_layouts",
    "objects_path",
]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png")


@dataclass(frozen=True)
class PredictOptions:
    """Settings of one prediction run (shared by the CLI, the API and batch runs).

    ``tile_size``/``overlap`` default to the model card's. ``blend``: cosine, linear or
    center. ``bands``: 1-based input bands in the model's order. ``scale``: divisor for
    non-8-bit input (else a 2-98 percentile stretch). ``gsd``: ``auto`` predicts at the
    model's GSD when the input's differs by more than 10 %, ``native`` never resamples.
    ``resume`` continues an interrupted run of the same input, model and settings.
    ``probabilities`` / ``uncertainty`` also write ``<output>_probabilities.tif`` (one band per
    class) / ``<output>_uncertainty.tif`` (confidence, margin, entropy), values x 254.
    ``vectorize`` then turns the class raster into ``<output>_objects<objects_suffix>`` (with
    confidence attributes from the probability or uncertainty raster when one is written).
    ``rows=(start, stop)`` predicts only those input rows, into outputs that cover just them
    (georeferenced where they lie) and equal those rows of a whole-raster run: the tiles that
    reach into them are run and blended as usual (how a cluster splits one raster).
    ``cog=False`` leaves the outputs as plain tiled GeoTIFFs without overviews: for parts that
    are assembled or compared and then deleted (a cluster's bands, eval's maps).
    """

    tile_size: int | None = None
    overlap: int | None = None
    blend: str = "cosine"
    batch_size: int = 1
    bands: tuple[int, ...] | None = None
    scale: float | None = None
    allow_no_crs: bool = False
    gsd: str = "auto"
    overwrite: bool = False
    resume: bool = False
    probabilities: bool = False
    uncertainty: bool = False
    queue_tiles: int = 4
    extra_tags: dict[str, str] = field(default_factory=dict)
    vectorize: VectorizeOptions | None = None
    objects_suffix: str = ".gpkg"
    rows: tuple[int, int] | None = None
    cog: bool = True


@dataclass(frozen=True)
class Progress:
    """Reported after every batch: tiles handled (run or skipped) out of the total."""

    path: Path
    tiles_done: int
    tiles_total: int
    megapixels_done: float


@dataclass(frozen=True)
class PredictResult:
    """One input's outcome; ``error`` holds the one-line message when ``status`` is 'failed'."""

    input: Path
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


def _tags(runner: Runner, source: RasterSource, plan: TilePlan, options: PredictOptions) -> dict[str, str]:
    from . import __version__

    card = runner.card
    return {
        "AERIALSEG_VERSION": __version__,
        "AERIALSEG_MODEL": f"{card.arch}-{card.backbone}",
        "AERIALSEG_WEIGHTS_SHA256": card.sha256,
        "AERIALSEG_BACKEND": runner.description,
        **_precision_tags(runner),
        "AERIALSEG_SOURCE": source.path.name,
        "AERIALSEG_BANDS": ",".join(map(str, source.indexes)),
        "AERIALSEG_SCALING": source.scaling.rule,
        "AERIALSEG_TILING": f"tile {plan.tile}, overlap {plan.overlap}, blend {plan.blend}",
        "AERIALSEG_GSD": (
            f"input {source.grid.input_gsd_m:.4g} m, predicted at the model's {source.grid.model_gsd_m:.4g} m "
            "and resampled back (bilinear probabilities)"
            if source.grid
            else f"native (model {card.gsd_m:.4g} m)"
            if card.gsd_m
            else "native (model GSD unknown)"
        ),
        "AERIALSEG_CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **options.extra_tags,
    }


def _precision_tags(runner: Runner) -> dict[str, str]:
    """What precision ran and, for reduced precision, the accuracy gate's figure."""
    result = gate_result(runner)
    agreement = {} if result is None else {"AERIALSEG_PRECISION_AGREEMENT": f"{result.agreement:.6f}"}
    return {"AERIALSEG_PRECISION": describe_precision(runner), **agreement}


def predict(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    runner: Runner,
    options: PredictOptions = PredictOptions(),
    progress: Callable[[Progress], None] | None = None,
) -> PredictResult:
    """Predict one raster into a class GeoTIFF; raises :class:`AerialsegError` on bad input or output."""
    import rasterio

    # GDAL's block cache defaults to 5 % of RAM and would fill with the whole raster; the
    # pipeline re-reads at most one row of input blocks (overlapping windows) and leaves one
    # row of output blocks partly written, so that much (with room to spare) is enough.
    try:
        with rasterio.open(input_path) as probe:
            item = probe.count * np.dtype(probe.dtypes[0]).itemsize + 1 if probe.count else 1
            row_bytes = probe.width * max(probe.block_shapes[0][0] if probe.count else 0, 512) * item
    except rasterio.errors.RasterioError:
        row_bytes = 0  # RasterSource reports the problem properly
    cache_mb = int(min(1024, max(32, 2 * row_bytes / 2**20)))
    with rasterio.Env(GDAL_CACHEMAX=cache_mb):
        return _predict(Path(input_path), Path(output_path), runner, options, progress)


def _predict(
    input_path: Path,
    output_path: Path,
    runner: Runner,
    options: PredictOptions,
    progress: Callable[[Progress], None] | None,
) -> PredictResult:
    start = time.perf_counter()
    check_output(output_path, options.overwrite)
    card = runner.card
    with RasterSource(
        input_path, card, bands=options.bands, scale=options.scale, allow_no_crs=options.allow_no_crs, gsd=options.gsd
    ) as source:
        plan = plan_tiles(
            source.height,
            source.width,
            options.tile_size or card.tile_size,
            card.overlap if options.overlap is None else options.overlap,
            options.blend,
            align=TILE_ALIGN,
        )
        first, stop = _row_range(options, source.native_height, input_path)
        outputs = output_layouts(output_path, card, options)
        for path, _ in outputs[1:]:
            check_output(path, options.overwrite)
        if options.vectorize is not None:
            from .vector.writer import format_for

            format_for(check_output(objects_path(output_path, options), options.overwrite))
        gate = getattr(runner, "gate", None)
        if gate is not None:  # reduced precision proves itself before anything is written (once: then at once)
            from .sampling import RasterTileSample

            gate.settle(RasterTileSample(source, plan, input_path.name))
        journal = partial_paths(output_path)[1]
        key = run_key(
            input=file_identity(input_path),
            weights=card.sha256,
            tiling=[plan.tile, plan.overlap, plan.blend],
            grid=[source.height, source.width],
            bands=source.indexes,
            scaling=source.scaling.rule,
            outputs=[layout.name for _, layout in outputs],
            rows=[first, stop],
            precision=getattr(runner, "precision", "fp32"),
        )
        rows_done = load_rows_done(journal, key) if options.resume else None
        journal.unlink(missing_ok=True)  # a run killed from here on must start over
        keep_partials = False  # set when an interrupted run leaves its partial files for --resume
        with ExitStack() as stack:
            sinks = []
            tags = _tags(runner, source, plan, options)
            for path, layout in outputs:
                tmp = stack.enter_context(atomic_output(path, overwrite=options.overwrite))
                sink = RasterSink(
                    tmp,
                    partial_paths(path)[0],
                    layout,
                    width=source.native_width,
                    height=stop - first,
                    crs=source.crs,
                    transform=source.transform @ Affine.translation(0, first),
                    tags=tags,
                    resume=rows_done is not None,
                    cog=options.cog,
                )
                stack.callback(lambda sink=sink: None if keep_partials else sink.discard())
                sinks.append(sink)
            resumed = rows_done is not None and all(sink.resumed for sink in sinks)
            written = _Written(rows_done if resumed else first)
            try:
                counts = _run(source, plan, runner, sinks, options, progress, written, (first, stop))
            except BaseException:
                for sink in sinks:
                    sink.suspend()
                if written.rows > 0:
                    save_rows_done(journal, key, written.rows)
                    keep_partials = True
                raise
            for sink in sinks:
                sink.close()
    if options.vectorize is not None:
        from .vector import vectorize

        confidence = next((path for path, layout in outputs[1:]), None)  # probabilities first, else uncertainty
        vectorize(
            output_path,
            objects_path(output_path, options),
            replace(options.vectorize, confidence=confidence, overwrite=options.overwrite),
        )
    megapixels = (stop - first) * source.native_width / 1e6
    return PredictResult(input_path, output_path, "ok", time.perf_counter() - start, megapixels, counts[0], counts[1])


def _row_range(options: PredictOptions, height: int, input_path: Path) -> tuple[int, int]:
    """The input rows to predict: ``options.rows`` checked against the raster, else all."""
    if options.rows is None:
        return 0, height
    first, stop = options.rows
    if not 0 <= first < stop <= height:
        raise AerialsegError(f"rows {first}..{stop} are not within the raster's {height} rows", path=input_path)
    if options.vectorize is not None:
        raise AerialsegError("vectorize needs the whole raster, not a band of rows", path=input_path)
    return first, stop


def objects_path(output_path: Path, options: PredictOptions) -> Path:
    """Where ``--vectorize`` writes: ``<input>_objects<suffix>`` beside the class raster."""
    return output_path.with_name(f"{output_path.stem.removesuffix('_classes')}_objects{options.objects_suffix}")


def output_layouts(output_path: Path, card: ModelCard, options: PredictOptions) -> list[tuple[Path, SinkLayout]]:
    """``(path, layout)`` of every raster this run writes; the class map first."""
    outputs = [(output_path, class_raster(card))]
    for wanted, layout in ((options.probabilities, probability_raster), (options.uncertainty, uncertainty_raster)):
        if wanted:
            extra = layout(card)
            outputs.append((output_path.with_name(f"{output_path.stem}_{extra.name}.tif"), extra))
    return outputs


@dataclass
class _Written:
    """Output rows on disk in the intermediate file (all rows above ``rows``)."""

    rows: int


def _run(
    source: RasterSource,
    plan: TilePlan,
    runner: Runner,
    sinks: list[RasterSink],
    options: PredictOptions,
    progress: Callable[[Progress], None] | None,
    written: _Written,
    rows: tuple[int, int],
) -> tuple[int, int]:
    """Reader thread -> network on this thread -> writer thread; returns (tiles run, tiles skipped).

    Output rows above ``written.rows`` are already on disk (a resumed run): the tile rows
    that cannot touch later rows are skipped, and recomputed rows above it are not rewritten.
    Only input rows ``rows[0]`` to ``rows[1]`` are written (at sink row ``row - rows[0]``):
    tile rows starting below the last model row they need are not run.
    """
    stop = threading.Event()
    tiles: queue.Queue = queue.Queue(maxsize=options.queue_tiles)
    results: queue.Queue = queue.Queue(maxsize=options.queue_tiles)
    extras = len(sinks) > 1
    resampler = (
        ScoreResampler(
            (source.height, source.width),
            (source.native_height, source.native_width),
            runner.card.num_classes,
            probabilities=extras,
        )
        if source.grid is not None
        else None
    )
    first_model_row = resampler.first_model_row(written.rows) if resampler else written.rows
    last_model_row = resampler.last_model_row(rows[1] - 1) if resampler else rows[1] - 1
    tile_rows = [
        row
        for row in plan.tile_rows()
        if row[0][0].row_off + row[0][0].height > first_model_row and row[0][0].row_off <= last_model_row
    ]
    start_row = tile_rows[0][0][0].row_off if tile_rows else plan.height
    if resampler:
        resampler.resume(start_row, written.rows)
    if resampler is not None or extras:  # probabilities are needed: the dense accumulator keeps them
        accumulator = StripAccumulator(plan, runner.card.num_classes, True, start_row)
    else:
        accumulator = LeanStripAccumulator(plan, runner.card.num_classes, start_row)
    done_before = len(plan) - sum(len(row) for row in tile_rows)

    def write_rows(strip: Strip) -> None:
        skip = written.rows - strip.row_off
        keep = min(strip.classes.shape[0], rows[1] - strip.row_off)
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
        for sink in sinks:
            sink.write(strip.row_off - rows[0], sink.layout.encode(strip))
        written.rows = strip.row_off + strip.classes.shape[0]

    def emit(strip: Strip) -> None:
        if resampler is None:
            write_rows(strip)
            return
        for out in resampler.push(strip):
            native = source.native_valid(out.row_off, out.classes.shape[0])
            out.classes[~native] = NODATA
            if out.valid is not None:
                out.valid[~native] = False
            write_rows(out)

    def read() -> None:
        for row in tile_rows:
            for window, i, j in row:
                if stop.is_set():
                    return
                data, valid = source.read(window)
                put(tiles, (window, i, j, data if valid.any() else None, valid), stop)
        put(tiles, DONE, stop)

    def write() -> None:
        row_off = -1
        while (item := take(results, stop)) is not DONE:
            window, i, j, probabilities, valid = item
            if window.row_off != row_off:
                row_off = window.row_off
                strip = accumulator.begin_row(row_off)
                if strip is not None:
                    emit(strip)
            if probabilities is not None:
                weight = plan.weights(i, j)
                accumulator.add(window, probabilities, weight if valid.all() else weight * valid)
        emit(accumulator.finish())

    stages = [Stage(read, stop, "aerialseg-reader"), Stage(write, stop, "aerialseg-writer")]
    for stage in stages:
        stage.start()
    run = skipped = 0
    try:
        for batch in _batches(tiles, stop, options.batch_size):
            full = [item for item in batch if item[3] is not None]
            out = runner(np.stack([item[3] for item in full])) if full else None
            k = 0
            for window, i, j, data, valid in batch:
                probabilities = None
                if data is not None:
                    probabilities, k = out[k], k + 1
                put(results, (window, i, j, probabilities, valid), stop)
            run += len(full)
            skipped += len(batch) - len(full)
            if progress:
                done = done_before + run + skipped
                area = source.native_height * source.native_width / 1e6  # of the raster, as in the results
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
    return run, skipped


def _batches(tiles: queue.Queue, stop: threading.Event, size: int) -> Iterator[list[tuple]]:
    """Group queued tiles into batches holding at most ``size`` tiles that need the network."""
    batch: list[tuple] = []
    full = 0
    while (item := take(tiles, stop)) is not DONE:
        batch.append(item)
        full += item[3] is not None
        if full >= size:
            yield batch
            batch, full = [], 0
    if batch:
        yield batch


def expand_inputs(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, folders (their rasters, sorted) and glob patterns, in the order given, without repeats."""
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True))
        else:
            found = [Path(text)]
        paths += [p for p in found if p not in paths]
    return paths


def output_for(input_path: Path, out_dir: Path) -> Path:
    """Predictable output name: ``<out_dir>/<input stem>_classes.tif``."""
    return out_dir / f"{input_path.stem}_classes.tif"


def predict_many(
    inputs: Iterable[str | os.PathLike[str]],
    runner: Runner,
    options: PredictOptions = PredictOptions(),
    *,
    out_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_result: Callable[[PredictResult], None] | None = None,
) -> list[PredictResult]:
    """Predict every input; failures are reported in the results, not raised (Ctrl-C still stops)."""
    paths = expand_inputs(inputs)
    if output is not None and len(paths) != 1:
        raise AerialsegError(f"-o names one output but {len(paths)} inputs were given", hint="use --out-dir")
    if out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"cannot create the output folder ({exc.strerror})", path=out_dir) from exc
    results = []
    for path in paths:
        target = Path(output) if output is not None else output_for(path, Path(out_dir or path.parent))
        try:
            if not path.exists():
                raise InputRasterError("no such file", path=path)
            result = predict(path, target, runner, options, progress)
        except PrecisionGateError:
            raise  # the network failed its gate: every file would, so the batch stops with nothing written
        except AerialsegError as exc:
            result = PredictResult(path, None, "failed", error=str(exc))
        results.append(result)
        if on_result:
            on_result(result)
    return results
