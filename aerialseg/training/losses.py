"""SoftCE + Dice with an ignore index (architecture.md §3.1), and ABCNet's auxiliary terms.

GeoSeg trains every single-output network with ``SoftCE(eps=0.05) + Dice(smooth=0.05)``.
Two deliberate differences from its code: soft cross-entropy is averaged over labelled
pixels only (the reference divides by every pixel, ignored ones included, so a batch's
loss shrinks with its share of boundary and padding), and ABCNet, for which no reference
loss exists, gets ``main + 0.4 * (SoftCE(aux16) + SoftCE(aux32))`` — UNetFormer's weight
for its auxiliary head, applied to both of ABCNet's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "dice_loss", "SegmentationLoss", "AUX_WEIGHT"]

AUX_WEIGHT = 0.4


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, eps: float = 0.05
) -> torch.Tensor:
    """Label-smoothed CE: ``(1 - eps) * NLL + eps / K * sum_c(-log p_c)``, mean over labelled pixels.

    ``logits`` (N, K, H, W), ``target`` (N, H, W) long. A batch without a labelled pixel
    gives a zero that still carries the graph (so DDP replicas stay in step).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    nll = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    smooth = -log_p.mean(dim=1)
    per_pixel = (1 - eps) * nll + eps * smooth
    count = valid.sum()
    return (per_pixel * valid).sum() / count.clamp(min=1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, smooth: float = 0.05) -> torch.Tensor:
    """Multiclass soft Dice over the whole batch: ``mean_c (1 - D_c)``, classes absent from the target count 0.

    ``D_c = (2 sum(p g) + s) / max(sum(p) + sum(g) + s, 1e-7)`` with ignored pixels zeroed in
    both the softmax ``p`` and the one-hot ``g``; every class stays in the mean's denominator.
    """
    k = logits.shape[1]
    probs = F.softmax(logits.float(), dim=1)
    valid = (target != ignore_index).unsqueeze(1)
    safe = torch.where(target == ignore_index, torch.zeros_like(target), target)
    one_hot = F.one_hot(safe, k).permute(0, 3, 1, 2).float() * valid
    probs = probs * valid
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    cardinality = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth).clamp(min=1e-7)
    present = (one_hot.sum(dims) > 0).float()
    return ((1 - dice) * present).mean()


class SegmentationLoss(torch.nn.Module):
    """``SoftCE + Dice`` on the main output; plus ``AUX_WEIGHT * SoftCE`` on each auxiliary output."""

    def __init__(self, ignore_index: int, eps: float = 0.05, smooth: float = 0.05):
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps
        self.smooth = smooth

    def forward(self, outputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        """``outputs``: logits (N, K, H, W), or a tuple whose first item is the main output."""
        main, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = soft_cross_entropy(main, target, self.ignore_index, self.eps)
        loss = loss + dice_loss(main, target, self.ignore_index, self.smooth)
        for extra in aux:
            loss = loss + AUX_WEIGHT * soft_cross_entropy(extra, target, self.ignore_index, self.eps)
        return loss
