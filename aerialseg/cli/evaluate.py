"""``aerialseg eval``: the papers' table for a weights file on a prepared dataset's test tiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..atomic import atomic_output
from ..options import EvalOptions, TilingOptions
from ..runners import RunnerSpec
from . import console
from .options import (
    TTA,
    Backend,
    BatchSize,
    Blend,
    Data,
    DatasetName,
    Device,
    JsonOutput,
    MinAgreement,
    Model,
    Overlap,
    Precision,
    ProgressStyle,
    TileSize,
    chosen_model,
    dataset_argument,
    runner_spec,
)


def _pct(value: object) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(result: dict) -> str:
    """The papers' table (per-class F1, mean F1, OA, mIoU) and per-class IoU as Markdown."""
    classes = result["classes"]
    names = list(classes)
    head = "| " + " | ".join(["metric", *names, "mean F1", "OA", "mIoU"]) + " |"
    rule = "|" + "---|" * (len(names) + 4)
    f1 = "| F1 | " + " | ".join(_pct(c["f1"]) for c in classes.values())
    f1 += f" | {_pct(result['mean_f1'])} | {_pct(result['oa'])} | {_pct(result['miou'])} |"
    iou = "| IoU | " + " | ".join(_pct(c["iou"]) for c in classes.values()) + " | | | |"
    excluded = [n for n, c in classes.items() if not c["in_mean"]]
    note = f"\nMeans exclude {', '.join(excluded)}; OA counts every class." if excluded else ""
    title = f"{result['model']} on {result['dataset']} {result['split']} ({result['labels']} labels)\n\n"
    return title + "\n".join([head, rule, f1, iou]) + "\n" + note + "\n"


def evaluate_command(
    model: Model,
    dataset: DatasetName = None,
    data: Data = None,
    split: Annotated[str, typer.Option(help="Split to score.")] = EvalOptions.split,
    eroded: Annotated[
        bool | None, typer.Option("--eroded/--full", help="Eroded (boundaries ignored) or full labels.")
    ] = None,
    patches: Annotated[
        bool, typer.Option("--patches", help="Score the prepared patches, not whole tiles.")
    ] = EvalOptions.patches,
    tta: TTA = RunnerSpec.tta,
    backend: Backend = RunnerSpec.backend,
    device: Device = RunnerSpec.device,
    precision: Precision = RunnerSpec.precision,
    min_agreement: MinAgreement = RunnerSpec.min_agreement,
    batch_size: BatchSize = TilingOptions.batch_size,
    tile_size: TileSize = TilingOptions.tile_size,
    overlap: Overlap = TilingOptions.overlap,
    blend: Blend = TilingOptions.blend,
    save_maps: Annotated[Path | None, typer.Option(help="Keep the predicted class rasters in this folder.")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="Also write the table here.")] = None,
    json_output: JsonOutput = False,
    progress_style: ProgressStyle = "auto",
) -> None:
    """Per-class F1 and IoU, mean F1, OA and mIoU over the full test tiles, through predict's tiled path."""
    from ..evaluation import evaluate

    data = dataset_argument(data, dataset)
    model = chosen_model(model, announce=not json_output)
    labels = EvalOptions.labels if eroded is None else ("eroded" if eroded else "full")
    options = EvalOptions(
        data=data,
        runner=runner_spec(model, backend, device, precision, tta=tta, min_agreement=min_agreement),
        split=split,
        labels=labels,
        patches=patches,
        tiling=TilingOptions(tile_size, overlap, blend, batch_size),
        save_maps=save_maps,
    )
    if markdown_path:
        _check_table_path(markdown_path, [Path(model), data])
    with console.ItemProgress(f"eval {split}", console.bar_style(progress_style, json_output)) as progress:
        result: dict[str, Any] = evaluate(options, progress=progress).to_dict()
    if markdown_path:
        with atomic_output(markdown_path, overwrite=True) as tmp:  # replaces a link itself, never its target
            tmp.write_text(markdown(result))
    if json_output:
        console.print_json(result)
        return
    rows = [
        (name, _pct(c["f1"]), _pct(c["iou"]), _pct(c["precision"]), _pct(c["recall"]), "yes" if c["in_mean"] else "no")
        for name, c in result["classes"].items()
    ]
    title = f"{result['model']} on {result['dataset']} {result['split']}, {result['labels']} labels"
    console.table(
        title,
        ["class", "F1 %", "IoU %", "precision %", "recall %", "in means"],
        rows,
        right=["F1 %", "IoU %", "precision %", "recall %"],
    )
    console.out.print(
        f"mean F1 {_pct(result['mean_f1'])}  OA {_pct(result['oa'])}  mIoU {_pct(result['miou'])}"
        f"  ({result['pixels']:,} pixels)"
    )
    names = list(result["classes"])
    console.table(
        "confusion matrix (rows: truth, columns: prediction)",
        ["", *names],
        [(n, *row) for n, row in zip(names, result["confusion_matrix"], strict=True)],
        right=names,
    )


def _check_table_path(path: Path, inputs: list[Path]) -> None:
    """Refuse a ``--markdown`` path that is the weights file or lies in the dataset folder (an input)."""
    target = path.resolve()
    for item in inputs:
        if not item.exists():
            continue
        if item.is_dir() and target.is_relative_to(item.resolve()) or path.exists() and path.samefile(item):
            console.error(f"--markdown {path}: this is an input ({item}); choose another file")
            raise typer.Exit(2)
