"""One vectorization: the class raster read in strips, each finished region written as it is found.

Every refusal comes before any work (output format, existing output, options, class
raster, classes, CRS, confidence raster); then regions stream from the strips into the
writer, so memory stays one strip plus the open regions and a batch of rows, and the
output appears only when complete (:func:`~aerialseg.atomic.atomic_output`), styled in the
class raster's colours: a GeoPackage holds its layers' styles, any other format gets a QML
file beside it, renamed into place just before the objects file. A class id
the raster's class names do not cover is found only while streaming; it stops the run
and nothing is written, since dropping those pixels would leave objects out of the map. The class raster may be a
URL or ``/vsi`` path (see :mod:`aerialseg.locations`): its strips are then fetched as read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_output, check_output
from ..conventions import NODATA_CLASS
from ..errors import InputRasterError
from ..locations import InputRef, RasterRef, as_input, local_files, public_url, reading
from ..raster import block_cache, open_raster
from ..styles import ClassStyle, categorized_qml, fill_qml, qml_path, raster_sidecars
from .classes import class_colors, class_names, layer_names, resolve_classes
from .features import columns, features
from .frame import Frame
from .regions import Strip, iter_region_batches
from .settings import Cleanup, VectorizeOptions, check_car_geometry, check_sizes, cleanup_for
from .strips import open_confidence, read_strips, reporting, score_reader, strip_height
from .writer import VectorWriter, format_for

__all__ = ["VectorizeResult", "vectorize"]

_DEFAULT_OPTIONS = VectorizeOptions()


@dataclass(frozen=True)
class VectorizeResult:
    """Objects written per layer (keyed by layer name: the class name made safe, see ``layer_names``), and the time."""

    input: InputRef
    output: Path
    counts: dict[str, int]
    seconds: float
    regions: int  # before clean-up dropped the small ones


def vectorize(
    raster: str | os.PathLike[str] | RasterRef,
    output: str | os.PathLike[str],
    options: VectorizeOptions = _DEFAULT_OPTIONS,
    progress: Callable[[int, int], None] | None = None,
) -> VectorizeResult:
    """Vectorize ``raster`` (a class raster) into ``output`` (.gpkg, .parquet, .fgb or .geojson).

    ``progress(rows_done, rows_total)`` is called after every strip.
    """
    import rasterio

    start = time.perf_counter()
    raster, output = as_input(raster), Path(output)
    reads = [*local_files([raster]), *([options.confidence] if options.confidence else [])]
    style = qml_path(output) if format_for(output) != "GPKG" else None
    check_output(output, options.overwrite, reads)
    if style is not None:  # nor may it replace the class raster's own style
        sidecars = raster_sidecars(raster) if isinstance(raster, Path) else []
        check_output(style, options.overwrite, [*reads, *sidecars])
    check_car_geometry(options)
    check_sizes(options)
    with ExitStack() as stack:
        stack.enter_context(reading(raster))
        dataset = stack.enter_context(open_raster(raster))
        # GDAL's block cache (5 % of RAM by default) would keep every strip read; one row of
        # blocks of both rasters is all that is ever re-read.
        stack.enter_context(rasterio.Env(**block_cache(64)))
        _check_class_raster(dataset, raster)
        names = class_names(dataset)
        classes = resolve_classes(options.classes, names, raster)
        layers = layer_names(classes)
        frame = Frame.for_raster(raster, dataset.crs, dataset.transform, dataset.height, dataset.width)
        cleanups = {name: cleanup_for(name, options) for _, name in classes}
        layer_of = dict(classes)
        confidence_ds: Any = None
        bands: dict[int, int] = {}
        if options.confidence is not None:
            confidence_ds, bands = open_confidence(options.confidence, dataset, classes, raster)
            stack.enter_context(confidence_ds)
        metadata = _metadata(raster, classes, cleanups, options.confidence)
        rows_per_strip = strip_height(dataset, options.strip_rows)
        counts = {layer: 0 for layer in layers.values()}
        regions = cars = 0
        colors = class_colors(dataset, classes)
        legend = [ClassStyle(class_id, name, colors[class_id]) for class_id, name in classes]
        styles = {layers[c.value]: fill_qml(c.color) for c in legend}
        with atomic_output(output, options.overwrite) as tmp:
            writer = VectorWriter(
                tmp, dataset.crs, metadata, tmp.with_name(tmp.stem + ".work.gpkg"), output.stem, styles
            )
            try:
                for class_id, name in classes:
                    writer.declare(layers[class_id], columns(name, confidence_ds is not None, cleanups[name].instances))
                strips = read_strips(dataset, confidence_ds, bands, rows_per_strip)
                scores = score_reader(confidence_ds, bands) if confidence_ds is not None else None
                if names is not None:
                    strips = _known_ids(strips, len(names), [i for i, _ in classes], raster, names)
                if progress:
                    strips = reporting(strips, rows_per_strip, dataset.height, progress)
                for batch in iter_region_batches(strips, list(layer_of), dataset.height, options.parallel):
                    regions += len(batch)
                    confident = confidence_ds is not None
                    rows = features(batch, layer_of, cleanups, frame, dataset.width, dataset.height, confident, scores)
                    for region, found in zip(batch, rows, strict=True):
                        for row in found:
                            if "merged" in row:  # a car of its own: numbered in the order written
                                row["car_id"] = cars = cars + 1
                            writer.add(layers[region.class_id], row)
                            counts[layers[region.class_id]] += 1
                writer.close()
            except BaseException:
                writer.discard()
                raise
            if style is not None:  # written once the objects are: a failure while writing them is named after them
                _write_style(style, legend, options.overwrite)
    return VectorizeResult(raster, output, counts, time.perf_counter() - start, regions)


def _write_style(style: Path, legend: list[ClassStyle], overwrite: bool) -> None:
    """The QML of a single-layer output (polygons coloured by their ``class``), written then renamed.

    Written inside the output's own :func:`atomic_output`, after its objects: renamed just
    before the output, so an output that exists has its style.
    """
    with atomic_output(style, overwrite) as tmp:
        tmp.write_text(categorized_qml("class", legend), encoding="utf-8")


def _check_class_raster(dataset: Any, path: InputRef) -> None:
    """Refuse a raster whose first band does not hold integer class ids."""
    if dataset.count < 1 or not np.issubdtype(np.dtype(dataset.dtypes[0]), np.integer):
        raise InputRasterError(
            "is not a class raster (needs integer class ids in band 1)",
            path=path,
            hint="vectorize the _classes.tif written by predict",
        )


def _known_ids(
    strips: Iterator[Strip], count: int, requested: list[int], path: InputRef, names: list[str]
) -> Iterator[Strip]:
    """``strips`` unchanged, after checking every data pixel holds one of the ``count`` named class ids.

    Ids the user named explicitly (``--classes roof=9``) count as known; nodata pixels and
    :data:`NODATA_CLASS` are not class ids.
    """
    extra = [i for i in requested if i >= count]
    for strip in strips:
        row_off, classes, nodata = strip[0], strip[1][1:-1], strip[2][1:-1]
        unknown = ((classes < 0) | (classes >= count)) & ~nodata & (classes != NODATA_CLASS)
        if extra and unknown.any():
            unknown &= ~np.isin(classes, extra)
        if unknown.any():
            rows, cols = np.nonzero(unknown)
            found = ", ".join(str(v) for v in np.unique(classes[unknown])[:5])
            raise InputRasterError(
                f"holds class id {found} (first at row {row_off + rows[0]}, column {cols[0]}) but names only "
                f"{count} classes, 0..{count - 1} ({', '.join(names)})",
                path=path,
                hint="vectorize the class raster written with this model, or name the id, e.g. --classes "
                f"other={int(classes[rows[0], cols[0]])}",
            )
        yield strip


def _metadata(
    raster: InputRef,
    classes: list[tuple[int, str]],
    cleanups: dict[str, Cleanup],
    confidence: str | os.PathLike[str] | None,
) -> dict[str, str]:
    """Provenance written into the output: what was vectorized, how, by which version and when."""
    from .. import __version__

    return {
        "aerialseg_version": __version__,
        "source": str(raster.resolve()) if isinstance(raster, Path) else public_url(raster.spelling),
        "classes": json.dumps({name: class_id for class_id, name in classes}),
        "cleanup": json.dumps({name: asdict(c) for name, c in cleanups.items()}),
        "confidence": str(confidence or ""),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
