"""Attention blocks against a quadratic-form computation written from the papers' formulas.

The blocks compute in linear time by re-association; here each block's output is
recomputed the slow way, with the explicit N x N similarity matrix, in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aerialseg.models.attention import EPS, ChannelAttention, KernelAttention, LinearAttention


def _projections(block, x):
    q = block.query_conv(x).double().flatten(2)
    k = block.key_conv(x).double().flatten(2)
    v = block.value_conv(x).double().flatten(2)
    return q, k, v


def _set_gamma(block, value=0.7):
    with torch.no_grad():
        block.gamma.fill_(value)


@pytest.mark.parametrize("hw", [(6, 10), (8, 8), (1, 5)])
def test_kernel_attention_equals_quadratic_form(hw):
    torch.manual_seed(1)
    block = KernelAttention(32)
    _set_gamma(block)
    x = torch.randn(2, 32, *hw)
    q, k, v = _projections(block, x)
    phi_q, phi_k = F.softplus(q), F.softplus(k)
    similarity = torch.einsum("bcn,bcm->bnm", phi_q, phi_k)  # (B, N, N)
    denominator = similarity.sum(2) + EPS * phi_q.sum(1)  # (B, N)
    out = torch.einsum("bnm,bcm->bcn", similarity, v) / denominator[:, None, :]
    expected = x.double() + 0.7 * out.view(2, 32, *hw)
    torch.testing.assert_close(block(x).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("hw", [(6, 10), (7, 3)])
def test_linear_attention_equals_taylor_quadratic_form(residual, hw):
    torch.manual_seed(2)
    block = LinearAttention(32, residual=residual)
    _set_gamma(block)
    x = torch.randn(2, 32, *hw)
    q, k, v = _projections(block, x)
    q_hat = q / q.norm(dim=1, keepdim=True)
    k_hat = k / k.norm(dim=1, keepdim=True)
    similarity = 1 + torch.einsum("bcn,bcm->bnm", q_hat, k_hat)  # first-order Taylor of exp
    denominator = similarity.sum(2) + EPS * q_hat.sum(1)
    out = 0.7 * (torch.einsum("bnm,bcm->bcn", similarity, v) / denominator[:, None, :]).view(2, 32, *hw)
    expected = x.double() + out if residual else out
    torch.testing.assert_close(block(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_linear_attention_without_residual_is_zero_at_initialisation():
    block = LinearAttention(16, residual=False)
    assert torch.count_nonzero(block(torch.randn(1, 16, 4, 4))) == 0


def test_channel_attention_equals_softmax_of_inverted_energy():
    torch.manual_seed(3)
    block = ChannelAttention()
    _set_gamma(block)
    x = torch.randn(2, 16, 5, 7)
    flat = x.double().flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attention = torch.softmax(energy.max(dim=2, keepdim=True).values - energy, dim=2)
    expected = x.double() + 0.7 * (attention @ flat).view_as(x)
    torch.testing.assert_close(block(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_channel_attention_survives_half_precision_inputs_with_large_energy():
    """E = X X^T overflows float16 (max 65504) on large maps; the block upcasts."""
    block = ChannelAttention()
    _set_gamma(block, 1.0)
    x = torch.full((1, 4, 64, 64), 8.0, dtype=torch.float16)  # E = 64*64*64 = 262144 > 65504
    y = block(x)
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all()


def test_zero_projection_gives_no_nan():
    block = LinearAttention(16, residual=True)
    _set_gamma(block)
    with torch.no_grad():
        for conv in (block.query_conv, block.key_conv):
            conv.weight.zero_()
            conv.bias.zero_()
    assert torch.isfinite(block(torch.randn(1, 16, 3, 3))).all()


def test_channel_attention_in_bfloat16_keeps_its_energies_in_float32():
    """Channel 0's energies with channels 1 and 2 are 1000 and 1002: exact in float32, both 1000 in bf16.

    With float32 energies channel 0 attends 88:12 to channels 1 and 2; bf16 energies would make it 50:50
    and move its second pixel from 9.24 to 10.
    """
    block = ChannelAttention()
    _set_gamma(block, 1.0)
    x = torch.tensor([[64.0, 1.0], [15.5, 8.0], [15.5, 10.0]]).view(1, 3, 1, 2).to(torch.bfloat16)
    y = block(x)
    assert y.dtype == torch.bfloat16
    flat = x.double().flatten(2)
    energy = flat @ flat.transpose(1, 2)
    attention = torch.softmax(energy.max(dim=2, keepdim=True).values - energy, dim=2)
    expected = x.double() + (attention @ flat).view_as(x)
    assert expected[0, 0, 0, 1] == pytest.approx(9.24, abs=0.01)
    torch.testing.assert_close(y.double(), expected, rtol=0.02, atol=0.1)
