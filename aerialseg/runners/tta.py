"""Test-time augmentation around any runner, averaged in probability space.

``flip``: identity, horizontal, vertical, both (4 views). ``d4``: the 8 symmetries of the
square (4 rotations x optional transpose); rotations need square tiles, which the tile
plan gives except on rasters smaller than a tile, where D4 falls back to the 4 flips.
"""

from __future__ import annotations

import numpy as np

from . import Runner
from .choice import TTA_MODES

__all__ = ["TTARunner"]


class TTARunner:
    """Average a runner's probabilities over flipped/rotated views of each tile."""

    def __init__(self, runner: Runner, mode: str) -> None:
        if mode not in TTA_MODES:
            raise ValueError(f"unknown TTA {mode!r}; choose one of {', '.join(TTA_MODES)}")
        self.runner = runner
        self.tta = mode
        self.card = runner.card
        self.gate = getattr(runner, "gate", None)  # the gate measures the network, not the views

    @property
    def precision(self) -> str:
        """The wrapped runner's (it may change once its gate has run)."""
        return getattr(self.runner, "precision", "fp32")

    @property
    def description(self) -> str:
        """The wrapped runner's, with the TTA mode."""
        return f"{self.runner.description}, TTA {self.tta}"

    def _views(self, square: bool) -> list[tuple[tuple[int, ...], int]]:
        """(axes to flip, quarter turns) for each view."""
        flips = [(), (3,), (2,), (2, 3)]
        if self.tta == "flip" or not square:
            return [(f, 0) for f in flips]
        return [((), k) for k in range(4)] + [((3,), k) for k in range(4)]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Mean of the probabilities of every view, mapped back to the original orientation."""
        views = self._views(batch.shape[2] == batch.shape[3])
        total = self._through(batch, *views[0]).copy()
        for axes, turns in views[1:]:
            total += self._through(batch, axes, turns)
        return total / len(views)

    def _through(self, batch: np.ndarray, axes: tuple[int, ...], turns: int) -> np.ndarray:
        """The runner's probabilities for one view of ``batch``, turned back to the batch's orientation."""
        view = np.flip(batch, axes) if axes else batch
        view = np.rot90(view, turns, axes=(2, 3)) if turns else view
        out = self.runner(np.ascontiguousarray(view))
        out = np.rot90(out, -turns, axes=(2, 3)) if turns else out
        return np.flip(out, axes) if axes else out
