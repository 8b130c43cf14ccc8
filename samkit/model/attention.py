"""Attention layers: plain multi-head attention with optional down-projection, and its
rotary-position (RoPE) variant used by memory attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# Logits per chunk of the bf16 CPU attention (bytes): chunks of this size are reused from the heap.
BF16_LOGITS_CHUNK = 16 << 20


def _chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exact softmax attention as GEMM, softmax, GEMM over chunks of queries: ``B x H x Nq x C``,
    ``B x H x Nk x C``, ``B x H x Nk x Cv`` -> ``B x H x Nq x Cv``. For bfloat16 on the CPU, where
    the fused kernel gains nothing over float32 and two bf16 GEMMs do."""
    b, h, n, c = q.shape
    m = k.shape[-2]
    rows = max(1, min(n, BF16_LOGITS_CHUNK // max(1, b * h * m * q.element_size())))
    kt = (k * c ** -0.5).transpose(-1, -2)
    out = torch.empty(b, h, n, v.shape[-1], dtype=q.dtype, device=q.device)
    logits = torch.empty(b, h, rows, m, dtype=q.dtype, device=q.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        chunk = logits[:, :, : stop - start]
        torch.matmul(q[:, :, start:stop], kt, out=chunk)
        torch.matmul(torch.softmax(chunk, dim=-1), v, out=out[:, :, start:stop])
    return out


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Softmax attention ``B x H x N x C`` (no mask), scale ``C ** -0.5``: PyTorch's fused kernel,
    except for bfloat16 on the CPU without gradients (:func:`_chunked_attention`, the bf16 mode)."""
    if (q.dtype == torch.bfloat16 and q.device.type == "cpu" and dropout_p == 0.0
            and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))):
        return _chunked_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


class Attention(nn.Module):
    """Multi-head attention whose inner width may be ``embedding_dim // downsample_rate``.

    ``forward(q, k, v)``: ``q`` is ``B x Nq x embedding_dim``, ``k`` and ``v`` are
    ``B x Nk x kv_in_dim``; returns ``B x Nq x embedding_dim``. Any of them may have batch 1
    while the others have ``B``: it is then projected once and shared.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1,
                 dropout: float = 0.0, kv_in_dim: int | None = None) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim or embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``B x N x C`` -> ``B x heads x N x C/heads``."""
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Project and split into heads. An input with batch 1 is shared by the other inputs'
        batch: it is projected once and broadcast (the image side of many prompts on one image)."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        b = max(q.shape[0], k.shape[0], v.shape[0])
        return tuple(t.expand(b, -1, -1, -1) if t.shape[0] != b else t for t in (q, k, v))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = scaled_dot_product(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._attend(*self._project(q, k, v))


def axial_rope_angles(dim: int, width: int, height: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles of 2-D axial RoPE for a ``height x width`` grid in row-major order.

    Returns ``(height*width) x (dim/2)``: the first ``dim/4`` columns rotate by the x
    position, the last ``dim/4`` by the y position.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    idx = torch.arange(width * height, dtype=torch.float32)
    xs = idx % width
    ys = torch.div(idx, width, rounding_mode="floor")
    return torch.cat([torch.outer(xs, freqs), torch.outer(ys, freqs)], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (``... x N x C``) by angles given as
    ``cos``/``sin`` of shape ``N x C/2``, in real arithmetic. Computed in float32, returned in
    ``x.dtype``. The exported ONNX graph's form (ONNX has no complex type); the model runs
    :func:`rotate_pairs`, the same rotation as one complex product (3-10x faster on the CPU,
    docs/onnx/NOTES.md)."""
    xf = x.float().unflatten(-1, (-1, 2))
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


def rotate_pairs(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (``... x N x C``) by the unit complex numbers
    ``freqs`` (``N x C/2`` complex64, broadcast over the leading axes): the channel pair
    ``(a, b)`` is the complex number ``a + ib``. Computed in float32, returned in ``x.dtype``."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(pairs * freqs).flatten(-2).to(x.dtype)


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary position encoding on queries and keys.

    The queries form a square grid (``Nq = s*s``). The keys are ``rope_k_repeat`` copies of
    that grid (memories of several past frames) followed by ``num_k_exclude_rope`` tokens
    (object pointers) that are not rotated.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1,
                 dropout: float = 0.0, kv_in_dim: int | None = None, rope_theta: float = 10000.0,
                 rope_k_repeat: bool = False, feat_sizes: tuple[int, int] = (64, 64)) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate, dropout, kv_in_dim)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self.feat_sizes = tuple(feat_sizes)
        self._angles: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _cos_sin(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotation angles of an ``n``-token square grid as ``cos``, ``sin`` (``n x C/2``)."""
        return self._tables(n, device)[:2]

    def _freqs(self, n: int, device: torch.device) -> torch.Tensor:
        """The rotations of an ``n``-token square grid as unit complex numbers (``n x C/2``)."""
        return self._tables(n, device)[2]

    def _tables(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (n, str(device))
        if key not in self._angles:
            side = int(round(n ** 0.5))
            if side * side != n:
                raise ValueError(f"RoPE attention needs a square query grid, got {n} tokens")
            ang = axial_rope_angles(self.internal_dim // self.num_heads, side, side, self.rope_theta)
            ang = ang.to(device)
            cos, sin = ang.cos(), ang.sin()
            self._angles[key] = (cos, sin, torch.complex(cos, sin))
        return self._angles[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                num_k_exclude_rope: int = 0) -> torch.Tensor:
        q, k, v = self._project(q, k, v)
        nq = q.shape[-2]
        freqs = self._freqs(nq, q.device)
        q = rotate_pairs(q, freqs)
        n_rot = k.shape[-2] - num_k_exclude_rope
        if n_rot > 0:
            if n_rot != nq and not self.rope_k_repeat:
                raise ValueError("keys and queries differ in length; set rope_k_repeat=True")
            if n_rot % nq:
                raise ValueError(f"the {n_rot} rotated keys are not whole copies of the {nq}-token query grid")
            # the keys are n_rot // nq copies of the query grid: one table, broadcast over the copies
            k_rot = rotate_pairs(k[:, :, :n_rot].unflatten(2, (n_rot // nq, nq)), freqs).flatten(2, 3)
            k = k_rot if num_k_exclude_rope == 0 else torch.cat([k_rot, k[:, :, n_rot:]], dim=-2)
        return self._attend(q, k, v)
