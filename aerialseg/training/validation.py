"""The scores a training run logs after each epoch, on its own training batches and on the validation split.

Every process counts pixels on its share of the data; the counts are summed over the
processes before anything is scored, so the scores are those of one global confusion
matrix, as :mod:`aerialseg.metrics` defines them, whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..card import ClassInfo
from ..data.datasets import PatchDataset
from ..metrics import ConfusionMatrix, Scores
from ..models.standardize import Standardize
from .distributed import World, sum_array

__all__ = ["global_scores", "validate"]


def global_scores(world: World, counts: np.ndarray, classes: Sequence[ClassInfo]) -> Scores:
    """Scores of a K x K confusion count summed over every process (mean over the classes ``in_mean``)."""
    matrix = ConfusionMatrix.from_counts(sum_array(world, counts))
    return matrix.scores([c.name for c in classes], [c.in_mean for c in classes])


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    standardize: Standardize,
    pairs: Sequence[tuple[Path, Path]],
    classes: Sequence[ClassInfo],
    ignore_index: int,
    world: World,
    amp: bool,
) -> Scores:
    """Whole validation patches, eval mode, one confusion matrix summed over processes.

    Each process predicts every ``world.size``-th patch; the model is back in training mode
    on return.
    """
    model.eval()
    matrix = ConfusionMatrix(len(classes), ignore_index)
    patches = PatchDataset(list(pairs[world.rank :: world.size]))
    for index in range(len(patches)):
        image, label = patches[index]
        x = standardize(image[None].to(world.device))
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(x)
        matrix.update(label.numpy(), logits.argmax(1)[0].cpu().numpy())
    model.train()
    return global_scores(world, matrix.matrix, classes)
