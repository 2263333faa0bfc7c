"""Bring foreign checkpoints into aerialseg's format, without ever running code from them.

Two families are recognised:

* GeoSeg (PyTorch Lightning ``.ckpt``): the network's tensors sit under ``state_dict``
  with the prefix ``net.``; names are otherwise ours for MANet and ABCNet.
* The original authors' code (lironui/Multi-Attention-Network, MAResU-Net, ABCNet):
  bare state dicts whose encoder is split into ``firstconv``/``firstbn``/``encoderN``;
  they map to ``backbone.conv1``/``backbone.bn1``/``backbone.layerN``.

Every entry must map onto the target network with the right shape, with nothing left
over; otherwise the import is refused with the lists. Pickle-based files are read with
``torch.load(weights_only=True)``, which unpickles only tensors and plain containers; a
file needing more is refused unless the caller opts in with ``trust_pickle``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .card import ModelCard, printable
from .data.classes import dataset_info, generic_classes
from .errors import AerialsegWarning, WeightsError
from .models import get_spec, state_mismatch

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .models.blocks import SegmentationModel

__all__ = ["read_checkpoint", "extract_state_dict", "convert_state_dict", "import_checkpoint", "load_backbone_weights"]

_RENAMES = (
    (re.compile(r"^firstconv\."), "backbone.conv1."),
    (re.compile(r"^firstbn\."), "backbone.bn1."),
    (re.compile(r"^encoder([1-4])\."), r"backbone.layer\1."),
)
_WRAPPER_PREFIXES = ("net.", "module.", "model.", "_orig_mod.")
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")
_LIST_LIMIT = 8


def read_checkpoint(path: str | os.PathLike[str], trust_pickle: bool = False) -> Any:
    """Load a checkpoint's content: safetensors directly, pickle files with ``weights_only``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError("no such file", path=path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"not a readable safetensors file ({printable(str(exc))})", path=path) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needed = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if needed is None:
            raise WeightsError("not a readable checkpoint (corrupt, or not a PyTorch file)", path=path) from exc
        if not trust_pickle:
            raise WeightsError(
                f"refused: loading it would run Python code stored in the file (it needs {needed.group(1)})",
                path=path,
                hint="only if you trust where it came from, pass --trust-pickle",
            ) from exc
    except Exception as exc:  # zip, EOF, magic-number errors all mean "not a checkpoint"
        reason = printable(f"{type(exc).__name__}: {exc}")
        raise WeightsError(f"not a readable checkpoint ({reason})", path=path) from exc
    warnings.warn(f"{path}: unpickling with arbitrary code allowed (--trust-pickle)", AerialsegWarning, stacklevel=2)
    return torch.load(path, map_location="cpu", weights_only=False)


def extract_state_dict(content: Any, path: str | os.PathLike[str] = "") -> tuple[dict[str, torch.Tensor], str]:
    """The network's tensors from a checkpoint's content, wrapper prefixes removed, plus a format label."""
    import torch

    label = "bare state dict"
    if isinstance(content, dict):
        for key in _STATE_KEYS:
            if isinstance(content.get(key), dict):
                label = "PyTorch Lightning checkpoint" if "pytorch-lightning_version" in content else f"'{key}' entry"
                content = content[key]
                break
    if not isinstance(content, dict) or not content:
        raise WeightsError("holds no state dict", path=path or None)
    tensors = {k: v for k, v in content.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(content):
        odd = [k for k in content if k not in tensors][:_LIST_LIMIT]
        raise WeightsError(f"state dict has entries that are not tensors: {odd}", path=path or None)
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
                label += f", prefix '{prefix}' removed"
                stripped = True
    return tensors, label


def _rename(name: str) -> str:
    for pattern, repl in _RENAMES:
        name = pattern.sub(repl, name)
    return name


def convert_state_dict(
    tensors: dict[str, torch.Tensor], model: nn.Module, path: str | os.PathLike[str] = ""
) -> dict[str, torch.Tensor]:
    """Rename reference entries onto ``model``'s names; refuse unless every entry maps with its shape.

    ``model`` is a whole network, or only its encoder when ImageNet weights are loaded.
    """
    import torch

    expected = model.state_dict()
    renamed = {_rename(k): v for k, v in tensors.items()}
    for name in expected:
        # Checkpoints from before PyTorch 0.4.1 (torchvision's ImageNet ResNets among them)
        # have no BN step counters; BatchNorm itself fills them with 0 on load.
        if name.endswith("num_batches_tracked") and name not in renamed:
            renamed[name] = torch.zeros((), dtype=torch.long)
    parts = state_mismatch(renamed, expected)
    if parts:
        raise WeightsError(
            "does not fit the network: " + "; ".join(parts),
            path=path or None,
            hint="check --arch, --backbone and --num-classes",
        )
    return {k: renamed[k].to(expected[k].dtype) for k in expected}


def _infer_num_classes(tensors: dict[str, torch.Tensor], arch: str) -> int | None:
    for name, tensor in tensors.items():
        if name.endswith("finalconv3.weight"):
            return int(tensor.shape[0])
        if arch == "abcnet" and re.search(r"(^|\.)conv_out\.conv_out\.weight$", name):
            return int(tensor.shape[0]) // 64
    return None


def import_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    arch: str,
    backbone: str | None = None,
    num_classes: int | None = None,
    dataset: str | None = None,
    trust_pickle: bool = False,
    half: bool = False,
    overwrite: bool = False,
) -> ModelCard:
    """Convert a GeoSeg or original-code checkpoint into a weights file with a model card.

    ``num_classes`` defaults to what the checkpoint's last layer says; ``dataset`` fills
    classes, bands and GSD from a known dataset (else generic ``class_i`` names, RGB).
    """
    from .atomic import check_output
    from .models import create_model
    from .weights import save_weights

    check_output(dst, overwrite, [src])
    spec = get_spec(arch, backbone)
    tensors, label = extract_state_dict(read_checkpoint(src, trust_pickle), src)
    found = _infer_num_classes(tensors, spec.arch)
    if num_classes is None:
        num_classes = found
        if num_classes is None:
            raise WeightsError("cannot tell the number of classes", path=src, hint="pass --num-classes")
    if dataset:
        info = dataset_info(dataset)
        if len(info.classes) != num_classes:
            raise WeightsError(
                f"{info.name} has {len(info.classes)} classes but the checkpoint has {num_classes}", path=src
            )
        classes, bands, gsd = info.classes, info.bands, info.gsd_m
    else:
        classes, bands, gsd = generic_classes(num_classes), ("R", "G", "B"), None
    model = create_model(spec.arch, spec.backbone, num_classes, in_channels=len(bands))
    state = convert_state_dict(tensors, model, src)
    card = ModelCard(
        arch=spec.arch,
        backbone=spec.backbone,
        classes=classes,
        bands=bands,
        gsd_m=gsd,
        dataset=info.name if dataset else None,
        source=f"imported from {Path(src).name} ({label}, {len(state)} entries)",
    )
    return save_weights(state, card, dst, half=half, overwrite=overwrite)


def load_backbone_weights(model: SegmentationModel, path: str | os.PathLike[str], trust_pickle: bool = False) -> int:
    """Load ImageNet weights (torchvision or timm ResNet state dict) into ``model``'s encoder.

    The classifier (``fc.*``) is dropped; anything else that does not fit is refused.
    Returns the number of tensors loaded.
    """
    tensors, _ = extract_state_dict(read_checkpoint(path, trust_pickle), path)
    tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    encoder = model.encoder()
    state = convert_state_dict(tensors, encoder, path)
    encoder.load_state_dict(state, strict=True)
    return len(state)
