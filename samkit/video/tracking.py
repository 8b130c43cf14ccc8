"""The per-frame tracking step of SAM 2, on top of :class:`~samkit.model.sam2.SAM2Model`.

For one frame and one object (or a batch of objects with the same memory layout):

1. :func:`plan_memory` chooses which past results feed the memory bank: the conditioning
   frames (temporal position 0), the last ``num_maskmem - 1`` tracked frames before the
   current one in the tracking direction (positions ``1 .. num_maskmem - 1``, the most recent
   last), and the object pointers of the conditioning frames in the past plus those of up to
   ``max_obj_ptrs_in_encoder - 1`` preceding frames, each with its signed frame distance.
2. :meth:`Tracker.condition` turns them into memory tokens and runs memory attention over
   the frame's features (a frame tracked without memory gets ``no_mem_embed`` instead).
3. The model's SAM heads decode the mask (:meth:`Tracker.use_multimask` says when to ask for
   three candidates), or a given mask is used as the output directly.
4. :meth:`Tracker.encode_memory` encodes the frame and its new mask into a memory.

:func:`fill_holes` is the predictor's optional post-processing of the low-resolution logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samkit.masks.components import connected_component_areas
from samkit.errors import ConfigError, StateError
from samkit.model.position import sine_1d
from samkit.model.sam2 import SAM2Model

__all__ = [
    "MemoryPlan",
    "select_conditioning_frames",
    "plan_memory",
    "memory_window",
    "Tracker",
    "fill_holes",
    "non_overlapping",
]

# Score given to a filled hole: just above the mask threshold.
HOLE_FILL_LOGIT = 0.1
# Scores of other objects where one object wins a pixel (sigmoid(-10) ~ 4.5e-5).
SUPPRESSED_LOGIT = -10.0


@dataclass(frozen=True)
class MemoryPlan:
    """Which past results condition a frame.

    ``memories``: ``(frame, t_pos)`` pairs in token order: the selected conditioning frames
    with ``t_pos = 0``, then earlier tracked frames with ``t_pos`` 1 (oldest) to
    ``num_maskmem - 1`` (the adjacent frame). ``pointers``: ``(frame, offset)`` pairs, the
    offset being the (signed, in the tracking direction) distance encoded for that pointer.
    ``max_pointers``: the normaliser of those distances (``min(num_frames, max_obj_ptrs)``).
    """

    memories: tuple[tuple[int, int], ...]
    pointers: tuple[tuple[int, int], ...]
    max_pointers: int


def select_conditioning_frames(frame: int, cond_frames: Iterable[int], max_num: int) -> tuple[list[int], list[int]]:
    """Split conditioning frames into those attended to and the rest.

    With ``max_num == -1`` (or few enough frames) all are selected; otherwise the closest one
    before ``frame``, the closest one at or after it, then the temporally closest others.
    Returns ``(selected, unselected)``, each ascending.
    """
    frames = sorted(cond_frames)
    if max_num == -1 or len(frames) <= max_num:
        return frames, []
    if max_num < 2:
        raise ConfigError(f"max_cond_frames_in_attn must be -1 or at least 2, got {max_num}")
    chosen: list[int] = []
    before = [t for t in frames if t < frame]
    after = [t for t in frames if t >= frame]
    if before:
        chosen.append(before[-1])
    if after:
        chosen.append(after[0])
    rest = sorted((t for t in frames if t not in chosen), key=lambda t: abs(t - frame))
    chosen += rest[: max_num - len(chosen)]
    selected = sorted(chosen)
    return selected, [t for t in frames if t not in selected]


def plan_memory(model_cfg, frame: int, cond_frames: Iterable[int], has_output: Callable[[int], bool],
                num_frames: int, reverse: bool = False) -> MemoryPlan:
    """The memory plan of ``frame`` (see :class:`MemoryPlan`).

    ``cond_frames``: the object's conditioning frames; ``has_output(t)``: whether frame ``t``
    has a committed result (conditioning or not). ``reverse``: tracking towards frame 0, so
    "previous" frames are those after ``frame``.
    """
    cfg = model_cfg
    selected, unselected = select_conditioning_frames(frame, cond_frames, cfg.max_cond_frames_in_attn)
    selected_set = set(selected)

    def usable(t: int) -> bool:  # a non-selected result on frame t
        return t not in selected_set and has_output(t)

    step = -1 if reverse else 1
    stride = cfg.memory_temporal_stride_for_eval
    memories = [(t, 0) for t in selected]
    for t_pos in range(1, cfg.num_maskmem):
        back = cfg.num_maskmem - t_pos  # frames before the current one
        if back == 1:
            prev = frame - step
        elif not reverse:
            prev = ((frame - 2) // stride) * stride - (back - 2) * stride
        else:
            prev = -(-(frame + 2) // stride) * stride + (back - 2) * stride
        if usable(prev):
            memories.append((prev, t_pos))

    pointers: list[tuple[int, int]] = []
    max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
    if cfg.use_obj_ptrs_in_encoder:
        ptr_cond = selected
        if cfg.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = [t for t in selected if (t >= frame if reverse else t <= frame)]
        for t in ptr_cond:
            dist = (frame - t) * step if cfg.use_signed_tpos_enc_to_obj_ptrs else abs(frame - t)
            pointers.append((t, dist))
        for dist in range(1, max_ptrs):
            t = frame - dist * step
            if t < 0 or t >= num_frames:
                break
            if usable(t):
                pointers.append((t, dist))
    return MemoryPlan(tuple(memories), tuple(pointers), max_ptrs)


def memory_window(model_cfg) -> int:
    """How many frames back (in the tracking direction) a frame's spatial memory reaches."""
    cfg = model_cfg
    return max(1, (cfg.num_maskmem - 1) * max(1, cfg.memory_temporal_stride_for_eval) + 1)


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill small holes of low-resolution masks.

    Background components (``logits <= 0``, 8-connected) of at most ``max_area`` pixels get
    the score :data:`HOLE_FILL_LOGIT`. ``logits``: ``B x 1 x h x w`` -> same shape (new tensor).
    Runs on any device (connected components on torch ops).
    """
    if max_area <= 0:
        return logits
    area = connected_component_areas(logits <= 0)
    return torch.where((area > 0) & (area <= max_area), torch.full_like(logits, HOLE_FILL_LOGIT), logits)


def non_overlapping(masks: torch.Tensor) -> torch.Tensor:
    """Keep each pixel for the object with the highest score: every other object's score
    there is lowered to at most :data:`SUPPRESSED_LOGIT`. ``masks``: ``B x 1 x H x W``."""
    if masks.shape[0] <= 1:
        return masks
    winner = masks.argmax(dim=0, keepdim=True)
    ids = torch.arange(masks.shape[0], device=masks.device)[:, None, None, None]
    return torch.where(winner == ids, masks, masks.clamp(max=SUPPRESSED_LOGIT))


class Tracker:
    """The tracking step's computations for a :class:`SAM2Model` (which it wraps).

    Args:
        model: the network; its ``cfg`` supplies the memory settings.
        binarize_mask_from_pts: encode masks of prompted frames as hard 0/1 masks (what the
            user saw) instead of sigmoid probabilities; the official video builder turns it on.
    """

    def __init__(self, model: SAM2Model, *, binarize_mask_from_pts: bool = True) -> None:
        self.model = model
        self.cfg = model.cfg
        self.binarize_mask_from_pts = binarize_mask_from_pts

    # ----------------------------------------------------------------- features
    def image_features(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None, torch.Tensor]:
        """``1 x 3 x S x S`` -> ``(vision 1 x C x h x w, high_res or None, vision_pos 1 x C x h x w)``."""
        bb = self.model.forward_image(image)
        return bb.vision, bb.high_res, bb.positions[-1]

    # ----------------------------------------------------------------- memory attention
    def condition_without_memory(self, vision: torch.Tensor) -> torch.Tensor:
        """Features of a frame tracked without memory (an initial conditioning frame):
        ``B x C x h x w`` -> same."""
        if self.cfg.num_maskmem == 0:
            return vision
        if self.cfg.directly_add_no_mem_embed:
            return vision + self.model.no_mem_embed.view(1, -1, 1, 1)
        b = vision.shape[0]
        memory = self.model.no_mem_embed.expand(1, b, self.model.mem_dim)
        memory_pos = self.model.no_mem_pos_enc.expand(1, b, self.model.mem_dim)
        return self._attend(vision, None, memory, memory_pos, 0)

    def condition(self, vision: torch.Tensor, vision_pos: torch.Tensor, plan: MemoryPlan,
                  memories: Sequence[torch.Tensor], pointers: Sequence[torch.Tensor],
                  memory_pos: torch.Tensor) -> torch.Tensor:
        """Condition a frame's features on its memory bank.

        Args:
            vision: ``B x C x h x w`` raw features of the current frame.
            vision_pos: ``1 x C x h x w`` their position encoding.
            plan: from :func:`plan_memory`.
            memories: one ``B x C_mem x h x w`` tensor per ``plan.memories`` entry (any float
                dtype; used in float32).
            pointers: one ``B x C`` tensor per ``plan.pointers`` entry.
            memory_pos: ``1 x C_mem x h x w`` spatial position encoding of a memory.

        Returns:
            ``B x C x h x w``.
        """
        if self.cfg.num_maskmem == 0:
            return vision
        b = vision.shape[0]
        dev = vision.device
        tokens: list[torch.Tensor] = []
        positions: list[torch.Tensor] = []
        spatial_pos = memory_pos.to(dev).flatten(2).permute(2, 0, 1).float()  # HW x 1 x C_mem
        for (_, t_pos), feats in zip(plan.memories, memories):
            tokens.append(feats.to(dev, torch.float32).flatten(2).permute(2, 0, 1))  # HW x B x C_mem
            tpos = self.model.maskmem_tpos_enc[self.cfg.num_maskmem - t_pos - 1]  # 1 x 1 x C_mem
            positions.append((spatial_pos + tpos).expand(-1, b, -1))
        num_ptr_tokens = 0
        if pointers:
            ptr_tokens, ptr_pos = self._pointer_tokens(plan, pointers, b, dev)
            tokens.append(ptr_tokens)
            positions.append(ptr_pos)
            num_ptr_tokens = ptr_tokens.shape[0]
        if not tokens:
            raise StateError("a frame tracked with memory needs at least one memory (a conditioning frame)")
        memory = torch.cat(tokens, dim=0)
        memory_pos_all = torch.cat(positions, dim=0)
        return self._attend(vision, vision_pos, memory, memory_pos_all, num_ptr_tokens)

    def _pointer_tokens(self, plan: MemoryPlan, pointers: Sequence[torch.Tensor], b: int,
                        dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Object pointers as memory tokens: ``P x B x C`` pointers split into ``C / C_mem``
        tokens each -> ``(P * C / C_mem) x B x C_mem`` tokens and their temporal encodings."""
        c, mem_dim = self.model.hidden_dim, self.model.mem_dim
        ptrs = torch.stack([p.to(dev, torch.float32) for p in pointers], dim=0)  # P x B x C
        n = ptrs.shape[0]
        if self.cfg.add_tpos_enc_to_obj_ptrs:
            offsets = torch.tensor([d for _, d in plan.pointers], device=dev)
            scale = max(plan.max_pointers - 1, 1)
            dim = c if self.cfg.proj_tpos_enc_in_obj_ptrs else mem_dim
            enc = self.model.obj_ptr_tpos_proj(sine_1d(offsets / scale, dim))  # P x C_mem
            pos = enc[:, None, :].expand(-1, b, mem_dim)
        else:
            pos = ptrs.new_zeros(n, b, mem_dim)
        if mem_dim < c:
            split = c // mem_dim
            ptrs = ptrs.reshape(n, b, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            pos = pos.repeat_interleave(split, dim=0)
        return ptrs, pos

    def _attend(self, vision: torch.Tensor, vision_pos: torch.Tensor | None, memory: torch.Tensor,
                memory_pos: torch.Tensor, num_ptr_tokens: int) -> torch.Tensor:
        b, c, h, w = vision.shape
        curr = vision.flatten(2).permute(2, 0, 1)  # HW x B x C
        curr_pos = None
        if vision_pos is not None:
            curr_pos = vision_pos.flatten(2).permute(2, 0, 1).expand(-1, b, -1)
        out = self.model.memory_attention(curr, memory, curr_pos, memory_pos, num_ptr_tokens)
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    # ----------------------------------------------------------------- decoding
    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """Whether the decoder returns three candidates (and keeps the best): on a frame's
        first click(s), per ``multimask_min_pt_num <= num_points <= multimask_max_pt_num``."""
        cfg = self.cfg
        return (cfg.multimask_output_in_sam
                and (is_init_cond_frame or cfg.multimask_output_for_tracking)
                and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num)

    # ----------------------------------------------------------------- memory encoding
    def encode_memory(self, vision: torch.Tensor, high_res_masks: torch.Tensor, object_score: torch.Tensor,
                      from_points: bool, non_overlap: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode frames and their predicted masks into memories.

        Args:
            vision: ``B x C x h x w`` raw features (no memory).
            high_res_masks: ``B x 1 x S x S`` mask logits at the model-input size.
            object_score: ``B x 1``; where negative, ``no_obj_embed_spatial`` is added.
            from_points: the masks come from prompts; binarized when so configured.
            non_overlap: apply :func:`non_overlapping` across the batch first (default: the
                model's ``non_overlap_masks_for_mem_enc``).

        Returns:
            ``(features B x C_mem x h x w, position encoding B x C_mem x h x w)``, float32.
        """
        cfg = self.cfg
        masks = high_res_masks.float()
        if cfg.non_overlap_masks_for_mem_enc if non_overlap is None else non_overlap:
            masks = non_overlapping(masks)
        if self.binarize_mask_from_pts and from_points:
            masks = (masks > 0).float()
        else:
            masks = torch.sigmoid(masks)
        if cfg.sigmoid_scale_for_mem_enc != 1.0:
            masks = masks * cfg.sigmoid_scale_for_mem_enc
        if cfg.sigmoid_bias_for_mem_enc != 0.0:
            masks = masks + cfg.sigmoid_bias_for_mem_enc
        feats, pos = self.model.memory_encoder(vision, masks, skip_mask_sigmoid=True)
        if cfg.no_obj_embed_spatial:
            absent = (object_score <= 0).to(feats.dtype)[..., None, None]  # B x 1 x 1 x 1
            feats = feats + absent * self.model.no_obj_embed_spatial[..., None, None]
        return feats, pos

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """``B x 1 x 4h x 4w`` logits -> ``B x 1 x S x S`` (bilinear)."""
        s = self.model.image_size
        return F.interpolate(low_res.float(), size=(s, s), mode="bilinear", align_corners=False)
