"""MANet: Multi-Attention Network (Li et al., IEEE TGRS 2021).

Every encoder stage passes through kernel attention plus channel attention before it
joins the LinkNet decoder (architecture.md §1.2). Names follow GeoSeg's implementation,
so its checkpoints load with nothing renamed but the Lightning ``net.`` prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import ChannelAttention, KernelAttention
from .linknet import AttentionLinkNet

__all__ = ["MANet", "MultiAttention"]


class MultiAttention(nn.Module):
    """``KAM(x) + CAM(x)``: both keep their residual, so at initialisation the block gives 2x.

    The doubling is the reference's; it is kept for weight compatibility.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.PAM = KernelAttention(channels)
        self.CAM = ChannelAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.PAM(x) + self.CAM(x)


class MANet(AttentionLinkNet):
    """MANet with a ResNet-18, -34 or -50 encoder (the paper's default is ResNet-50)."""

    attention_block = MultiAttention

    def __init__(self, num_classes: int = 6, backbone: str = "resnet50", in_channels: int = 3):
        super().__init__(num_classes, backbone, in_channels)
