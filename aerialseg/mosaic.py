"""``predict --mosaic``: adjacent files of one delivery predicted as one raster, so no sheet edge is a seam.

Orthophotos arrive as grids of sheets (1 km², 2000 x 2000 px); predicted one by one, every
sheet edge is a prediction edge where the network sees no context and neighbouring maps
disagree. Here the inputs of a call that share a CRS and a pixel grid become one GDAL VRT
(built in a hidden scratch folder beside the outputs, never beside the inputs) whose gaps
between files read as nodata, the way the files mark theirs. The mosaic is
predicted by the ordinary streaming path (tiles planned over the whole mosaic, overlaps
blended as inside one raster, memory bounded by the mosaic's width) into scratch rasters,
which are then cut back into one output per input (same name, grid and size as the input)
or, with ``-o``, copied into one cloud-optimised GeoTIFF of the whole mosaic. The scratch
folder's name comes from the inputs, so ``--resume`` continues an interrupted mosaic; it is
removed when the outputs are written, or when a run fails before leaving anything to resume.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from .atomic import name_key
from .conventions import Tag
from .errors import AerialsegError, InputRasterError
from .executor import BatchEvents, Executor, Job, Opening, SilentEvents
from .journal import file_identity, partial_paths
from .locations import InputRef
from .outputs import OutputClaims, OutputSet
from .raster import open_raster
from .results import BatchRun, PredictResult, failure, skipped
from .sink import cut_raster

if TYPE_CHECKING:
    from .card import ModelCard
    from .options import PredictOptions

__all__ = ["Mosaic", "build_mosaic", "mosaic_rows"]

_TOLERANCE = 1e-3
"""Largest misalignment, in pixels, of a file's origin with the mosaic's grid."""

_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class Placed:
    """One input's place in the mosaic: pixel offsets and size."""

    path: Path
    col_off: int
    row_off: int
    width: int
    height: int


@dataclass(frozen=True)
class Mosaic:
    """The inputs on one grid: the mosaic's size and georeferencing, and where each file lies."""

    files: tuple[Placed, ...]
    width: int
    height: int
    crs: Any
    transform: Any
    count: int
    dtype: str
    colorinterp: tuple[str, ...]
    nodata: float | None
    """The files' common nodata value; None when they mark nodata by an alpha band, or not at all."""
    add_alpha: bool
    """The files mark no nodata: an alpha band, 255 over every file and 0 in the gaps, is added."""

    def vrt(self) -> str:
        """The GDAL VRT of the mosaic, whose gaps between files are nodata (see :func:`build_mosaic`)."""
        nodata = "" if self.nodata is None else f"<NoDataValue>{self.nodata!r}</NoDataValue>"
        data_type = _GDAL_TYPES.get(self.dtype, "Float64")
        bands = "".join(
            f'<VRTRasterBand dataType="{data_type}" band="{index}">{nodata}'
            f"<ColorInterp>{interp}</ColorInterp>{self._sources(index)}</VRTRasterBand>"
            for index, interp in enumerate(self.colorinterp, start=1)
        )
        if self.add_alpha:
            constant = "<ScaleOffset>255</ScaleOffset><ScaleRatio>0</ScaleRatio>"
            bands += (
                f'<VRTRasterBand dataType="Byte" band="{self.count + 1}"><ColorInterp>Alpha</ColorInterp>'
                f"{self._sources(1, constant)}</VRTRasterBand>"
            )
        t = self.transform
        inputs = escape(json.dumps([file_identity(f.path) for f in self.files]))  # an edited sheet: a new VRT
        return (
            f'<VRTDataset rasterXSize="{self.width}" rasterYSize="{self.height}">'
            f"<SRS>{escape(self.crs.to_wkt()) if self.crs else ''}</SRS>"
            f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"
            f'<Metadata><MDI key="{Tag.MOSAIC_INPUTS}">{inputs}</MDI></Metadata>'
            f"{bands}</VRTDataset>\n"
        )

    def _sources(self, band: int, extra: str = "") -> str:
        """Every file's ``band`` at its place; a file's nodata never paints over a neighbour's pixels."""
        nodata = "" if self.nodata is None else f"<NODATA>{self.nodata!r}</NODATA>"
        return "".join(
            f'<ComplexSource><SourceFilename relativeToVRT="0">{escape(str(f.path.resolve()))}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{f.width}" ySize="{f.height}"/>'
            f'<DstRect xOff="{f.col_off}" yOff="{f.row_off}" xSize="{f.width}" ySize="{f.height}"/>'
            f"{nodata}{extra}</ComplexSource>"
            for f in self.files
        )


def build_mosaic(paths: Sequence[Path]) -> Mosaic:
    """The mosaic of ``paths``; one line naming the first file that is not on the first one's grid.

    Same CRS, band count and data type, pixel size and no rotation, and an origin that lies on
    the first file's pixel grid: then every file is a window of one raster. The gaps between
    files must read as nodata, the way the files mark theirs: the files' common nodata value,
    their alpha band, or (files without either) an alpha band the mosaic adds. Files that mark
    nodata differently (another value, an internal mask) are refused, naming the file.
    """
    from rasterio.transform import Affine

    if not paths:
        raise AerialsegError("--mosaic needs input rasters", hint="name files, folders or glob patterns")
    facts = []
    for path in paths:
        with open_raster(path) as ds:
            marking = _nodata_marking(ds)
            facts.append(
                (path, ds.crs, ds.transform, ds.width, ds.height, ds.count, ds.dtypes[0], ds.colorinterp, marking)
            )
    first, crs, t0, *_, count, dtype, interp, marking = facts[0]
    placed = []
    for path, other_crs, t, width, height, other_count, other_dtype, _, other_marking in facts:
        problem = _grid_problem(crs, t0, count, dtype, other_crs, t, other_count, other_dtype)
        if problem is None and other_marking != marking:
            problem = f"nodata marked by {other_marking} instead of {marking}"
        if problem:
            raise InputRasterError(
                f"is not on the grid of {first.name} ({problem}), so the inputs cannot form one mosaic",
                path=path,
                hint="predict it in another call, or without --mosaic",
            )
        col, row = (t.c - t0.c) / t0.a, (t.f - t0.f) / t0.e
        placed.append((path, round(col), round(row), width, height))
    left, top = min(p[1] for p in placed), min(p[2] for p in placed)
    files = tuple(Placed(path, col - left, row - top, w, h) for path, col, row, w, h in placed)
    width = max(f.col_off + f.width for f in files)
    height = max(f.row_off + f.height for f in files)
    transform = t0 @ Affine.translation(left, top)
    if marking == "an internal mask":
        raise InputRasterError(
            "marks nodata by an internal mask, which a mosaic cannot carry",
            path=first,
            hint="set a nodata value (gdal_edit.py -a_nodata) or predict without --mosaic",
        )
    nodata = float(marking.removeprefix("the value ")) if marking.startswith("the value ") else None
    interps = tuple(i.name.capitalize() for i in interp)
    return Mosaic(files, width, height, crs, transform, count, dtype, interps, nodata, marking == "nothing")


def _nodata_marking(ds: Any) -> str:  # noqa: ANN401 (a rasterio dataset)
    """How a file marks nodata: ``the value <v>``, ``an alpha band``, ``an internal mask`` or ``nothing``."""
    from rasterio.enums import MaskFlags

    flags = set(ds.mask_flag_enums[0])
    if MaskFlags.alpha in flags:
        return "an alpha band"
    if MaskFlags.nodata in flags and ds.nodata is not None:
        return f"the value {ds.nodata!r}"
    if MaskFlags.per_dataset in flags:
        return "an internal mask"
    return "nothing"


def _grid_problem(
    crs: Any,  # noqa: ANN401 (rasterio CRS and Affine objects)
    t0: Any,  # noqa: ANN401
    count: int,
    dtype: str,
    other_crs: Any,  # noqa: ANN401
    t: Any,  # noqa: ANN401
    other_count: int,
    other_dtype: str,
) -> str | None:
    """Why a file is not on the first file's grid, or None."""
    if other_crs != crs:
        return f"CRS {other_crs} instead of {crs}"
    if (other_count, other_dtype) != (count, dtype):
        return f"{other_count} bands of {other_dtype} instead of {count} of {dtype}"
    if t.b or t.d or t0.b or t0.d:
        return "a rotated grid"
    if abs(t.a - t0.a) > 1e-9 * abs(t0.a) or abs(t.e - t0.e) > 1e-9 * abs(t0.e):
        return f"pixel size {t.a:g} x {-t.e:g} instead of {t0.a:g} x {-t0.e:g}"
    col, row = (t.c - t0.c) / t0.a, (t.f - t0.f) / t0.e
    if abs(col - round(col)) > _TOLERANCE or abs(row - round(row)) > _TOLERANCE:
        off = [round(value - round(value), 3) + 0.0 for value in (col, row)]  # + 0.0: no "-0.000"
        return f"origin {off[0]:+.3f}, {off[1]:+.3f} pixels off the grid"
    return None


def _scratch_folder(mosaic: Mosaic, first_output: Path) -> Path:
    """A hidden folder beside the first output, named after the inputs (stable, for ``--resume``)."""
    digest = hashlib.sha256("\n".join(name_key(f.path) for f in mosaic.files).encode()).hexdigest()[:12]
    return first_output.parent / f".aerialseg-mosaic-{digest}"


def mosaic_rows(
    paths: Sequence[InputRef],
    targets: Sequence[tuple[InputRef, Path]],
    claims: OutputClaims,
    card: ModelCard,
    opening: Opening,
    options: PredictOptions,
    events: BatchEvents,
    *,
    one_output: bool,
) -> BatchRun:
    """Predict ``paths`` (local files) as one mosaic (see the module docstring): a row per input, or one for the output.

    ``targets`` are placed as for any batch (with ``one_output``, the one pair of the whole
    mosaic) and each is claimed before any work. The mosaic is one run: if it fails, whatever
    the error, it is one failed row with the error's line; a network that fails its accuracy
    gate and Ctrl-C stop the call, as in a batch.
    """
    from .runners.gate import PrecisionGateError

    label = Path(f"mosaic of {len(paths)} files")
    rows_for = [(label, target) for _, target in targets] if one_output else list(targets)
    try:
        run = _predict_mosaic(paths, targets, rows_for, claims, card, opening, options, events)
    except PrecisionGateError:
        raise
    except Exception as exc:  # whatever it is, the mosaic's row says it in one line
        run = BatchRun((failure(label, exc),))
    for row in run:
        events.finished(row)
    return run


def _predict_mosaic(
    paths: Sequence[InputRef],
    targets: Sequence[tuple[InputRef, Path]],
    rows_for: Sequence[tuple[InputRef, Path]],
    claims: OutputClaims,
    card: ModelCard,
    opening: Opening,
    options: PredictOptions,
    events: BatchEvents,
) -> BatchRun:
    """:func:`mosaic_rows`'s work: claims, the mosaic's VRT, the run into scratch rasters, the cut."""
    start = time.perf_counter()
    outputs = [claims.claim(path, target) for path, target in targets]
    if all(item is None for item in outputs):  # --resume and every output there
        return BatchRun(tuple(skipped(path, target) for path, target in rows_for))
    mosaic = build_mosaic([path for path in paths if isinstance(path, Path)])
    scratch = _scratch_folder(mosaic, targets[0][1])
    inner = replace(  # the mosaic as one raster into scratch files; a resume continues them
        options,
        input=replace(options.input, mosaic=False),
        output=replace(options.output, vectorize=None, overwrite=True, skip_finished=False, cog=False),
    )
    whole = OutputSet.for_target(scratch / "mosaic_classes.tif", inner.output)
    with opening(events, len(paths)) as executor:
        try:
            rows, result = _predict_and_cut(mosaic, scratch, whole, rows_for, outputs, card, executor, inner, options)
        except BaseException:
            if not partial_paths(whole.classes)[1].exists():  # nothing a --resume could continue
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        shutil.rmtree(scratch, ignore_errors=True)
        engine, gate = executor.engine, executor.gate()
    seconds = time.perf_counter() - start
    total = sum(r.megapixels for r in rows) or 1.0
    shared = tuple(  # the one run's time and tiles, shared out by area
        replace(
            r,
            seconds=seconds * r.megapixels / total,
            tiles_run=round(result.tiles_run * r.megapixels / total),
            tiles_skipped=round(result.tiles_skipped * r.megapixels / total),
        )
        if r.status == "ok"
        else r
        for r in rows
    )
    return BatchRun(shared, engine, gate)


def _predict_and_cut(
    mosaic: Mosaic,
    scratch: Path,
    whole: OutputSet,
    targets: Sequence[tuple[InputRef, Path]],
    outputs: Sequence[OutputSet | None],
    card: ModelCard,
    executor: Executor,
    inner: PredictOptions,
    options: PredictOptions,
) -> tuple[list[PredictResult], PredictResult]:
    """The mosaic into the scratch rasters, then each output cut from them; the rows and the mosaic's result."""
    wanted = options.output
    scratch.mkdir(exist_ok=True)
    vrt, text = scratch / "mosaic.vrt", mosaic.vrt()
    if not vrt.is_file() or vrt.read_text() != text:  # the same file, untouched, is what a resume's key expects
        vrt.write_text(text)
    (result,) = executor.run([Job(vrt, whole)], inner, SilentEvents())
    if result.status != "ok":
        raise AerialsegError(f"the mosaic failed: {result.error}")
    tags = {Tag.MOSAIC: _describe(mosaic)}
    rows = []
    for (path, target), item in zip(targets, outputs, strict=True):
        if item is None:
            rows.append(skipped(path, target))
            continue
        placed = next((f for f in mosaic.files if f.path == path), None)
        window = (
            (0, 0, mosaic.width, mosaic.height)
            if placed is None
            else (placed.col_off, placed.row_off, placed.width, placed.height)
        )
        source_tag = {} if placed is None else {Tag.SOURCE: path.name}
        for (part, layout), whole_part in zip(item.layouts(card), whole.rasters, strict=True):
            cut_raster(whole_part, window, part, layout, overwrite=wanted.overwrite, tags=tags | source_tag)
        item.write_objects(wanted, card)
        rows.append(PredictResult(path, target, "ok", megapixels=window[2] * window[3] / 1e6))
    return rows, result


def _describe(mosaic: Mosaic) -> str:
    names = [f.path.name for f in mosaic.files]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"predicted as one mosaic of {len(names)} files ({mosaic.width} x {mosaic.height} pixels): {shown}"
