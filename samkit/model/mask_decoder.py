"""The mask decoder: output tokens attend to the image, then become mask logits, IoU
estimates and an object score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from samkit.model.layers import MLP, LayerNorm2d
from samkit.model.two_way import TwoWayTransformer


@dataclass
class DecoderOutput:
    """What the decoder returns for ``B`` prompts.

    ``masks``: ``B x M x 4h x 4w`` logits (M = 3 with multimask output, else 1);
    ``iou``: ``B x M`` predicted IoU; ``tokens``: ``B x M' x C`` mask tokens used for the
    object pointer (M' = 3 with multimask output and ``use_multimask_token_for_obj_ptr``,
    else 1); ``object_score``: ``B x 1`` logit that the object is present.

    ``rows``: None, or (when the caller asked for masks of some prompts only, see
    :meth:`MaskDecoder.forward`) the ``B'`` sorted prompt indices whose masks were computed;
    ``masks`` is then ``B' x M x 4h x 4w`` while the other fields keep all ``B`` prompts.
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
        :attr:`DecoderOutput.rows`). The masks it returns are those of a full run.
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
        ``B`` bool) only the selected prompts' masks, ``rows`` their indices, else None."""
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
        hs, keys = self.transformer(src, pos, tokens)
        s = 1 if self.pred_obj_scores else 0
        iou_out = hs[:, s]
        mask_tokens = hs[:, s + 1: s + 1 + self.num_mask_tokens]
        src = keys.transpose(1, 2).reshape(b, c, h, w)
        iou = self.iou_prediction_head(iou_out)
        rows = None
        if select is not None:
            rows = torch.nonzero(select(iou)).flatten()
            src, mask_tokens_used = src[rows], mask_tokens[rows]
        else:
            mask_tokens_used = mask_tokens
        up1, norm, act1, up2, act2 = self.output_upscaling
        if self.use_high_res_features:
            if high_res_features is None:
                raise ValueError("this decoder needs the high-resolution features")
            s0, s1 = high_res_features
            if rows is not None and s0.shape[0] != 1:
                s0, s1 = s0[rows], s1[rows]
            x = act1(norm(up1(src) + s1))
            x = act2(up2(x) + s0)
        else:
            x = act2(up2(act1(norm(up1(src)))))
        hyper = torch.stack([mlp(mask_tokens_used[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        bx, cx, hx, wx = x.shape
        masks = (hyper @ x.flatten(2)).view(bx, hyper.shape[1], hx, wx)
        if self.pred_obj_scores:
            obj = self.pred_obj_score_head(hs[:, 0])
        else:
            obj = iou.new_full((iou.shape[0], 1), 10.0)
        return masks, iou, mask_tokens, obj, rows

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
