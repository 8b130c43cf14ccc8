"""The mask decoder: output tokens attend to the image, then become mask logits, IoU
estimates and an object score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.model.layers import MLP, LayerNorm2d
from samkit.model.two_way import TwoWayTransformer, compiled_or_eager

# Largest block of upscaled features one group of prompts takes through the fast upscaling.
UPSCALE_GROUP_BYTES = 16 << 20


@dataclass
class DecoderOutput:
    """What the decoder returns for ``B`` prompts.

    ``masks``: ``B x M x 4h x 4w`` logits (M = 3 with multimask output, else 1);
    ``iou``: ``B x M`` predicted IoU; ``tokens``: ``B x M' x C`` mask tokens used for the
    object pointer (M' = 3 with multimask output and ``use_multimask_token_for_obj_ptr``,
    else 1); ``object_score``: ``B x 1`` logit that the object is present.

    ``rows``: None, or (when the caller asked for masks of some prompts only, see
    :meth:`MaskDecoder.forward`) the ``B'`` sorted prompt indices whose masks were computed;
    ``masks`` is then ``B' x M x 4h x 4w`` and ``tokens`` ``B' x M' x C``, while ``iou`` and
    ``object_score`` keep all ``B`` prompts.
    """

    masks: torch.Tensor
    iou: torch.Tensor
    tokens: torch.Tensor
    object_score: torch.Tensor
    rows: torch.Tensor | None = None


def stability_scores(logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``+delta`` and ``-delta``: ``... x H x W`` -> ``...``.
    An empty mask (nothing above ``-delta``) scores 1."""
    flat = logits.flatten(-2)
    inner = (flat > delta).sum(-1).float()
    outer = (flat > -delta).sum(-1).float()
    return torch.where(outer > 0, inner / outer, torch.ones_like(outer))


class MaskDecoder(nn.Module):
    """Predicts masks from image features and prompt embeddings.

    Output tokens: [object score token], IoU token, ``1 + num_multimask_outputs`` mask
    tokens. Token 0 is the single-mask output; tokens 1..3 are the multimask outputs.
    """

    def __init__(self, *, transformer_dim: int = 256, transformer: TwoWayTransformer,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256,
                 use_high_res_features: bool = True, iou_prediction_use_sigmoid: bool = True,
                 dynamic_multimask_via_stability: bool = True, dynamic_multimask_stability_delta: float = 0.05,
                 dynamic_multimask_stability_thresh: float = 0.98, pred_obj_scores: bool = True,
                 pred_obj_scores_mlp: bool = True, use_multimask_token_for_obj_ptr: bool = True) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer_dim = c
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, c)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(c, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth,
                                       sigmoid_output=iou_prediction_use_sigmoid)
        if pred_obj_scores:
            self.pred_obj_score_head = MLP(c, c, 1, 3) if pred_obj_scores_mlp else nn.Linear(c, 1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.stability_delta = dynamic_multimask_stability_delta
        self.stability_thresh = dynamic_multimask_stability_thresh
        # the compiled upscale_group (compile_fast_path), or None: eager
        self.compiled_upscale: Callable[..., torch.Tensor] | None = None

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool, repeat_image: bool,
                high_res_features: list[torch.Tensor] | None = None,
                select: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DecoderOutput:
        """``image_embeddings``: ``1 x C x h x w`` if ``repeat_image`` (shared by all ``B``
        prompts) else ``B x C x h x w``; ``image_pe``: ``1 x C x h x w``; sparse ``B x N x C``;
        dense ``B x C x h x w``; ``high_res_features``: ``[B' x C/8 x 4h x 4w, B' x C/4 x 2h x 2w]``
        with ``B'`` = 1 or B like the image embeddings.

        ``select`` (multimask output only): called with the predicted IoUs ``B x M`` before any
        mask is made, returns a ``B`` boolean tensor of the prompts whose masks are needed; the
        mask upscaling, most of the decoder's cost, then runs for those prompts only (see
        :attr:`DecoderOutput.rows`). It must decide each prompt on its own row: it may be called
        on groups of prompts in turn. The masks it returns are those of a full run.
        """
        if select is not None and not multimask_output:
            raise ValueError("select needs multimask_output=True")
        pick = (lambda iou4: select(iou4[:, 1:])) if select is not None else None
        masks, iou, mask_tokens, obj, rows = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
            repeat_image, high_res_features, pick)
        if rows is not None:
            return DecoderOutput(masks[:, 1:], iou[:, 1:], mask_tokens[:, 1:] if self.use_multimask_token_for_obj_ptr
                                 else mask_tokens[:, :1], obj, rows)
        if multimask_output:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou = self._select_stable(masks, iou)
        else:
            masks, iou = masks[:, :1], iou[:, :1]
        tokens = mask_tokens[:, 1:] if multimask_output and self.use_multimask_token_for_obj_ptr \
            else mask_tokens[:, :1]
        return DecoderOutput(masks, iou, tokens, obj)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse: torch.Tensor, dense: torch.Tensor, repeat_image: bool,
                      high_res_features: list[torch.Tensor] | None,
                      select: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """All ``1 + num_multimask_outputs`` masks: ``(masks B x 4 x 4h x 4w, iou B x 4,
        mask tokens B x 4 x C, object score B x 1, rows)``; with ``select`` (``iou B x 4`` ->
        ``B`` bool) only the selected prompts' masks and mask tokens (``B'`` of each, the
        final attention of the others' mask tokens is skipped), ``rows`` their indices, else None."""
        b = sparse.shape[0]
        heads = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            heads.insert(0, self.obj_score_token.weight)
        out_tokens = torch.cat(heads, dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        src = image_embeddings
        if repeat_image and src.shape[0] == 1 and (b == 1 or dense.shape[0] == 1 or dense.stride(0) == 0):
            # one image and the same dense embedding (no mask prompt) for every prompt: the
            # transformer shares the image side until it first depends on the prompts
            src = src + dense[:1]
        else:
            if repeat_image:
                src = src.repeat_interleave(b, dim=0)
            elif src.shape[0] != b:
                raise ValueError(f"image batch {src.shape[0]} != prompt batch {b}")
            src = src + dense
        pos = image_pe
        _, c, h, w = src.shape
        s = 1 if self.pred_obj_scores else 0
        m = slice(s + 1, s + 1 + self.num_mask_tokens)
        fast = self.fast_upscaling_applies()
        if select is None:
            head, keys = self.transformer(src, pos, tokens)
            iou = self.iou_prediction_head(head[:, s])
            mask_tokens, rows = head[:, m], None
        else:
            # the IoU (and object score) tokens of every prompt first; the image tokens and the
            # mask tokens only of the prompts whose masks are wanted
            ious: list[torch.Tensor] = []

            def keep(done: torch.Tensor) -> torch.Tensor:
                ious.append(self.iou_prediction_head(done[:, s]))
                return select(ious[-1])

            head, queries, keys, rows = self.transformer.forward_split(src, pos, tokens, s + 1, keep)
            iou = torch.cat(ious)
            mask_tokens = self.transformer.finish(queries[rows][:, m], tokens[rows][:, m], keys, pos)
        n = keys.shape[0]
        # B x C x h x w; the fast upscaling takes the channels-last view of the image tokens as they are
        src = keys.reshape(n, h, w, c).permute(0, 3, 1, 2) if fast else keys.transpose(1, 2).reshape(n, c, h, w)
        if fast:
            masks = self._masks_fast(src, mask_tokens, high_res_features, rows)
        else:
            masks = self._masks_reference(src, mask_tokens, high_res_features, rows)
        if self.pred_obj_scores:
            obj = self.pred_obj_score_head(head[:, 0])
        else:
            obj = iou.new_full((iou.shape[0], 1), 10.0)
        return masks, iou, mask_tokens, obj, rows

    def _hyper(self, mask_tokens: torch.Tensor) -> torch.Tensor:
        """``B x M x C`` mask tokens -> ``B x M x C/8`` per-mask weights of the upscaled features."""
        return torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)

    def _high_res(self, high_res_features: list[torch.Tensor] | None,
                  rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.use_high_res_features:
            return None
        if high_res_features is None:
            raise ValueError("this decoder needs the high-resolution features")
        s0, s1 = high_res_features
        if rows is not None and s0.shape[0] != 1:
            s0, s1 = s0[rows], s1[rows]
        return s0, s1

    def _masks_reference(self, src: torch.Tensor, mask_tokens: torch.Tensor,
                         high_res_features: list[torch.Tensor] | None, rows: torch.Tensor | None) -> torch.Tensor:
        """``src`` ``B x C x h x w``, ``mask_tokens`` ``B x M x C`` -> mask logits ``B x M x 4h x 4w``
        (the official module sequence; what training differentiates)."""
        up1, norm, act1, up2, act2 = self.output_upscaling
        hr = self._high_res(high_res_features, rows)
        if hr is not None:
            s0, s1 = hr
            x = act1(norm(up1(src) + s1))
            x = act2(up2(x) + s0)
        else:
            x = act2(up2(act1(norm(up1(src)))))
        hyper = self._hyper(mask_tokens)
        bx, cx, hx, wx = x.shape
        return (hyper @ x.flatten(2)).view(bx, hyper.shape[1], hx, wx)

    def fast_upscaling_applies(self) -> bool:
        """The fast upscaling runs without gradients and without autocast, on the official module types."""
        up1, norm, act1, up2, act2 = self.output_upscaling
        autocast = torch.is_autocast_enabled(up1.weight.device.type)
        return (not torch.is_grad_enabled() and not autocast and up1.weight.dtype == torch.float32
                and type(norm) is LayerNorm2d and type(act1) is nn.GELU
                and type(act2) is nn.GELU and act1.approximate == act2.approximate == "none")

    def upscale_group(self, src: torch.Tensor, hyper: torch.Tensor,
                      high_res: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """The per-prompt part of :meth:`_masks_fast` for ``n`` prompts: ``src`` ``n x C x h x w``
        channels-last, ``hyper`` ``n x M x C/8``, ``high_res`` ``(n' x C/8 x 4h x 4w,
        n' x C/4 x 2h x 2w)`` channels-last with ``n'`` = 1 or n. Returns ``n x M x 16hw``."""
        up1, norm, _, up2, _ = self.output_upscaling
        x = up1(src)  # n x C/4 x 2h x 2w, channels-last
        if high_res is not None:
            x.add_(high_res[1])
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # n x 2h x 2w x C/4
        x = torch.ops.aten.gelu_(F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps))
        x = up2(x.permute(0, 3, 1, 2))
        if high_res is not None:
            x.add_(high_res[0])
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # n x 4h x 4w x C/8
        x = torch.ops.aten.gelu_(x)
        return torch.bmm(hyper, x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2))

    def _masks_fast(self, src: torch.Tensor, mask_tokens: torch.Tensor,
                    high_res_features: list[torch.Tensor] | None, rows: torch.Tensor | None,
                    group_bytes: int = UPSCALE_GROUP_BYTES) -> torch.Tensor:
        """:meth:`_masks_reference` without gradients, everything channels-last: the transposed
        convolutions run several times faster on channels-last input (bit-identical output), the
        LayerNorm is a plain one over the contiguous channel axis. Prompts go through
        :meth:`upscale_group` in groups of at most ``group_bytes`` of upscaled features."""
        hr = self._high_res(high_res_features, rows)
        if hr is not None:
            hr = tuple(t.contiguous(memory_format=torch.channels_last) for t in hr)
        hyper = self._hyper(mask_tokens)  # B x M x C/8
        b, c, h, w = src.shape
        out = hyper.new_empty(b, hyper.shape[1], 16 * h * w)
        step = max(1, group_bytes // (16 * h * w * hyper.shape[-1] * src.element_size()))
        for i in range(0, b, step):
            part = None if hr is None else tuple(t if t.shape[0] == 1 else t[i:i + step] for t in hr)
            out[i:i + step] = compiled_or_eager(self, "compiled_upscale", self.upscale_group,
                                                src[i:i + step].contiguous(memory_format=torch.channels_last),
                                                hyper[i:i + step], part)
        return out.view(b, hyper.shape[1], 4 * h, 4 * w)

    def compile_fast_path(self, **compile_kwargs: object) -> None:
        """Run the per-prompt parts of the fast path (:meth:`TwoWayTransformer.forward_group`,
        :meth:`upscale_group`) through ``torch.compile(..., **compile_kwargs)`` from now on.
        Compilation happens at the first calls; :meth:`eager_fast_path` undoes this."""
        self.transformer.compiled_group = torch.compile(self.transformer.forward_group, **compile_kwargs)
        self.compiled_upscale = torch.compile(self.upscale_group, **compile_kwargs)

    def eager_fast_path(self) -> None:
        """Back to the eager fast path (after :meth:`compile_fast_path`)."""
        self.transformer.compiled_group = None
        self.compiled_upscale = None

    def _select_stable(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output with a fallback: when the single mask (token 0) is unstable,
        use the multimask output with the highest predicted IoU instead."""
        multi_iou = iou[:, 1:]
        best = multi_iou.argmax(dim=-1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_mask = masks[:, 1:][rows, best][:, None]
        best_iou = multi_iou[rows, best][:, None]
        stable = stability_scores(masks[:, 0], self.stability_delta) >= self.stability_thresh
        out_masks = torch.where(stable[:, None, None, None], masks[:, :1], best_mask)
        out_iou = torch.where(stable[:, None], iou[:, :1], best_iou)
        return out_masks, out_iou
