"""ABCNet: Attentive Bilateral Contextual Network (Li et al., ISPRS J. 2021).

A BiSeNet-style network: a shallow spatial path at 1/8 resolution, a ResNet-18 context
path whose 1/16 and 1/32 maps are refined by linear attention (AEM), a feature
aggregation module (FAM) joining both, and PixelShuffle heads (architecture.md §1.4).
Names follow GeoSeg and lironui/ABCNet (identical to each other). The two auxiliary
heads always exist, as in the reference, and run only in training mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import LinearAttention
from .backbones import build_resnet
from .blocks import ConvBNReLU, SegmentationModel

__all__ = ["ABCNet"]


class AttentionEnhancement(nn.Module):
    """AEM: ``BN(gamma * LAM(CBR3(x)))``; the conv feature is not added back (zero at init)."""

    def __init__(self, in_channels: int, out_channels: int = 128):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = LinearAttention(out_channels, residual=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W)."""
        return self.bn_atten(self.conv_atten(self.conv(x)))


class ContextPath(nn.Module):
    """ResNet-18 context: global pooling and AEM-refined 1/32 and 1/16 maps, nearest-upsampled.

    Returns ``(cp8, cp16)``: 128-channel maps at 1/8 and 1/16 of the input.
    """

    def __init__(self, backbone: str, in_channels: int):
        super().__init__()
        self.resnet = build_resnet(backbone, in_channels)
        _, _, c16, c32 = self.resnet.out_channels
        self.arm16 = AttentionEnhancement(c16)
        self.arm32 = AttentionEnhancement(c32)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(c32, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, bands, H, W) -> (cp8 (B, 128, H/8, W/8), cp16 (B, 128, H/16, W/16))."""
        _, f8, f16, f32 = self.resnet(x)
        pooled = self.conv_avg(f32.mean(dim=(2, 3), keepdim=True))
        t32 = self.arm32(f32) + pooled
        cp16 = self.conv_head32(F.interpolate(t32, size=f16.shape[2:], mode="nearest"))
        t16 = self.arm16(f16) + cp16
        cp8 = self.conv_head16(F.interpolate(t16, size=f8.shape[2:], mode="nearest"))
        return cp8, cp16


class SpatialPath(nn.Module):
    """Three stride-2 convolutions to 1/8 resolution, then a 1x1 to 128 channels (not pretrained)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, 64, 7, stride=2)
        self.conv2 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv3 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv_out = ConvBNReLU(64, 128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, 128, H/8, W/8)."""
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureAggregation(nn.Module):
    """FAM: ``z = CBR1([sp, cp]); return z * LAM(z) + z``."""

    def __init__(self, channels: int = 256):
        super().__init__()
        self.convblk = ConvBNReLU(channels, channels, 1)
        self.conv_atten = LinearAttention(channels, residual=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Two (B, 128, h, w) maps -> (B, 256, h, w)."""
        z = self.convblk(torch.cat([spatial, context], dim=1))
        return z * self.conv_atten(z) + z


class OutputHead(nn.Module):
    """CBR3 -> 1x1 conv to K*r^2 channels -> PixelShuffle(r): logits at r times the resolution."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, upscale: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2d(mid_channels, num_classes * upscale * upscale, 1)
        self.up = nn.PixelShuffle(upscale)
        nn.init.kaiming_normal_(self.conv_out.weight, a=1)
        nn.init.zeros_(self.conv_out.get_parameter("bias"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) -> (B, K, r*h, r*w)."""
        return self.up(self.conv_out(self.conv(x)))


class ABCNet(SegmentationModel):
    """ABCNet; eval returns logits (B, K, H, W), training returns ``(main, aux16, aux32)``.

    The batch norm after the 1x1 pooled map needs training batches of at least 2.
    """

    encoder_prefix = "cp.resnet"

    def __init__(self, num_classes: int = 6, backbone: str = "resnet18", in_channels: int = 3):
        super().__init__()
        self.cp = ContextPath(backbone, in_channels)
        self.sp = SpatialPath(in_channels)
        self.fam = FeatureAggregation(256)
        self.conv_out = OutputHead(256, 256, num_classes, 8)
        self.conv_out16 = OutputHead(128, 64, num_classes, 8)
        self.conv_out32 = OutputHead(128, 64, num_classes, 16)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, bands, H, W), H and W multiples of 32 -> logits, plus the auxiliary logits in training."""
        cp8, cp16 = self.cp(x)
        main = self.conv_out(self.fam(self.sp(x), cp8))
        if self.training:
            return main, self.conv_out16(cp8), self.conv_out32(cp16)
        return main
