"""Building blocks shared by the networks, and the base class that makes any input size work."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ResNet

__all__ = ["ConvBNReLU", "DecoderBlock", "SegmentationModel"]


class ConvBNReLU(nn.Module):
    """Conv (no bias, "same" padding) -> BN -> ReLU, BiSeNet style as in ABCNet.

    Convolutions start from kaiming-normal with a=1 (std = 1/sqrt(fan_in)), as the
    reference initialises them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, a=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H/stride, W/stride)."""
        return self.relu(self.bn(self.conv(x)))


class DecoderBlock(nn.Module):
    """LinkNet decoder block: 1x1 reduce to C/4, 3x3 transposed conv x2 upsampling, 1x1 expand.

    Every conv has a bias and is followed by BN and ReLU (MANet and MAResU-Net decoders).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = in_channels // 4
        self.conv1 = nn.Conv2d(in_channels, mid, 1)
        self.norm1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.deconv2 = nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid, out_channels, 1)
        self.norm3 = nn.BatchNorm2d(out_channels)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, 2H, 2W)."""
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.relu2(self.norm2(self.deconv2(x)))
        return self.relu3(self.norm3(self.conv3(x)))


class SegmentationModel(nn.Module, ABC):
    """Base of the networks: accepts any H and W, returns logits at the input size.

    The encoders halve the map five times, so the padded body needs H and W divisible by
    32. ``forward`` pads right and bottom by edge replication (zeros would read as a dark
    border after normalisation) and crops the outputs back, so callers never care. The pad
    is applied unconditionally (zero-width when not needed) so that exported graphs keep
    height and width dynamic instead of specialising on one branch.
    """

    multiple = 32
    encoder_prefix = "backbone"

    def encoder(self) -> ResNet:
        """The ImageNet-initialisable ResNet trunk of this network."""
        trunk = self.get_submodule(self.encoder_prefix)
        if not isinstance(trunk, ResNet):
            raise TypeError(f"{type(self).__name__}.{self.encoder_prefix} is not a ResNet trunk")
        return trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """(B, bands, H, W) -> logits (B, K, H, W); ABCNet in training mode returns a tuple."""
        height, width = x.shape[-2], x.shape[-1]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.forward_padded(padded)
        if isinstance(out, tuple):
            return tuple(o[:, :, :height, :width] for o in out)
        return out[:, :, :height, :width]

    @abstractmethod
    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The network proper, on inputs whose H and W are multiples of 32."""
