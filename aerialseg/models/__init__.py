"""The registry of networks: a declarative table, listable without importing torch.

Each row names one architecture/backbone pair with the facts ``aerialseg models`` prints
and the tests check (parameter counts for K classes, compute per 512x512 tile). Builders
are named as ``module:Class`` strings and imported only by :func:`create_model`, so the
command line lists models in milliseconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Protocol

from ..errors import UnknownModelError

if TYPE_CHECKING:
    from .blocks import SegmentationModel

__all__ = ["ModelSpec", "MODELS", "ARCHITECTURES", "list_models", "get_spec", "create_model", "state_mismatch"]

_LISTED = 3  # tensor names a mismatch names of each kind
_NAME_CHARS = 80  # and at most this much of each (names come from files)

ARCHITECTURES = {
    "manet": ("MANet", "aerialseg.models.manet:MANet", "resnet50"),
    "maresunet": ("MAResU-Net", "aerialseg.models.maresunet:MAResUNet", "resnet34"),
    "abcnet": ("ABCNet", "aerialseg.models.abcnet:ABCNet", "resnet18"),
}


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture/backbone pair.

    Parameter counts are affine in the number of classes K: ``params_base + params_per_class*K``
    (every parameter, ABCNet's training-only auxiliary heads included) and the same for the
    eval path (``inference_*``; equal to the totals for networks without auxiliary heads).
    """

    arch: str
    backbone: str
    params_base: int
    params_per_class: int
    inference_params_base: int
    inference_params_per_class: int
    gmacs_512: float

    @property
    def name(self) -> str:
        """Registry name, ``arch-backbone``."""
        return f"{self.arch}-{self.backbone}"

    @property
    def title(self) -> str:
        """The paper's name of the architecture."""
        return ARCHITECTURES[self.arch][0]

    def params(self, num_classes: int = 6) -> int:
        """Number of parameters for ``num_classes`` classes."""
        return self.params_base + self.params_per_class * num_classes

    def inference_params(self, num_classes: int = 6) -> int:
        """Number of parameters the eval-mode forward uses."""
        return self.inference_params_base + self.inference_params_per_class * num_classes


def _linknet(arch: str, backbone: str, base: int, gmacs: float) -> ModelSpec:
    # MANet / MAResU-Net: only the last 3x3 conv (32 -> K, with bias) depends on K.
    return ModelSpec(arch, backbone, base, 289, base, 289, gmacs)


MODELS: tuple[ModelSpec, ...] = (
    _linknet("manet", "resnet50", 35_858_888, 54.0),
    _linknet("manet", "resnet18", 11_984_856, 15.8),
    _linknet("maresunet", "resnet34", 26_274_776, 28.7),
    _linknet("maresunet", "resnet18", 16_166_616, 19.0),
    ModelSpec("abcnet", "resnet18", 13_443_075, 37_248, 13_295_363, 16_448, 15.6),
)


def list_models(pattern: str = "*") -> list[ModelSpec]:
    """Registered models whose ``arch-backbone`` name matches the shell-style ``pattern``."""
    return [spec for spec in MODELS if fnmatch(spec.name, pattern)]


def get_spec(arch: str, backbone: str | None = None) -> ModelSpec:
    """Look up an architecture (by name, any case) and backbone; default backbone if None."""
    key = arch.lower().replace("-", "").replace("_", "")
    if key not in ARCHITECTURES:
        raise UnknownModelError(f"unknown architecture {arch!r}", hint=f"choose one of {', '.join(ARCHITECTURES)}")
    backbone = backbone or ARCHITECTURES[key][2]
    for spec in MODELS:
        if spec.arch == key and spec.backbone == backbone:
            return spec
    valid = ", ".join(s.backbone for s in MODELS if s.arch == key)
    raise UnknownModelError(f"{key} has no backbone {backbone!r}", hint=f"choose one of {valid}")


def create_model(
    arch: str, backbone: str | None = None, num_classes: int = 6, in_channels: int = 3
) -> SegmentationModel:
    """Build a randomly initialised network (train mode), e.g. ``create_model("manet", "resnet18")``."""
    spec = get_spec(arch, backbone)
    if num_classes < 1 or in_channels < 1:
        raise ValueError("num_classes and in_channels must be positive")
    module_name, class_name = ARCHITECTURES[spec.arch][1].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(num_classes=num_classes, backbone=spec.backbone, in_channels=in_channels)


class Shaped(Protocol):
    """A tensor, as far as matching names and shapes goes."""

    @property
    def shape(self) -> Sequence[int]:
        """Its size along each dimension."""
        ...


def state_mismatch(found: Mapping[str, Shaped], expected: Mapping[str, Shaped]) -> list[str]:
    """What keeps tensors ``found`` from loading as a network's ``expected`` ones (a state dict); empty when they fit.

    One part per kind (missing, left over, of the wrong shape), each counting its tensors and
    naming the first few, escaped and shortened: weights of another architecture differ in
    hundreds of names, which listed whole would make an error line of many thousand characters.
    """
    missing = [name for name in expected if name not in found]
    left_over = [name for name in found if name not in expected]
    wrong = [
        f"{name} {tuple(found[name].shape)}!={tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in found and tuple(found[name].shape) != tuple(tensor.shape)
    ]
    kinds = (("missing", missing), ("left over", left_over), ("of the wrong shape", wrong))
    return [_listing(title, names) for title, names in kinds if names]


def _listing(title: str, names: list[str]) -> str:
    """``12 missing: a, b, c (+9 more)``."""
    from ..card import printable

    shown = ", ".join(_shortened(printable(name)) for name in names[:_LISTED])
    more = f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else ""
    return f"{len(names)} {title}: {shown}{more}"


def _shortened(text: str) -> str:
    return text if len(text) <= _NAME_CHARS else text[: _NAME_CHARS - 3] + "..."
