"""The assembled SAM 2 network.

``SAM2Model`` holds every module and parameter of an official checkpoint under the same
names, so that official state dicts load strictly and ours load into the official code.
It offers the building blocks the predictors and the trainer compose:

* :meth:`SAM2Model.forward_image` — the image encoder and the high-resolution projections;
* :meth:`SAM2Model.image_embeddings` — the features the image predictor decodes from;
* :meth:`SAM2Model.decode` — prompt encoder + mask decoder for a batch of prompts;
* :meth:`SAM2Model.forward_sam_heads` — the decoder as the video model uses it (object
  pointers, occlusion handling, best-of-multimask selection);
* :attr:`SAM2Model.memory_attention` and :attr:`SAM2Model.memory_encoder` for video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.model.config import ModelConfig
from samkit.model.layers import MLP
from samkit.model.mask_decoder import DecoderOutput, MaskDecoder
from samkit.model.memory import build_memory_attention, build_memory_encoder
from samkit.model.neck import ImageEncoder
from samkit.model.prompt_encoder import PromptEncoder
from samkit.model.two_way import TwoWayTransformer

# Logit given to every pixel of a frame where the object is predicted absent.
NO_OBJECT_LOGIT = -1024.0


@dataclass
class BackboneOutput:
    """Image features, finest first.

    ``features``: ``[B x C/8 x 4h x 4w, B x C/4 x 2h x 2w, B x C x h x w]`` when the decoder
    uses high-resolution features (the two finest already projected by ``conv_s0/conv_s1``),
    else ``[B x C x h x w]``. ``positions``: the matching sine encodings, ``C`` channels each.
    """

    features: list[torch.Tensor]
    positions: list[torch.Tensor]

    @property
    def vision(self) -> torch.Tensor:
        """The coarsest map, ``B x C x h x w``."""
        return self.features[-1]

    @property
    def high_res(self) -> list[torch.Tensor] | None:
        return self.features[:-1] or None

    def select(self, idx: torch.Tensor | slice | int) -> "BackboneOutput":
        """The same features for a subset of the batch."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return BackboneOutput([f[idx] for f in self.features], [p[idx] for p in self.positions])


@dataclass
class SamHeadsOutput:
    """What :meth:`SAM2Model.forward_sam_heads` returns for ``B`` objects.

    ``multi_logits`` ``B x M x 4h x 4w`` (all candidate masks), ``ious`` ``B x M``,
    ``low_res`` ``B x 1 x 4h x 4w`` (the chosen mask), ``high_res`` ``B x 1 x S x S``,
    ``obj_ptr`` ``B x C``, ``object_score`` ``B x 1``.
    """

    multi_logits: torch.Tensor
    ious: torch.Tensor
    low_res: torch.Tensor
    high_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor


def _trunc_normal(shape: tuple[int, ...], std: float = 0.02) -> nn.Parameter:
    p = nn.Parameter(torch.zeros(shape))
    nn.init.trunc_normal_(p, std=std)
    return p


class SAM2Model(nn.Module):
    """SAM 2: image encoder, prompt encoder, mask decoder, memory attention and memory
    encoder, plus the learned embeddings that glue them together for video."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.neck.d_model
        mem_dim = cfg.memory.mem_dim
        self.hidden_dim, self.mem_dim = c, mem_dim
        self.image_size = cfg.image_size

        self.image_encoder = ImageEncoder(cfg.hiera, cfg.neck)
        self.memory_attention = build_memory_attention(cfg.memory)
        self.memory_encoder = build_memory_encoder(cfg.memory)
        if cfg.use_obj_ptrs_in_encoder:
            # turns a full-resolution input mask into a 4x smaller mask prompt
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = _trunc_normal((cfg.num_maskmem, 1, 1, mem_dim))
        self.no_mem_embed = _trunc_normal((1, 1, c))
        self.no_mem_pos_enc = _trunc_normal((1, 1, c))
        if cfg.pred_obj_scores and cfg.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = _trunc_normal((1, c))
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = _trunc_normal((1, mem_dim))

        e = cfg.embedding_size
        self.sam_prompt_encoder = PromptEncoder(embed_dim=c, image_embedding_size=(e, e),
                                                input_image_size=(cfg.image_size, cfg.image_size),
                                                mask_in_chans=cfg.mask_in_chans)
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=c,
            transformer=TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=c, num_heads=cfg.decoder_heads,
                                          mlp_dim=cfg.decoder_mlp_dim),
            use_high_res_features=cfg.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
            pred_obj_scores=cfg.pred_obj_scores, pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        )
        if cfg.use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = MLP(c, c, c, 3) if cfg.use_mlp_for_obj_ptr_proj else nn.Linear(c, c)
        else:
            self.obj_ptr_proj = nn.Identity()
        self.obj_ptr_tpos_proj = nn.Linear(c, mem_dim) if cfg.proj_tpos_enc_in_obj_ptrs else nn.Identity()

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    # ------------------------------------------------------------------ images
    def forward_image(self, images: torch.Tensor) -> BackboneOutput:
        """``B x 3 x S x S`` normalised images -> :class:`BackboneOutput`."""
        feats, pos = self.image_encoder(images)
        if self.cfg.use_high_res_features_in_sam:
            feats = [self.sam_mask_decoder.conv_s0(feats[0]), self.sam_mask_decoder.conv_s1(feats[1]), feats[-1]]
        else:
            feats, pos = feats[-1:], pos[-1:]
        return BackboneOutput(list(feats), list(pos))

    def image_embeddings(self, bb: BackboneOutput) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Features for single-image prediction: ``(embed B x C x h x w, high_res)``. A
        single image is treated as a frame without memory, so ``no_mem_embed`` is added."""
        embed = bb.vision
        if self.cfg.directly_add_no_mem_embed:
            embed = embed + self.no_mem_embed.view(1, -1, 1, 1)
        return embed, bb.high_res

    def decode(self, embed: torch.Tensor, high_res: list[torch.Tensor] | None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask_output: bool = True,
               repeat_image: bool = False,
               select: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DecoderOutput:
        """Prompt encoder + mask decoder (``select``: see :meth:`MaskDecoder.forward`).

        ``points``: ``(B x N x 2, B x N)`` in model-input pixels (labels -1/0/1/2/3);
        ``boxes``: ``B x 4`` XYXY in model-input pixels, merged in front of the points as
        corner points (labels 2, 3); ``mask_input``: ``B x 1 x 4h x 4w`` logits.
        ``embed``: ``1 x C x h x w`` with ``repeat_image`` (one image, B prompts) else ``B x ...``.
        """
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2).float()
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device).expand(corners.shape[0], 2)
            if points is not None:
                points = (torch.cat([corners, points[0].float()], 1), torch.cat([corner_labels, points[1].int()], 1))
            else:
                points = (corners, corner_labels)
        sparse, dense = self.sam_prompt_encoder(points, None, mask_input)
        return self.sam_mask_decoder(embed, self.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                     multimask_output=multimask_output, repeat_image=repeat_image,
                                     high_res_features=high_res, select=select)

    # ------------------------------------------------------------------ video/training heads
    def forward_sam_heads(self, vision: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None = None,
                          mask_inputs: torch.Tensor | None = None, high_res: list[torch.Tensor] | None = None,
                          multimask_output: bool = False) -> SamHeadsOutput:
        """The decoder as used for tracking and training, on ``B`` objects of ``B`` frames.

        ``vision``: ``B x C x h x w`` (memory-conditioned) features; ``points`` as in
        :meth:`decode` (None = a single padding point); ``mask_inputs``: ``B x 1 x H x W``
        mask logits/probabilities at any size (resized to the mask-prompt size).
        Frames where the object score is negative get :data:`NO_OBJECT_LOGIT` everywhere.
        """
        b, device = vision.shape[0], vision.device
        if points is None:
            points = (torch.zeros(b, 1, 2, device=device), -torch.ones(b, 1, dtype=torch.int32, device=device))
        prompt = None
        if mask_inputs is not None:
            size = self.sam_prompt_encoder.mask_input_size
            prompt = mask_inputs
            if tuple(mask_inputs.shape[-2:]) != size:
                prompt = F.interpolate(mask_inputs.float(), size=size, mode="bilinear", align_corners=False,
                                       antialias=True)
        sparse, dense = self.sam_prompt_encoder(points, None, prompt)
        out = self.sam_mask_decoder(vision, self.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                    multimask_output=multimask_output, repeat_image=False, high_res_features=high_res)
        multi = out.masks
        present = out.object_score > 0  # B x 1
        if self.cfg.pred_obj_scores:
            multi = torch.where(present[:, :, None, None], multi, NO_OBJECT_LOGIT)
        multi = multi.float()
        token = out.tokens[:, 0]
        if multimask_output:
            best = out.iou.argmax(dim=-1)
            rows = torch.arange(b, device=device)
            low = multi[rows, best][:, None]
            if out.tokens.shape[1] > 1:
                token = out.tokens[rows, best]
        else:
            low = multi
        high = F.interpolate(low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        obj_ptr = self._object_pointer(self.obj_ptr_proj(token), out.object_score)
        return SamHeadsOutput(multi, out.iou, low, high, obj_ptr, out.object_score)

    def _object_pointer(self, ptr: torch.Tensor, object_score: torch.Tensor) -> torch.Tensor:
        """Blend the pointer with the learned no-object pointer where the object is absent."""
        if not self.cfg.pred_obj_scores:
            return ptr
        weight = object_score.sigmoid() if self.cfg.soft_no_obj_ptr else (object_score > 0).float()
        if self.cfg.fixed_no_obj_ptr:
            ptr = weight * ptr
        return ptr + (1 - weight) * self.no_obj_ptr

    def use_mask_as_output(self, vision: torch.Tensor, high_res: list[torch.Tensor] | None,
                           masks: torch.Tensor) -> SamHeadsOutput:
        """Turn a given binary mask ``B x 1 x S x S`` into the output of a frame directly
        (logits +10 inside, -10 outside); the decoder only runs to get an object pointer."""
        logits_hr = masks.float() * 20.0 - 10.0
        low = F.interpolate(logits_hr, size=(logits_hr.shape[-2] // 4, logits_hr.shape[-1] // 4),
                            mode="bilinear", align_corners=False, antialias=True)
        ious = masks.new_ones(masks.shape[0], 1).float()
        present = (masks.flatten(1).float() > 0).any(dim=1, keepdim=True).float()
        object_score = present * 20.0 - 10.0
        if self.cfg.use_obj_ptrs_in_encoder:
            ptr = self.forward_sam_heads(vision, mask_inputs=self.mask_downsample(masks.float()),
                                         high_res=high_res).obj_ptr
            if self.cfg.pred_obj_scores:
                if self.cfg.fixed_no_obj_ptr:
                    ptr = present * ptr
                ptr = ptr + (1 - present) * self.no_obj_ptr
        else:
            ptr = torch.zeros(masks.shape[0], self.hidden_dim, device=masks.device)
        return SamHeadsOutput(low, ious, low, logits_hr, ptr, object_score)
