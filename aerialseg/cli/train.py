"""``aerialseg train``: the papers' recipe on a prepared dataset (single process, or under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import console
from .options import (
    ArchOrDefault,
    Backbone,
    Data,
    DatasetName,
    Device,
    Half,
    JsonOutput,
    Overwrite,
    ProgressStyle,
    TrustPickle,
    dataset_argument,
)


def train_command(
    dataset: DatasetName = None,
    data: Data = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Run folder: weights, checkpoint, log.csv (default: a new one in $AERIALSEG_DATA/runs)."
        ),
    ] = None,
    install: Annotated[
        bool | None,
        typer.Option(
            "--install/--no-install",
            help="Copy the best weights into the user weights folder at the end (default: when --out is not given).",
        ),
    ] = None,
    arch: ArchOrDefault = None,
    backbone: Backbone = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (default: the dataset's recipe).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Patches per step and process.")] = None,
    crop: Annotated[int | None, typer.Option(min=1, help="Training crop size in pixels.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the decoder (AdamW).")] = None,
    backbone_lr: Annotated[float | None, typer.Option(help="Learning rate of the backbone.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="cosine-restarts (ISPRS), cosine (UAVid) or constant, per epoch.")
    ] = None,
    accumulate: Annotated[
        int | None, typer.Option(min=1, help="Batches per optimizer step (gradient accumulation).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data-loading worker processes.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of weights, data order and augmentation.")] = None,
    device: Device = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA.")] = None,
    pretrained_backbone: Annotated[
        Path | None, typer.Option(help="ImageNet ResNet weights (torchvision/timm names; safetensors or .pth).")
    ] = None,
    trust_pickle: TrustPickle = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many optimizer steps.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=0, help="Also save the checkpoint every N steps (0: per epoch).")
    ] = None,
    train_split: Annotated[
        str | None, typer.Option(help="Split(s) trained on, comma-separated (e.g. train,val).")
    ] = None,
    val_split: Annotated[str | None, typer.Option(help="Split validated after each epoch ('' for none).")] = None,
    half: Half = False,
    overwrite: Overwrite = False,
    json_output: JsonOutput = False,
    progress_style: ProgressStyle = "auto",
) -> None:
    """Train MANet, MAResU-Net or ABCNet with the papers' recipe; writes best/last weights files.

    An option left out takes the library's default (aerialseg.TrainOptions), and the dataset's
    recipe where that is None. Several GPUs or machines: torchrun --nproc_per_node 4 -m aerialseg
    train ... (--batch-size is per process).
    """
    from ..training.loop import TrainOptions, train

    chosen: dict[str, Any] = {
        "arch": arch,
        "backbone": backbone,
        "epochs": epochs,
        "batch_size": batch_size,
        "crop": crop,
        "lr": lr,
        "backbone_lr": backbone_lr,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "accumulate": accumulate,
        "workers": workers,
        "seed": seed,
        "device": device,
        "amp": amp,
        "pretrained_backbone": pretrained_backbone,
        "max_steps": max_steps,
        "checkpoint_every": checkpoint_every,
        "train_split": train_split,
        "val_split": val_split,
    }
    given = {name: value for name, value in chosen.items() if value is not None}
    if val_split == "":
        given["val_split"] = None  # '' asks for no validation
    options = TrainOptions(
        data=dataset_argument(data, dataset),
        dataset=dataset if data is None else None,
        out=out,
        install=install,
        trust_pickle=trust_pickle,
        resume=resume,
        overwrite=overwrite,
        half=half,
        **given,
    )
    with console.TrainProgress(console.bar_style(progress_style, json_output)) as progress:
        result = train(options, progress=progress)
    if json_output:
        console.print_json(result.__dict__)
        return
    console.table(
        f"{result.out} ({result.steps} steps, {result.epochs_done} epochs)",
        list(result.history[0]) if result.history else ["epoch"],
        [list(row.values()) for row in result.history],
        right=["epoch", "step", "lr", "train_loss", "train_miou", "val_miou", "val_mean_f1", "val_oa"],
    )
    best = f", best {result.best} (score {result.best_score:.4f})" if result.best else ""
    console.out.print(f"weights: {result.last}{best}")
    if result.installed:
        name = result.installed.name.removesuffix(".safetensors")
        console.out.print(
            f"installed as {name} ({result.installed}): '--model {name}' uses it, "
            f"'--model {options.arch}' prefers it to sample weights and to runs that score lower"
        )
