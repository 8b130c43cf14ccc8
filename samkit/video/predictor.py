"""``VideoPredictor``: interactive multi-object video segmentation with SAM 2.

A drop-in for the official ``SAM2VideoPredictor``: the same methods, arguments and return
values (``(frame_idx, obj_ids, masks)`` with ``masks`` ``num_objects x 1 x H x W`` float32
logits at the video size). It wraps a :class:`~samkit.model.sam2.SAM2Model` (composition).

Each object is tracked independently: its own prompts, conditioning frames and memory bank.
New objects and corrections may be added on any frame at any time; propagation re-runs from
wherever it is asked to start.

Differences from the official predictor (outputs are otherwise the same):

* frames are read lazily (:func:`samkit.video.frames.open_video`): any folder of images, a
  video file, or a list of arrays; memory stays flat on long videos (see
  :mod:`samkit.video.state`), unless ``bounded_memory=False``;
* ``keep_corrections=True`` (default): a correction click on an already tracked frame is kept
  when propagating again (its output is reused and feeds the following frames' memory). The
  official 1.1 predictor re-tracks that frame without its clicks, so the correction is lost
  unless ``add_all_frames_to_correct_as_cond=True``; ``keep_corrections=False`` restores that;
* hole filling (``fill_hole_area``) runs on any device, the official one needs its CUDA
  extension;
* the model flag ``non_overlap_masks_for_mem_enc`` (off in every official config) is applied
  across the objects tracked on a frame; the official 1.1 predictor encodes each object
  alone, where it has no effect;
* memory features are stored in ``memory_dtype`` (bfloat16, as the official predictor does)
  and used in float32;
* the model's bf16 fast mode (``build_model(..., compute_dtype=torch.bfloat16)``, or
  ``compute_dtype=`` here) runs the image encoder, memory attention and memory encoder in
  bfloat16 weights and activations, without autocast (:mod:`samkit.model.precision`); off by
  default, so that results equal the float32 ones; masks differ slightly from float32 ones.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from samkit.errors import ConfigError, PromptError, StateError, VideoError
from samkit.lru import LRUCache
from samkit.model.precision import compute_dtype as model_compute_dtype, parse_dtype, set_compute_dtype
from samkit.model.sam2 import NO_OBJECT_LOGIT, SAM2Model, SamHeadsOutput
from samkit.prompts import FEEDBACK_CLAMP
from samkit.video.frames import VideoLike, open_video
from samkit.video.state import (
    FrameFeatures,
    FrameHistory,
    FrameOutput,
    InferenceState,
    MaskPrompt,
    ObjectTrack,
    PointPrompt,
)
from samkit.video.tracking import Tracker, fill_holes, memory_window, non_overlapping, plan_memory

__all__ = ["VideoPredictor"]

VALID_LABELS = (-1, 0, 1, 2, 3)

FrameMasks = tuple[int, list[Hashable], torch.Tensor]


class VideoPredictor:
    """Track objects through a video from points, boxes or masks.

    Args:
        model: the SAM 2 network.
        fill_hole_area: fill background holes of at most this many low-resolution pixels
            in every output (0: off). The official video builder uses 8.
        non_overlap_masks: in the returned masks, give each pixel to the highest-scoring
            object only.
        clear_non_cond_mem_around_input: after a prompt, forget the tracked memories within
            ``num_maskmem`` frames of it (per object).
        add_all_frames_to_correct_as_cond: make every frame that receives a correction a
            conditioning frame.
        binarize_mask_from_pts_for_mem_enc: encode prompted masks as hard 0/1 masks into
            memory; on in the official video builder.
        keep_corrections: keep corrections on tracked frames when propagating again (see the
            module notes).
        bounded_memory: compact results outside the memory window (see
            :mod:`samkit.video.state`); False keeps everything, like the official predictor.
        memory_dtype: dtype of stored memory features (None: float32).
        feature_cache_size: how many frames' image features to keep.
        compute_dtype: None (default): the mode the model was built in. A dtype other than the
            model's (``torch.bfloat16`` for a float32 model): the predictor runs a copy of the
            model in that mode (:func:`samkit.model.precision.set_compute_dtype`), leaving the
            given model as it is; build the model with ``compute_dtype=`` to avoid the copy.
        progress: show a progress bar while propagating.
    """

    def __init__(self, model: SAM2Model, fill_hole_area: int = 8, non_overlap_masks: bool = False,
                 clear_non_cond_mem_around_input: bool = False, add_all_frames_to_correct_as_cond: bool = False,
                 *, binarize_mask_from_pts_for_mem_enc: bool = True, keep_corrections: bool = True,
                 bounded_memory: bool = True, memory_dtype: torch.dtype | None = torch.bfloat16,
                 feature_cache_size: int = 2, compute_dtype: torch.dtype | None = None,
                 progress: bool = True) -> None:
        if not isinstance(model, SAM2Model):
            raise TypeError(f"model must be a SAM2Model (see samkit.build_model), got {type(model).__name__}")
        if fill_hole_area < 0:
            raise ConfigError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        if feature_cache_size < 1:
            raise ConfigError(f"feature_cache_size must be >= 1, got {feature_cache_size}")
        if compute_dtype is not None and parse_dtype(compute_dtype) != model_compute_dtype(model):
            model = set_compute_dtype(copy.deepcopy(model), compute_dtype)
        self.model = model
        self.tracker = Tracker(model, binarize_mask_from_pts=binarize_mask_from_pts_for_mem_enc)
        self.fill_hole_area = int(fill_hole_area)
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        self.keep_corrections = keep_corrections
        self.bounded_memory = bounded_memory
        self.memory_dtype = memory_dtype or torch.float32
        self.feature_cache_size = feature_cache_size
        self.compute_dtype = model_compute_dtype(model)
        self.progress = progress

    # ------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def cfg(self):
        return self.model.cfg

    # ------------------------------------------------------------------ session
    @torch.inference_mode()
    def init_state(self, video_path: VideoLike, offload_video_to_cpu: bool = False, offload_state_to_cpu: bool = False,
                   async_loading_frames: bool = False) -> InferenceState:
        """Open a video and start a session.

        Args:
            video_path: a folder of frames (any names, natural order), a video file, a list of
                ``H x W x 3`` arrays / PIL images, an ``N x H x W x 3`` array, or a FrameSource.
            offload_video_to_cpu: accepted for compatibility; frames are always read lazily
                and kept on the CPU.
            offload_state_to_cpu: keep stored masks and memories on the CPU.
            async_loading_frames: prepare the next frames in a background thread.
        """
        video = open_video(video_path, self.image_size, prefetch=2 if async_loading_frames else 0)
        if len(video) == 0:
            raise VideoError("the video has no frames")
        device = self.device
        return InferenceState(
            video=video, num_frames=len(video), video_height=video.height, video_width=video.width,
            device=device, storage_device=torch.device("cpu") if offload_state_to_cpu else device,
            offload_video_to_cpu=offload_video_to_cpu, offload_state_to_cpu=offload_state_to_cpu,
            features=LRUCache(max(1, self.feature_cache_size)),
        )

    @torch.inference_mode()
    def reset_state(self, inference_state: InferenceState) -> None:
        """Remove every object, prompt and result (the video stays open)."""
        self._check_state(inference_state)
        inference_state.objects.clear()

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_new_points_or_box(self, inference_state: InferenceState, frame_idx: int, obj_id: Hashable,
                              points: Any = None, labels: Any = None, clear_old_points: bool = True,
                              normalize_coords: bool = True, box: Any = None) -> FrameMasks:
        """Add clicks and/or a box for one object on one frame.

        Args:
            points: ``N x 2`` (x, y), in video pixels (or in ``[0, 1]`` when not
                ``normalize_coords``); ``labels``: ``N``, 1 positive / 0 negative.
            clear_old_points: replace this object's earlier clicks on this frame (else add).
            box: ``[x0, y0, x1, y1]``; only with ``clear_old_points=True``.

        Returns:
            ``(frame_idx, obj_ids, masks)``: every object's mask logits on this frame,
            ``num_objects x 1 x H x W``.
        """
        state = self._check_state(inference_state)
        frame = self._check_frame(state, frame_idx)
        self._check_obj_id(obj_id)
        coords, lab = _points_tensor(points, labels, box, clear_old_points)
        if normalize_coords:
            coords = coords / torch.tensor([state.video_width, state.video_height], dtype=torch.float32)
        coords = (coords * self.image_size).to(state.device)
        lab = lab.to(state.device)

        track = self._track_of(state, obj_id, create=True)
        old = track.prompts.get(frame)
        if not clear_old_points and isinstance(old, PointPrompt):
            prompt = old.extended(coords, lab)
        else:
            prompt = PointPrompt(coords, lab)

        is_init = frame not in track.tracked
        reverse = False if is_init else track.tracked[frame]
        prev_logits = track.latest_logits(frame, state.device)
        if prev_logits is not None:
            prev_logits = prev_logits.clamp(-FEEDBACK_CLAMP, FEEDBACK_CLAMP)
        feats = self._features(state, frame)
        heads = self._decode(state, track, frame, feats, is_init=is_init, reverse=reverse, points=prompt,
                             prev_logits=prev_logits)
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        track.prompts[frame] = prompt
        track.pending[frame] = self._output(state, heads, memory=None, is_cond=is_cond)
        return frame, state.obj_ids, self._frame_masks(state, frame)

    def add_new_points(self, *args, **kwargs) -> FrameMasks:
        """Older name of :meth:`add_new_points_or_box`."""
        return self.add_new_points_or_box(*args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(self, inference_state: InferenceState, frame_idx: int, obj_id: Hashable, mask: Any) -> FrameMasks:
        """Give one object's mask on one frame: ``H x W`` bool (any size; resized to the
        model input). Returns ``(frame_idx, obj_ids, masks)`` like :meth:`add_new_points_or_box`."""
        state = self._check_state(inference_state)
        frame = self._check_frame(state, frame_idx)
        self._check_obj_id(obj_id)
        m = _mask_tensor(mask).to(state.device)
        s = self.image_size
        m = m[None, None].float()
        if tuple(m.shape[-2:]) != (s, s):
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        track = self._track_of(state, obj_id, create=True)
        is_init = frame not in track.tracked
        reverse = False if is_init else track.tracked[frame]
        feats = self._features(state, frame)
        heads = self._decode(state, track, frame, feats, is_init=is_init, reverse=reverse, mask=m)
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        track.prompts[frame] = MaskPrompt(m)
        track.pending[frame] = self._output(state, heads, memory=None, is_cond=is_cond)
        return frame, state.obj_ids, self._frame_masks(state, frame)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, inference_state: InferenceState, frame_idx: int, obj_id: Hashable,
                                   need_output: bool = True) -> FrameMasks | None:
        """Remove one object's prompts on one frame. A conditioning result there becomes an
        ordinary tracked result. Returns the frame's masks when ``need_output``."""
        state = self._check_state(inference_state)
        frame = self._check_frame(state, frame_idx)
        track = self._track_of(state, obj_id)
        self._clear_prompts(track, frame)
        if not need_output:
            return None
        return frame, state.obj_ids, self._frame_masks(state, frame)

    @torch.inference_mode()
    def remove_object(self, inference_state: InferenceState, obj_id: Hashable, strict: bool = False,
                      need_output: bool = True) -> tuple[list[Hashable], list[tuple[int, torch.Tensor]]]:
        """Stop tracking an object.

        Returns ``(obj_ids, updated_frames)``: the remaining ids and, for each frame where the
        removed object had prompts, ``(frame_idx, masks of the remaining objects)``.
        Raises :class:`StateError` for an unknown id when ``strict``.
        """
        state = self._check_state(inference_state)
        if obj_id not in state.objects:
            if strict:
                raise StateError(f"cannot remove object id {obj_id!r}: no such object; "
                                 f"existing object ids: {state.obj_ids}")
            return state.obj_ids, []
        frames = sorted(state.objects[obj_id].prompts)
        del state.objects[obj_id]
        updated = []
        if need_output and state.objects:
            updated = [(t, self._frame_masks(state, t)) for t in frames]
        return state.obj_ids, updated

    # ------------------------------------------------------------------ propagation
    @torch.inference_mode()
    def propagate_in_video_preflight(self, inference_state: InferenceState) -> None:
        """Commit the results of new prompts into the memory bank (encoding their memories).
        Raises :class:`StateError` when there is no object or an object has no prompt."""
        state = self._check_state(inference_state)
        if not state.objects:
            raise StateError("no points, boxes or masks were added for any object; add prompts with "
                             "add_new_points_or_box or add_new_mask before propagating")
        for track in state.tracks():
            for frame in sorted(track.pending):
                out = track.pending[frame]
                if out.memory is None:
                    feats = self._features(state, frame)
                    high = self.tracker.upsample(out.logits.to(state.device))
                    mem, _ = self.tracker.encode_memory(feats.vision, high, out.object_score.to(state.device),
                                                        from_points=True)
                    out.memory = mem.to(state.storage_device, self.memory_dtype)
                if not out.is_cond and frame in track.cond:
                    if not self.keep_corrections:
                        continue  # the official predictor keeps the earlier conditioning result
                    out.is_cond = True
                track.commit(frame, out)
                if self.clear_non_cond_mem_around_input:
                    self._clear_memory_around(track, frame)
            track.pending.clear()
            if not track.cond_frames:
                raise StateError(f"object id {track.obj_id!r} has no conditioning frame (no prompt on a frame "
                                 "before tracking); add points, a box or a mask for it")
            track.trim()

    @torch.inference_mode()
    def propagate_in_video(self, inference_state: InferenceState, start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None, reverse: bool = False) -> Iterator[FrameMasks]:
        """Track every object through the video, yielding ``(frame_idx, obj_ids, masks)`` per
        frame with ``masks`` ``num_objects x 1 x H x W`` float32 logits.

        Args:
            start_frame_idx: first frame (default: the earliest conditioning frame).
            max_frame_num_to_track: how many frames after the start (default: to the end).
            reverse: track towards frame 0.
        """
        self.propagate_in_video_preflight(inference_state)
        state = inference_state
        n = state.num_frames
        if start_frame_idx is None:
            start = min(t for track in state.tracks() for t in track.cond_frames)
        else:
            start = self._check_frame(state, start_frame_idx)
        if max_frame_num_to_track is None:
            count = n
        else:
            if isinstance(max_frame_num_to_track, bool) or not isinstance(max_frame_num_to_track, (int, np.integer)) \
                    or max_frame_num_to_track < 0:
                raise VideoError(f"max_frame_num_to_track must be an integer >= 0, got {max_frame_num_to_track!r}")
            count = int(max_frame_num_to_track)
        if reverse:
            order = range(start, max(start - count, 0) - 1, -1) if start > 0 else range(0)
        else:
            order = range(start, min(start + count, n - 1) + 1)
        for frame in tqdm(order, desc="propagate in video", disable=not self.progress):
            lows = self._propagate_frame(state, frame, reverse)
            yield frame, state.obj_ids, self._to_video(state, torch.cat(lows, dim=0))

    def _propagate_frame(self, state: InferenceState, frame: int, reverse: bool) -> list[torch.Tensor]:
        """Track every object on one frame; returns their low-resolution logits in order."""
        tracks = list(state.tracks())
        lows: list[torch.Tensor | None] = [None] * len(tracks)
        fresh: list[tuple[int, SamHeadsOutput]] = []
        feats = None
        for i, track in enumerate(tracks):
            if track.has(frame) and (frame in track.cond or (self.keep_corrections and frame in track.prompts)):
                lows[i] = track.logits(frame, state.device)
                if frame in track.cond and self.clear_non_cond_mem_around_input:
                    self._clear_memory_around(track, frame)
                continue
            if feats is None:
                feats = self._features(state, frame)
            fresh.append((i, self._decode(state, track, frame, feats, is_init=False, reverse=reverse)))
        if fresh:
            high = torch.cat([h.high_res for _, h in fresh], dim=0)
            if self.cfg.non_overlap_masks_for_mem_enc:
                high = non_overlapping(high)
            for k, (i, heads) in enumerate(fresh):
                mem, _ = self.tracker.encode_memory(feats.vision, high[k:k + 1], heads.object_score,
                                                    from_points=False, non_overlap=False)
                out = self._output(state, heads, memory=mem, is_cond=False)
                tracks[i].commit(frame, out)
                lows[i] = out.logits.to(state.device)
        for track in tracks:
            track.tracked[frame] = reverse
            track.touch(frame)
            track.trim()
        return lows  # type: ignore[return-value]

    # ------------------------------------------------------------------ internals
    def _decode(self, state: InferenceState, track: ObjectTrack, frame: int, feats: FrameFeatures, *, is_init: bool,
                reverse: bool, points: PointPrompt | None = None, mask: torch.Tensor | None = None,
                prev_logits: torch.Tensor | None = None) -> SamHeadsOutput:
        """Run the tracking step's decoder for one object on one frame."""
        if mask is not None and self.cfg.use_mask_input_as_output_without_sam:
            return self.model.use_mask_as_output(feats.vision, feats.high_res, mask)
        if is_init:
            pix = self.tracker.condition_without_memory(feats.vision)
        else:
            pix = self._condition(state, track, frame, feats, reverse)
        mask_inputs = mask if mask is not None else prev_logits
        num_points = 0 if points is None else points.num_points
        multimask = self.tracker.use_multimask(is_init, num_points)
        pts = None if points is None else (points.coords, points.labels)
        return self.model.forward_sam_heads(pix, pts, mask_inputs, feats.high_res, multimask)

    def _condition(self, state: InferenceState, track: ObjectTrack, frame: int, feats: FrameFeatures,
                   reverse: bool) -> torch.Tensor:
        cond = track.cond_frames
        if not cond:
            raise StateError(f"object id {track.obj_id!r} has no conditioning frame to track from; add a prompt "
                             "on a frame and propagate first")
        plan = plan_memory(self.cfg, frame, cond, track.has, state.num_frames, reverse)
        memories = [self._memory(state, track, t) for t, _ in plan.memories]
        pointers = [track.obj_ptr(t) for t, _ in plan.pointers]
        return self.tracker.condition(feats.vision, state.vision_pos, plan, memories, pointers,
                                      self._memory_pos(state))

    def _memory(self, state: InferenceState, track: ObjectTrack, frame: int) -> torch.Tensor:
        """The memory features of a committed result, re-encoded if they were compacted."""
        memory = track.memory(frame)
        if memory is None:
            feats = self._features(state, frame)
            high = self.tracker.upsample(track.logits(frame, state.device))
            mem, _ = self.tracker.encode_memory(feats.vision, high, track.object_score(frame).to(state.device),
                                                from_points=frame in track.prompts)
            memory = mem.to(state.storage_device, self.memory_dtype)
            track.set_memory(frame, memory)
            track.touch(frame)
        return memory

    def _memory_pos(self, state: InferenceState) -> torch.Tensor:
        if state.memory_pos is None:
            side = self.image_size // self.cfg.backbone_stride
            probe = torch.zeros(1, self.model.mem_dim, side, side, device=state.device)
            state.memory_pos = self.model.memory_encoder.position_encoding(probe).float()
        return state.memory_pos

    def _features(self, state: InferenceState, frame: int) -> FrameFeatures:
        feats = state.features.get(frame)
        if feats is None:
            image = state.video.model_input(frame).to(state.device).float()[None]
            vision, high_res, vision_pos = self.tracker.image_features(image)
            feats = FrameFeatures(vision, high_res)
            state.features.put(frame, feats)
            if state.vision_pos is None:
                state.vision_pos = vision_pos[:1].clone()
        return feats

    def _output(self, state: InferenceState, heads: SamHeadsOutput, memory: torch.Tensor | None,
                is_cond: bool) -> FrameOutput:
        low = heads.low_res.float()
        if self.fill_hole_area > 0:
            low = fill_holes(low, self.fill_hole_area)
        low = low.to(state.storage_device)
        if memory is not None:
            memory = memory.to(state.storage_device, self.memory_dtype)
        return FrameOutput(obj_ptr=heads.obj_ptr.float(), object_score=heads.object_score.float(), logits=low,
                           memory=memory, is_cond=is_cond)

    def _frame_masks(self, state: InferenceState, frame: int) -> torch.Tensor:
        """Every object's latest logits on ``frame`` at the video size (missing: -1024)."""
        h, w = state.video_height, state.video_width
        out = torch.full((len(state.objects), 1, h, w), NO_OBJECT_LOGIT, dtype=torch.float32, device=state.device)
        for i, track in enumerate(state.tracks()):
            logits = track.latest_logits(frame, state.device)
            if logits is not None:
                out[i:i + 1] = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        if self.non_overlap_masks:
            out = non_overlapping(out)
        return out

    def _to_video(self, state: InferenceState, low: torch.Tensor) -> torch.Tensor:
        """``B x 1 x h x w`` low-resolution logits -> ``B x 1 x H x W`` at the video size."""
        low = low.to(state.device)
        hw = (state.video_height, state.video_width)
        out = low if tuple(low.shape[-2:]) == hw else F.interpolate(low, size=hw, mode="bilinear",
                                                                     align_corners=False)
        return non_overlapping(out) if self.non_overlap_masks else out

    def _clear_prompts(self, track: ObjectTrack, frame: int) -> None:
        track.prompts.pop(frame, None)
        track.pending.pop(frame, None)
        if frame in track.cond:
            track.uncondition(frame)  # an ordinary tracked result from now on
            track.tracked.pop(frame, None)

    def _clear_memory_around(self, track: ObjectTrack, frame: int) -> None:
        reach = self.cfg.memory_temporal_stride_for_eval * self.cfg.num_maskmem
        for t in range(frame - reach, frame + reach + 1):
            if track.has(t) and t not in track.cond and t not in track.prompts:
                track.forget(t)

    def _track_of(self, state: InferenceState, obj_id: Hashable, create: bool = False) -> ObjectTrack:
        track = state.objects.get(obj_id)
        if track is None:
            if not create:
                raise StateError(f"unknown object id {obj_id!r}; existing object ids: {state.obj_ids}")
            history = FrameHistory(device=state.storage_device)
            track = ObjectTrack(obj_id=obj_id, window=memory_window(self.cfg), history=history,
                                bounded=self.bounded_memory)
            state.objects[obj_id] = track
        return track

    @staticmethod
    def _check_state(state: Any) -> InferenceState:
        if not isinstance(state, InferenceState):
            raise StateError(f"expected the InferenceState returned by init_state, got {type(state).__name__}")
        return state

    @staticmethod
    def _check_frame(state: InferenceState, frame_idx: Any) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            if isinstance(frame_idx, torch.Tensor) and frame_idx.numel() == 1 and not frame_idx.is_floating_point():
                frame_idx = int(frame_idx)
            else:
                raise VideoError(f"frame index must be an integer, got {type(frame_idx).__name__}")
        frame = int(frame_idx)
        if not 0 <= frame < state.num_frames:
            raise VideoError(f"frame index {frame} is out of range for a video of {state.num_frames} frames "
                             f"(valid: 0..{state.num_frames - 1})")
        return frame

    @staticmethod
    def _check_obj_id(obj_id: Any) -> None:
        if obj_id is None or not isinstance(obj_id, Hashable):
            raise PromptError(f"obj_id must be a hashable id such as an int, got {obj_id!r}")


# ---------------------------------------------------------------------- prompt conversion

def _numeric(x: Any, what: str, dtype: torch.dtype) -> torch.Tensor:
    try:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu()
        else:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} must be numeric, got {type(x).__name__} ({exc})") from None
    if t.is_complex() or t.dtype == torch.bool:
        raise PromptError(f"{what} must be real numbers, got dtype {t.dtype}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise PromptError(f"{what} contains NaN or infinite values")
    return t.to(dtype)


def _points_tensor(points: Any, labels: Any, box: Any, clear_old_points: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate clicks and box -> ``(1 x N x 2 float32, 1 x N int32)`` with the box corners first."""
    if (points is None) != (labels is None):
        raise PromptError("points and labels must be given together (one label per point)")
    if points is None and box is None:
        raise PromptError("give points with labels, a box, or both")
    if points is None:
        coords, lab = torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.int32)
    else:
        coords = _numeric(points, "points", torch.float32)
        if coords.ndim == 2:
            coords = coords[None]
        if coords.ndim != 3 or coords.shape[0] != 1 or coords.shape[2] != 2:
            raise PromptError(f"points must be N x 2 (x, y), got shape {tuple(coords.shape)}")
        lab_f = _numeric(labels, "labels", torch.float64)
        if lab_f.ndim == 0:
            lab_f = lab_f[None]
        if lab_f.ndim == 1:
            lab_f = lab_f[None]
        if lab_f.ndim != 2 or lab_f.shape[0] != 1:
            raise PromptError(f"labels must be a vector of N labels, got shape {tuple(lab_f.shape)}")
        if lab_f.shape[1] != coords.shape[1]:
            raise PromptError(f"got {coords.shape[1]} points but {lab_f.shape[1]} labels")
        if bool((lab_f != lab_f.round()).any()) or not set(lab_f.flatten().tolist()) <= set(VALID_LABELS):
            raise PromptError(f"labels must be 1 (object) or 0 (background), got {lab_f.flatten().tolist()}")
        lab = lab_f.to(torch.int32)
        if box is None and coords.shape[1] == 0:
            raise PromptError("no points were given (an empty array) and no box")
    if box is not None:
        if not clear_old_points:
            raise PromptError("a box replaces the frame's earlier prompts: pass clear_old_points=True with a box "
                              "(give the box and all the clicks together)")
        b = _numeric(box, "box", torch.float32)
        if b.numel() != 4:
            raise PromptError(f"box must be [x0, y0, x1, y1], got shape {tuple(b.shape)}")
        b = b.reshape(1, 2, 2)
        if bool((b[0, 1] < b[0, 0]).any()):
            raise PromptError(f"box must have x0 <= x1 and y0 <= y1, got {b.flatten().tolist()}")
        coords = torch.cat([b, coords], dim=1)
        lab = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), lab], dim=1)
    return coords, lab


def _mask_tensor(mask: Any) -> torch.Tensor:
    """A 2-D mask (bool or numbers; non-zero is inside) -> ``H x W`` bool tensor."""
    try:
        t = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    except (TypeError, ValueError) as exc:
        raise PromptError(f"mask must be a 2-D array, got {type(mask).__name__} ({exc})") from None
    if t.ndim == 4 and t.shape[:2] == (1, 1):
        t = t[0, 0]
    elif t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise PromptError(f"mask must be a non-empty H x W array, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise PromptError("mask contains NaN or infinite values")
    return t != 0

