"""The papers' metrics from one global pixel confusion matrix (numpy only).

Rows are ground truth, columns prediction. Per class: precision TP/(TP+FP), recall
TP/(TP+FN), F1 = 2PR/(P+R), IoU = TP/(TP+FP+FN). OA = trace / total over every class
(ISPRS clutter included). Mean F1 and mIoU average only the classes marked ``in_mean``
(ISPRS: the five without clutter; UAVid: all eight) and, among those, only classes that
occur in the ground truth or the prediction: a class absent from both has no defined F1
and is left out of the mean (nan in the per-class table), as ``nanmean`` does in the
reference evaluation. Pixels labelled with the ignore index (or any value outside
``[0, K)``) count nowhere, which is how eroded boundaries and padding drop out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ConfusionMatrix", "Scores"]


@dataclass(frozen=True)
class Scores:
    """Metrics of a confusion matrix, as fractions in [0, 1] (nan where undefined)."""

    class_names: tuple[str, ...]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    iou: np.ndarray
    mean_f1: float
    miou: float
    oa: float
    in_mean: tuple[bool, ...]
    pixels: int

    def to_dict(self) -> dict[str, object]:
        """Percentages rounded to 3 decimals (the papers' precision); nan becomes None."""

        def pct(value: float) -> float | None:
            return None if np.isnan(value) else round(float(value) * 100, 3)

        per_class = {
            name: {"f1": pct(f), "iou": pct(i), "precision": pct(p), "recall": pct(r), "in_mean": m}
            for name, f, i, p, r, m in zip(
                self.class_names, self.f1, self.iou, self.precision, self.recall, self.in_mean, strict=True
            )
        }
        return {
            "mean_f1": pct(self.mean_f1),
            "miou": pct(self.miou),
            "oa": pct(self.oa),
            "pixels": self.pixels,
            "classes": per_class,
        }


class ConfusionMatrix:
    """A K x K pixel count accumulated over any number of label/prediction pairs."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError("num_classes must be positive")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    @classmethod
    def from_counts(cls, counts: np.ndarray, ignore_index: int = 255) -> ConfusionMatrix:
        """A matrix holding counts gathered elsewhere (on a device, or summed over processes).

        ``counts`` is K x K, rows ground truth and columns prediction; it is copied as int64.
        """
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"counts of shape {counts.shape} are not a square matrix")
        matrix = cls(counts.shape[0], ignore_index)
        matrix.matrix += counts.astype(np.int64)
        return matrix

    def update(self, target: np.ndarray, prediction: np.ndarray) -> None:
        """Add pixels; targets equal to the ignore index or outside ``[0, K)`` are skipped.

        Predictions outside ``[0, K)`` (nodata from predict) at labelled pixels are an error:
        dropping them silently would flatter the scores.
        """
        target = np.asarray(target).reshape(-1)
        prediction = np.asarray(prediction).reshape(-1)
        if target.shape != prediction.shape:
            raise ValueError(f"target has {target.size} pixels, prediction {prediction.size}")
        k = self.num_classes
        keep = (target >= 0) & (target < k) & (target != self.ignore_index)
        target = target[keep].astype(np.int64)
        prediction = prediction[keep].astype(np.int64)
        if prediction.size and (prediction.min() < 0 or prediction.max() >= k):
            raise ValueError(f"prediction has values outside 0..{k - 1} at labelled pixels")
        self.matrix += np.bincount(target * k + prediction, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix of the same size (e.g. from another process)."""
        if other.num_classes != self.num_classes:
            raise ValueError("confusion matrices of different sizes")
        self.matrix += other.matrix

    def scores(self, class_names: Sequence[str], in_mean: Sequence[bool] | None = None) -> Scores:
        """Per-class and mean metrics (see the module docstring for the conventions)."""
        k = self.num_classes
        if len(class_names) != k:
            raise ValueError(f"{len(class_names)} class names for {k} classes")
        in_mean = tuple(in_mean) if in_mean is not None else (True,) * k
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        predicted = m.sum(axis=0)
        actual = m.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / predicted
            recall = tp / actual
            f1 = 2 * tp / (predicted + actual)  # = 2PR/(P+R), defined even when P or R is 0/0
            iou = tp / (predicted + actual - tp)
        mask = np.array(in_mean, dtype=bool)
        total = m.sum()
        return Scores(
            class_names=tuple(class_names),
            precision=precision,
            recall=recall,
            f1=f1,
            iou=iou,
            mean_f1=_nanmean(f1[mask]),
            miou=_nanmean(iou[mask]),
            oa=float(tp.sum() / total) if total else float("nan"),
            in_mean=in_mean,
            pixels=int(total),
        )


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
