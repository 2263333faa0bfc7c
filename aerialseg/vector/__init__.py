"""vectorize(): a class raster -> one polygon layer per class, streamed strip by strip.

Regions are found exactly and merged across strips (:mod:`.regions`), so no polygon is cut
at a strip or tile border and memory does not grow with the raster's height; each
finished region is cleaned and measured in ground metres (:mod:`.shapes`, :mod:`.frame`)
and appended to the output (:mod:`.writer`), written to a temporary file and renamed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_output, check_output
from ..errors import AerialsegError, InputRasterError
from .frame import Frame
from .regions import Region, iter_regions
from .shapes import DEFAULT_CLEANUP, Cleanup, canonical, clean, oriented_box
from .writer import VectorWriter, format_for

__all__ = ["VectorizeOptions", "VectorizeResult", "vectorize", "class_kind", "resolve_classes", "Cleanup"]

STRIP_ROWS = 512


@dataclass(frozen=True)
class VectorizeOptions:
    """Settings of one vectorization (shared by the CLI, ``predict --vectorize`` and the API).

    ``classes``: names, ids, or ``name=id`` (None: every building and car class). The
    clean-up defaults depend on the class (:data:`~.shapes.DEFAULT_CLEANUP`); ``min_area_m2``,
    ``fill_holes_m2``, ``simplify`` (with ``simplify_unit`` px or m) and ``regularize``
    override them for every class, ``cleanup`` per class name. ``car_geometry``: ``outline``
    or ``box`` (the oriented rectangle). ``confidence``: a probability raster (band per
    class) or uncertainty raster (``confidence`` band) of the same grid, for mean/max
    confidence attributes.
    """

    classes: tuple[str, ...] | None = None
    confidence: str | os.PathLike[str] | None = None
    min_area_m2: float | None = None
    fill_holes_m2: float | None = None
    simplify: float | None = None
    simplify_unit: str = "px"
    regularize: bool = False
    car_geometry: str = "outline"
    cleanup: dict[str, Cleanup] = field(default_factory=dict)
    strip_rows: int = STRIP_ROWS
    overwrite: bool = False


@dataclass(frozen=True)
class VectorizeResult:
    """Objects written per layer, and the time taken."""

    input: Path
    output: Path
    counts: dict[str, int]
    seconds: float
    regions: int  # before clean-up dropped the small ones


def class_kind(name: str) -> str | None:
    """``building``, ``car`` or None, from a class name (``static_car`` is a car)."""
    lower = name.lower().replace("-", "_").replace(" ", "_")
    if "building" in lower:
        return "building"
    if lower == "car" or lower.endswith("_car") or lower.startswith("car_") or lower == "cars":
        return "car"
    return None


def resolve_classes(requested: Sequence[str] | None, names: list[str] | None, path: Path) -> list[tuple[int, str]]:
    """``(class id, layer name)`` for each requested class of the raster at ``path``."""
    available = ", ".join(f"{i}={n}" for i, n in enumerate(names)) if names else "none recorded"
    if requested is None:
        if names is None:
            raise AerialsegError(
                "class raster has no class names in its metadata",
                path=path,
                hint="name the classes by id, e.g. --classes building=1,car=4",
            )
        chosen = [(i, n) for i, n in enumerate(names) if class_kind(n)]
        if not chosen:
            raise AerialsegError(
                f"no building or car class (classes: {available})", path=path, hint="choose with --classes"
            )
        return chosen
    out: list[tuple[int, str]] = []
    for item in requested:
        item = item.strip()
        name, _, number = item.partition("=")
        if number:
            if not number.strip().isdigit():
                raise AerialsegError(f"class {item!r}: the id after '=' must be a number", path=path)
            out.append((int(number), name.strip()))
        elif item.isdigit():
            class_id = int(item)
            if names is not None and class_id >= len(names):
                raise AerialsegError(f"no class id {class_id} (classes: {available})", path=path)
            out.append((class_id, names[class_id] if names else f"class_{class_id}"))
        elif names is None:
            raise AerialsegError(
                f"class {item!r} cannot be found: the raster has no class names",
                path=path,
                hint=f"give its id instead, e.g. --classes {item}=1",
            )
        else:
            matches = [i for i, n in enumerate(names) if n.lower() == item.lower()]
            if not matches and class_kind(item) == "car":  # "car" also means UAVid's moving/static cars
                matches = [i for i, n in enumerate(names) if class_kind(n) == "car"]
            if not matches:
                raise AerialsegError(
                    f"no class {item!r} (classes: {available})", path=path, hint="choose among the classes listed"
                )
            out += [(i, names[i]) for i in matches]
    unique = list(dict.fromkeys(out))
    if len({i for i, _ in unique}) != len(unique):
        raise AerialsegError("a class id is requested under two names", path=path)
    return unique


def _cleanup_for(name: str, options: VectorizeOptions) -> Cleanup:
    base = options.cleanup.get(name) or DEFAULT_CLEANUP.get(class_kind(name) or "", Cleanup())
    changes = {
        key: value
        for key, value in (
            ("min_area_m2", options.min_area_m2),
            ("fill_holes_m2", options.fill_holes_m2),
            ("simplify", options.simplify),
        )
        if value is not None
    }
    if options.simplify is not None:
        changes["simplify_unit"] = options.simplify_unit
    kind = class_kind(name)
    if options.regularize and kind == "building":
        changes["regularize"] = True
    if kind == "car":
        changes["box"] = options.car_geometry == "box"
    return replace(base, **changes)


def _class_names(dataset) -> list[str] | None:
    tags = dataset.tags(1)
    if "CLASS_NAMES" in tags:
        try:
            names = json.loads(tags["CLASS_NAMES"])
        except ValueError:
            names = None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    return None


def _confidence_bands(dataset, classes: list[tuple[int, str]], path: Path) -> dict[int, int]:
    """Band (1-based) of the confidence raster holding each class's confidence."""
    descriptions = [d or "" for d in dataset.descriptions]
    if "confidence" in descriptions:
        band = descriptions.index("confidence") + 1
        return {class_id: band for class_id, _ in classes}
    bands = {}
    for class_id, name in classes:
        label = f"p({name})"
        if label in descriptions:
            bands[class_id] = descriptions.index(label) + 1
        elif class_id < dataset.count and len(descriptions) > class_id and descriptions[class_id].startswith("p("):
            bands[class_id] = class_id + 1
        else:
            raise InputRasterError(
                f"has no band for class {name!r} (bands: {', '.join(descriptions)})",
                path=path,
                hint="pass the _probabilities.tif or _uncertainty.tif written by predict with this class raster",
            )
    return bands


def _strips(dataset, confidence_ds, bands: dict[int, int], rows_per_strip: int) -> Iterator[tuple]:
    """``(row_off, classes with halo, nodata with halo, confidence)`` for consecutive strips."""
    from rasterio.windows import Window

    height, width = dataset.height, dataset.width
    for row_off in range(0, height, rows_per_strip):
        rows = min(rows_per_strip, height - row_off)
        top, bottom = max(row_off - 1, 0), min(row_off + rows + 1, height)
        window = Window(0, top, width, bottom - top)
        classes = dataset.read(1, window=window)
        nodata = dataset.read_masks(1, window=window) == 0
        pad = ((row_off - top == 0) * 1, (row_off + rows + 1 - bottom))
        classes = np.pad(classes, (pad, (0, 0)))
        nodata = np.pad(nodata, (pad, (0, 0)))
        conf = None
        if confidence_ds is not None:
            inner = classes[1:-1]
            conf = np.zeros(inner.shape, np.float32)
            own = Window(0, row_off, width, rows)
            for band in sorted(set(bands.values())):
                values = confidence_ds.read(band, window=own).astype(np.float32) / 254.0
                ids = [c for c, b in bands.items() if b == band]
                where = np.isin(inner, ids)
                conf[where] = values[where]
        yield row_off, classes, nodata, conf


def vectorize(
    raster: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: VectorizeOptions = VectorizeOptions(),
    progress: Callable[[int, int], None] | None = None,
) -> VectorizeResult:
    """Vectorize ``raster`` (a class raster) into ``output`` (.gpkg, .parquet, .fgb or .geojson).

    ``progress(rows_done, rows_total)`` is called after every strip.
    """
    import rasterio

    from .. import __version__

    start = time.perf_counter()
    raster, output = Path(raster), Path(output)
    format_for(output)
    check_output(output, options.overwrite)
    if options.car_geometry not in ("outline", "box"):
        raise AerialsegError(f"unknown car geometry {options.car_geometry!r}", hint="use outline or box")
    try:
        dataset = rasterio.open(raster)
    except rasterio.errors.RasterioError as exc:
        raise InputRasterError(f"cannot open as a raster ({exc})", path=raster) from exc
    # GDAL's block cache (5 % of RAM by default) would keep every strip read; one row of
    # blocks of both rasters is all that is ever re-read.
    with dataset, rasterio.Env(GDAL_CACHEMAX=64):
        if dataset.count < 1 or not np.issubdtype(np.dtype(dataset.dtypes[0]), np.integer):
            raise InputRasterError(
                "is not a class raster (needs integer class ids in band 1)",
                path=raster,
                hint="vectorize the _classes.tif written by predict",
            )
        classes = resolve_classes(options.classes, _class_names(dataset), raster)
        frame = Frame.for_raster(raster, dataset.crs, dataset.transform, dataset.height, dataset.width)
        cleanups = {name: _cleanup_for(name, options) for _, name in classes}
        layer_of = {class_id: name for class_id, name in classes}
        confidence_ds = bands = None
        if options.confidence is not None:
            try:
                confidence_ds = rasterio.open(options.confidence)
            except rasterio.errors.RasterioError as exc:
                raise InputRasterError(f"cannot open as a raster ({exc})", path=options.confidence) from exc
            if (confidence_ds.width, confidence_ds.height) != (dataset.width, dataset.height):
                raise InputRasterError(
                    f"is {confidence_ds.width}x{confidence_ds.height}, the class raster "
                    f"{dataset.width}x{dataset.height}",
                    path=options.confidence,
                    hint="use the confidence raster written with this class raster",
                )
            bands = _confidence_bands(confidence_ds, classes, Path(options.confidence))
        metadata = {
            "aerialseg_version": __version__,
            "source": str(raster.resolve()),
            "classes": json.dumps({name: class_id for class_id, name in classes}),
            "cleanup": json.dumps({name: asdict(c) for name, c in cleanups.items()}),
            "confidence": str(options.confidence or ""),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        rows_per_strip = max(1, options.strip_rows)
        block = dataset.block_shapes[0][0]
        if block > 1 and rows_per_strip > block:
            rows_per_strip -= rows_per_strip % block  # whole blocks per read
        counts = {name: 0 for _, name in classes}
        regions = 0
        try:
            with atomic_output(output, options.overwrite) as tmp:
                writer = VectorWriter(tmp, dataset.crs, metadata, tmp.with_name(tmp.stem + ".work.gpkg"))
                try:
                    for _, name in classes:
                        writer.declare(name, _columns(name, confidence_ds is not None))
                    strips = _strips(dataset, confidence_ds, bands or {}, rows_per_strip)
                    if progress:
                        strips = _reporting(strips, rows_per_strip, dataset.height, progress)
                    for region in iter_regions(strips, list(layer_of), dataset.height):
                        regions += 1
                        name = layer_of[region.class_id]
                        row = _feature(
                            region,
                            name,
                            cleanups[name],
                            frame,
                            dataset.width,
                            dataset.height,
                            confidence_ds is not None,
                        )
                        if row is not None:
                            writer.add(name, row)
                            counts[name] += 1
                    writer.close()
                except BaseException:
                    writer.discard()
                    raise
        finally:
            if confidence_ds is not None:
                confidence_ds.close()
    return VectorizeResult(raster, output, counts, time.perf_counter() - start, regions)


def _reporting(strips, rows_per_strip: int, height: int, progress: Callable[[int, int], None]):
    for strip in strips:
        yield strip
        progress(min(strip[0] + rows_per_strip, height), height)


def _columns(name: str, confidence: bool) -> dict[str, str]:
    columns = {
        "class": "object",
        "class_id": "int64",
        "area_m2": "float64",
        "perimeter_m": "float64",
        "touches_nodata": "bool",
        "touches_raster_edge": "bool",
    }
    if confidence:
        columns |= {"mean_confidence": "float64", "max_confidence": "float64"}
    if class_kind(name) == "car":
        columns |= {"length_m": "float64", "width_m": "float64", "heading_deg": "float64"}
    return columns


def _feature(
    region: Region, name: str, cleanup: Cleanup, frame: Frame, width: int, height: int, confidence: bool
) -> dict | None:
    """The output row of one region, or None when clean-up drops it."""
    pixel = canonical(region.geometry)
    x0, y0, x1, y1 = pixel.bounds
    world = frame.pixel_to_world(pixel)
    plain = not (cleanup.min_area_m2 or cleanup.fill_holes_m2 or cleanup.simplify or cleanup.regularize)
    metric = frame.to_metric(world)
    shape = metric if plain else clean(metric, cleanup, frame.pixel_m)
    if shape is None:
        return None
    row = {
        "class": name,
        "class_id": region.class_id,
        "area_m2": float(shape.area),
        "perimeter_m": float(shape.length),
        "touches_nodata": region.touches_nodata,
        "touches_raster_edge": bool(x0 <= 0 or y0 <= 0 or x1 >= width or y1 >= height),
    }
    if confidence:
        row["mean_confidence"] = region.confidence_sum / region.pixels if region.pixels else 0.0
        row["max_confidence"] = region.confidence_max
    if class_kind(name) == "car":
        box = oriented_box(shape)
        row |= {"length_m": box.length_m, "width_m": box.width_m, "heading_deg": box.heading_deg}
        if cleanup.box:
            shape = box.polygon
    row["geometry"] = world if plain and shape is metric else frame.from_metric(shape)
    return row
