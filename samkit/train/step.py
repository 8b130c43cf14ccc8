"""The loss of one training micro-batch: simulated clicks on images, tracking on clips.

Both losses return one :class:`StepTerms`: the loss to back-propagate plus the detached
numbers that are logged. The trainer averages them over the micro-batches of an optimizer
step (:func:`average_terms`) and ``metrics.csv`` has one column per field
(:data:`TERM_COLUMNS`), so a new logged term is one new field here.

:func:`image_loss` follows the interactive training algorithm of Segment Anything:

1. every image of the batch goes through the image encoder once;
2. each object (the trainer drew up to ``max_objects`` per image) gets a first prompt (a
   click in the mask, or its box with noise, :func:`~samkit.prompts.sample_first_prompt`),
   decoded with three candidate masks when the prompt is a click (ambiguous) and one when
   it is a box;
3. then ``num_correction_rounds`` rounds each add one click drawn from the error region of
   the previous prediction (:func:`~samkit.prompts.sample_correction_click`) and
   ``num_rounds_without_click`` rounds add none; every round feeds the previous round's
   low-resolution logits (detached) back as the mask prompt (8 + 2 rounds by default: 11
   decoder runs per object);
4. every decoder run is scored with :func:`~samkit.train.losses.sam_loss` (focal : dice :
   IoU : object score = 20 : 1 : 1 : 1 by default; of several candidate masks only the best
   one's mask terms count, while the predicted IoU of every candidate is regressed, as in
   SAM 2.1, so that the IoU head can pick among them at inference), and the losses of all
   runs are summed.

The fed-back logits are NOT clamped here: training passes the previous round's
low-resolution logits back exactly as the decoder produced them (detached), unlike
inference and evaluation, which clamp them to ``+-``:data:`~samkit.prompts.FEEDBACK_CLAMP`
(:class:`~samkit.session.ImageSession`, the video predictor, the automatic mask generator).
SAM 2's training feeds them back the same way; the clamp belongs to the inference path,
where the fed-back logits are the ones ``ImagePredictor.predict`` returns. The shipped
weights were trained this way.

:func:`clip_loss` trains on a clip: its first frame is prompted (a click or a box, as
above); every later frame is tracked the way :class:`~samkit.video.predictor.VideoPredictor`
tracks it (memory attention over the memory bank and object pointers, then the SAM heads
with no prompt), and every frame's prediction is supervised. This is what teaches the memory
encoder, the memory attention and the object pointers; gradients flow from later frames
through the memories into the earlier frames' features and pointers (the predicted masks
that enter the memory encoder are detached, as they would be binarized or squashed at
inference). Clips are :class:`~samkit.data.ClipSample` (generated ones:
:class:`~samkit.data.SyntheticClipDataset`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from samkit.model.sam2 import BackboneOutput, SAM2Model
from samkit.masks import mask_iou
from samkit.prompts import ClickConfig, best_candidate, round_schedule, sample_correction_click, sample_first_prompt
from samkit.train.losses import LossTerms, LossWeights, feature_scale_penalty, sam_loss
from samkit.video.tracking import Tracker, plan_memory

__all__ = ["ImageBatch", "StepTerms", "TERM_COLUMNS", "average_terms", "resize_masks", "image_loss",
           "clip_loss"]

Autocast = Callable[[], contextlib.AbstractContextManager]


@dataclass
class StepTerms:
    """The loss of one micro-batch and the numbers logged of it.

    Every field is a ``metrics.csv`` column of the same name, in this order (``loss`` as its
    detached float). The terms are unweighted means per decoder run (images) or per frame
    (clips); :func:`average_terms` averages them over an optimizer step's micro-batches,
    except the fields marked ``sum``, which it adds up.
    """

    loss: torch.Tensor  # () the weighted sum over all decoder runs / frames, with its graph
    focal: float  # focal term, mean per run
    dice: float  # dice term, mean per run
    iou_loss: float  # IoU-regression term, mean per run
    object_loss: float  # object-score term, mean per run
    iou_first: float  # mean IoU after the first prompt (clips: on the prompted frame)
    iou_last: float  # mean IoU after the last run (clips: over the tracked frames where the object is; NaN if none)
    objects: int = field(metadata={"sum": True})  # objects supervised


TERM_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StepTerms))

# StepTerms field <- the LossTerms term it averages
_LOSS_TERMS = {"focal": "focal", "dice": "dice", "iou_loss": "iou", "object_loss": "object_score"}


def average_terms(terms: Sequence[StepTerms]) -> dict[str, float]:
    """One optimizer step's logged values from its micro-batches' terms, keyed by
    :data:`TERM_COLUMNS`: the mean over the micro-batches (0 without any), or the sum for the
    fields marked ``sum`` (``objects``). A NaN term makes its mean NaN."""
    m = max(len(terms), 1)
    out: dict[str, float] = {}
    for f in dataclasses.fields(StepTerms):
        total = 0.0
        for t in terms:
            v = getattr(t, f.name)
            total += float(v.detach()) if isinstance(v, torch.Tensor) else v
        out[f.name] = float(total) if f.metadata.get("sum") else total / m
    return out


def _add_loss_terms(sums: dict[str, float], terms: LossTerms) -> None:
    for name, attr in _LOSS_TERMS.items():
        sums[name] += float(getattr(terms, attr).detach())


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``K x H x W`` bool -> ``K x h x w`` bool (area-weighted resampling, then > 0.5)."""
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=masks.device)
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    x = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[:, 0] > 0.5


@dataclass
class ImageBatch:
    """One micro-batch of images ready for the model (``O`` objects over ``B`` images)."""

    images: torch.Tensor  # B x 3 x S x S normalised
    targets: torch.Tensor  # O x S x S bool, the objects of all images
    ignore: Optional[torch.Tensor]  # O x S x S bool, or None
    image_of: torch.Tensor  # O long, index of each object's image


def _encode(model: SAM2Model, images: torch.Tensor, encoder_trains: bool, amp: Autocast) -> BackboneOutput:
    """The image encoder on ``B x 3 x S x S`` images, with gradients only when it trains."""
    with amp():
        if encoder_trains:
            return model.forward_image(images)
        with torch.no_grad():
            return model.forward_image(images)


def image_loss(model: SAM2Model, batch: ImageBatch, *, clicks: ClickConfig, weights: LossWeights,
               data_generator: Optional[torch.Generator], prompt_generator: Optional[torch.Generator],
               loss_resolution: Literal["image", "low"] = "image", iou_kind: str = "mse",
               supervise_all_iou: bool = True, encoder_trains: bool = True,
               autocast: Optional[Autocast] = None) -> StepTerms:
    """The image encoder once, then the click rounds on all objects; the summed loss.

    Args:
        model: the network (train mode is the caller's business).
        batch: ``B`` images and their ``O`` objects at the model input size ``S``.
        clicks: the prompt simulation (first prompt, correction and no-click rounds).
        weights: loss term weights; ``feature_scale`` adds
            :func:`~samkit.train.losses.feature_scale_penalty` once when the encoder trains.
        data_generator: draws where the no-click rounds fall
            (:func:`~samkit.prompts.round_schedule`).
        prompt_generator: draws the first prompt and the correction clicks.
        loss_resolution: masks compared at ``S x S`` ("image") or at the decoder's ``4h x 4w``.
        iou_kind, supervise_all_iou: as in :func:`~samkit.train.losses.sam_loss`.
        encoder_trains: run the image encoder with gradients.
        autocast: a context-manager factory for the forward passes (mixed precision), or None.

    Returns:
        :class:`StepTerms`; ``loss`` is the sum over the ``1 + rounds`` decoder runs.
    """
    amp = autocast if autocast is not None else contextlib.nullcontext
    s = model.image_size
    bb = _encode(model, batch.images, encoder_trains, amp)
    with amp():
        embed, high_res = model.image_embeddings(bb)
    embed = embed[batch.image_of]  # O x C x h x w
    high_res = [f[batch.image_of] for f in high_res] if high_res else None
    targets, ignore = batch.targets, batch.ignore  # O x S x S
    n_obj = targets.shape[0]
    low_size = tuple(model.sam_prompt_encoder.mask_input_size)
    if loss_resolution == "low":
        loss_targets = resize_masks(targets, low_size)
        loss_ignore = resize_masks(ignore, low_size) if ignore is not None else None
    else:
        loss_targets, loss_ignore = targets, ignore

    prompt = sample_first_prompt(targets, clicks, prompt_generator)
    points, labels = prompt.points, prompt.labels  # O x N x 2, O x N
    multimask = not prompt.is_box  # a single click is ambiguous; a box is not
    schedule = round_schedule(clicks, data_generator)
    rows = torch.arange(n_obj, device=targets.device)
    prev_low: Optional[torch.Tensor] = None  # O x 1 x 4h x 4w, detached, NOT clamped (module docstring)
    prev_full: Optional[torch.Tensor] = None  # O x S x S bool
    total = torch.zeros((), device=targets.device)
    sums = dict.fromkeys(_LOSS_TERMS, 0.0)
    first_iou = last_iou = 0.0
    for r in range(1 + len(schedule)):
        if r > 0 and schedule[r - 1]:
            p, lab = sample_correction_click(targets, prev_full, ignore, clicks, prompt_generator)
            points = torch.cat([points, p], dim=1)
            labels = torch.cat([labels, lab], dim=1)
        with amp():
            out = model.decode(embed, high_res, (points, labels), None, prev_low,
                               multimask_output=multimask and r == 0)
        logits = out.masks.float()  # O x M x 4h x 4w
        full = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)  # O x M x S x S
        terms = sam_loss(full if loss_resolution == "image" else logits, out.iou.float(),
                         loss_targets[:, None], out.object_score.float(), loss_ignore, weights,
                         iou_kind=iou_kind, supervise_all_iou=supervise_all_iou)
        total = total + terms.total
        _add_loss_terms(sums, terms)
        best = best_candidate(out.iou.detach())
        prev_low = logits[rows, best][:, None].detach()
        prev_full = full[rows, best].detach() > 0
        if r == 0 or r == len(schedule):
            iou = float(mask_iou(full[rows, best] > 0, targets, ignore=ignore, empty=0.0).float().mean())
            if r == 0:
                first_iou = iou
            last_iou = iou
    if encoder_trains and weights.feature_scale > 0:
        total = total + weights.feature_scale * feature_scale_penalty(bb.features)
    n_runs = 1 + len(schedule)
    return StepTerms(loss=total, **{k: v / n_runs for k, v in sums.items()}, iou_first=first_iou,
                     iou_last=last_iou, objects=n_obj)


def clip_loss(model: SAM2Model, images: torch.Tensor, targets: torch.Tensor, *, clicks: ClickConfig,
              weights: LossWeights, generator: Optional[torch.Generator] = None, encoder_trains: bool = True,
              supervise_all_iou: bool = True, iou_kind: str = "mse",
              autocast: Optional[Autocast] = None) -> StepTerms:
    """Prompt frame 0, track frames ``1..T-1`` with memory, and sum the per-frame losses.

    Args:
        model: the network (train mode is the caller's business).
        images: ``T x 3 x S x S`` normalised frames.
        targets: ``O x T x S x S`` bool; every object is non-empty on frame 0.
        clicks: how the first prompt is drawn (``prob_box`` and the point sampling).
        weights: loss term weights; ``feature_scale`` adds
            :func:`~samkit.train.losses.feature_scale_penalty` once when the encoder trains.
        generator: randomness of the prompt.
        encoder_trains: run the image encoder with gradients.
        supervise_all_iou, iou_kind: as in :func:`~samkit.train.losses.sam_loss`.
        autocast: a context-manager factory for the forward passes (mixed precision), or None.

    Returns:
        :class:`StepTerms`; ``loss`` is the sum over frames (divided by nothing), ``iou_last``
        the mean IoU over the tracked frames (NaN with a single frame).
    """
    amp = autocast if autocast is not None else contextlib.nullcontext
    tracker = Tracker(model, binarize_mask_from_pts=True)
    n_obj, n_frames = targets.shape[:2]
    low_size = tuple(model.sam_prompt_encoder.mask_input_size)
    low_targets = resize_masks(targets.flatten(0, 1), low_size).view(n_obj, n_frames, *low_size)  # O x T x 4h x 4w
    bb = _encode(model, images, encoder_trains, amp)
    vision, high_res, pos = bb.vision, bb.high_res, bb.positions[-1]

    def frame_feats(t: int) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        v = vision[t:t + 1].expand(n_obj, -1, -1, -1)  # O x C x h x w
        hr = [h[t:t + 1].expand(n_obj, -1, -1, -1) for h in high_res] if high_res else None
        return v, hr

    memories: list[torch.Tensor] = []
    pointers: list[torch.Tensor] = []
    memory_pos: Optional[torch.Tensor] = None
    total = torch.zeros((), device=images.device)
    if encoder_trains and weights.feature_scale > 0:
        total = total + weights.feature_scale * feature_scale_penalty(bb.features)
    sums = dict.fromkeys(_LOSS_TERMS, 0.0)
    iou_first, tracked = 0.0, []
    for t in range(n_frames):
        v, hr = frame_feats(t)
        with amp():
            if t == 0:
                prompt = sample_first_prompt(targets[:, 0], clicks, generator)
                multimask = tracker.use_multimask(True, prompt.points.shape[1] if not prompt.is_box else 2)
                cond = tracker.condition_without_memory(v)
                heads = model.forward_sam_heads(cond, (prompt.points, prompt.labels), high_res=hr,
                                                multimask_output=multimask)
            else:
                plan = plan_memory(model.cfg, t, [0], lambda f: 0 <= f < t, n_frames)
                cond = tracker.condition(v, pos[t:t + 1], plan, [memories[f] for f, _ in plan.memories],
                                         [pointers[f] for f, _ in plan.pointers], memory_pos)
                heads = model.forward_sam_heads(cond, None, high_res=hr,
                                                multimask_output=tracker.use_multimask(False, 0))
        terms = sam_loss(heads.multi_logits.float(), heads.ious.float(), low_targets[:, t:t + 1],
                         heads.object_score.float(), None, weights, iou_kind=iou_kind,
                         supervise_all_iou=supervise_all_iou)
        total = total + terms.total
        _add_loss_terms(sums, terms)
        iou = mask_iou(heads.low_res.detach()[:, 0] > 0, low_targets[:, t], empty=0.0).float()  # O
        if t == 0:
            iou_first = float(iou.mean())
        else:
            present = low_targets[:, t].flatten(1).any(dim=1)
            tracked.extend(iou[present].tolist())
        if t < n_frames - 1:
            with amp():
                mem, mpos = tracker.encode_memory(v, heads.high_res.detach(), heads.object_score.detach(),
                                                  from_points=t == 0)
            memories.append(mem)
            pointers.append(heads.obj_ptr)
            if memory_pos is None:
                memory_pos = mpos[:1]
    return StepTerms(loss=total, **{k: v / n_frames for k, v in sums.items()}, iou_first=iou_first,
                     iou_last=float(np.mean(tracked)) if tracked else float("nan"), objects=n_obj)
