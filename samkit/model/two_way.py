"""The two-way transformer of the mask decoder: prompt tokens and image tokens attend to
each other in turn.

Two implementations of the same function live here. The reference one (``forward_reference``,
the official layer structure) runs whenever gradients are recorded, so training differentiates
exactly what the official code does. Without gradients (inference) ``forward`` takes the fast
one, which rearranges the algebra of the cross-attentions for many prompts on one image (the
automatic mask generator's 64 point prompts, 100 boxes):

* the image tokens are never projected per prompt: a projection of the image tokens ``X W^T``
  only ever meets a handful of prompt tokens, so it is folded into them (``q (X W_k^T)^T =
  (q W_k) X^T``, ``P (X W_v^T) = (P X) W_v^T``), turning ``P x C x D`` work per prompt into
  ``(heads x tokens) x C x P``; projections of the position encoding, and of the image before
  it first depends on the prompts, are computed once for all prompts;
* image->token attention over a head's ~8 tokens is a batched GEMM, a softmax along the token
  axis with the pixels contiguous (vectorised), and one GEMM with the output projection
  folded into the values (``heads x tokens`` rows of ``C``), accumulated onto the residual;
* prompts go through in small groups, with the attention logits in scratch tensors reused by
  every layer: a fresh large tensor costs a page fault per 4 KiB each time it is made.

The two agree to float32 rounding (tests/model/test_decoder_fast.py states the tolerances).
:meth:`TwoWayTransformer.forward_group` is the per-prompt part; ``samkit.build_model(...,
compile=True)`` compiles it (:meth:`samkit.model.mask_decoder.MaskDecoder.compile_fast_path`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from samkit.model.attention import Attention
from samkit.model.layers import MLP

# Largest block of attention logits one group of prompts takes through the fast path.
GROUP_BYTES = 4 << 20


def _plain(attn: Attention) -> bool:
    """True when every projection of ``attn`` is a plain ``nn.Linear`` (not, say, wrapped
    by an adapter), so that the fast path may read their weights directly."""
    return all(type(m) is nn.Linear for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj))


class Workspace:
    """Scratch tensors that every attention of one :meth:`TwoWayTransformer.forward_fast`
    call reuses: logits of ``n`` prompts x ``heads x tokens`` rows x ``pixels`` columns, and
    the position-encoding part of them."""

    def __init__(self, n: int, heads: int, tokens: int, pixels: int, like: torch.Tensor) -> None:
        size = n * heads * tokens * pixels
        self.logits = like.new_empty(size)
        self.head = like.new_empty(size)

    @staticmethod
    def view(ws: Workspace | None, which: str, *shape: int) -> torch.Tensor | None:
        """``ws.<which>`` viewed as ``shape``; None without a workspace."""
        return None if ws is None else getattr(ws, which)[:math.prod(shape)].view(shape)


def _bmm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return torch.bmm(a, b) if out is None else torch.bmm(a, b, out=out)


def _softmax(x: torch.Tensor, dim: int, in_place: bool) -> torch.Tensor:
    """Softmax along ``dim``; with ``in_place`` written over the contiguous ``x`` (the kernel
    reads each row before writing it; tests/model/test_decoder_fast.py checks the result)."""
    if in_place:
        return torch.ops.aten._softmax.out(x, dim, False, out=x)
    return torch.softmax(x, dim)


def _head_logits(small: torch.Tensor, big: torch.Tensor, ws: Workspace | None) -> torch.Tensor:
    """Per-head dot products of few prompt tokens with many image tokens.

    ``small``: ``B x T x H x d`` (already scaled); ``big``: ``P x (H*d)`` shared by all prompts.
    Returns ``B x H x T x P``, a permuted view of an ``H x B x T x P`` tensor (in ``ws``).
    """
    b, t, h, d = small.shape
    lhs = small.permute(2, 0, 1, 3).reshape(h, b * t, d)
    rhs = big.view(-1, h, d).permute(1, 2, 0)  # H x d x P
    out = _bmm(lhs, rhs, Workspace.view(ws, "head", h, b * t, big.shape[0]))
    return out.view(h, b, t, -1).transpose(0, 1)


def shared_kv(attn: Attention, image: torch.Tensor, key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token->image keys and values of an image shared by every prompt: ``P x C`` image
    tokens and position encoding -> ``(keys 1 x H x P x d, values 1 x H x P x d)``."""
    h = attn.num_heads
    k = attn.k_proj(image + key_pe).view(1, image.shape[0], h, -1).transpose(1, 2)
    v = attn.v_proj(image).view(1, image.shape[0], h, -1).transpose(1, 2)
    return k, v


def tokens_to_image(attn: Attention, q_in: torch.Tensor, keys: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                    kpe: torch.Tensor | None = None, ws: Workspace | None = None) -> torch.Tensor:
    """``attn(q_in, keys + key_pe, keys)`` without projecting the image tokens per prompt.

    ``q_in``: ``B x T x C`` prompt tokens (position encoding added). ``keys``: either the
    ``B x P x C`` image tokens of each prompt, with ``kpe`` = ``key_pe W_k^T`` (``P x D``, no
    bias), or, for one image shared by every prompt, its :func:`shared_kv`. ``ws``: scratch
    for the logits (None: fresh tensors). Returns ``B x T x C``.
    """
    b, t, _ = q_in.shape
    h = attn.num_heads
    q = attn.q_proj(q_in).unflatten(-1, (h, -1))  # B x T x H x d
    d = q.shape[-1]
    if isinstance(keys, tuple):
        k, v = keys  # attend with all B*T queries at once
        qh = q.permute(2, 0, 1, 3).reshape(1, h, b * t, d)
        out = F.scaled_dot_product_attention(qh, k, v)  # 1 x H x BT x d
        out = out[0].view(h, b, t, d).permute(1, 2, 0, 3).reshape(b, t, h * d)
        return attn.out_proj(out)
    c, p = keys.shape[-1], keys.shape[-2]
    q = q * d ** -0.5
    # logits = q (keys W_k^T + key_pe W_k^T + b_k)^T; the b_k term is constant along the
    # softmax axis and drops out
    qk = torch.einsum("bthd,hdc->bhtc", q, attn.k_proj.weight.view(h, d, c)).reshape(b, h * t, c)
    logits = _bmm(qk, keys.transpose(1, 2), Workspace.view(ws, "logits", b, h * t, p))  # B x HT x P
    pe_part = _head_logits(q, kpe, ws)
    if ws is None:
        logits = (logits.view(b, h, t, p) + pe_part).view(b, h * t, p)
    else:
        logits.view(b, h, t, p).add_(pe_part)
    prob = _softmax(logits, -1, in_place=ws is not None)
    # prob (keys W_v^T + b_v) = (prob keys) W_v^T + b_v: each row of prob sums to 1
    pk = torch.bmm(prob, keys).view(b, h, t, c)
    out = torch.einsum("bhtc,hdc->bthd", pk, attn.v_proj.weight.view(h, d, c)).reshape(b, t, h * d)
    return attn.out_proj(out + attn.v_proj.bias)


def image_to_tokens(attn: Attention, residual: torch.Tensor, keys: torch.Tensor | None, q_img: torch.Tensor,
                    k_in: torch.Tensor, v_in: torch.Tensor, ws: Workspace | None = None,
                    in_place: bool = False) -> torch.Tensor:
    """``residual + attn(keys + key_pe, k_in, v_in)`` without projecting the image tokens per
    prompt.

    ``residual``: ``B x P x C`` (updated in place with ``in_place``) or ``1 x P x C``.
    ``keys``: ``B x P x C`` image tokens of each prompt, or None for one image shared by every
    prompt; ``q_img``: ``P x D``, ``attn.q_proj(key_pe)`` with per-prompt keys, else
    ``attn.q_proj(image + key_pe)``; ``k_in``, ``v_in``: ``B x T x C`` prompt tokens.
    Returns ``B x P x C``.
    """
    b, t, _ = k_in.shape
    h = attn.num_heads
    k = attn.k_proj(k_in).unflatten(-1, (h, -1))  # B x T x H x d
    v = attn.v_proj(v_in).unflatten(-1, (h, -1))
    d = k.shape[-1]
    k = k * d ** -0.5
    c, p = attn.out_proj.weight.shape[0], q_img.shape[0]
    pe_part = _head_logits(k, q_img, ws)  # B x H x T x P
    if keys is None:
        logits = pe_part.contiguous() if ws is None else Workspace.view(ws, "logits", b, h, t, p).copy_(pe_part)
    else:
        # (keys + key_pe) W_q^T + b_q, dotted with k: the image part folded into k
        kq = torch.einsum("bthd,hdc->bhtc", k, attn.q_proj.weight.view(h, d, c)).reshape(b, h * t, c)
        logits = _bmm(kq, keys.transpose(1, 2), Workspace.view(ws, "logits", b, h * t, p)).view(b, h, t, p)
        logits = logits + pe_part if ws is None else logits.add_(pe_part)
    # softmax over a head's T tokens: axis 2, so that the pixels stay the contiguous axis
    prob = _softmax(logits, 2, in_place=ws is not None).view(b, h * t, p).transpose(1, 2)  # B x P x HT
    # the output projection folded into the values: H*T rows of C
    vo = torch.einsum("bthd,chd->bhtc", v, attn.out_proj.weight.view(c, h, d)).reshape(b, h * t, c)
    if in_place:
        return residual.baddbmm_(prob, vo).add_(attn.out_proj.bias)
    return torch.baddbmm(residual + attn.out_proj.bias, prob, vo)


def compiled_or_eager(owner: nn.Module, attr: str, eager: Callable[..., object], *args: object) -> object:
    """``getattr(owner, attr)(*args)`` (a compiled function) or, when it is None, ``eager(*args)``.

    A compilation that fails (no C++ compiler, a compiler error: torch raises several kinds)
    sets the attribute to None, warns once and runs ``eager``: the same results, more slowly. A
    genuine error in the computation then recurs in ``eager`` and propagates.
    """
    fn = getattr(owner, attr)
    if fn is None:
        return eager(*args)
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any compile failure means: run eagerly
        setattr(owner, attr, None)
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        warnings.warn("torch.compile of the mask decoder failed, so it runs eagerly (the same results, slower): "
                      f"{type(exc).__name__}: {reason}", RuntimeWarning, stacklevel=1)
        return eager(*args)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token
    cross-attention; each followed by a residual and a LayerNorm."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int,
                 skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def _token_side(self, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
        if self.skip_first_layer_pe:
            return self.norm1(self.self_attn(queries, queries, queries))
        q = queries + query_pe
        return self.norm1(queries + self.self_attn(q, q, queries))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``queries``, ``query_pe``: ``B x T x C``; ``keys``, ``key_pe``: ``B x P x C`` (or
        batch 1, shared). Returns ``(queries B x T x C, keys B x P x C)``."""
        queries = self._token_side(queries, query_pe)
        keys_pe = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys_pe, queries + query_pe, queries))
        return queries, keys

    def shared_projections(self, image: torch.Tensor | None, key_pe: torch.Tensor) -> dict[str, object]:
        """What :meth:`forward_fast` needs of the image side that is the same for every
        prompt: ``image`` ``P x C`` when one image is shared by all prompts (else None),
        ``key_pe`` ``P x C``."""
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        if image is not None:
            return {"t2i": shared_kv(t2i, image, key_pe), "q_img": i2t.q_proj(image + key_pe)}
        return {"t2i": F.linear(key_pe, t2i.k_proj.weight), "q_img": i2t.q_proj(key_pe)}

    def forward_fast(self, queries: torch.Tensor, image: torch.Tensor, query_pe: torch.Tensor,
                     shared: dict[str, object], ws: Workspace | None = None,
                     overwrite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` without gradients, the image tokens never projected per prompt.

        ``image``: the image tokens before this layer, ``B x P x C``, or ``1 x P x C`` for one
        image shared by all prompts (``shared`` then comes from :meth:`shared_projections`
        with that image); ``overwrite``: ``image`` may be overwritten. Returns
        ``(queries B x T x C, image tokens B x P x C)``.
        """
        queries = self._token_side(queries, query_pe)
        one_image = isinstance(shared["t2i"], tuple)
        if one_image:
            attn = tokens_to_image(self.cross_attn_token_to_image, queries + query_pe, shared["t2i"])
        else:
            attn = tokens_to_image(self.cross_attn_token_to_image, queries + query_pe, image, shared["t2i"], ws)
        queries = self.norm2(queries + attn)
        queries = self.norm3(queries + self.mlp(queries))
        out = image_to_tokens(self.cross_attn_image_to_token, image, None if one_image else image, shared["q_img"],
                              queries + query_pe, queries, ws, in_place=overwrite)
        n = self.norm4
        return queries, F.layer_norm(out, n.normalized_shape, n.weight, n.bias, n.eps)


class TwoWayTransformer(nn.Module):
    """``forward(image B x C x h x w, image_pe 1 x C x h x w, tokens B x N x C)`` ->
    ``(tokens B x N x C, image tokens B x hw x C)``.

    ``image`` may have batch 1 for ``B`` prompts on one image: until the image tokens first
    attend to the prompts they are the same for every prompt, so they are projected once.
    Without gradients the fast path (see the module docstring) runs; with them the reference.
    """

    def __init__(self, *, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8,
                 mlp_dim: int = 2048, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)
        # the compiled forward_group (MaskDecoder.compile_fast_path), or None: eager
        self.compiled_group: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None

    def fast_path_applies(self, image: torch.Tensor, image_pe: torch.Tensor) -> bool:
        """The fast path runs without gradients and without autocast, in float32, on plain linear
        projections, with one position encoding for the batch and at least one layer."""
        if torch.is_grad_enabled() or not self.layers or image_pe.shape[0] != 1 or image.dtype != torch.float32 \
                or torch.is_autocast_enabled(image.device.type):
            return False
        attns = [self.final_attn_token_to_image]
        for layer in self.layers:
            attns += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
        return all(_plain(a) and (a.dropout_p == 0.0 or not self.training) for a in attns)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fast_path_applies(image, image_pe):
            return self.forward_fast(image, image_pe, tokens)
        return self.forward_reference(image, image_pe, tokens)

    def forward_reference(self, image: torch.Tensor, image_pe: torch.Tensor,
                          tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The official layer structure (what training differentiates)."""
        queries, keys = self._layers_reference(image, image_pe, tokens)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        out = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + out), keys

    def forward_group(self, tokens: torch.Tensor, image: torch.Tensor, shared: list[dict[str, object]],
                      kpe_final: torch.Tensor, ws: Workspace | None = None,
                      first: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-prompt part of :meth:`forward_fast` for ``n`` prompts: ``tokens``
        ``n x T x C``, ``image`` ``n x P x C`` or ``1 x P x C`` (shared), ``shared`` the layers'
        :meth:`TwoWayAttentionBlock.shared_projections`, ``kpe_final`` ``key_pe W_k^T`` of the
        final attention; ``ws``: scratch tensors (None: fresh ones, which is what the compiled
        version runs); ``first``: only the first ``first`` tokens get the final attention (None:
        all). Returns ``(tokens n x T' x C after the final attention (T' = first or T),
        queries n x T x C before it, image tokens n x P x C)``."""
        queries, keys = tokens, image
        for j, (layer, sh) in enumerate(zip(self.layers, shared)):
            queries, keys = layer.forward_fast(queries, keys, tokens, sh, ws, overwrite=j > 0 and ws is not None)
        end = tokens.shape[1] if first is None else first
        return self.final_group(queries[:, :end], tokens[:, :end], keys, kpe_final, ws), queries, keys

    def final_group(self, queries: torch.Tensor, tokens: torch.Tensor, keys: torch.Tensor, kpe_final: torch.Tensor,
                    ws: Workspace | None = None) -> torch.Tensor:
        """The final token->image attention and its norm for ``n`` prompts: ``queries`` and
        ``tokens`` (their position encoding) ``n x T' x C``, ``keys`` ``n x P x C`` -> ``n x T' x C``.
        Each token attends on its own, so any subset of the tokens may be given."""
        out = tokens_to_image(self.final_attn_token_to_image, queries + tokens, keys, kpe_final, ws)
        return self.norm_final_attn(queries + out)

    def forward_fast(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor,
                     group_bytes: int = GROUP_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
        """The same function without gradients; ``image_pe`` must have batch 1.

        The prompts go through :meth:`forward_group` in groups whose attention logits take at
        most ``group_bytes`` (at least one prompt a group).
        """
        done, _, keys, _ = self._run_fast(image, image_pe, tokens, None, None, group_bytes)
        return done, keys

    def forward_split(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor, first: int,
                      keep: Callable[[torch.Tensor], torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` with the final attention for the first ``first`` tokens only, the
        others left for :meth:`finish` (the mask decoder reads the IoU token before it knows
        which prompts' mask tokens it needs).

        ``keep`` (optional): called with the finished first tokens of some prompts (``n x first
        x C``, groups of prompts in order, or all at once) and returns an ``n`` bool tensor of
        those whose image tokens to keep; it must decide each prompt on its own row. Returns
        ``(tokens B x first x C after the final attention, queries B x T x C before it, image
        tokens B' x P x C, rows)``: with ``keep`` the image tokens of the ``B'`` kept prompts
        only and ``rows`` their sorted indices, else all ``B`` and None.
        """
        if self.fast_path_applies(image, image_pe):
            return self._run_fast(image, image_pe, tokens, first, keep, GROUP_BYTES)
        queries, keys = self._layers_reference(image, image_pe, tokens)
        head = self.finish(queries[:, :first], tokens[:, :first], keys, image_pe)
        if keep is None:
            return head, queries, keys, None
        rows = torch.nonzero(keep(head)).flatten()
        return head, queries, keys[rows], rows

    def finish(self, queries: torch.Tensor, tokens: torch.Tensor, keys: torch.Tensor,
               image_pe: torch.Tensor, group_bytes: int = GROUP_BYTES) -> torch.Tensor:
        """The final attention of tokens left out by :meth:`forward_split`: ``queries``,
        ``tokens`` ``B x T' x C`` (any subset of prompts and tokens, with their image tokens
        ``keys`` ``B x P x C``) -> ``B x T' x C``, as :meth:`forward` gives them."""
        key_pe = image_pe.flatten(2).transpose(1, 2)
        final = self.final_attn_token_to_image
        if not self.fast_path_applies(keys, image_pe) or queries.shape[0] == 0:
            out = final(queries + tokens, keys + key_pe, keys)
            return self.norm_final_attn(queries + out)
        b, t, _ = queries.shape
        kpe_final = F.linear(key_pe[0], final.k_proj.weight)
        step = max(1, min(b, group_bytes // (final.num_heads * t * keys.shape[1] * queries.element_size())))
        ws = Workspace(step, final.num_heads, t, keys.shape[1], queries)
        return torch.cat([self.final_group(queries[i:i + step], tokens[i:i + step], keys[i:i + step], kpe_final, ws)
                          for i in range(0, b, step)])

    def _layers_reference(self, image: torch.Tensor, image_pe: torch.Tensor,
                          tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        return queries, keys

    def _run_fast(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor, first: int | None,
                  keep: Callable[[torch.Tensor], torch.Tensor] | None,
                  group_bytes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        b, t, c = tokens.shape
        image = image.flatten(2).transpose(1, 2)  # B' x P x C
        p = image.shape[1]
        key_pe = image_pe.flatten(2).transpose(1, 2)[0]  # P x C
        one = image[0] if image.shape[0] == 1 else None
        shared = [layer.shared_projections(one if i == 0 else None, key_pe) for i, layer in enumerate(self.layers)]
        final = self.final_attn_token_to_image
        kpe_final = F.linear(key_pe, final.k_proj.weight)
        step = max(1, min(b, group_bytes // (final.num_heads * t * p * tokens.element_size())))
        ws = None if self.compiled_group is not None else Workspace(step, final.num_heads, t, p, tokens)
        done = tokens.new_empty(b, t if first is None else first, c)
        queries = torch.empty_like(tokens)
        keys = tokens.new_empty(b, p, c) if keep is None else None
        kept: list[torch.Tensor] = []
        rows: list[torch.Tensor] = []
        for i in range(0, b, step):
            img = image if one is not None else image[i:i + step]
            done[i:i + step], queries[i:i + step], group_keys = compiled_or_eager(
                self, "compiled_group", self.forward_group, tokens[i:i + step], img, shared, kpe_final, ws, first)
            if keep is None:
                keys[i:i + step] = group_keys
            else:  # only the kept prompts' image tokens are stored
                picked = torch.nonzero(keep(done[i:i + step])).flatten()
                kept.append(group_keys[picked])
                rows.append(picked + i)
        if keep is None:
            return done, queries, keys, None
        return done, queries, torch.cat(kept), torch.cat(rows)
