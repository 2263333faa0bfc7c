"""What a training run writes besides its checkpoint: the card's normalisation and summary, and log.csv.

Kept apart from the loop so the facts a weights file states about its training (band
statistics, the recipe in one line) are defined once and read without the loop's state.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .recipes import Recipe

__all__ = ["IMAGENET", "LOG_COLUMNS", "band_statistics", "training_summary", "append_log"]

IMAGENET = {"R": (0.485, 0.229), "G": (0.456, 0.224), "B": (0.406, 0.225)}
LOG_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_miou",
    "train_mean_f1",
    "val_miou",
    "val_mean_f1",
    "val_oa",
    "seconds_validation",
)


def band_statistics(bands: tuple[str, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per band: ImageNet's for R, G, B (what pretrained trunks expect), in file order.

    Three-band images take ImageNet's three pairs in file order whatever the bands are, as the
    reference does for Vaihingen's NIR-R-G; other bands get 0.5 / 0.25.
    """
    if len(bands) == 3:
        return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pairs = [IMAGENET.get(b, (0.5, 0.25)) for b in bands]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def training_summary(recipe: Recipe, epoch: int, steps: int, processes: int, accumulate: int, seed: int) -> str:
    """The card's ``training`` line: how far the run got and every setting that shaped the weights."""
    r = recipe
    return (
        f"aerialseg train: {epoch + 1}/{r.epochs} epochs, {steps} steps, batch {r.batch_size}"
        f" x {processes} process(es) x {accumulate} accumulated, crop {r.crop}, scales {list(r.scales)},"
        f" AdamW lr {r.lr} (backbone {r.backbone_lr}), wd {r.weight_decay},"
        f" Lookahead({r.lookahead_k}, {r.lookahead_alpha}), {r.schedule}, SoftCE(0.05)+Dice, seed {seed}"
    )


def append_log(path: Path, row: dict[str, float | int | str]) -> None:
    """Add an epoch's row to the CSV log (header on the first row; columns a row lacks stay empty)."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)
