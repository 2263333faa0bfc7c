"""The three attention blocks of Li et al.'s networks, in linear time and ONNX-clean form.

All three flatten a feature map ``(B, C, H, W)`` to ``(B, C, N)`` with ``N = H*W`` and
transpose only with explicit, non-negative dimension pairs: the reference code's
``permute(-3, -1, -2)`` makes the TorchScript ONNX exporter write an invalid Transpose.
Shapes are read as (H, W) in that order, which also fixes the reference's H/W swap on
non-square inputs. Parameter names (``gamma``, ``query_conv``, ``key_conv``,
``value_conv``) follow the reference so trained weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KernelAttention", "ChannelAttention", "LinearAttention"]

EPS = 1e-6


class _QKV(nn.Module):
    """1x1 query/key projections to C/8 channels and a value projection to C, all with bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return q, k as ``(B, C/8, N)`` and v as ``(B, C, N)``."""
        q = self.query_conv(x).flatten(2)
        k = self.key_conv(x).flatten(2)
        v = self.value_conv(x).flatten(2)
        return q, k, v


class KernelAttention(_QKV):
    """MANet's kernel attention (KAM) with the softplus feature map phi.

    ``out_n = sum_m [phi(q_n).phi(k_m)] v_m / phi(q_n).(sum_m phi(k_m) + eps)``, computed
    by associating ``phi(K) V^T`` first, so cost is linear in N. Returns ``x + gamma*out``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        q, k, v = self.project(x)
        q, k = F.softplus(q), F.softplus(k)
        kv = torch.bmm(k, v.transpose(1, 2))  # (B, C/8, C) = sum_m phi(k_m) v_m^T
        key_sum = k.sum(dim=2, keepdim=True) + EPS  # (B, C/8, 1)
        denominator = (q * key_sum).sum(dim=1, keepdim=True)  # (B, 1, N)
        numerator = torch.bmm(kv.transpose(1, 2), q)  # (B, C, N)
        out = (numerator / denominator).view_as(x)
        return x + self.gamma * out


class ChannelAttention(nn.Module):
    """DANet-style channel attention (CAM), quadratic in C only, its energies in float32.

    ``E = X X^T``; ``A = softmax_j(max_j E_ij - E_ij)``; ``out = A X``; returns
    ``x + gamma*out``. E is a sum over N products and exceeds float16's range on large maps,
    so the block leaves autocast and upcasts. ``A X`` is a convex combination of the rows
    of X (each row of A sums to one), so in a bfloat16 network it runs in bfloat16: it cannot
    overflow, and it is half of the block's work (a sixth of MANet-R50's time in bfloat16
    when done in float32).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self._attend(x)
        return self._attend(x)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.float().flatten(2)  # (B, C, N)
        energy = torch.bmm(flat, flat.transpose(1, 2))  # (B, C, C)
        energy = energy.amax(dim=2, keepdim=True) - energy
        attention = torch.softmax(energy, dim=2)
        if x.dtype == torch.bfloat16:
            return x + self.gamma.to(x.dtype) * torch.bmm(attention.to(x.dtype), x.flatten(2)).view(x.shape)
        out = torch.bmm(attention, flat).view(x.shape)
        return x + (self.gamma.float() * out).to(x.dtype)


class LinearAttention(_QKV):
    """Linear attention from a first-order Taylor expansion of softmax (LAM).

    With q, k L2-normalised per position across channels, ``exp(q.k) ~ 1 + q.k``, so
    ``out_n = [sum_m v_m + (sum_m v_m k_m^T) q_n] / [N + q_n.(sum_m k_m + eps)]``.
    MAResU-Net adds the input back (``residual=True``: ``x + gamma*out``); ABCNet does not
    (``gamma*out``, zero at initialisation). The norm is clamped at 1e-12, which changes
    nothing except that an all-zero projection no longer yields NaN.
    """

    def __init__(self, channels: int, residual: bool):
        super().__init__(channels)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        q, k, v = self.project(x)
        q = F.normalize(q, p=2.0, dim=1, eps=1e-12)
        k = F.normalize(k, p=2.0, dim=1, eps=1e-12)
        positions = q.shape[2]
        value_sum = v.sum(dim=2, keepdim=True)  # (B, C, 1)
        vk = torch.bmm(v, k.transpose(1, 2))  # (B, C, C/8)
        numerator = value_sum + torch.bmm(vk, q)  # (B, C, N)
        key_sum = k.sum(dim=2, keepdim=True) + EPS  # (B, C/8, 1)
        denominator = (q * key_sum).sum(dim=1, keepdim=True) + positions  # (B, 1, N)
        out = self.gamma * (numerator / denominator).view_as(x)
        return x + out if self.residual else out
