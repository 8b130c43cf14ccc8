"""Video training: clips with per-frame object masks, and the tracking loss.

A training clip's first frame is prompted (a click or a box, as in image training); every
later frame is tracked the way :class:`~samkit.video.predictor.VideoPredictor` tracks it
(memory attention over the memory bank and object pointers, then the SAM heads with no
prompt), and every frame's prediction is supervised. This is what teaches the memory encoder,
the memory attention and the object pointers; gradients flow from later frames through the
memories into the earlier frames' features and pointers (the predicted masks that enter the
memory encoder are detached, as they would be binarized or squashed at inference).

- :class:`ClipSample`: ``T`` frames and ``K`` objects' masks on each frame.
- :class:`SyntheticClipDataset`: generated clips of moving objects
  (:mod:`samkit.video.synthetic`), drawn on demand.
- :func:`clip_loss`: the loss of one clip, used by :class:`~samkit.train.trainer.Trainer`
  on its clip steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional, Union, overload

import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import DatasetError
from samkit.model.sam2 import SAM2Model
from samkit.train.losses import LossWeights, feature_scale_penalty, mask_iou, sam_loss
from samkit.train.prompts import ClickConfig, sample_first_prompt
from samkit.video.tracking import Tracker, plan_memory

__all__ = ["ClipSample", "SyntheticClipDataset", "ClipLossResult", "clip_loss"]


@dataclass
class ClipSample:
    """One training clip.

    Attributes:
        frames: ``T x H x W x 3`` uint8 RGB.
        masks: ``K x T x H x W`` bool, object ``k``'s visible pixels on each frame.
        name: for messages.
    """

    frames: np.ndarray
    masks: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        f, m = np.asarray(self.frames), np.asarray(self.masks)
        if f.ndim != 4 or f.shape[-1] != 3:
            raise DatasetError(f"clip {self.name!r}: frames must be T x H x W x 3, got shape {f.shape}")
        if m.ndim != 4 or m.shape[1:] != f.shape[:3]:
            raise DatasetError(f"clip {self.name!r}: masks must be K x T x H x W matching frames {f.shape[:3]}, "
                               f"got shape {m.shape}")


class SyntheticClipDataset(Sequence):
    """``length`` generated clips (``num_frames`` frames of ``size x size``, 2 to 5 moving,
    spinning, deforming, occluding objects on a panning textured background). Clip ``i`` is
    a pure function of ``(seed, i)``."""

    def __init__(self, length: int, num_frames: int = 8, size: int = 256, seed: int = 0,
                 num_objects: tuple[int, int] = (2, 5)) -> None:
        if length < 1 or num_frames < 2:
            raise DatasetError(f"SyntheticClipDataset needs length >= 1 and num_frames >= 2, "
                               f"got {length} and {num_frames}")
        self.length, self.num_frames, self.size, self.seed = int(length), int(num_frames), int(size), int(seed)
        self.num_objects = num_objects

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> ClipSample: ...

    @overload
    def __getitem__(self, index: slice) -> list[ClipSample]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[ClipSample, list[ClipSample]]:
        from samkit.video.synthetic import SceneConfig, make_clip

        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        i = int(index) + (self.length if int(index) < 0 else 0)
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        rng = np.random.default_rng([self.seed, 77, i])
        k = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        scene = SceneConfig(min_size=float(rng.uniform(0.06, 0.12)), max_size=float(rng.uniform(0.14, 0.25)),
                            max_speed=float(rng.uniform(0.01, 0.04)))
        clip = make_clip(self.num_frames, self.size, self.size, k, seed=int(rng.integers(0, 2 ** 31)), scene=scene)
        labels = np.stack(clip.masks)  # T x H x W
        masks = labels[None] == np.arange(1, k + 1)[:, None, None, None]
        return ClipSample(frames=np.stack(clip.frames), masks=masks, name=f"clip_{i:06d}")


@dataclass
class ClipLossResult:
    """The summed loss over a clip's frames and its parts (floats are detached means)."""

    total: torch.Tensor
    focal: float
    dice: float
    iou: float
    object: float
    iou_first: float  # mean IoU on the prompted frame
    iou_tracked: float  # mean IoU over the tracked frames (objects present in the target)


def clip_loss(model: SAM2Model, images: torch.Tensor, targets: torch.Tensor, *, clicks: ClickConfig,
              weights: LossWeights, generator: Optional[torch.Generator] = None, encoder_trains: bool = True,
              supervise_all_iou: bool = True, iou_kind: str = "mse",
              autocast: Callable[[], object] | None = None) -> ClipLossResult:
    """Prompt frame 0, track frames ``1..T-1`` with memory, and sum the per-frame losses.

    Args:
        model: the network (train mode is the caller's business).
        images: ``T x 3 x S x S`` normalised frames.
        targets: ``O x T x S x S`` bool; every object is non-empty on frame 0.
        clicks: how the first prompt is drawn (``prob_box`` and the point sampling).
        weights: loss term weights.
        generator: randomness of the prompt.
        encoder_trains: run the image encoder with gradients.
        supervise_all_iou, iou_kind: as in :func:`~samkit.train.losses.sam_loss`.
        autocast: a context-manager factory for the forward passes (mixed precision), or None.

    Returns:
        :class:`ClipLossResult`; ``total`` is the sum over frames (divided by nothing).
    """
    import contextlib

    amp = autocast if autocast is not None else contextlib.nullcontext
    tracker = Tracker(model, binarize_mask_from_pts=True)
    n_obj, n_frames = targets.shape[:2]
    low_size = tuple(model.sam_prompt_encoder.mask_input_size)
    low_targets = F.interpolate(targets.flatten(0, 1)[:, None].float(), size=low_size, mode="bilinear",
                                align_corners=False, antialias=True)[:, 0].view(n_obj, n_frames, *low_size) > 0.5
    with amp():
        if encoder_trains:
            bb = model.forward_image(images)
        else:
            with torch.no_grad():
                bb = model.forward_image(images)
    vision, high_res, pos = bb.vision, bb.high_res, bb.positions[-1]

    def frame_feats(t: int) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        v = vision[t:t + 1].expand(n_obj, -1, -1, -1)
        hr = [h[t:t + 1].expand(n_obj, -1, -1, -1) for h in high_res] if high_res else None
        return v, hr

    memories: list[torch.Tensor] = []
    pointers: list[torch.Tensor] = []
    memory_pos: Optional[torch.Tensor] = None
    total = torch.zeros((), device=images.device)
    if encoder_trains and weights.feature_scale > 0:
        total = total + weights.feature_scale * feature_scale_penalty(bb.features)
    sums = dict(focal=0.0, dice=0.0, iou=0.0, object=0.0)
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
        for k in sums:
            sums[k] += float(getattr(terms, "object_score" if k == "object" else k).detach())
        iou = mask_iou(heads.low_res.detach(), low_targets[:, t:t + 1])[:, 0]
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
    stats = {k: v / n_frames for k, v in sums.items()}
    return ClipLossResult(total, stats["focal"], stats["dice"], stats["iou"], stats["object"], iou_first,
                          float(np.mean(tracked)) if tracked else float("nan"))
