"""Generated clips as videos: :class:`SyntheticVideo`, a lazy :class:`FrameSource` over the
clip renderer of :mod:`samkit.data.synthetic.clips` (the writers of frame folders, label PNGs
and mp4 files are in :mod:`samkit.video.writers`).

``SyntheticVideo(T, H, W, K, seed)`` shows the same frames and label maps as
``make_clip(T, H, W, K, seed)``, rendered when asked for, so memory stays at a few frames
whatever ``T`` is (clips of thousands of frames for memory and speed benchmarks).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from samkit.data.synthetic.clips import ClipRenderer, SceneConfig
from samkit.errors import VideoError
from samkit.lru import LRUCache
from samkit.video.frames import FrameSource

__all__ = ["SyntheticVideo"]


class SyntheticVideo(FrameSource):
    """A lazy generated clip: frame ``t`` and its label map are rendered when asked for.

    Args:
        num_frames: length of the clip.
        height, width: frame size in pixels.
        num_objects: number of objects ``K`` (0..255).
        seed: everything is determined by it.
        scene: appearance and motion settings.
        image_size: side ``S`` of the model input (:meth:`model_input`).
        cache_size, input_cache_size, prefetch: see :class:`FrameSource`.
    """

    def __init__(
        self,
        num_frames: int,
        height: int,
        width: int,
        num_objects: int,
        seed: int = 0,
        *,
        scene: Optional[SceneConfig] = None,
        image_size: int = 1024,
        cache_size: int = 4,
        input_cache_size: int = 1,
        prefetch: int = 0,
    ) -> None:
        if num_frames <= 0:
            raise VideoError(f"num_frames must be positive, got {num_frames}")
        self.renderer = ClipRenderer(height, width, num_objects, seed, scene=scene)
        self.scene = self.renderer.scene
        self.seed = self.renderer.seed
        self.num_objects = self.renderer.num_objects
        self._num_frames = int(num_frames)
        super().__init__(
            image_size=image_size,
            height=height,
            width=width,
            cache_size=cache_size,
            input_cache_size=input_cache_size,
            prefetch=prefetch,
        )
        self._masks: LRUCache[int, np.ndarray] = LRUCache(max(cache_size, 1))

    @property
    def fps(self) -> float:
        """Frame rate of the clip (``scene.fps``)."""
        return self.scene.fps

    def __len__(self) -> int:
        return self._num_frames

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render frame ``index`` without caching: ``(H x W x 3 uint8 frame, H x W uint8 label map)``."""
        return self.renderer.render(self._check_index(index))

    def object_masks(self, index: int) -> np.ndarray:
        """``K x H x W`` bool: every object's whole (amodal) shape on frame ``index``."""
        return self.renderer.object_masks(self._check_index(index))

    def _decode(self, index: int) -> np.ndarray:
        frame, labels = self.render(index)
        labels.flags.writeable = False
        with self._lock:
            self._masks.put(index, labels)
        return frame

    def mask(self, index: int) -> np.ndarray:
        """Ground-truth label map of frame ``index``: ``H x W`` uint8, read-only.

        0 is background, ``k`` (1..K) where object ``k`` is visible.
        """
        i = self._check_index(index)
        with self._lock:
            hit = self._masks.get(i)
        if hit is not None:
            return hit
        with self._decode_lock:
            frame, labels = self.render(i)
        labels.flags.writeable = False
        frame.flags.writeable = False
        with self._lock:
            self._masks.put(i, labels)
            self._frames.put(i, frame)
        return labels
