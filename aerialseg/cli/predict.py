"""``aerialseg predict``: orthophotos in, georeferenced class rasters out, many files per call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import console
from .options import (
    DEFAULT_BACKEND,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_PRECISION,
    Backend,
    Calibration,
    Device,
    JsonOutput,
    MinAgreement,
    Overwrite,
    Precision,
)


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """``"4,1,2"`` -> ``(4, 1, 2)``; None stays None."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter("give 1-based band numbers separated by commas, e.g. 4,1,2", param_hint="--bands")


def predict_command(
    inputs: Annotated[list[str], typer.Argument(help="Rasters, folders or glob patterns.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Weights name, weights file, or exported .onnx file.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file (one input only).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Folder for <input>_classes.tif (default: beside each input).")
    ] = None,
    backend: Backend = DEFAULT_BACKEND,
    device: Device = None,
    precision: Precision = DEFAULT_PRECISION,
    min_agreement: MinAgreement = DEFAULT_MIN_AGREEMENT,
    calibration: Calibration = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile size in pixels (default: the model card's).")] = None,
    overlap: Annotated[int | None, typer.Option(help="Overlap in pixels (default: the model card's).")] = None,
    blend: Annotated[str, typer.Option(help="cosine, linear, or center (plain centre crop).")] = "cosine",
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 1,
    bands: Annotated[str | None, typer.Option(help="Input bands in the model's order, e.g. 4,1,2.")] = None,
    scale: Annotated[
        float | None, typer.Option(help="Divisor for non-8-bit input (default: 2-98 percentile stretch).")
    ] = None,
    tta: Annotated[str | None, typer.Option(help="Test-time augmentation: flip (4 views) or d4 (8).")] = None,
    gsd: Annotated[
        str, typer.Option(help="auto: predict at the model's GSD when the input's differs >10 %; native: never.")
    ] = "auto",
    allow_no_crs: Annotated[bool, typer.Option("--allow-no-crs", help="Accept rasters without a CRS.")] = False,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Also write <output>_probabilities.tif (a band per class, x254).")
    ] = False,
    uncertainty: Annotated[
        bool,
        typer.Option("--uncertainty", help="Also write <output>_uncertainty.tif: confidence, margin, entropy (x254)."),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of the same input, model and settings.")
    ] = False,
    vectorize: Annotated[
        str | None,
        typer.Option(help="Also write <output>_objects.gpkg with these classes' polygons, e.g. building,car."),
    ] = None,
    objects_format: Annotated[
        str, typer.Option(help="Format of the objects file: gpkg, parquet, fgb or geojson.")
    ] = "gpkg",
    regularize: Annotated[bool, typer.Option("--regularize", help="Square vectorized buildings.")] = False,
    car_geometry: Annotated[str, typer.Option(help="Vectorized cars as outline or box.")] = "outline",
    cluster: Annotated[
        str | None,
        typer.Option(help="Run on Dask: local, local:N (N worker processes) or a scheduler address tcp://host:8786."),
    ] = None,
    split_rows: Annotated[
        int, typer.Option(help="With --cluster: rasters higher than this are split into bands of rows across workers.")
    ] = 4096,
    overwrite: Overwrite = False,
    json_output: JsonOutput = False,
) -> None:
    """Predict class rasters; prints a summary table and exits 1 if any input failed."""
    from ..pipeline import PredictOptions, expand_inputs, predict_many
    from ..runners import RunnerSpec, gate_result
    from ..vector import VectorizeOptions
    from .vectorize import parse_classes

    if gsd not in ("auto", "native"):
        raise typer.BadParameter("use 'auto' or 'native'", param_hint="--gsd")
    if calibration is not None and precision.value != "int8":
        raise typer.BadParameter("calibrates int8 only; add --precision int8", param_hint="--calibration")

    options = PredictOptions(
        tile_size=tile_size,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        bands=parse_bands(bands),
        scale=scale,
        allow_no_crs=allow_no_crs,
        gsd=gsd,
        overwrite=overwrite,
        resume=resume,
        probabilities=probabilities,
        uncertainty=uncertainty,
        extra_tags={"AERIALSEG_TTA": tta or "none"},
        vectorize=VectorizeOptions(classes=parse_classes(vectorize), regularize=regularize, car_geometry=car_geometry)
        if vectorize is not None
        else None,
        objects_suffix=f".{objects_format.lstrip('.')}",
    )
    spec = RunnerSpec(model, backend.value, device, tta, precision.value, min_agreement, calibration)
    try:
        paths = expand_inputs(inputs)
        if cluster:
            results, description = _on_cluster(cluster, paths, spec, options, out_dir, output, split_rows, json_output)
        else:
            choice = spec.resolve()
            if not json_output:
                console.info(f"engine: {choice.describe()}")
            runner = spec.open(choice)
            with console.TileProgress(enabled=None if not json_output else False, files=len(paths)) as progress:
                results = predict_many(
                    paths,
                    runner,
                    options,
                    out_dir=out_dir,
                    output=output,
                    progress=progress,
                    on_result=progress.file_done,
                )
            description = runner.description
            if (gate := gate_result(runner)) is not None and not json_output:
                console.info(f"{gate.precision} accuracy gate: {gate.describe()}")
    except KeyboardInterrupt:
        console.error("interrupted; run the same command with --resume to continue where it stopped")
        raise typer.Exit(130) from None
    if json_output:
        console.print_json([r.__dict__ | {"megapixels_per_second": r.megapixels_per_second} for r in results])
    else:
        console.table(
            f"aerialseg predict ({description})",
            ["file", "megapixels", "seconds", "MP/s", "tiles run / skipped", "status"],
            [
                (
                    r.input.name,
                    f"{r.megapixels:.2f}",
                    f"{r.seconds:.1f}",
                    f"{r.megapixels_per_second:.2f}",
                    f"{r.tiles_run} / {r.tiles_skipped}",
                    r.status,
                )
                for r in results
            ],
            right=["megapixels", "seconds", "MP/s"],
        )
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        console.error(r.error or "failed")
    if not results:
        console.error("no input rasters found")
    if failed or not results:
        raise typer.Exit(1)


def _on_cluster(address, paths, spec, options, out_dir, output, split_rows, json_output):  # noqa: ANN001, ANN202
    """Run the batch on a Dask cluster; ``(results, description)``."""
    from ..cluster import close_client, open_client, predict_on_cluster

    client = open_client(address)
    try:
        workers = len(client.scheduler_info()["workers"])
        with console.ItemProgress("cluster tasks", enabled=None if not json_output else False) as progress:
            results = predict_on_cluster(
                paths, spec, options, client, out_dir=out_dir, output=output, split_rows=split_rows, progress=progress
            )
    finally:
        close_client(client)
    return results, f"{spec.backend} backend, {spec.precision} precision, on {workers} Dask worker(s) at {address}"
