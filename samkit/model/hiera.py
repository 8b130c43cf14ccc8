"""Hiera: the hierarchical vision transformer that is SAM 2's image trunk.

Four stages of transformer blocks on a ``B x H x W x C`` token grid (channels last). Most
blocks attend inside non-overlapping windows; a few attend globally. The first block of
stages 2-4 halves the grid with a max-pool of the queries (query pooling) and doubles the
width and the number of heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.model.attention import scaled_dot_product
from samkit.model.layers import MLP, DropPath


@dataclass(frozen=True)
class HieraConfig:
    """Shape of a Hiera trunk. Field names follow the official configs."""

    embed_dim: int = 96                      # width of stage 1
    num_heads: int = 1                       # heads of stage 1
    stages: tuple[int, ...] = (1, 2, 7, 2)   # blocks per stage
    global_att_blocks: tuple[int, ...] = (5, 7, 9)  # indices of blocks with global attention
    window_spec: tuple[int, ...] = (8, 4, 14, 7)    # window side per stage
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)  # size of the background pos. embedding
    q_pool: int = 3                          # how many stage transitions pool the queries
    q_stride: tuple[int, int] = (2, 2)       # pooling stride at a stage transition
    dim_mul: float = 2.0                     # width multiplier at a stage transition
    head_mul: float = 2.0                    # heads multiplier at a stage transition
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0

    @property
    def channel_list(self) -> list[int]:
        """Output widths of the stages, coarsest first (what the FPN neck expects)."""
        dims = [int(self.embed_dim * self.dim_mul ** i) for i in range(len(self.stages))]
        return dims[::-1]


def _pool_nhwc(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a ``B x H x W x C`` grid by ``stride`` (floor on odd sizes)."""
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)


def to_windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``B x H x W x C`` into ``(B*nW) x size x size x C`` windows, zero-padding the
    bottom/right edges to a multiple of ``size``. Also returns the padded ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    ph, pw = (-h) % size, (-w) % size
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // size, size, wp // size, size, c).transpose(2, 3)
    return x.reshape(-1, size, size, c), (hp, wp)


def from_windows(win: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_windows`: ``(B*nW) x size x size x C`` -> ``B x H x W x C``."""
    hp, wp = padded
    nh, nw = hp // size, wp // size
    b = win.shape[0] // (nh * nw)
    x = win.view(b, nh, nw, size, size, -1).transpose(2, 3).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]]


class MultiScaleAttention(nn.Module):
    """Self-attention over a token grid, with optional max-pooling of the queries.

    ``B x H x W x dim`` -> ``B x H' x W' x dim_out`` (``H' = H / stride`` when pooling).
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).view(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)  # each B x HW x heads x d
        if self.q_stride is not None:
            q = _pool_nhwc(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = scaled_dot_product(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """One Hiera block: (windowed) attention and an MLP, each with a residual branch.

    When ``q_stride`` is set the block pools its output grid, and when ``dim != dim_out``
    the residual goes through a linear projection (and the same pooling).
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, *, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, q_stride: tuple[int, int] | None = None,
                 window_size: int = 0) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = _pool_nhwc(shortcut, self.q_stride)
        ws = self.window_size
        if ws > 0:
            x, _ = to_windows(x, ws)
        x = self.attn(x)
        if ws > 0:
            if self.q_stride is not None:
                ws = ws // self.q_stride[0]
            h, w = shortcut.shape[1:3]
            padded = (h + (-h) % ws, w + (-w) % ws)
            x = from_windows(x, ws, padded, (h, w))
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: ``B x 3 x H x W`` image -> ``B x H/4 x W/4 x C`` tokens."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The trunk. ``forward(images B x 3 x S x S)`` returns the output of every stage,
    finest first, as ``B x C_i x S/4/2^i x S/4/2^i`` (channels first)."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        if len(cfg.stages) != len(cfg.window_spec):
            raise ValueError("HieraConfig: stages and window_spec must have the same length")
        self.cfg = cfg
        depth = sum(cfg.stages)
        ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        self.stage_ends = ends
        pool_blocks = [e + 1 for e in ends[:-1]][: cfg.q_pool]
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        w0 = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, w0, w0))
        rates = torch.linspace(0, cfg.drop_path_rate, depth).tolist()

        self.blocks = nn.ModuleList()
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        for i in range(depth):
            # The first block of a stage still works at the previous stage's window size:
            # its queries are pooled to the new grid inside the block.
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in ends:  # first block of a new stage
                dim_out = int(dim * cfg.dim_mul)
                heads = int(heads * cfg.head_mul)
                stage += 1
            self.blocks.append(MultiScaleBlock(
                dim, dim_out, heads, mlp_ratio=cfg.mlp_ratio, drop_path=rates[i],
                q_stride=tuple(cfg.q_stride) if i in pool_blocks else None, window_size=window,
            ))
            dim = dim_out

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Background embedding resized to ``h x w`` plus the tiled window embedding: ``1 x h x w x C``.

        Without gradients the result is kept for the size, dtype and weights it was made from (a
        bicubic resize of the whole grid per image otherwise)."""
        key = (h, w, self.pos_embed.dtype, self.pos_embed.device, self.pos_embed._version,
               self.pos_embed_window._version)
        if not torch.is_grad_enabled():
            cached = getattr(self, "_pos_cache", None)
            if cached is not None and cached[0] == key:
                return cached[1]
            out = self._pos_embed_uncached(h, w)
            self._pos_cache = (key, out)
            return out
        return self._pos_embed_uncached(h, w)

    def _pos_embed_uncached(self, h: int, w: int) -> torch.Tensor:
        bg = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        reps = (1, 1, h // win.shape[2], w // win.shape[3])
        return (bg + win.tile(reps)).permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(images)
        x = x + self._pos_embed(x.shape[1], x.shape[2])
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outs.append(x.permute(0, 3, 1, 2))
        return outs
