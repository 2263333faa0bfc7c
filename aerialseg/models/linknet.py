"""The encoder-attention-LinkNet layout that MANet and MAResU-Net share.

Both networks tap the four ResNet stages, refine every tap with an attention block, and
decode with LinkNet blocks whose outputs are *added* to the next refined skip, ending in
a x2 transposed-convolution head (architecture.md §1.2-1.3). Only the attention block
differs, so each network is this class plus its block. Layer names are the reference's
flat ones (``decoder4``, ``finaldeconv1`` ...) so trained checkpoints load unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .backbones import build_resnet
from .blocks import DecoderBlock, SegmentationModel

__all__ = ["AttentionLinkNet"]


class AttentionLinkNet(SegmentationModel):
    """ResNet encoder, one attention block per stage, LinkNet decoder, x2 head -> logits (B, K, H, W)."""

    attention_block: ClassVar[type[nn.Module]]  # built with the stage's channel count

    def __init__(self, num_classes: int, backbone: str, in_channels: int = 3):
        super().__init__()
        self.backbone = build_resnet(backbone, in_channels)
        c1, c2, c3, c4 = self.backbone.out_channels
        self.attention4 = self.attention_block(c4)
        self.attention3 = self.attention_block(c3)
        self.attention2 = self.attention_block(c2)
        self.attention1 = self.attention_block(c1)
        self.decoder4 = DecoderBlock(c4, c3)
        self.decoder3 = DecoderBlock(c3, c2)
        self.decoder2 = DecoderBlock(c2, c1)
        self.decoder1 = DecoderBlock(c1, c1)
        self.finaldeconv1 = nn.ConvTranspose2d(c1, 32, 4, stride=2, padding=1)
        self.finalrelu1 = nn.ReLU(inplace=True)
        self.finalconv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.finalrelu2 = nn.ReLU(inplace=True)
        self.finalconv3 = nn.Conv2d(32, num_classes, 3, padding=1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W), H and W multiples of 32 -> logits (B, K, H, W)."""
        e1, e2, e3, e4 = self.backbone(x)
        d4 = self.decoder4(self.attention4(e4)) + self.attention3(e3)
        d3 = self.decoder3(d4) + self.attention2(e2)
        d2 = self.decoder2(d3) + self.attention1(e1)
        d1 = self.decoder1(d2)
        x = self.finalrelu1(self.finaldeconv1(d1))
        x = self.finalrelu2(self.finalconv2(x))
        return self.finalconv3(x)
