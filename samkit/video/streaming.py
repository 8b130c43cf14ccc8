"""``StreamingTracker``: track objects through frames pushed one at a time (a camera, a live stream).

A stream has no "whole video": frames arrive, each is tracked once, forwards. The tracker runs the
:class:`~samkit.video.predictor.VideoPredictor`'s own forward propagation on a growing frame
source, so its memory logic is the predictor's (one code path):

    tracker = StreamingTracker(model)
    tracker.add_new_points_or_box(frame0, obj_id=1, points=[[x, y]], labels=[1])
    for frame in frames:                       # H x W x 3 uint8 RGB
        obj_ids, masks = tracker.track(frame)  # masks: num_objects x H x W bool

Memory stays flat on an endless stream: only the frames and results the next frame can use are
kept (the memory window, the object-pointer window, and the prompted frames' results).
Pointer distances are normalised as on a long video (at least ``max_obj_ptrs_in_encoder`` frames),
so on such a video the masks equal ``propagate_in_video``'s for the same prompts on its first frame.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

from samkit.errors import ImageError, StateError, VideoError
from samkit.imageio import to_rgb_uint8
from samkit.lru import LRUCache
from samkit.model.sam2 import SAM2Model
from samkit.video.frames import FrameSource
from samkit.video.predictor import VideoPredictor
from samkit.video.state import InferenceState
from samkit.video.tracking import memory_window

__all__ = ["StreamingTracker", "StreamSource"]

# the number of frames a stream claims to have: more than any window, so nothing stops at an end
STREAM_LENGTH = 2**62


class StreamSource(FrameSource):
    """A frame source that grows: :meth:`push` appends a frame; frames older than ``keep`` are
    dropped (asking for one is a clear error)."""

    def __init__(self, first: np.ndarray, image_size: int, keep: int) -> None:
        super().__init__(image_size=image_size, height=first.shape[0], width=first.shape[1], cache_size=0,
                         input_cache_size=1)
        self._kept: dict[int, np.ndarray] = {}
        self._count = 0
        self._keep = max(1, int(keep))

    def __len__(self) -> int:
        return self._count

    def push(self, frame: np.ndarray) -> int:
        """Append ``frame`` (``H x W x 3`` uint8, the size of the first); returns its index."""
        if frame.shape != (self.height, self.width, 3):
            raise VideoError(f"frame {self._count} of the stream is {frame.shape[1]}x{frame.shape[0]}, but the "
                             f"stream's frames are {self.width}x{self.height} (all frames must have one size)")
        index = self._count
        self._kept[index] = frame
        self._count += 1
        for old in [t for t in self._kept if t <= index - self._keep]:
            del self._kept[old]
        return index

    def _decode(self, index: int) -> np.ndarray:
        frame = self._kept.get(index)
        if frame is None:
            raise VideoError(f"frame {index} of the stream is no longer kept (a stream keeps its last "
                             f"{self._keep} frames)")
        return frame.view()


def _rgb(frame: Any) -> np.ndarray:
    try:
        return to_rgb_uint8(frame)
    except ImageError as exc:
        raise VideoError(f"a stream frame must be an H x W x 3 RGB image: {exc}") from None


class StreamingTracker:
    """Track objects through frames given one at a time (see the module docstring).

    Args:
        model: the SAM 2 network.
        predictor_options: :class:`~samkit.video.predictor.VideoPredictor` arguments
            (``fill_hole_area``, ``compute_dtype``, ...); ``progress`` is off.
    """

    def __init__(self, model: SAM2Model, **predictor_options: Any) -> None:
        predictor_options.setdefault("progress", False)
        self.predictor = VideoPredictor(model, **predictor_options)
        cfg = model.cfg
        # results older than this can no longer be a memory or a pointer of the next frame
        self._history = max(memory_window(cfg), cfg.max_obj_ptrs_in_encoder if cfg.use_obj_ptrs_in_encoder else 1)
        self._state: InferenceState | None = None
        self._source: StreamSource | None = None
        self._last: np.ndarray | None = None

    # ------------------------------------------------------------------ state
    @property
    def frame_idx(self) -> int:
        """Index of the current (last given) frame; -1 before the first."""
        return -1 if self._source is None else len(self._source) - 1

    @property
    def obj_ids(self) -> list[Hashable]:
        return [] if self._state is None else self._state.obj_ids

    def reset(self) -> None:
        """Forget every object, prompt and frame."""
        if self._state is not None:
            self._state.close()
        self._state = self._source = self._last = None

    def _push(self, frame: Any) -> int:
        rgb = _rgb(frame)
        if self._state is None:
            self._source = StreamSource(rgb, self.predictor.image_size, keep=memory_window(self.predictor.cfg) + 1)
            device = self.predictor.device
            self._state = InferenceState(
                video=self._source, num_frames=STREAM_LENGTH, video_height=rgb.shape[0], video_width=rgb.shape[1],
                device=device, storage_device=device, offload_video_to_cpu=False, offload_state_to_cpu=False,
                features=LRUCache(max(1, self.predictor.feature_cache_size)))
        self._last = rgb
        return self._source.push(rgb)

    def _current(self, frame: Any) -> int:
        """The index of the frame a prompt is on: the current one (``None``, or the frame last
        given), else ``frame`` becomes the next frame of the stream."""
        if frame is None:
            if self._state is None:
                raise StateError("the stream has no frame yet: pass the frame the prompt is on")
            return self.frame_idx
        if self._last is not None and (frame is self._last or (isinstance(frame, np.ndarray)
                                                                and np.array_equal(frame, self._last))):
            return self.frame_idx
        return self._push(frame)

    def _masks(self, logits: torch.Tensor, return_logits: bool = False) -> tuple[list[Hashable], np.ndarray]:
        out = logits[:, 0] if return_logits else logits[:, 0] > 0
        return self.obj_ids, out.float().cpu().numpy() if return_logits else out.cpu().numpy()

    # ------------------------------------------------------------------ prompts
    def add_new_points_or_box(self, frame: Any, obj_id: Hashable, points: Any = None, labels: Any = None,
                              box: Any = None, clear_old_points: bool = True,
                              return_logits: bool = False) -> tuple[list[Hashable], np.ndarray]:
        """Clicks and/or a box (frame pixels) for one object on ``frame`` (the current frame, or
        a new one that becomes the next frame). Returns ``(obj_ids, masks num_objects x H x W)``
        on that frame (float32 logits with ``return_logits``)."""
        index = self._current(frame)
        _, _, logits = self.predictor.add_new_points_or_box(self._state, index, obj_id, points=points,
                                                            labels=labels, box=box, clear_old_points=clear_old_points)
        return self._masks(logits, return_logits)

    def add_new_mask(self, frame: Any, obj_id: Hashable, mask: Any) -> tuple[list[Hashable], np.ndarray]:
        """One object's ``H x W`` mask on ``frame`` (as :meth:`add_new_points_or_box`)."""
        index = self._current(frame)
        _, _, logits = self.predictor.add_new_mask(self._state, index, obj_id, mask)
        return self._masks(logits)

    def remove_object(self, obj_id: Hashable) -> None:
        """Stop tracking ``obj_id``."""
        if self._state is not None:
            self.predictor.remove_object(self._state, obj_id, need_output=False)

    # ------------------------------------------------------------------ tracking
    @torch.inference_mode()
    def track(self, frame: Any, return_logits: bool = False) -> tuple[list[Hashable], np.ndarray]:
        """Append ``frame`` (``H x W x 3`` RGB) and track every object on it.

        Returns ``(obj_ids, masks)``, ``masks`` ``num_objects x H x W`` bool at the frame's size
        (``0 x H x W`` while no object has a prompt); with ``return_logits``, float32 logits (where
        objects overlap, the higher logit is the likelier owner).
        """
        predictor = self.predictor
        previous = self.frame_idx
        index = self._push(frame)
        state = self._state
        if not state.objects:
            return [], np.zeros((0, *self._last.shape[:2]), dtype=np.float32 if return_logits else bool)
        predictor.propagate_in_video_preflight(state)
        if previous >= 0 and any(previous not in t.tracked for t in state.tracks()):
            predictor._propagate_frame(state, previous, reverse=False)  # the prompted frame, as propagation starts
        lows = predictor._propagate_frame(state, index, reverse=False)
        self._forget_before(index - self._history)
        return self._masks(predictor._to_video(state, torch.cat(lows, dim=0)), return_logits)

    def _forget_before(self, frame: int) -> None:
        """Drop the results of frames before ``frame`` that no later frame can use."""
        for track in self._state.tracks():
            for t in [t for t in track.tracked if t < frame]:
                if t not in track.cond and t not in track.prompts:
                    track.forget(t)
                    del track.tracked[t]
