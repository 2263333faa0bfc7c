"""Pre-flight check of an orthophoto against a model: what predict will do, and what to fix first.

``doctor`` opens the raster and the model card only (no torch), and reports the machine
and the engine and precision ``predict`` would choose (with the rule's reason), the block
layout (striped files read slowly), CRS, ground sampling distance against the model's and
what predict will do about it, how the bands map onto the model's, how pixels are scaled,
where nodata comes from and how much of the raster it covers, the tile plan, and estimates
of the pipeline's memory and of the run time. Each problem comes with the fix. A remote file
(URL, ``/vsi`` path, STAC asset) without internal tiles, or large and without overviews, is
reported as slow to read remotely: every window, or every decimated read, then fetches far
more than it needs; a cloud-optimised copy (``gdal_translate -of COG``) reads only its blocks.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .card import ModelCard, read_card
from .errors import AerialsegError, GSDMismatchError
from .gsd import pixel_size_m
from .hardware import available_memory
from .locations import InputRef, RasterRef, as_input, reading
from .options import PredictOptions
from .pipeline import uses_dense_accumulator
from .raster import block_cache_mb, open_raster
from .runners import RunnerSpec
from .runners.choice import EngineChoice
from .tiling import TILE_ALIGN, TilePlan, plan_tiles

__all__ = ["Finding", "DoctorReport", "doctor", "MemoryEstimate", "memory_estimate", "memory_problem"]

_STRIPED_WIDTH = 2048
_OVERVIEW_SIZE = 1024
"""Above this many pixels a side, decimated reads (valid share, percentile stretch) need overviews to stay small."""
# Throughput assumed for the time estimate, per CPU core in fp32, and the gain of reduced
# precision over it: a rough guide taken from the README's Speed section, not a promise.
_FP32_GFLOPS_PER_CORE = 75.0
_SPEEDUP = {"bf16": 1.6, "int8": 1.3}
_PLAN_BYTES_PER_TILE = 200
"""Memory of one tile of the plan as the pipeline lists them before it starts (window, indexes: measured ~180 B)."""


@dataclass(frozen=True)
class Finding:
    """``level`` is ``error`` (predict will fail), ``warning`` (it will run, check this) or ``info``."""

    level: str
    message: str
    fix: str = ""


@dataclass
class DoctorReport:
    """Facts about one raster with one model, and the findings."""

    path: InputRef
    facts: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error-level finding."""
        return not any(f.level == "error" for f in self.findings)


def _layout(report: DoctorReport, ds: Any) -> None:  # noqa: ANN401 (a rasterio dataset)
    block_rows, block_cols = ds.block_shapes[0]
    tiled = block_cols < ds.width or ds.width <= 256
    report.facts["size"] = f"{ds.width} x {ds.height} pixels, {ds.count} bands {', '.join(sorted(set(ds.dtypes)))}"
    report.facts["layout"] = (
        f"{'tiled' if tiled else 'striped'} {block_cols} x {block_rows}, "
        f"{ds.compression.name if ds.compression else 'uncompressed'}"
    )
    remote = isinstance(report.path, RasterRef) and report.path.remote
    if remote:
        _remote_layout(report, ds, tiled)
    elif not tiled and ds.width > _STRIPED_WIDTH:
        report.findings.append(
            Finding(
                "warning",
                "striped layout: every tile read decodes whole-width strips, which is slow",
                f"gdal_translate -co TILED=YES -co COMPRESS=DEFLATE {report.path.name} tiled.tif",
            )
        )
    flags = {f.name for band in ds.mask_flag_enums for f in band}
    if ds.nodata is not None:
        source = f"nodata value {ds.nodata:g}"
    elif "alpha" in flags:
        source = "alpha band"
    elif "per_dataset" in flags:
        source = "internal mask"
    elif any(np.dtype(dtype).kind == "f" for dtype in ds.dtypes):
        source = "NaN and infinite values (no nodata value declared)"
    else:
        source = "none (every pixel is data)"
    report.facts["nodata"] = source


def _remote_layout(report: DoctorReport, ds: Any, tiled: bool) -> None:  # noqa: ANN401 (a rasterio dataset)
    """A remote file that is not laid out as a COG: what each read then fetches, and the copy that fixes it."""
    problems = []
    if not tiled:
        problems.append("no internal tiles, so every window fetches whole-width strips")
    if not ds.overviews(1) and max(ds.width, ds.height) > _OVERVIEW_SIZE:
        problems.append("no overviews, so the decimated reads fetch the whole raster")
    if problems and isinstance(report.path, RasterRef):
        report.findings.append(
            Finding(
                "warning",
                f"slow to read remotely, not a cloud-optimised GeoTIFF: {'; '.join(problems)}",
                f"gdal_translate -of COG {report.path.gdal_path} {report.path.stem}_cog.tif, and read that copy",
            )
        )


def _resolution(report: DoctorReport, ds: Any, card: ModelCard) -> None:  # noqa: ANN401 (a rasterio dataset)
    if ds.crs is None:
        report.facts["CRS"] = "none"
        report.findings.append(
            Finding(
                "error",
                "no CRS: the output would not line up with any map",
                "georeference the raster, or pass --allow-no-crs to predict in pixel space",
            )
        )
        return
    name = ds.crs.to_string() if ds.crs.to_epsg() is None else f"EPSG:{ds.crs.to_epsg()}"
    report.facts["CRS"] = f"{name} ({'geographic' if ds.crs.is_geographic else 'projected'})"
    model = f"{card.gsd_m:g} m" if card.gsd_m else "unknown"
    try:
        ground = pixel_size_m(ds.crs, ds.transform, ds.height, ds.width)  # known: the raster has a CRS
    except GSDMismatchError as exc:  # an error finding follows when predict would measure it (--gsd auto)
        report.facts["GSD"] = f"{exc.message}; model {model}"
        return
    if ground is not None:
        report.facts["GSD"] = f"{ground[0]:.4g} x {ground[1]:.4g} m on the ground; model {model}"


def doctor(
    path: str | os.PathLike[str] | RasterRef,
    model: RunnerSpec | str | os.PathLike[str],
    options: PredictOptions | None = None,
) -> DoctorReport:
    """Inspect ``path`` for prediction with ``model`` and ``options``; never raises for problems of the raster.

    ``path`` may be a URL, a ``/vsi`` path or a STAC item (its ``options.input.asset``), as
    predict takes them. ``model`` is the :class:`RunnerSpec` predict would open, or a weights
    name/path or ``.onnx`` file (run with automatic engine and precision). ``options`` are
    predict's: the tiling, how the input is read, and which outputs are written (they decide
    how much memory the blending takes); None: predict's defaults.
    """
    from .stac import input_of

    spec = model if isinstance(model, RunnerSpec) else RunnerSpec(str(model))
    options = options or PredictOptions()
    report = DoctorReport(as_input(path))
    card = read_card(spec.model_file)
    report.facts["model"] = f"{card.network}, bands {'-'.join(card.bands)}, {card.num_classes} classes"
    choice = _engine(report, spec)
    try:
        report.path = input_of(path, options.input.asset)
    except AerialsegError as exc:
        report.findings.append(Finding("error", exc.message, exc.hint or ""))
        return report
    with reading(report.path):
        _inspect(report, card, choice, options)
    return report


def _inspect(report: DoctorReport, card: ModelCard, choice: EngineChoice | None, options: PredictOptions) -> None:
    """The raster's part of the report: layout, CRS and GSD, valid share, bands, scaling, tiles and estimates."""
    from .source import BandAssumptionWarning, RasterSource, valid_pixels

    try:
        dataset = open_raster(report.path)
    except AerialsegError as exc:
        report.findings.append(Finding("error", exc.message, exc.hint or ""))
        return
    with dataset as ds:
        _layout(report, ds)
        _resolution(report, ds, card)
        factor = max(1, int(np.ceil(max(ds.height, ds.width) / 1024)))
        shape = (max(1, ds.height // factor), max(1, ds.width // factor))
        try:
            valid_share = float(valid_pixels(ds, tuple(range(1, ds.count + 1)), out_shape=shape).mean())
        except AerialsegError as exc:  # opens, but its pixels do not decode (truncated, corrupt)
            report.findings.append(Finding("error", exc.message, "the file is damaged: copy or export it again"))
            return
    report.facts["valid pixels"] = f"{valid_share:.1%}"
    wanted = options.input
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BandAssumptionWarning)
        try:
            source = RasterSource(
                report.path, card, bands=wanted.bands, scale=wanted.scale, allow_no_crs=True, gsd=wanted.gsd
            )
        except AerialsegError as exc:
            report.findings.append(Finding("error", exc.message, exc.hint or ""))
            return
    for warning in caught:
        report.findings.append(Finding("warning", str(warning.message).split(": ", 1)[-1], "pass --bands"))
    with source:
        report.facts["bands used"] = ", ".join(f"{b}->{i}" for b, i in zip(card.bands, source.indexes, strict=True))
        report.facts["scaling"] = source.scaling.rule
        if source.grid:
            report.findings.append(
                Finding(
                    "info",
                    f"predicting at the model's {card.gsd_m:g} m ({source.grid.width} x {source.grid.height} "
                    f"pixels), probabilities resampled back to the input grid",
                    "--gsd native to predict as is",
                )
            )
        try:
            tiling = options.tiling.resolve(card)
        except AerialsegError as exc:
            report.findings.append(Finding("error", exc.message, exc.hint or ""))
            return
        plan = plan_tiles(source.height, source.width, tiling.tile, tiling.overlap, tiling.blend, align=TILE_ALIGN)
        _estimates(report, card, plan, valid_share, choice, options, source.grid is not None)
    if report.facts["nodata"].startswith("none") and valid_share == 1.0:
        report.findings.append(
            Finding(
                "info",
                "no nodata value, alpha band or mask: collars would be classified",
                "set one, e.g. gdal_edit.py -a_nodata 0",
            )
        )


def _engine(report: DoctorReport, spec: RunnerSpec) -> EngineChoice | None:
    """The machine, and the engine and precision predict would pick, with the rule's reason."""
    from .hardware import detect_hardware

    report.facts["hardware"] = detect_hardware().describe()
    try:
        choice = spec.resolve(use_torch=False)
    except AerialsegError as exc:
        report.findings.append(Finding("error", exc.message, exc.hint or ""))
        return None
    report.facts["engine"] = choice.describe()
    if choice.gated:
        report.facts["engine"] += "; checked against fp32 on real tiles before the run (accuracy gate)"
    return choice


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a predict run holds besides the network's activations for one batch.

    The blender's sums (:func:`_blending_bytes`), the queues of tiles between the stages, the
    weights, the tile plan's list of windows (the one part that grows with the raster's area)
    and the GDAL block cache predict sets for the raster (:func:`aerialseg.raster.block_cache_mb`).
    """

    blending: int
    queues: int
    weights: int
    plan: int
    block_cache: int
    dense: bool

    @property
    def total(self) -> int:
        """Everything counted."""
        return self.blending + self.queues + self.weights + self.plan + self.block_cache


def memory_estimate(
    path: InputRef, card: ModelCard, plan: TilePlan, options: PredictOptions, *, resampled: bool
) -> MemoryEstimate:
    """What predicting ``path`` with ``plan`` holds in memory (``resampled``: read at the model's GSD).

    The weights of a network aerialseg did not build (a Deepness file) are not known without
    loading it: they are left out (ONNX Runtime maps them from the file).
    """
    from .models import get_spec

    tile_h, tile_w = plan.tile_shape
    k = card.num_classes
    dense = uses_dense_accumulator(options, resampled=resampled)
    return MemoryEstimate(
        blending=_blending_bytes(plan, k, dense),
        queues=2 * options.queue_tiles * (len(card.bands) + k) * tile_h * tile_w * 4,
        weights=get_spec(card.arch, card.backbone).params(k) * 4 if card.origin == "aerialseg" else 0,
        plan=len(plan) * _PLAN_BYTES_PER_TILE,
        block_cache=block_cache_mb(path) * 2**20,
        dense=dense,
    )


def memory_problem(
    estimate: MemoryEstimate, plan: TilePlan, options: PredictOptions, *, resampled: bool
) -> Finding | None:
    """``estimate`` against the memory this process can still take: None when it fits with room to spare.

    An error past what is available (predict refuses the raster then, before any work); a
    warning past half of it, which leaves little for the network's activations.
    """
    available = available_memory()
    if available is None or estimate.total <= available / 2:
        return None
    fixes = ["a smaller --tile-size"]
    if options.output.probabilities or options.output.uncertainty:
        fixes.append("no --probabilities or --uncertainty (they keep every class's scores across the width)")
    if resampled:
        fixes.append("--gsd native (resampling keeps every class's scores across the width)")
    return Finding(
        "error" if estimate.total > available else "warning",
        f"a {plan.width} x {plan.height} pixel raster needs ~{estimate.total / 2**20:.0f} MiB of memory "
        f"(blending {estimate.blending / 2**20:.0f} MiB, tile plan {estimate.plan / 2**20:.0f} MiB, "
        f"GDAL cache {estimate.block_cache / 2**20:.0f} MiB) and {available / 2**20:.0f} MiB is available",
        f"use {', or '.join(fixes)}; or run it where more memory is free",
    )


def _blending_bytes(plan: TilePlan, num_classes: int, dense: bool) -> int:
    """Memory of the blender predict will use (see :mod:`aerialseg.blend`).

    The dense accumulator holds weighted sums for a whole tile row; the lean one only for the
    rows a tile row shares with the next (the overlap), plus a window two tiles wide and one
    byte of class id per pixel of a strip.
    """
    tile_h, tile_w = plan.tile_shape
    sums = (num_classes + 1) * 4  # a float32 sum per class, and the weight
    if dense:
        return sums * tile_h * plan.width
    return sums * (plan.overlap * plan.width + tile_h * 2 * tile_w) + tile_h * plan.width


def _estimates(
    report: DoctorReport,
    card: ModelCard,
    plan: TilePlan,
    valid_share: float,
    choice: EngineChoice | None,
    options: PredictOptions,
    resampled: bool,
) -> None:
    from .models import get_spec

    tile_h, tile_w = plan.tile_shape
    with_data = max(1, round(len(plan) * valid_share))
    report.facts["tiles"] = f"{len(plan)} of {tile_w} x {tile_h} (overlap {plan.overlap}), ~{with_data} with data"
    memory = memory_estimate(report.path, card, plan, options, resampled=resampled)
    kind = "dense: probabilities are written or resampled" if memory.dense else "lean: class ids only"
    report.facts["memory"] = (
        f"~{memory.total / 2**20:.0f} MiB of pipeline buffers, weights and GDAL cache (blending "
        f"{memory.blending / 2**20:.0f} MiB, {kind}; grows with width only), "
        "plus the network's activations for one batch"
    )
    problem = memory_problem(memory, plan, options, resampled=resampled)
    if problem is not None:
        report.findings.append(problem)
    if card.origin != "aerialseg":
        report.facts["time"] = "no estimate: aerialseg did not build this network, so its cost per tile is unknown"
        return
    gmacs = get_spec(card.arch, card.backbone).gmacs_512 * tile_h * tile_w / 512**2
    if choice is not None and choice.device.startswith("cuda"):
        report.facts["time"] = "on a CUDA GPU: minutes for what takes hours on a CPU (no estimate)"
    else:
        from .hardware import detect_hardware

        cores = detect_hardware().cores
        gflops = _FP32_GFLOPS_PER_CORE * cores * _SPEEDUP.get(choice.precision if choice else "fp32", 1.0)
        seconds = with_data * 2 * gmacs / gflops
        report.facts["time"] = (
            f"~{seconds / 60:.1f} min on {cores} CPU cores, assuming ~{gflops:.0f} GFLOP/s "
            f"{choice.precision if choice else 'fp32'} (a rough guide: CPUs differ twofold)"
        )
