"""A fast stand-in network and the whole-raster reference the streamed pipeline is checked against.

A pytest plugin (conftest's ``pytest_plugins``): tests take the ``context_runner`` class and the
``naive_probabilities`` function as fixtures. A child process that needs the runner (the killed
run of test_pipeline) imports ``ContextRunner`` from this module by putting tests/ on its path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.tiling import TILE_ALIGN, plan_tiles


class ContextRunner:
    """A fast stand-in network whose output depends on the whole tile, like a real one.

    probabilities = softmax(A x + B mean_over_tile(x) + position ramp): blending matters
    because the same pixel gets different scores in different tiles.
    """

    def __init__(self, bands: int = 3, classes: int = 6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.normal(size=(classes, bands)).astype(np.float32) * 4
        self.b = rng.normal(size=(classes, bands)).astype(np.float32) * 4
        info = DATASETS["potsdam"]
        self.card = ModelCard(
            arch="abcnet",
            backbone="resnet18",
            classes=info.classes[:classes],
            bands=("R", "G", "B")[:bands] if bands <= 3 else ("R", "G", "B", "NIR"),
            mean=(0.5,) * bands,
            std=(0.25,) * bands,
            tile_size=128,
            overlap=32,
        )
        self.description = "context stand-in"
        self.tiles = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.tiles += len(batch)
        n, _, h, w = batch.shape
        logits = np.einsum("kc,nchw->nkhw", self.a, batch)
        logits += np.einsum("kc,nc->nk", self.b, batch.mean(axis=(2, 3)))[:, :, None, None]
        logits += (
            np.linspace(-1, 1, w, dtype=np.float32)[None, None, None, :]
            * np.arange(logits.shape[1])[None, :, None, None]
        )
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def whole_raster_probabilities(
    path: Path, runner: ContextRunner, tile: int, overlap: int, blend: str
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-raster reference: every tile's scores accumulated into full arrays, weighted mean."""
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32) / 255
        valid = src.dataset_mask() > 0
    height, width = valid.shape
    plan = plan_tiles(height, width, tile, overlap, blend, align=TILE_ALIGN)
    scores = np.zeros((runner.card.num_classes, height, width), np.float64)
    weights = np.zeros((height, width), np.float64)
    for row in plan.tile_rows():
        for window, i, j in row:
            rows, cols = window.as_slices()
            w = plan.weights(i, j) * valid[rows, cols]
            if not w.any():
                continue
            probabilities = runner(data[None, :, rows, cols])[0]
            scores[:, rows, cols] += probabilities * w
            weights[rows, cols] += w
    return scores / np.where(weights > 0, weights, 1), weights > 0


@pytest.fixture(scope="session")
def context_runner() -> type[ContextRunner]:
    """The stand-in runner class: ``context_runner(bands=3, classes=6, seed=0)``; subclass it to add behaviour."""
    return ContextRunner


@pytest.fixture(scope="session")
def naive_probabilities() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``naive_probabilities(path, runner, tile, overlap, blend) -> (probabilities, valid)`` of the whole raster."""
    return whole_raster_probabilities
