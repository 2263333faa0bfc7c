"""Inference form of a network: BatchNorm folded into the convolution that feeds it.

In eval mode a BatchNorm is an affine map per channel, so when its input is exactly a
convolution's output, ``bn(conv(x))`` equals one convolution with scaled weights and a
shifted bias: one pass over the activation instead of two, which matters most in reduced
precision, where the BatchNorm pass costs as much as a cheap convolution. The pairs are
found by watching one forward pass (a BatchNorm whose input tensor *is* a convolution's
output) rather than from a list per architecture, so every network here, and any added
later, is covered. The folded network is checked against the original on the same input
and kept only if the logits agree to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fold_batchnorm"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
Conv = nn.Conv2d | nn.ConvTranspose2d


def _pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[Conv, nn.BatchNorm2d]]:
    """``(conv, bn)`` where the BatchNorm's input is the convolution's output, in call order.

    BatchNorms without running statistics normalise by the batch's own, which no
    convolution can hold, so they are left out.
    """
    outputs: dict[int, tuple[Conv, torch.Tensor]] = {}  # tensors kept alive, so ids stay unique
    pairs: list[tuple[Conv, nn.BatchNorm2d]] = []
    calls: dict[nn.Module, int] = {}

    def after_conv(module: Conv, _inputs: tuple, output: torch.Tensor) -> None:
        outputs[id(output)] = (module, output)
        calls[module] = calls.get(module, 0) + 1

    def before_bn(module: nn.BatchNorm2d, inputs: tuple) -> None:
        calls[module] = calls.get(module, 0) + 1
        found = outputs.get(id(inputs[0]))
        if found is not None and module.running_mean is not None:
            pairs.append((found[0], module))

    hooks = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, _CONVS)]
    hooks += [m.register_forward_pre_hook(before_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return [(conv, bn) for conv, bn in pairs if calls[conv] == calls[bn] == 1]  # modules used twice stay


def _fold(conv: Conv, bn: nn.BatchNorm2d) -> None:
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    scale = bn.weight / torch.sqrt(var + bn.eps)
    shape = [1] * conv.weight.dim()
    shape[1 if isinstance(conv, nn.ConvTranspose2d) else 0] = -1  # output channels
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(shape), requires_grad=False)
    conv.bias = nn.Parameter((bias - mean) * scale + bn.bias, requires_grad=False)


def fold_batchnorm(model: nn.Module, bands: int, size: int = 64, tolerance: float = 1e-3) -> int:
    """Fold every convolution -> BatchNorm pair of an eval-mode float32 ``model`` in place.

    Returns the number of BatchNorms folded; 0 (and the model unchanged) when the folded
    network's logits would differ from the original's by more than ``tolerance`` relative
    to their range on a random ``(1, bands, size, size)`` input.
    """
    if model.training:
        raise ValueError("BatchNorm folds only in eval mode")
    example = torch.rand(1, bands, size, size, generator=torch.Generator().manual_seed(0))
    pairs = _pairs(model, example)
    if not pairs:
        return 0
    parents = {child: (parent, name) for parent in model.modules() for name, child in parent.named_children()}
    with torch.inference_mode():
        expected = model(example)
    saved = [(conv, conv.weight, conv.bias) for conv, _ in pairs]
    with torch.no_grad():
        for conv, bn in pairs:
            _fold(conv, bn)
            parent, name = parents[bn]
            setattr(parent, name, nn.Identity())
    with torch.inference_mode():
        got = model(example)
    scale = float(expected.abs().max()) or 1.0
    if float((got - expected).abs().max()) <= tolerance * scale:
        return len(pairs)
    for (conv, bn), (_, weight, bias) in zip(pairs, saved, strict=True):  # undo: keep the network as it was
        conv.weight, conv.bias = weight, bias
        parent, name = parents[bn]
        setattr(parent, name, bn)
    return 0
