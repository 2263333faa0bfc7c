"""The papers' training defaults per dataset (architecture.md §3.1), as frozen dataclasses.

Every value here is what GeoSeg's shipped configs use; ``aerialseg train`` options override
single fields. GeoSeg writes every ISPRS training tile three times (as is, flipped left-right,
flipped upside down) before cutting; random flips during training (``flips``) stand in for
those copies. ``folder`` (a user's own data) takes Potsdam's scales and crop with flips and one cosine
decay over the epochs asked for, a reasonable start for fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..data.augment import Augmentation

__all__ = ["Recipe", "RECIPES", "recipe_for"]


@dataclass(frozen=True)
class Recipe:
    """Training settings of one dataset; see the module docstring."""

    epochs: int
    batch_size: int = 8
    crop: int | None = 512
    scales: tuple[float, ...] = (1.0,)
    rotate90: bool = False
    flips: bool = False
    brightness_contrast: float = 0.0
    mosaic: float = 0.25
    smart_crop_ratio: float = 0.75
    lr: float = 6e-4
    backbone_lr: float = 6e-5
    weight_decay: float = 0.01
    lookahead_k: int = 5
    lookahead_alpha: float = 0.5
    schedule: str = "cosine-restarts"
    monitor: str = "mean_f1"

    @property
    def augmentation(self) -> Augmentation:
        """The fields the training dataset reads, handed down without the optimizer's settings."""
        return Augmentation(
            crop=self.crop,
            scales=self.scales,
            rotate90=self.rotate90,
            flips=self.flips,
            brightness_contrast=self.brightness_contrast,
            mosaic=self.mosaic,
            smart_crop_ratio=self.smart_crop_ratio,
        )

    def replace(self, **changes: Any) -> Recipe:
        """A copy with the fields given not None changed."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


RECIPES = {
    "vaihingen": Recipe(epochs=105, crop=512, scales=(0.5, 0.75, 1.0, 1.25, 1.5), rotate90=True, flips=True),
    "potsdam": Recipe(epochs=45, crop=768, scales=(0.75, 1.0, 1.25, 1.5), flips=True),
    "uavid": Recipe(epochs=40, crop=None, flips=True, brightness_contrast=0.25, schedule="cosine", monitor="miou"),
    "folder": Recipe(epochs=45, crop=512, scales=(0.75, 1.0, 1.25, 1.5), flips=True, schedule="cosine"),
}


def recipe_for(dataset: str) -> Recipe:
    """The recipe of a prepared dataset's name (anything not a benchmark uses ``folder``)."""
    return RECIPES.get(dataset, RECIPES["folder"])
