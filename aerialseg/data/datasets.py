"""Torch datasets over prepared patches: reading, and the training view with the recipe's augmentation.

:class:`PatchDataset` only reads (image as float [0, 1], label as long ids). The sampling
policy lives elsewhere: :class:`TrainingView` is indexed by ``(epoch, index)`` keys that
the training loop's batch order produces, and derives each sample's random augmentation
from ``(seed, epoch, index)`` alone, so runs are reproducible with any number of loader
workers or processes, and a run resumed mid-epoch sees exactly the samples it would have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetLayoutError, InputRasterError, first_line
from ..raster import open_raster, read_bands
from .augment import Augmentation, brightness_contrast, flip_rotate, mosaic, random_scale, smart_crop

__all__ = ["PatchDataset", "TrainingView", "collate"]


class PatchDataset(torch.utils.data.Dataset):
    """``(image (C, H, W) float32 in [0, 1], label (H, W) int64)`` for each ``(image, label)`` path pair."""

    def __init__(self, pairs: list[tuple[Path, Path]], pixel_max: float = 255.0):
        self.pairs = list(pairs)
        self.pixel_max = pixel_max

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[index]
        image = _read_patch(image_path)
        label = _read_patch(label_path, band=1)
        if image.shape[1:] != label.shape:
            raise DatasetLayoutError(f"image {image.shape[1:]} and label {label.shape} differ in size", path=image_path)
        return (
            torch.from_numpy(image.astype(np.float32) / self.pixel_max),
            torch.from_numpy(label.astype(np.int64)),
        )


def _read_patch(path: Path, band: int | None = None) -> np.ndarray:
    """Every band of a patch (C, H, W), or one (H, W); a patch that cannot be read is the prepared dataset's fault."""
    try:
        with open_raster(path, plain_pictures=True) as src:  # patches cut from PNG frames have no georeferencing
            return read_bands(src, band if band is not None else range(1, src.count + 1))
    except InputRasterError as exc:
        gdal_error = exc.__cause__ or exc
        raise DatasetLayoutError(f"cannot read a patch ({first_line(gdal_error)})", path=path) from exc


class TrainingView(torch.utils.data.Dataset):
    """A :class:`PatchDataset` augmented as the recipe's :class:`Augmentation` says, indexed by ``(epoch, index)``."""

    def __init__(self, patches: PatchDataset, augmentation: Augmentation, ignore_index: int, seed: int):
        self.patches = patches
        self.augmentation = augmentation
        self.ignore_index = ignore_index
        self.seed = seed

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        settings = self.augmentation
        rng = np.random.default_rng([self.seed, epoch, index])
        if settings.mosaic > 0 and rng.random() < settings.mosaic:
            others = rng.integers(0, len(self.patches), size=3)
            image, label = mosaic(
                [self.patches[index]] + [self.patches[int(i)] for i in others], self.ignore_index, rng
            )
        else:
            image, label = self.patches[index]
        image, label = random_scale(image, label, settings.scales, rng)
        if settings.crop:
            image, label = smart_crop(image, label, settings.crop, self.ignore_index, settings.smart_crop_ratio, rng)
        image, label = flip_rotate(image, label, settings.rotate90, settings.flips, rng)
        image = brightness_contrast(image, settings.brightness_contrast, rng)
        return image, label


def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch; samples of different sizes (no crop, patches of mixed sizes) are an error that says so."""
    sizes = {tuple(image.shape) for image, _ in samples}
    if len(sizes) > 1:
        raise DatasetLayoutError(f"patches of different sizes in one batch {sorted(sizes)}", hint="pass --crop")
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])
