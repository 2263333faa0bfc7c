"""``aerialseg doctor``: a pre-flight report before a long predict run, from predict's own options."""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import InputOptions, OutputOptions, PredictOptions, TilingOptions
from ..runners import RunnerSpec
from . import console
from .options import (
    GSD,
    Asset,
    Backend,
    Bands,
    Device,
    JsonOutput,
    Model,
    Overlap,
    Precision,
    Probabilities,
    Scale,
    TileSize,
    Uncertainty,
    chosen_model,
    parse_bands,
    runner_spec,
)


def doctor_command(
    raster: Annotated[str, typer.Argument(help="Orthophoto to check: a file, URL, /vsi path or STAC item (.json).")],
    model: Model,
    tile_size: TileSize = TilingOptions.tile_size,
    overlap: Overlap = TilingOptions.overlap,
    bands: Bands = None,
    scale: Scale = InputOptions.scale,
    gsd: GSD = InputOptions.gsd,
    asset: Asset = InputOptions.asset,
    probabilities: Probabilities = OutputOptions.probabilities,
    uncertainty: Uncertainty = OutputOptions.uncertainty,
    backend: Backend = RunnerSpec.backend,
    precision: Precision = RunnerSpec.precision,
    device: Device = RunnerSpec.device,
    json_output: JsonOutput = False,
) -> None:
    """Layout, CRS, GSD vs the model, band mapping, nodata share, memory and time; exits 1 on errors."""
    from ..diagnosis import doctor

    options = PredictOptions(
        tiling=TilingOptions(tile_size, overlap),
        input=InputOptions(bands=parse_bands(bands), scale=scale, gsd=gsd, asset=asset),
        output=OutputOptions(probabilities=probabilities, uncertainty=uncertainty),
    )
    model = chosen_model(model, announce=not json_output)
    report = doctor(raster, runner_spec(model, backend, device, precision), options)
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
