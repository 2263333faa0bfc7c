"""``aerialseg doctor``: a pre-flight report before a long predict run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import console
from .options import DEFAULT_BACKEND, DEFAULT_PRECISION, Backend, Device, JsonOutput, Precision
from .predict import parse_bands


def doctor_command(
    raster: Annotated[Path, typer.Argument(help="Orthophoto to check.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Weights name, weights file, or exported .onnx file.")],
    tile_size: Annotated[int | None, typer.Option(help="Tile size in pixels (default: the model card's).")] = None,
    overlap: Annotated[int | None, typer.Option(help="Overlap in pixels (default: the model card's).")] = None,
    bands: Annotated[str | None, typer.Option(help="Input bands in the model's order, e.g. 4,1,2.")] = None,
    scale: Annotated[float | None, typer.Option(help="Divisor for non-8-bit input.")] = None,
    gsd: Annotated[str, typer.Option(help="auto or native (as for predict).")] = "auto",
    backend: Backend = DEFAULT_BACKEND,
    precision: Precision = DEFAULT_PRECISION,
    device: Device = None,
    json_output: JsonOutput = False,
) -> None:
    """Layout, CRS, GSD vs the model, band mapping, nodata share, memory and time; exits 1 on errors."""
    from ..doctor import doctor

    report = doctor(
        raster,
        model,
        tile_size=tile_size,
        overlap=overlap,
        bands=parse_bands(bands),
        scale=scale,
        gsd=gsd,
        backend=backend.value,
        precision=precision.value,
        device=device,
    )
    if json_output:
        console.print_json(
            {
                "path": str(report.path),
                "ok": report.ok,
                "facts": report.facts,
                "findings": [f.__dict__ for f in report.findings],
            }
        )
    else:
        console.table(f"aerialseg doctor: {report.path}", ["", ""], list(report.facts.items()))
        if report.findings:
            console.table(
                "Findings", ["level", "finding", "fix"], [(f.level, f.message, f.fix) for f in report.findings]
            )
        else:
            console.out.print("No problems found.")
    if not report.ok:
        raise typer.Exit(1)
