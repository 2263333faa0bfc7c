"""``aerialseg vectorize``: class rasters in, one polygon layer per class out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ..locations import as_input
from ..vector import VectorizeOptions
from ..vector.writer import FORMATS
from . import console
from .options import CarGeometry, CarInstances, JsonOutput, Overwrite, ProgressStyle, Regularize


def parse_classes(text: str | None) -> tuple[str, ...] | None:
    """``"building,car"`` -> ``("building", "car")``; None or empty stays None (the defaults)."""
    items = tuple(item.strip() for item in (text or "").split(",") if item.strip())
    return items or None


def parse_simplify(text: str | None) -> tuple[float | None, str]:
    """``"1.5px"`` / ``"0.3m"`` / ``"2"`` (pixels) -> ``(value, unit)``."""
    if text is None:
        return None, "px"
    value, unit = (text[:-2], "px") if text.endswith("px") else (text[:-1], "m") if text.endswith("m") else (text, "px")
    try:
        tolerance = float(value)
    except ValueError:
        tolerance = math.nan
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise typer.BadParameter("give a tolerance like 1px or 0.3m (0: none)", param_hint="--simplify")
    return tolerance, unit


def check_output_suffix(path: Path) -> Path:
    """``-o``: a file whose suffix names a vector format, refused as a usage error before any work."""
    if path.suffix.lower() not in FORMATS:
        suffix = repr(path.suffix) if path.suffix else "no suffix"
        raise typer.BadParameter(f"{path.name}: {suffix} is no vector format; end it in {', '.join(sorted(FORMATS))}")
    return path


ClassesOption = Annotated[
    str | None,
    typer.Option(
        "--classes", help="Classes to vectorize: names, ids or name=id, comma-separated (default: building,car)."
    ),
]


def vectorize_command(
    raster: Annotated[
        str, typer.Argument(help="Class raster (e.g. a _classes.tif written by predict): a file, URL or /vsi path.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            callback=check_output_suffix,
            help="Output: .gpkg (a layer per class), .parquet, .fgb or .geojson.",
        ),
    ],
    classes: ClassesOption = None,
    confidence: Annotated[
        Path | None,
        typer.Option(
            help="Probability or uncertainty raster of the same grid: adds mean/max confidence, and touching cars "
            "are split where their scores dip."
        ),
    ] = None,
    min_area: Annotated[float | None, typer.Option(min=0.0, help="Drop objects smaller than this (m²).")] = None,
    fill_holes: Annotated[float | None, typer.Option(min=0.0, help="Fill holes smaller than this (m²).")] = None,
    simplify: Annotated[str | None, typer.Option(help="Simplification tolerance, e.g. 1px or 0.3m (0: none).")] = None,
    regularize: Regularize = VectorizeOptions.regularize,
    car_geometry: CarGeometry = VectorizeOptions.car_geometry,
    car_instances: CarInstances = VectorizeOptions.car_instances,
    strip_rows: Annotated[int, typer.Option(min=1, help="Rows read per strip.")] = VectorizeOptions.strip_rows,
    overwrite: Overwrite = VectorizeOptions.overwrite,
    json_output: JsonOutput = False,
    progress_style: ProgressStyle = "auto",
) -> None:
    """Polygons of buildings, cars or any class, with areas, perimeters and (cars) oriented boxes."""
    from ..vector import vectorize

    tolerance, unit = parse_simplify(simplify)
    options = VectorizeOptions(
        classes=parse_classes(classes),
        confidence=confidence,
        min_area_m2=min_area,
        fill_holes_m2=fill_holes,
        simplify=tolerance,
        simplify_unit=unit,
        regularize=regularize,
        car_geometry=car_geometry,
        car_instances=car_instances,
        strip_rows=strip_rows,
        overwrite=overwrite,
    )
    name = as_input(raster).name
    with console.RowProgress(name, console.bar_style(progress_style, json_output)) as progress:
        result = vectorize(raster, output, options, progress=progress)
    if json_output:
        console.print_json(result.__dict__)
        return
    console.table(
        f"{result.output.name} ({result.seconds:.1f} s)",
        ["layer", "objects"],
        [(layer, count) for layer, count in result.counts.items()],
        right=["objects"],
    )
