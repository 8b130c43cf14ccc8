"""``OnnxVideoTracker``: track objects through a video with the four exported graphs.

Each frame goes through the image encoder graph; an object's prompted frame is decoded from its
features with the object's clicks or box, every later frame from its features conditioned on the
object's memory bank (the memory attention graph); each result is encoded into a memory (the
memory encoder graph). Which memories and object pointers a frame attends to is samkit's own
:func:`~samkit.video.tracking.plan_memory`, and frames are read by
:func:`~samkit.video.frames.open_video`, so this module needs torch for those two (not for any
network). The results equal :class:`samkit.video.predictor.VideoPredictor` with float32
memories and no hole filling (tests/onnx/ compares them).

Scope: prompts (points and/or a box per object) on one frame, tracked forwards to the end.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samkit.errors import ConfigError, PromptError, VideoError
from samkit.model.sam2 import NO_OBJECT_LOGIT
from samkit.onnx.predictor import DecoderOutputs, select_outputs
from samkit.onnx.runtime import OnnxModel
from samkit.onnx.transforms import upsample_logits
from samkit.video.frames import VideoLike, open_video
from samkit.video.tracking import Tracker, memory_window, plan_memory

__all__ = ["OnnxVideoTracker", "ObjectPrompt"]


@dataclass
class ObjectPrompt:
    """One object's clicks and/or box on the prompted frame, in video pixels: ``points``
    ``N x 2`` (x, y) with ``labels`` ``N`` (1 object, 0 background); ``box`` ``x0, y0, x1, y1``."""

    points: Any = None
    labels: Any = None
    box: Any = None


@dataclass
class _Track:
    """One object's results: per frame its memory ``1 x C_mem x h x w`` (dropped outside the memory
    window), object pointer ``1 x C`` and object score."""

    cond_frames: list[int]
    memory: dict[int, np.ndarray] = field(default_factory=dict)
    obj_ptr: dict[int, np.ndarray] = field(default_factory=dict)

    def has(self, frame: int) -> bool:
        return frame in self.obj_ptr


class OnnxVideoTracker:
    """Track objects from prompts on one frame, with the graphs of an export folder.

    Args:
        model: an export folder (``samkit export onnx --out DIR``) or an :class:`OnnxModel`.
        binarize_mask_from_pts: encode the prompted frame's mask into memory as a hard 0/1 mask
            (as :class:`~samkit.video.predictor.VideoPredictor` does by default).
        num_threads, providers: see :class:`OnnxModel` (with a folder).
    """

    use_multimask = Tracker.use_multimask  # reads only self.cfg

    def __init__(self, model: str | os.PathLike | OnnxModel, *, binarize_mask_from_pts: bool = True,
                 num_threads: int | None = None, providers: list[str] | None = None) -> None:
        if not isinstance(model, OnnxModel):
            model = OnnxModel(model, providers=providers, num_threads=num_threads)
        self.model = model
        self.cfg = model.model_cfg
        if not (self.cfg.directly_add_no_mem_embed and self.cfg.num_maskmem > 0):
            raise ConfigError("OnnxVideoTracker needs a model with memories whose prompted frames add no_mem_embed "
                              "(every official SAM 2 / 2.1 variant and samkit_nano)")
        self.binarize_mask_from_pts = binarize_mask_from_pts

    def track(self, video: VideoLike, prompts: Mapping[Hashable, ObjectPrompt], frame_idx: int = 0
              ) -> Iterator[tuple[int, list[Hashable], np.ndarray]]:
        """Track every object of ``prompts`` (object id -> :class:`ObjectPrompt` on frame ``frame_idx``)
        from that frame to the end of ``video`` (anything :func:`~samkit.video.frames.open_video`
        opens: a folder of frames, a video file, a list of arrays).

        Yields ``(frame_idx, obj_ids, masks)`` per frame, ``masks`` ``num_objects x 1 x H x W``
        float32 logits at the video size, as :meth:`VideoPredictor.propagate_in_video`.
        """
        if not prompts:
            raise PromptError("give at least one object's prompt: {obj_id: ObjectPrompt(points=..., labels=...)}")
        source = open_video(video, self.model.image_size)
        n = len(source)
        if not 0 <= frame_idx < n:
            raise VideoError(f"frame_idx {frame_idx} is outside the video's {n} frames")
        size = np.array([source.width, source.height], dtype=np.float32)
        points = {obj: self._prompt_points(p, size) for obj, p in prompts.items()}
        tracks = {obj: _Track([frame_idx]) for obj in prompts}
        window = memory_window(self.cfg)
        for t in range(frame_idx, n):
            image = source.model_input(t).numpy()[None]
            embed, hr0, hr1, vision = self.model.run("image_encoder", {"image": image})
            lows = []
            for obj, track in tracks.items():
                if t == frame_idx:
                    coords, labels = points[obj]
                    pix, multimask = embed, self.use_multimask(True, coords.shape[1] - 1)
                else:
                    coords, labels = np.zeros((1, 2, 2), np.float32), np.full((1, 2), -1.0, np.float32)
                    pix, multimask = self._condition(track, t, n, vision), self.use_multimask(False, 0)
                low, ptr, score = self._decode(pix, hr0, hr1, coords, labels, multimask)
                binarize = float(t == frame_idx and self.binarize_mask_from_pts)
                track.memory[t] = self.model.run("memory_encoder", {
                    "vision_features": vision, "mask_logits": low, "object_score": score,
                    "binarize": np.array([binarize], np.float32)})[0]
                track.obj_ptr[t] = ptr
                if t - window not in track.cond_frames:  # out of every later frame's memory bank
                    track.memory.pop(t - window, None)
                lows.append(low)
            masks = upsample_logits(np.concatenate(lows), (source.height, source.width))
            yield t, list(tracks), masks

    def _prompt_points(self, prompt: ObjectPrompt, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box corners (labels 2, 3), then clicks, then the padding point, in model-input pixels:
        ``(1 x N x 2, 1 x N)`` float32."""
        coords, labels = [], []
        if prompt.box is not None:
            box = np.asarray(prompt.box, dtype=np.float32).reshape(2, 2)
            if (box[1] < box[0]).any():
                raise PromptError(f"box must have x0 <= x1 and y0 <= y1, got {box.flatten().tolist()}")
            coords.append(box)
            labels += [2.0, 3.0]
        if prompt.points is not None:
            pts = np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2)
            lab = np.asarray(prompt.labels, dtype=np.float32).reshape(-1)
            if lab.shape[0] != pts.shape[0] or not np.isin(lab, (0.0, 1.0)).all():
                raise PromptError(f"give one label (1 object, 0 background) per point: {pts.shape[0]} points, "
                                  f"labels {lab.tolist()}")
            coords.append(pts)
            labels += lab.tolist()
        if not coords:
            raise PromptError("an object's prompt needs points with labels, or a box")
        xy = np.concatenate(coords) / size * np.float32(self.model.image_size)
        xy = np.concatenate([xy, np.zeros((1, 2), np.float32)])
        return xy[None].astype(np.float32), np.array([labels + [-1.0]], dtype=np.float32)

    def _condition(self, track: _Track, frame: int, num_frames: int, vision: np.ndarray) -> np.ndarray:
        """The frame's features conditioned on the object's memory bank (memory attention graph)."""
        plan = plan_memory(self.cfg, frame, track.cond_frames, track.has, num_frames)
        scale = max(plan.max_pointers - 1, 1)
        c = int(self.model.config["hidden_dim"])
        ptrs = [track.obj_ptr[f] for f, _ in plan.pointers]
        return self.model.run("memory_attention", {
            "vision_features": vision,
            "memory": np.stack([track.memory[f] for f, _ in plan.memories]),
            "memory_tpos": np.array([p for _, p in plan.memories], dtype=np.int64),
            "obj_ptrs": np.stack(ptrs) if ptrs else np.zeros((0, 1, c), np.float32),
            "obj_ptr_offsets": np.array([d / scale for _, d in plan.pointers], dtype=np.float32)})[0]

    def _decode(self, pix: np.ndarray, hr0: np.ndarray, hr1: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`samkit.model.sam2.SAM2Model.forward_sam_heads` on the decoder graph:
        ``(low-res logits 1 x 1 x 4h x 4w, object pointer 1 x C, object score 1 x 1)``."""
        e = self.model.mask_input_size
        out = DecoderOutputs(*self.model.run("mask_decoder", {
            "image_embed": pix, "high_res_0": hr0, "high_res_1": hr1, "point_coords": coords, "point_labels": labels,
            "mask_input": np.zeros((1, 1, *e), np.float32), "has_mask_input": np.zeros(1, np.float32)}))
        cfg = self.cfg
        if multimask:
            best = int(out.iou[0, 1:].argmax()) + 1
            low = out.masks[:, best:best + 1]
            ptr = out.obj_ptr[:, best if cfg.use_multimask_token_for_obj_ptr else 0]
        else:
            low, _ = select_outputs(out, cfg, multimask_output=False)
            ptr = out.obj_ptr[:, 0]
        if cfg.pred_obj_scores and out.object_score[0, 0] <= 0:
            low = np.full_like(low, NO_OBJECT_LOGIT)
        return np.ascontiguousarray(low), np.ascontiguousarray(ptr), out.object_score
