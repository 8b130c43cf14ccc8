"""Video memory: the memory encoder that turns a frame's features and predicted mask into a
memory, and the memory attention that conditions the next frame's features on past memories.

Tensor conventions: :class:`MemoryAttention` works on sequence-first token tensors
(``tokens x B x C``), as the video tracker lays out its memory bank; the layers inside it are
batch-first (``B x tokens x C``), like :mod:`samkit.model.attention`. The memory encoder works
on ``B x C x H x W`` maps.

Parameter names equal the keys of the official checkpoints under ``memory_attention.`` and
``memory_encoder.``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from samkit.errors import ConfigError
from samkit.model.attention import RoPEAttention
from samkit.model.layers import DropPath, LayerNorm2d, activation_fn
from samkit.model.position import SineGridEncoding

__all__ = [
    "MemoryConfig",
    "MemoryAttentionLayer",
    "MemoryAttention",
    "MaskDownSampler",
    "CXBlock",
    "Fuser",
    "MemoryEncoder",
    "build_memory_attention",
    "build_memory_encoder",
]


@dataclass
class MemoryConfig:
    """Settings of the memory attention and memory encoder.

    The defaults are those of every official SAM 2 and SAM 2.1 model.
    """

    # --- shared widths
    d_model: int = 256  # width of the image tokens (and of the memory encoder's input)
    mem_dim: int = 64  # width of a memory token (the memory encoder's output)
    # --- memory attention
    num_layers: int = 4  # memory attention layers
    num_heads: int = 1  # heads of both self- and cross-attention
    dim_feedforward: int = 2048  # hidden width of each layer's feed-forward block
    dropout: float = 0.1  # dropout in attention, after each block and inside the feed-forward
    activation: str = "relu"  # feed-forward activation (relu, gelu)
    rope_theta: float = 10000.0  # base of the rotary position frequencies
    feat_sizes: tuple[int, int] = (64, 64)  # (w, h) token grid of a frame at 1024 px, stride 16
    pos_enc_at_input: bool = True  # add 0.1 * position encoding to the image tokens at input
    pos_enc_at_attn: bool = False  # add the position encoding to self-attention queries/keys
    pos_enc_at_cross_attn_keys: bool = True  # add the memory position encoding to memory keys
    pos_enc_at_cross_attn_queries: bool = False  # add the position encoding to cross-attn queries
    # --- memory encoder
    mask_kernel_size: int = 3  # conv kernel of each mask down-sampling step
    mask_stride: int = 2  # stride of each mask down-sampling step
    mask_padding: int = 1  # padding of each mask down-sampling step
    mask_total_stride: int = 16  # overall mask down-sampling (image px per feature px)
    fuser_layers: int = 2  # ConvNeXt blocks fusing pixel features with the mask
    cx_kernel_size: int = 7  # depthwise kernel of the ConvNeXt blocks
    cx_padding: int = 3  # padding of that kernel
    layer_scale_init: float = 1e-6  # initial ConvNeXt layer scale; <= 0 disables it
    use_dwconv: bool = True  # depthwise (grouped) rather than full convolution in the blocks
    pos_temperature: float = 10000.0  # temperature of the memory's sine position encoding

    def __post_init__(self) -> None:
        self.feat_sizes = tuple(self.feat_sizes)  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# Memory attention


class MemoryAttentionLayer(nn.Module):
    """One pre-norm block: self-attention over the current frame's tokens, cross-attention to
    the memory, then a feed-forward block, each added back to its input.

    ``forward(x, memory, pos, memory_pos, num_k_exclude_rope)`` (batch-first):
    ``x`` and ``pos`` are ``B x HW x d_model``, ``memory`` and ``memory_pos`` are
    ``B x M x C_mem``; the last ``num_k_exclude_rope`` memory tokens (object pointers) get no
    rotary encoding. Returns ``B x HW x d_model``.
    """

    def __init__(
        self,
        *,
        d_model: int,
        self_attention: RoPEAttention,
        cross_attention: RoPEAttention,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
        pos_enc_at_cross_attn_queries: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.self_attn = self_attention
        self.cross_attn_image = cross_attention
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.act = activation_fn(activation)
        self.drop_ff = nn.Dropout(dropout)  # inside the feed-forward block
        self.drop_self = nn.Dropout(dropout)  # on each block's residual branch
        self.drop_cross = nn.Dropout(dropout)
        self.drop_out = nn.Dropout(dropout)
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries

    @staticmethod
    def _with_pos(x: torch.Tensor, pos: torch.Tensor | None, use: bool) -> torch.Tensor:
        return x + pos if use and pos is not None else x

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        num_k_exclude_rope: int = 0,
    ) -> torch.Tensor:
        # self-attention among the current frame's tokens
        h = self.norm1(x)
        qk = self._with_pos(h, pos, self.pos_enc_at_attn)
        x = x + self.drop_self(self.self_attn(qk, qk, h))

        # cross-attention from the frame to the memory (spatial memories + object pointers)
        h = self.norm2(x)
        q = self._with_pos(h, pos, self.pos_enc_at_cross_attn_queries)
        k = self._with_pos(memory, memory_pos, self.pos_enc_at_cross_attn_keys)
        x = x + self.drop_cross(self.cross_attn_image(q, k, memory, num_k_exclude_rope))

        # feed-forward
        h = self.linear2(self.drop_ff(self.act(self.linear1(self.norm3(x)))))
        return x + self.drop_out(h)


class MemoryAttention(nn.Module):
    """Conditions the current frame's image tokens on the memory bank: a stack of
    :class:`MemoryAttentionLayer` followed by a LayerNorm.

    The memory is ``k`` frames of ``HW`` spatial memory tokens each, followed by
    ``num_obj_ptr_tokens`` object-pointer tokens.
    """

    def __init__(self, *, d_model: int, layers: Sequence[MemoryAttentionLayer],
                 pos_enc_at_input: bool = True) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(
        self,
        curr: torch.Tensor,
        memory: torch.Tensor,
        curr_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """Sequence-first tensors.

        Args:
            curr: the current frame's tokens, ``HW x B x d_model`` (a square ``H = W`` grid).
            memory: ``M x B x C_mem`` with ``M = k * HW + num_obj_ptr_tokens``.
            curr_pos: position encoding of ``curr``, same shape, or None.
            memory_pos: position encoding of ``memory``, same shape, or None.
            num_obj_ptr_tokens: how many trailing memory tokens are object pointers.

        Returns:
            The conditioned tokens, ``HW x B x d_model``.
        """
        self._check_inputs(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)
        x = curr
        if self.pos_enc_at_input and curr_pos is not None:
            x = x + 0.1 * curr_pos

        # to batch-first for the layers
        x = x.transpose(0, 1)
        mem = memory.transpose(0, 1)
        pos = curr_pos.transpose(0, 1) if curr_pos is not None else None
        mem_pos = memory_pos.transpose(0, 1) if memory_pos is not None else None
        for layer in self.layers:
            x = layer(x, mem, pos, mem_pos, num_obj_ptr_tokens)
        return self.norm(x).transpose(0, 1)

    def _check_inputs(self, curr: torch.Tensor, memory: torch.Tensor,
                      curr_pos: torch.Tensor | None, memory_pos: torch.Tensor | None,
                      num_obj_ptr_tokens: int) -> None:
        """Raise a ValueError naming the problem when the inputs cannot go together."""
        if curr.ndim != 3 or curr.shape[-1] != self.d_model:
            raise ValueError(f"curr must be HW x B x {self.d_model} (sequence first), "
                             f"got {tuple(curr.shape)}")
        if memory.ndim != 3:
            raise ValueError(f"memory must be M x B x C_mem (sequence first), got {tuple(memory.shape)}")
        if memory.shape[1] != curr.shape[1]:
            raise ValueError(f"curr and memory differ in batch size (dim 1): "
                             f"{curr.shape[1]} vs {memory.shape[1]}")
        if curr_pos is not None and curr_pos.shape != curr.shape:
            raise ValueError(f"curr_pos {tuple(curr_pos.shape)} must have the shape of curr "
                             f"{tuple(curr.shape)}")
        if memory_pos is not None and memory_pos.shape != memory.shape:
            raise ValueError(f"memory_pos {tuple(memory_pos.shape)} must have the shape of memory "
                             f"{tuple(memory.shape)}")
        hw, m = curr.shape[0], memory.shape[0]
        side = math.isqrt(hw)
        if side * side != hw:
            raise ValueError(f"curr must be a square grid of tokens, got HW = {hw}")
        if not 0 <= num_obj_ptr_tokens <= m:
            raise ValueError(f"num_obj_ptr_tokens = {num_obj_ptr_tokens} is outside [0, {m}] "
                             "(the memory length)")
        if (m - num_obj_ptr_tokens) % hw:
            raise ValueError(f"memory has {m - num_obj_ptr_tokens} spatial tokens (M = {m} minus "
                             f"{num_obj_ptr_tokens} object pointers), not a multiple of the "
                             f"current frame's HW = {hw}")


def build_memory_attention(cfg: MemoryConfig) -> MemoryAttention:
    """The memory attention described by ``cfg``, randomly initialised."""

    def rope_attention(*, cross: bool) -> RoPEAttention:
        return RoPEAttention(cfg.d_model, cfg.num_heads, dropout=cfg.dropout,
                             kv_in_dim=cfg.mem_dim if cross else None, rope_theta=cfg.rope_theta,
                             rope_k_repeat=cross, feat_sizes=cfg.feat_sizes)

    layers = [
        MemoryAttentionLayer(
            d_model=cfg.d_model,
            self_attention=rope_attention(cross=False),
            cross_attention=rope_attention(cross=True),
            dim_feedforward=cfg.dim_feedforward,
            dropout=cfg.dropout,
            activation=cfg.activation,
            pos_enc_at_attn=cfg.pos_enc_at_attn,
            pos_enc_at_cross_attn_keys=cfg.pos_enc_at_cross_attn_keys,
            pos_enc_at_cross_attn_queries=cfg.pos_enc_at_cross_attn_queries,
        )
        for _ in range(cfg.num_layers)
    ]
    return MemoryAttention(d_model=cfg.d_model, layers=layers, pos_enc_at_input=cfg.pos_enc_at_input)


# ---------------------------------------------------------------------------------------------
# Memory encoder


class MaskDownSampler(nn.Module):
    """Shrinks a mask ``B x 1 x H x W`` by ``total_stride`` to ``B x embed_dim x H/s x W/s``.

    Each step is a strided conv that multiplies the channels by ``stride**2``, a channel
    LayerNorm and an activation; a 1x1 conv maps to ``embed_dim`` at the end.
    """

    def __init__(self, *, embed_dim: int = 256, kernel_size: int = 3, stride: int = 2,
                 padding: int = 1, total_stride: int = 16,
                 activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        steps = round(math.log(total_stride, stride)) if stride > 1 else 0
        if stride < 2 or stride**steps != total_stride:
            raise ConfigError(f"mask total_stride {total_stride} must be a power of stride {stride}")
        modules: list[nn.Module] = []
        channels = 1
        for _ in range(steps):
            out = channels * stride**2
            modules += [nn.Conv2d(channels, out, kernel_size, stride=stride, padding=padding),
                        LayerNorm2d(out), activation()]
            channels = out
        modules.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*modules)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(mask)


class CXBlock(nn.Module):
    """ConvNeXt block on ``B x dim x H x W``: depthwise conv, channel LayerNorm, a 4x wide
    pointwise MLP with GELU, a per-channel layer scale ``gamma``, and a residual connection.
    """

    def __init__(self, *, dim: int, kernel_size: int = 7, padding: int = 3,
                 drop_path: float = 0.0, layer_scale_init: float = 1e-6,
                 use_dwconv: bool = True) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding,
                                groups=dim if use_dwconv else 1)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)  # 1x1 convs as linears on channels-last maps
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (nn.Parameter(torch.full((dim,), layer_scale_init))
                      if layer_scale_init > 0 else None)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # B x H x W x C
        h = self.pwconv2(self.act(self.pwconv1(h)))
        if self.gamma is not None:
            h = h * self.gamma
        return x + self.drop_path(h.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """A sequence of blocks (``B x C x H x W`` -> same), after an optional 1x1 conv ``proj``."""

    def __init__(self, layers: Sequence[nn.Module], *, input_projection_dim: int | None = None) -> None:
        super().__init__()
        self.proj = (nn.Conv2d(input_projection_dim, input_projection_dim, kernel_size=1)
                     if input_projection_dim is not None else nn.Identity())
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encodes one frame into a memory: its pixel features fused with its mask.

    ``forward(pix_feat, masks, skip_mask_sigmoid=False)``: ``pix_feat`` is
    ``B x in_dim x h x w``, ``masks`` are mask logits ``B x 1 x H x W`` with ``H = h * s``,
    ``W = w * s`` for the down-sampler's total stride ``s`` (probabilities when
    ``skip_mask_sigmoid``). Returns ``(features, pos)``, both ``B x out_dim x h x w``.
    """

    def __init__(self, *, mask_downsampler: MaskDownSampler, fuser: Fuser,
                 position_encoding: SineGridEncoding, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.mask_downsampler = mask_downsampler
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = fuser
        self.out_proj = (nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim
                         else nn.Identity())
        self.position_encoding = position_encoding

    def forward(self, pix_feat: torch.Tensor, masks: torch.Tensor,
                skip_mask_sigmoid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if pix_feat.ndim != 4 or pix_feat.shape[1] != self.in_dim:
            raise ValueError(f"pix_feat must be B x {self.in_dim} x h x w, got {tuple(pix_feat.shape)}")
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != pix_feat.shape[0]:
            raise ValueError(f"masks must be B x 1 x H x W with B = {pix_feat.shape[0]}, "
                             f"got {tuple(masks.shape)}")
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)  # closer to the binary masks seen in training
        mask_feat = self.mask_downsampler(masks)
        if mask_feat.shape[-2:] != pix_feat.shape[-2:]:
            raise ValueError(f"masks of size {tuple(masks.shape[-2:])} shrink to "
                             f"{tuple(mask_feat.shape[-2:])}, not the feature size "
                             f"{tuple(pix_feat.shape[-2:])}")
        x = self.pix_feat_proj(pix_feat) + mask_feat
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)


def build_memory_encoder(cfg: MemoryConfig) -> MemoryEncoder:
    """The memory encoder described by ``cfg``, randomly initialised."""
    downsampler = MaskDownSampler(embed_dim=cfg.d_model, kernel_size=cfg.mask_kernel_size,
                                  stride=cfg.mask_stride, padding=cfg.mask_padding,
                                  total_stride=cfg.mask_total_stride)
    blocks = [CXBlock(dim=cfg.d_model, kernel_size=cfg.cx_kernel_size, padding=cfg.cx_padding,
                      layer_scale_init=cfg.layer_scale_init, use_dwconv=cfg.use_dwconv)
              for _ in range(cfg.fuser_layers)]
    return MemoryEncoder(
        mask_downsampler=downsampler,
        fuser=Fuser(blocks),
        position_encoding=SineGridEncoding(cfg.mem_dim, temperature=cfg.pos_temperature),
        in_dim=cfg.d_model,
        out_dim=cfg.mem_dim,
    )
