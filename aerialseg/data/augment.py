"""Training augmentations of §3.1 on tensors: mosaic, random scale, smart crop, flips, rot90, brightness/contrast.

Every function takes an explicit ``numpy.random.Generator`` so a sample's augmentation is
a pure function of (seed, epoch, index): the same in every DataLoader worker layout, in
every DDP process, and after resuming mid-epoch. Images are float (C, H, W) in [0, 1];
labels are long (H, W) with the ignore index where nothing is known (padding).
:class:`Augmentation` is the set of settings a training recipe passes down to the dataset
(the recipe, with the optimizer's settings, lives in :mod:`aerialseg.training`, above this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Augmentation", "mosaic", "random_scale", "smart_crop", "flip_rotate", "brightness_contrast"]


@dataclass(frozen=True)
class Augmentation:
    """How training samples are augmented: each field feeds the function of the same name.

    ``mosaic`` is the probability of a mosaic; ``crop`` the side of the smart crop (``None``:
    whole patches); ``smart_crop_ratio`` the share of labels one class may cover in a crop.
    """

    crop: int | None
    scales: tuple[float, ...]
    rotate90: bool
    flips: bool
    brightness_contrast: float
    mosaic: float
    smart_crop_ratio: float


def mosaic(
    samples: list[tuple[torch.Tensor, torch.Tensor]], ignore: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Four samples' random crops stitched around a random centre in the middle half of the first's size.

    Quadrant q (top-left, top-right, bottom-left, bottom-right) is a random crop, of the
    quadrant's size, from sample q (padded with 0 / ignore when that sample is smaller).
    """
    image0, label0 = samples[0]
    _, height, width = image0.shape
    cy = int(rng.integers(height // 4, 3 * height // 4 + 1))
    cx = int(rng.integers(width // 4, 3 * width // 4 + 1))
    boxes = [(0, 0, cy, cx), (0, cx, cy, width - cx), (cy, 0, height - cy, cx), (cy, cx, height - cy, width - cx)]
    image = image0.new_zeros(image0.shape)
    label = label0.new_zeros(label0.shape)
    for (image_q, label_q), (top, left, h, w) in zip(samples, boxes, strict=True):
        if h == 0 or w == 0:
            continue
        part_image, part_label = _random_window(image_q, label_q, h, w, rng, ignore)
        image[:, top : top + h, left : left + w] = part_image
        label[top : top + h, left : left + w] = part_label
    return image, label


def _random_window(
    image: torch.Tensor, label: torch.Tensor, h: int, w: int, rng: np.random.Generator, ignore: int
) -> tuple[torch.Tensor, torch.Tensor]:
    image, label = _pad_to(image, label, h, w, ignore)
    top = int(rng.integers(0, image.shape[1] - h + 1))
    left = int(rng.integers(0, image.shape[2] - w + 1))
    return image[:, top : top + h, left : left + w], label[top : top + h, left : left + w]


def _pad_to(image: torch.Tensor, label: torch.Tensor, h: int, w: int, ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right to at least (h, w): image 0, label ``ignore``."""
    pad_h, pad_w = max(0, h - image.shape[1]), max(0, w - image.shape[2])
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        label = F.pad(label, (0, pad_w, 0, pad_h), value=ignore)
    return image, label


def random_scale(
    image: torch.Tensor, label: torch.Tensor, scales: tuple[float, ...], rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize by a factor drawn from ``scales``: bicubic for the image (clamped to [0, 1]), nearest for the label."""
    factor = float(scales[int(rng.integers(len(scales)))])
    if factor == 1.0:
        return image, label
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[2] * factor)))
    image = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False)[0].clamp_(0, 1)
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, label


def smart_crop(
    image: torch.Tensor, label: torch.Tensor, size: int, ignore: int, max_ratio: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size`` x ``size`` crop, retried up to 10 times until no class covers ``max_ratio`` of its labels.

    Avoids crops of nothing but roof or lawn, which teach little (GeoSeg's "smart crop");
    the last try is kept when all ten are dominated by one class.
    """
    image, label = _pad_to(image, label, size, size, ignore)
    for _ in range(10):
        top = int(rng.integers(0, image.shape[1] - size + 1))
        left = int(rng.integers(0, image.shape[2] - size + 1))
        crop = label[top : top + size, left : left + size]
        labelled = crop[crop != ignore]
        if labelled.numel() == 0:
            continue
        counts = torch.bincount(labelled)
        if counts.max().item() < max_ratio * labelled.numel():
            break
    return image[:, top : top + size, left : left + size], crop


def flip_rotate(
    image: torch.Tensor, label: torch.Tensor, rotate90: bool, flips: bool, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each with probability 1/2: a random quarter turn (``rotate90``), a horizontal and a vertical flip (``flips``)."""
    if rotate90 and rng.random() < 0.5:
        turns = int(rng.integers(0, 4))
        image, label = torch.rot90(image, turns, (1, 2)), torch.rot90(label, turns, (0, 1))
    if flips:
        if rng.random() < 0.5:
            image, label = image.flip(2), label.flip(1)
        if rng.random() < 0.5:
            image, label = image.flip(1), label.flip(0)
    return image.contiguous(), label.contiguous()


def brightness_contrast(image: torch.Tensor, limit: float, rng: np.random.Generator, p: float = 0.25) -> torch.Tensor:
    """With probability ``p``: ``x * (1 + c) + b`` with c, b uniform in [-limit, limit], clamped to [0, 1]."""
    if limit <= 0 or rng.random() >= p:
        return image
    contrast, brightness = rng.uniform(-limit, limit, size=2)
    return (image * (1 + float(contrast)) + float(brightness)).clamp_(0, 1)
