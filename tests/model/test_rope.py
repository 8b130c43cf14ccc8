"""RoPE: the model's complex-number rotation against the real-arithmetic form of the ONNX graph."""

from __future__ import annotations

import pytest
import torch

from samkit.model.attention import RoPEAttention, apply_rope, axial_rope_angles, rotate_pairs


def _tables(dim: int, side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ang = axial_rope_angles(dim, side, side)
    return ang.cos(), ang.sin(), torch.polar(torch.ones_like(ang), ang)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
def test_complex_rotation_equals_the_real_form(dtype, tol):
    cos, sin, freqs = _tables(32, 8)
    x = torch.randn(2, 8 * 8, 4, 32).transpose(1, 2).to(dtype)  # B x H x N x C, a transposed view
    got, want = rotate_pairs(x, freqs), apply_rope(x, cos, sin)
    assert got.dtype == dtype and got.shape == x.shape
    assert (got.float() - want.float()).abs().max() <= tol
    # a rotation keeps the length of every channel pair
    pairs = lambda t: t.float().unflatten(-1, (-1, 2)).norm(dim=-1)  # noqa: E731
    assert torch.allclose(pairs(got), pairs(x), atol=tol * 4)


def test_keys_of_several_frames_and_pointers():
    """Keys that are copies of the query grid are each rotated like the queries; the excluded
    pointer tokens are left alone."""
    torch.manual_seed(0)
    attn = RoPEAttention(64, 1, kv_in_dim=32, rope_k_repeat=True, feat_sizes=(4, 4)).eval()
    q = torch.randn(1, 16, 64)
    k = torch.randn(1, 3 * 16 + 5, 32)
    with torch.no_grad():
        out = attn(q, k, k, num_k_exclude_rope=5)
        # the same attention with the real form and repeated tables
        qp, kp, vp = attn._project(q, k, k)
        cos, sin = attn._cos_sin(16, q.device)
        k_rot = apply_rope(kp[:, :, :48], cos.repeat(3, 1), sin.repeat(3, 1))
        want = attn._attend(apply_rope(qp, cos, sin), torch.cat([k_rot, kp[:, :, 48:]], dim=-2), vp)
    assert (out - want).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="whole copies"):
        attn(q, torch.randn(1, 20, 32), torch.randn(1, 20, 32))


def test_gradients_flow_through_the_rotation():
    attn = RoPEAttention(32, 2, feat_sizes=(4, 4))
    x = torch.randn(2, 16, 32, requires_grad=True)
    attn(x, x, x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
