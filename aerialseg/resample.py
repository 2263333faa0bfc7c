"""ScoreResampler: class probabilities from the model's grid back to the input's, strip by strip.

When the pipeline predicts at the model's GSD (see :mod:`aerialseg.gsd`), the blended
probabilities live on a coarser or finer grid than the orthophoto. They are resampled
bilinearly (pixel centres aligned, both grids spanning the same extent) before the argmax
(or the model's threshold rule, :class:`~aerialseg.blend.ClassRule`),
which gives smooth class boundaries instead of the blocky ones of resampling class ids.
Model-grid pixels without valid data do not contribute; an input pixel with no valid
neighbour is nodata. Output rows are emitted as soon as the model rows they need have
arrived, in bands of at most ``chunk_rows``, so memory stays proportional to the width.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .blend import ClassRule, Strip
from .conventions import NODATA_CLASS

__all__ = ["ScoreResampler"]


def _axis(model_size: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower/upper model index and upper weight for every output pixel along one axis."""
    position = (np.arange(size) + 0.5) * (model_size / size) - 0.5
    base = np.floor(position)
    weight = np.clip(position - base, 0.0, 1.0).astype(np.float32)
    lower = np.clip(base, 0, model_size - 1).astype(np.int64)
    upper = np.clip(base + 1, 0, model_size - 1).astype(np.int64)
    return lower, upper, weight


class ScoreResampler:
    """Feed model-grid strips in order with :meth:`push`; get input-grid class strips back."""

    def __init__(
        self,
        model_shape: tuple[int, int],
        shape: tuple[int, int],
        num_classes: int,
        chunk_rows: int = 256,
        probabilities: bool = False,
        rule: ClassRule = ClassRule(),  # noqa: B008 (frozen: one shared default is safe)
    ):
        self.rule = rule
        self.model_height, self.model_width = model_shape
        self.height, self.width = shape
        self.y0, self.y1, self.wy = _axis(self.model_height, self.height)
        self.x0, self.x1, self.wx = _axis(self.model_width, self.width)
        self.chunk_rows = chunk_rows
        self.keep_probabilities = probabilities
        self.buffer_p = np.zeros((num_classes, 0, self.model_width), np.float32)
        self.buffer_v = np.zeros((0, self.model_width), np.float32)
        self.buffer_top = 0
        self.next_row = 0

    def first_model_row(self, row: int) -> int:
        """The first model-grid row that output row ``row`` (and every later one) needs."""
        return int(self.y0[min(row, self.height - 1)])

    def last_model_row(self, row: int) -> int:
        """The last model-grid row that output row ``row`` (and every earlier one) needs."""
        return int(self.y1[min(row, self.height - 1)])

    def resume(self, model_row: int, row: int) -> None:
        """Continue a run whose output rows before ``row`` are written; strips restart at ``model_row``."""
        self.buffer_top, self.next_row = model_row, row

    def push(self, strip: Strip) -> Iterator[Strip]:
        """Add a model-grid strip (with probabilities); yield every input-grid strip now complete."""
        if strip.probabilities is None or strip.valid is None:
            raise ValueError("the accumulator must be asked for probabilities")
        if strip.row_off != self.buffer_top + self.buffer_v.shape[0]:
            raise ValueError("strips must arrive in order, without gaps")
        self.buffer_p = np.concatenate([self.buffer_p, strip.probabilities.astype(np.float32)], axis=1)
        self.buffer_v = np.concatenate([self.buffer_v, strip.valid.astype(np.float32)], axis=0)
        available = self.buffer_top + self.buffer_v.shape[0]
        end = self.next_row
        while end < self.height and self.y1[end] < available:
            end += 1
        for start in range(self.next_row, end, self.chunk_rows):
            yield self._rows(start, min(end, start + self.chunk_rows))
        self.next_row = end
        if end < self.height:
            drop = min(int(self.y0[end]) - self.buffer_top, self.buffer_v.shape[0])
            if drop > 0:
                self.buffer_p = self.buffer_p[:, drop:]
                self.buffer_v = self.buffer_v[drop:]
                self.buffer_top += drop

    def _rows(self, start: int, stop: int) -> Strip:
        rows = slice(start, stop)
        a, b = self.y0[rows] - self.buffer_top, self.y1[rows] - self.buffer_top
        wb = self.wy[rows][:, None] * self.buffer_v[b]  # (n, model_width)
        wa = (1 - self.wy[rows])[:, None] * self.buffer_v[a]
        p = self.buffer_p[:, a] * wa + self.buffer_p[:, b] * wb  # (K, n, model_width)
        v = wa + wb
        wx = self.wx
        p = p[:, :, self.x0] * (1 - wx) + p[:, :, self.x1] * wx  # (K, n, width)
        v = v[:, self.x0] * (1 - wx) + v[:, self.x1] * wx
        classes = self.rule.classes(p, v)
        valid = v > 0
        classes[~valid] = NODATA_CLASS
        if self.keep_probabilities:
            return Strip(start, classes, p / np.where(valid, v, 1.0), valid)
        return Strip(start, classes, None, valid)
