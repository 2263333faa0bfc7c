"""Per-band standardisation as a module, shared by training, the PyTorch runner and ONNX export.

Networks are trained on ``(x - mean) / std`` with the card's per-band statistics. Doing that
arithmetic in one module (with the statistics as float32 buffers) keeps training, inference
and the exported graph bit-for-bit in agreement, and lets ``.to(device)`` move the
statistics along with the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Standardize"]


class Standardize(torch.nn.Module):
    """``(x - mean) / std`` per band, for NCHW batches."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} bands but std has {len(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The batch ``x`` (N, C, H, W) standardised band by band; float32 unless ``x`` is wider."""
        return (x - self.mean) / self.std
