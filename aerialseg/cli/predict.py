"""``aerialseg predict``: orthophotos in, georeferenced class rasters out, many files per call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    Device,
    JsonOutput,
    MinAgreement,
    Model,
    ObjectsFormat,
    Overlap,
    Overwrite,
    Precision,
    Probabilities,
    Regularize,
    Scale,
    TileSize,
    Uncertainty,
    chosen_model,
    parse_bands,
    runner_spec,
)

if TYPE_CHECKING:
    from ..locations import InputRef
    from ..pipeline import PredictResult


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
    regularize: Regularize = VectorizeOptions.regularize,
    car_geometry: CarGeometry = VectorizeOptions.car_geometry,
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
) -> None:
    """Predict class rasters; prints a summary table and exits 1 if any input failed."""
    from ..batch import check_places
    from ..pipeline import expand_inputs, predict_many
    from ..runners import gate_result
    from .vectorize import parse_classes

    model, choice_tags = chosen_model(model, announce=not json_output)
    spec = runner_spec(model, backend, device, precision, tta=tta, min_agreement=min_agreement, calibration=calibration)
    objects = (
        VectorizeOptions(classes=parse_classes(vectorize), regularize=regularize, car_geometry=car_geometry)
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
            objects_suffix=f".{objects_format.lstrip('.')}",
            extra_tags={"AERIALSEG_TTA": tta or "none", **choice_tags},
        ),
    )
    try:
        paths = expand_inputs(inputs, asset)
        check_places(paths, out_dir=out_dir, output=output, mosaic=mosaic)
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
                    reads=spec.files,
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
        console.error(f"no input rasters found in {', '.join(inputs)}; name files, folders or glob patterns")
    if failed or not results:
        raise typer.Exit(1)


def _on_cluster(
    address: str,
    paths: list[InputRef],
    spec: RunnerSpec,
    options: PredictOptions,
    out_dir: Path | None,
    output: Path | None,
    split_rows: int | None,
    json_output: bool,
) -> tuple[list[PredictResult], str]:
    """Run the batch on a Dask cluster; ``(results, description)``."""
    from ..cluster import close_client, open_client, predict_on_cluster

    client = open_client(address)
    rows: dict[str, Any] = {} if split_rows is None else {"split_rows": split_rows}  # else the library's
    try:
        workers = len(client.scheduler_info()["workers"])
        with console.ItemProgress("cluster tasks", enabled=None if not json_output else False) as progress:
            results = predict_on_cluster(
                paths, spec, options, client, out_dir=out_dir, output=output, progress=progress, **rows
            )
    finally:
        close_client(client)
    return results, f"{spec.backend} backend, {spec.precision} precision, on {workers} Dask worker(s) at {address}"
