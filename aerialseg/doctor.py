"""Pre-flight check of an orthophoto against a model: what predict will do, and what to fix first.

``doctor`` opens the raster and the model card only (no torch), and reports the machine
and the engine and precision ``predict`` would choose (with the rule's reason), the block
layout (striped files read slowly), CRS, ground sampling distance against the model's and
what predict will do about it, how the bands map onto the model's, how pixels are scaled,
where nodata comes from and how much of the raster it covers, the tile plan, and estimates
of the pipeline's memory and of the run time. Each problem comes with the fix.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .card import ModelCard
from .errors import AerialsegError, BandMismatchError, GSDMismatchError
from .gsd import pixel_size_m
from .runners.choice import EngineChoice
from .tiling import TILE_ALIGN, plan_tiles

__all__ = ["Finding", "DoctorReport", "doctor", "read_model_card"]

_STRIPED_WIDTH = 2048
# Throughput assumed for the time estimate: fp32 convolutions sustain ~100 GFLOP/s per core on
# AVX-512 CPUs and ONNX Runtime reaches 55-87 % of that; bf16 ran tiles 1.6-1.9x faster.
_FP32_GFLOPS_PER_CORE = 75.0
_SPEEDUP = {"bf16": 1.6, "int8": 1.3}


@dataclass(frozen=True)
class Finding:
    """``level`` is ``error`` (predict will fail), ``warning`` (it will run, check this) or ``info``."""

    level: str
    message: str
    fix: str = ""


@dataclass
class DoctorReport:
    """Facts about one raster with one model, and the findings."""

    path: Path
    facts: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error-level finding."""
        return not any(f.level == "error" for f in self.findings)


def read_model_card(model: str | os.PathLike[str]) -> ModelCard:
    """The card of a weights name/path or of an exported ``.onnx`` file, without torch."""
    if Path(model).suffix == ".onnx":
        import onnx

        graph = onnx.load(str(model), load_external_data=False)
        meta = {p.key: p.value for p in graph.metadata_props}
        if "aerialseg.card" not in meta:
            raise AerialsegError("ONNX file has no aerialseg model card", path=model)
        return ModelCard.from_json(meta["aerialseg.card"])
    from .weights import read_card, resolve_weights

    return read_card(resolve_weights(model))


def _layout(report: DoctorReport, ds: object) -> None:
    block_rows, block_cols = ds.block_shapes[0]
    tiled = block_cols < ds.width or ds.width <= 256
    report.facts["size"] = f"{ds.width} x {ds.height} pixels, {ds.count} bands {', '.join(sorted(set(ds.dtypes)))}"
    report.facts["layout"] = (
        f"{'tiled' if tiled else 'striped'} {block_cols} x {block_rows}, "
        f"{ds.compression.name if ds.compression else 'uncompressed'}"
    )
    if not tiled and ds.width > _STRIPED_WIDTH:
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
    else:
        source = "none (every pixel is data)"
    report.facts["nodata"] = source


def _resolution(report: DoctorReport, ds: object, card: ModelCard) -> None:
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
    x, y = pixel_size_m(ds.crs, ds.transform, ds.height, ds.width)
    model = f"{card.gsd_m:g} m" if card.gsd_m else "unknown"
    report.facts["GSD"] = f"{x:.4g} x {y:.4g} m on the ground; model {model}"


def doctor(
    path: str | os.PathLike[str],
    model: str | os.PathLike[str],
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    bands: tuple[int, ...] | None = None,
    scale: float | None = None,
    gsd: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    device: str | None = None,
) -> DoctorReport:
    """Inspect ``path`` for prediction with ``model``; never raises for problems of the raster."""
    import rasterio

    from .source import BandAssumptionWarning, RasterSource

    report = DoctorReport(Path(path))
    card = read_model_card(model)
    report.facts["model"] = f"{card.arch}-{card.backbone}, bands {'-'.join(card.bands)}, {card.num_classes} classes"
    choice = _engine(report, str(model), backend, precision, device)
    try:
        dataset = rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        report.findings.append(Finding("error", f"cannot open as a raster ({str(exc).splitlines()[0]})"))
        return report
    with dataset as ds:
        _layout(report, ds)
        _resolution(report, ds, card)
        factor = max(1, int(np.ceil(max(ds.height, ds.width) / 1024)))
        mask = ds.dataset_mask(out_shape=(max(1, ds.height // factor), max(1, ds.width // factor)))
    valid_share = float((mask > 0).mean())
    report.facts["valid pixels"] = f"{valid_share:.1%}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BandAssumptionWarning)
        try:
            source = RasterSource(path, card, bands=bands, scale=scale, allow_no_crs=True, gsd=gsd)
        except (BandMismatchError, GSDMismatchError) as exc:
            report.findings.append(Finding("error", exc.message, exc.hint or ""))
            return report
    for warning in caught:
        report.findings.append(Finding("warning", str(warning.message).split(": ", 1)[-1], "pass --bands"))
    with source:
        report.facts["bands used"] = ", ".join(f"{b}->{i}" for b, i in zip(card.bands, source.indexes))
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
        tile = tile_size or card.tile_size
        plan = plan_tiles(
            source.height, source.width, tile, card.overlap if overlap is None else overlap, align=TILE_ALIGN
        )
        _estimates(report, card, plan, valid_share, choice)
    if report.facts["nodata"].startswith("none") and valid_share == 1.0:
        report.findings.append(
            Finding(
                "info",
                "no nodata value, alpha band or mask: collars would be classified",
                "set one, e.g. gdal_edit.py -a_nodata 0",
            )
        )
    return report


def _engine(report: DoctorReport, model: str, backend: str, precision: str, device: str | None) -> EngineChoice | None:
    """The machine, and the engine and precision predict would pick, with the rule's reason."""
    from .hardware import detect_hardware
    from .runners import RunnerSpec

    report.facts["hardware"] = detect_hardware().describe()
    try:
        choice = RunnerSpec(model, backend, device, precision=precision).resolve(use_torch=False)
    except AerialsegError as exc:
        report.findings.append(Finding("error", exc.message, exc.hint or ""))
        return None
    report.facts["engine"] = choice.describe()
    if choice.gated:
        report.facts["engine"] += "; checked against fp32 on real tiles before the run (accuracy gate)"
    return choice


def _estimates(
    report: DoctorReport, card: ModelCard, plan: object, valid_share: float, choice: EngineChoice | None
) -> None:
    from .models import get_spec

    tile_h, tile_w = plan.tile_shape
    with_data = max(1, round(len(plan) * valid_share))
    report.facts["tiles"] = f"{len(plan)} of {tile_w} x {tile_h} (overlap {plan.overlap}), ~{with_data} with data"
    k = card.num_classes
    accumulator = (k + 1) * tile_h * plan.width * 4
    queues = 2 * 4 * (len(card.bands) + k) * tile_h * tile_w * 4
    weights = get_spec(card.arch, card.backbone).params(k) * 4
    total = (accumulator + queues + weights) / 2**20
    report.facts["memory"] = (
        f"~{total:.0f} MiB of pipeline buffers and weights (accumulator {accumulator / 2**20:.0f} MiB, "
        "grows with width only), plus the network's activations for one batch"
    )
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
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return
    if total > 0.5 * available:
        report.findings.append(
            Finding(
                "warning",
                f"buffers alone need ~{total:.0f} MiB of {available:.0f} MiB",
                "use a smaller --tile-size",
            )
        )
