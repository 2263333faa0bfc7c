"""MAResU-Net: Multi-stage Attention ResU-Net (Li et al., IEEE GRSL 2021).

MANet's layout with a different skip refinement: Taylor linear attention and channel
attention run in parallel between convolutions (architecture.md §1.3). Attention names
keep the reference's nested-Sequential paths (``conv2P.1.0``); the encoder uses
torchvision names under ``backbone``, and ``weights import`` renames the reference's
``firstconv``/``encoderN``.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import ChannelAttention, LinearAttention
from .linknet import AttentionLinkNet

__all__ = ["MAResUNet", "MultiStageAttention"]


def _conv_relu(channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(inplace=True))


def _dropout_conv_relu(channels: int) -> nn.Sequential:
    # Dropout2d zeroes whole channels (p=0.1) in training only.
    return nn.Sequential(nn.Dropout2d(0.1), _conv_relu(channels, 1))


class MultiStageAttention(nn.Module):
    """h = ReLU(Conv3 x); s = P(LAM(h)) + Q(CAM(h)); return R(s), with P, Q, R = Dropout -> 1x1 -> ReLU.

    No batch norm inside; every convolution has a bias.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv_relu(channels, 3)
        self.PAM = LinearAttention(channels, residual=True)
        self.CAM = ChannelAttention()
        self.conv2P = _dropout_conv_relu(channels)
        self.conv2C = _dropout_conv_relu(channels)
        self.conv3 = _dropout_conv_relu(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        h = self.conv1(x)
        return self.conv3(self.conv2P(self.PAM(h)) + self.conv2C(self.CAM(h)))


class MAResUNet(AttentionLinkNet):
    """MAResU-Net with a ResNet-18 or ResNet-34 encoder (the paper's default is ResNet-34)."""

    attention_block = MultiStageAttention

    def __init__(self, num_classes: int = 6, backbone: str = "resnet34", in_channels: int = 3):
        super().__init__(num_classes, backbone, in_channels)
