"""Export-friendly modules around a :class:`~samkit.model.sam2.SAM2Model`, one per ONNX graph.

Each module holds the model's own submodules (no copies of weights) and writes their forward
pass without what tracing cannot follow: no Python control flow on tensor values, no caches,
no in-place updates, no complex numbers. Their outputs equal the model's inference path to
float32 rounding (tests/onnx/ compares them).

* :class:`ImageEncoderGraph`: ``image 1 x 3 x S x S`` -> the decoder's features (with the
  high-resolution projections) and the raw features for video.
* :class:`MaskDecoderGraph`: a dynamic batch of prompts with a dynamic number of points ->
  every candidate mask (the single-mask token and the three multimask ones), IoU scores,
  object score and object pointers; choosing one mask happens outside the graph.
* :class:`MemoryAttentionGraph`: a frame's features conditioned on a memory bank of a dynamic
  number of past frames and object pointers (RoPE as cos/sin tables, real arithmetic).
* :class:`MemoryEncoderGraph`: a frame's features and mask logits -> its memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samkit.model.attention import RoPEAttention, apply_rope
from samkit.model.memory import MemoryAttentionLayer
from samkit.model.position import sine_1d
from samkit.model.sam2 import SAM2Model

__all__ = ["ImageEncoderGraph", "MaskDecoderGraph", "MemoryAttentionGraph", "MemoryEncoderGraph"]


class ImageEncoderGraph(nn.Module):
    """``forward(image 1 x 3 x S x S)`` (normalised, see :func:`samkit.imageio.preprocess`) ->
    ``(image_embed 1 x C x h x w, high_res_0 1 x C/8 x 4h x 4w, high_res_1 1 x C/4 x 2h x 2w,
    vision_features 1 x C x h x w)``.

    ``image_embed`` is what the image predictor decodes from (``no_mem_embed`` added: a single
    image is a frame without memory); ``vision_features`` are the raw features the memory
    graphs take. The high-resolution maps are already projected by the decoder's
    ``conv_s0`` / ``conv_s1``.
    """

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        if not model.cfg.use_high_res_features_in_sam:
            raise NotImplementedError("ONNX export covers models with high-resolution decoder features "
                                      "(every official SAM 2 / 2.1 variant and samkit_nano)")
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bb = self.model.forward_image(image)
        embed, high_res = self.model.image_embeddings(bb)
        return embed, high_res[0], high_res[1], bb.vision


class MaskDecoderGraph(nn.Module):
    """The prompt encoder and mask decoder for ``B`` prompts on one image (or ``B`` frames).

    Inputs: ``image_embed`` ``1 x C x h x w``, ``high_res_0`` ``1 x C/8 x 4h x 4w``,
    ``high_res_1`` ``1 x C/4 x 2h x 2w`` (one image, shared by the prompts); ``point_coords``
    ``B x N x 2`` in model-input pixels (box corners as points labelled 2 and 3, first) and
    ``point_labels`` ``B x N`` float (-1 padding, 0 negative, 1 positive, 2 / 3 box corners):
    as the torch prompt encoder has them, a padding point ``(0, 0)`` labelled -1 last when there
    are points or a box, and ``N = 0`` for a mask prompt alone;
    ``mask_input`` ``B x 1 x 4h x 4w`` logits and ``has_mask_input`` ``B`` (1: use the mask
    prompt, 0: ignore it and use the learned no-mask embedding).

    Outputs: ``low_res_masks`` ``B x 4 x 4h x 4w`` logits (index 0 the single-mask output,
    1-3 the multimask candidates), ``iou_predictions`` ``B x 4``, ``object_score_logits``
    ``B x 1`` and ``obj_ptr`` ``B x 4 x C`` (the object pointer each mask token would give,
    already blended with the no-object pointer by the object score).
    """

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model
        self.prompt_encoder = model.sam_prompt_encoder
        self.decoder = model.sam_mask_decoder

    def forward(self, image_embed: torch.Tensor, high_res_0: torch.Tensor, high_res_1: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor, mask_input: torch.Tensor,
                has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pe, dec = self.prompt_encoder, self.decoder
        b = point_coords.shape[0]
        sparse = pe.embed_points(point_coords, point_labels.round().to(torch.int64), pad=False)
        has = has_mask_input.reshape(-1, 1, 1, 1) > 0.5
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = torch.where(has, pe.mask_downscaling(mask_input), no_mask)  # B x C x h x w

        heads = [dec.iou_token.weight, dec.mask_tokens.weight]
        if dec.pred_obj_scores:
            heads.insert(0, dec.obj_score_token.weight)
        out_tokens = torch.cat(heads, dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        src = image_embed + dense  # B x C x h x w
        _, c, h, w = src.shape
        hs, keys = dec.transformer.forward_reference(src, pe.get_dense_pe(), tokens)
        s = 1 if dec.pred_obj_scores else 0
        iou = dec.iou_prediction_head(hs[:, s])
        mask_tokens = hs[:, s + 1: s + 1 + dec.num_mask_tokens]
        src = keys.transpose(1, 2).reshape(b, c, h, w)
        masks = dec._masks_reference(src, mask_tokens, [high_res_0, high_res_1], None)
        if dec.pred_obj_scores:
            object_score = dec.pred_obj_score_head(hs[:, 0])
        else:
            object_score = iou.new_full((b, 1), 10.0)
        ptr = self.model._object_pointer(self.model.obj_ptr_proj(mask_tokens), object_score[:, :, None])
        return masks, iou, object_score, ptr


def _cross_attention(attn: RoPEAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spatial: int,
                     frame_tokens: int) -> torch.Tensor:
    """:meth:`RoPEAttention.forward` with ``rope_k_repeat`` for a memory whose first ``spatial``
    tokens are whole frames of ``frame_tokens`` tokens each (rotated like the queries) and the rest
    object pointers (not rotated); the cos/sin table of one frame broadcast over the frames instead
    of repeated, so that the number of frames may vary in the graph."""
    q, k, v = attn._project(q, k, v)
    cos, sin = attn._cos_sin(frame_tokens, q.device)
    q = apply_rope(q, cos, sin)
    b, heads, _, d = k.shape
    k_frames = k[:, :, :spatial].reshape(b, heads, -1, frame_tokens, d)
    k_rot = apply_rope(k_frames, cos, sin).reshape(b, heads, spatial, d)
    k = torch.cat([k_rot, k[:, :, spatial:]], dim=-2)
    return attn._attend(q, k, v)


def _memory_layer(layer: MemoryAttentionLayer, x: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                  memory_pos: torch.Tensor, spatial: int) -> torch.Tensor:
    """:meth:`MemoryAttentionLayer.forward` in inference (dropout off) with :func:`_cross_attention`."""
    h = layer.norm1(x)
    qk = layer._with_pos(h, pos, layer.pos_enc_at_attn)
    x = x + layer.self_attn(qk, qk, h)
    h = layer.norm2(x)
    q = layer._with_pos(h, pos, layer.pos_enc_at_cross_attn_queries)
    k = layer._with_pos(memory, memory_pos, layer.pos_enc_at_cross_attn_keys)
    x = x + _cross_attention(layer.cross_attn_image, q, k, memory, spatial, x.shape[1])
    return x + layer.linear2(layer.act(layer.linear1(layer.norm3(x))))


class MemoryAttentionGraph(nn.Module):
    """A frame's features conditioned on its memory bank (:meth:`samkit.video.tracking.Tracker.condition`).

    Inputs: ``vision_features`` ``B x C x h x w`` (raw, from the image encoder graph);
    ``memory`` ``K x B x C_mem x h x w``, the memories of ``K`` past frames in the order of
    :class:`~samkit.video.tracking.MemoryPlan`; ``memory_tpos`` ``K`` int64, their temporal
    positions (0 for a conditioning frame, 1 .. num_maskmem - 1 for tracked frames);
    ``obj_ptrs`` ``P x B x C`` object pointers and ``obj_ptr_offsets`` ``P`` float, their
    frame distances divided by ``max(max_pointers - 1, 1)``. Output: ``B x C x h x w``.
    """

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        cfg = model.cfg
        if cfg.num_maskmem == 0:
            raise NotImplementedError("ONNX export of the memory attention needs a model with memories "
                                      "(num_maskmem > 0)")
        self.model = model
        self.attention = model.memory_attention
        side = cfg.embedding_size
        # the position encodings of a frame and of a memory depend only on the grid size
        probe = torch.zeros(1, model.hidden_dim, side, side)
        self.register_buffer("vision_pos", model.image_encoder.neck.position_encoding(probe)[0].flatten(1).T,
                             persistent=False)  # HW x C
        probe = torch.zeros(1, model.mem_dim, side, side)
        self.register_buffer("memory_pos", model.memory_encoder.position_encoding(probe)[0].flatten(1).T,
                             persistent=False)  # HW x C_mem

    def _pointer_tokens(self, obj_ptrs: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`samkit.video.tracking.Tracker._pointer_tokens` with the normalised offsets given:
        ``P x B x C`` -> ``(P * C / C_mem) x B x C_mem`` tokens and their encodings."""
        m, cfg = self.model, self.model.cfg
        n, b, c = obj_ptrs.shape
        mem_dim = m.mem_dim
        if cfg.add_tpos_enc_to_obj_ptrs:
            dim = c if cfg.proj_tpos_enc_in_obj_ptrs else mem_dim
            enc = m.obj_ptr_tpos_proj(sine_1d(offsets, dim))  # P x C_mem
            pos = enc[:, None, :].expand(-1, b, -1)
        else:
            pos = obj_ptrs.new_zeros(n, b, mem_dim)
        if mem_dim < c:
            split = c // mem_dim
            obj_ptrs = obj_ptrs.reshape(n, b, split, mem_dim).permute(0, 2, 1, 3).reshape(n * split, b, mem_dim)
            pos = pos[:, None].expand(-1, split, -1, -1).reshape(n * split, b, mem_dim)
        return obj_ptrs, pos

    def forward(self, vision_features: torch.Tensor, memory: torch.Tensor, memory_tpos: torch.Tensor,
                obj_ptrs: torch.Tensor, obj_ptr_offsets: torch.Tensor) -> torch.Tensor:
        m, attn = self.model, self.attention
        b, c, h, w = vision_features.shape
        k = memory.shape[0]
        mem_dim = m.mem_dim
        # K x B x C_mem x h x w -> (K * HW) x B x C_mem, frame by frame
        spatial = memory.permute(0, 3, 4, 1, 2).reshape(k * h * w, b, mem_dim)
        tpos = m.maskmem_tpos_enc[m.cfg.num_maskmem - 1 - memory_tpos]  # K x 1 x 1 x C_mem
        spatial_pos = (self.memory_pos[None, :, None, :] + tpos).expand(-1, -1, b, -1).reshape(k * h * w, b, mem_dim)
        ptr_tokens, ptr_pos = self._pointer_tokens(obj_ptrs, obj_ptr_offsets)
        mem = torch.cat([spatial, ptr_tokens], dim=0).transpose(0, 1)  # B x M x C_mem
        mem_pos = torch.cat([spatial_pos, ptr_pos], dim=0).transpose(0, 1)

        x = vision_features.flatten(2).transpose(1, 2)  # B x HW x C
        pos = self.vision_pos[None].expand(b, -1, -1)
        if attn.pos_enc_at_input:
            x = x + 0.1 * pos
        for layer in attn.layers:
            x = _memory_layer(layer, x, mem, pos, mem_pos, k * h * w)
        return attn.norm(x).transpose(1, 2).reshape(b, c, h, w)


class MemoryEncoderGraph(nn.Module):
    """A frame's memory (:meth:`samkit.video.tracking.Tracker.encode_memory` after upsampling).

    Inputs: ``vision_features`` ``B x C x h x w`` (raw), ``mask_logits`` ``B x 1 x 4h x 4w`` (the
    frame's low-resolution mask logits), ``object_score`` ``B x 1``, ``binarize`` ``1`` (1: encode
    the mask as hard 0/1, as for prompted frames; 0: its sigmoid). Output: ``maskmem_features``
    ``B x C_mem x h x w`` (the spatial no-object embedding added where the score is <= 0).
    """

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, vision_features: torch.Tensor, mask_logits: torch.Tensor, object_score: torch.Tensor,
                binarize: torch.Tensor) -> torch.Tensor:
        m, cfg = self.model, self.model.cfg
        s = m.image_size
        masks = F.interpolate(mask_logits, size=(s, s), mode="bilinear", align_corners=False)
        masks = torch.where(binarize.reshape(1, 1, 1, 1) > 0.5, (masks > 0).to(masks.dtype), torch.sigmoid(masks))
        if cfg.sigmoid_scale_for_mem_enc != 1.0:
            masks = masks * cfg.sigmoid_scale_for_mem_enc
        if cfg.sigmoid_bias_for_mem_enc != 0.0:
            masks = masks + cfg.sigmoid_bias_for_mem_enc
        enc = m.memory_encoder
        x = enc.pix_feat_proj(vision_features) + enc.mask_downsampler(masks)
        feats = enc.out_proj(enc.fuser(x))
        if cfg.no_obj_embed_spatial:
            absent = (object_score <= 0).to(feats.dtype)[..., None, None]  # B x 1 x 1 x 1
            feats = feats + absent * m.no_obj_embed_spatial[..., None, None]
        return feats
