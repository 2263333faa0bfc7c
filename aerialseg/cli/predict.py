"""``aerialseg predict``: orthophotos in, georeferenced class rasters out, many files per call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import InputOptions, OutputOptions, PredictOptions, TilingOptions
from ..runners import RunnerSpec
from ..vector import VectorizeOptions
from . import console
from .options import (
    GSD,
    TTA,
    AllowNoCRS,
    Asset,
    Backend,
    Bands,
    BatchSize,
    Blend,
    Calibration,
    CarGeometry,
    CarInstances,
    Device,
    JsonOutput,
    MinAgreement,
    Model,
    ObjectsFormat,
    Overlap,
    Overwrite,
    Precision,
    Probabilities,
    ProgressStyle,
    Regularize,
    Scale,
    Threshold,
    TileSize,
    Uncertainty,
    parse_bands,
    runner_spec,
)
from .vectorize import check_output_suffix


def _cluster_address(address: str | None) -> str | None:
    """``--cluster`` checked while the options are read: a malformed ``local:N`` is a usage error."""
    if address is not None:
        from ..cluster import check_address
        from ..errors import AerialsegError

        try:
            check_address(address)
        except AerialsegError as exc:
            raise typer.BadParameter(str(exc)) from None
    return address


def check_objects_path(path: Path | None) -> Path | None:
    """``--objects``: a vector format's suffix, refused as a usage error before any work."""
    return check_output_suffix(path) if path is not None else None


def predict_command(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Rasters, folders, glob patterns, URLs (https, s3, gs, az, /vsi) or STAC items (.json)."),
    ],
    model: Model,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file (one input only).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Folder for <input>_classes.tif (default: beside each input).")
    ] = None,
    backend: Backend = RunnerSpec.backend,
    device: Device = RunnerSpec.device,
    precision: Precision = RunnerSpec.precision,
    min_agreement: MinAgreement = RunnerSpec.min_agreement,
    calibration: Calibration = RunnerSpec.calibration,
    tile_size: TileSize = TilingOptions.tile_size,
    overlap: Overlap = TilingOptions.overlap,
    blend: Blend = TilingOptions.blend,
    batch_size: BatchSize = TilingOptions.batch_size,
    bands: Bands = None,
    scale: Scale = InputOptions.scale,
    threshold: Threshold = PredictOptions.threshold,
    tta: TTA = RunnerSpec.tta,
    gsd: GSD = InputOptions.gsd,
    allow_no_crs: AllowNoCRS = InputOptions.allow_no_crs,
    asset: Asset = InputOptions.asset,
    probabilities: Probabilities = OutputOptions.probabilities,
    uncertainty: Uncertainty = OutputOptions.uncertainty,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted run of the same input, model and settings; inputs whose output "
            "exists are skipped.",
        ),
    ] = OutputOptions.resume,
    vectorize: Annotated[
        str | None,
        typer.Option(help="Also write <output>_objects.gpkg with these classes' polygons, e.g. building,car."),
    ] = None,
    objects_format: ObjectsFormat = OutputOptions.objects_suffix,
    objects_file: Annotated[
        Path | None,
        typer.Option(
            "--objects",
            callback=check_objects_path,
            help="With -o and --vectorize: the objects file's own path (its suffix names the format).",
        ),
    ] = None,
    regularize: Regularize = VectorizeOptions.regularize,
    car_geometry: CarGeometry = VectorizeOptions.car_geometry,
    car_instances: CarInstances = VectorizeOptions.car_instances,
    cluster: Annotated[
        str | None,
        typer.Option(
            callback=_cluster_address,
            help="Run on Dask: local, local:N (N worker processes) or a scheduler address tcp://host:8786.",
        ),
    ] = None,
    split_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --cluster: rasters higher than this are split into bands of rows across workers "
            "(default: aerialseg.cluster.DEFAULT_SPLIT_ROWS).",
        ),
    ] = None,
    mosaic: Annotated[
        bool,
        typer.Option(
            "--mosaic",
            help="Predict the inputs (adjacent files on one pixel grid) as one raster, so file edges are no seams; "
            "one output per input, or with -o one of the whole mosaic.",
        ),
    ] = InputOptions.mosaic,
    overwrite: Overwrite = OutputOptions.overwrite,
    json_output: JsonOutput = False,
    progress_style: ProgressStyle = "auto",
) -> None:
    """Predict class rasters; prints a summary table and exits 1 if any input failed."""
    from ..batch import predict_batch
    from .vectorize import parse_classes

    if objects_file is not None and vectorize is None:
        raise typer.BadParameter("names the file of --vectorize's objects: add --vectorize", param_hint="--objects")
    spec = runner_spec(model, backend, device, precision, tta=tta, min_agreement=min_agreement, calibration=calibration)
    objects = (
        VectorizeOptions(
            classes=parse_classes(vectorize),
            regularize=regularize,
            car_geometry=car_geometry,
            car_instances=car_instances,
        )
        if vectorize is not None
        else None
    )
    options = PredictOptions(
        tiling=TilingOptions(tile_size, overlap, blend, batch_size),
        input=InputOptions(
            bands=parse_bands(bands), scale=scale, allow_no_crs=allow_no_crs, gsd=gsd, mosaic=mosaic, asset=asset
        ),
        output=OutputOptions(
            overwrite=overwrite,
            resume=resume,
            skip_finished=resume,
            probabilities=probabilities,
            uncertainty=uncertainty,
            vectorize=objects,
            objects_suffix=objects_file.suffix if objects_file else f".{objects_format.lstrip('.')}",
            objects_path=objects_file,
        ),
        threshold=threshold,
    )
    try:
        with console.BatchProgress(console.bar_style(progress_style, json_output), announce=not json_output) as events:
            run = predict_batch(
                inputs,
                spec,
                options,
                out_dir=out_dir,
                output=output,
                cluster=cluster,
                split_rows=split_rows,
                events=events,
            )
    except KeyboardInterrupt:
        console.error("interrupted; run the same command with --resume to continue where it stopped")
        raise typer.Exit(130) from None
    if run.gate is not None and not json_output:
        console.info(f"{run.gate.precision} accuracy gate: {run.gate.describe()}")
    if json_output:
        console.print_json([r.__dict__ | {"megapixels_per_second": r.megapixels_per_second} for r in run])
    else:
        console.table(
            f"aerialseg predict ({run.engine})" if run.engine else "aerialseg predict",
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
                for r in run
            ],
            right=["megapixels", "seconds", "MP/s"],
        )
    for r in run.failed:
        console.error(r.error or "failed")
    if run.failed:
        raise typer.Exit(1)
