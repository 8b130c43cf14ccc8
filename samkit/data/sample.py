"""The sample types every dataset yields (:class:`Sample` for images, :class:`ClipSample` for clips),
and the lazy ``Sequence`` base of the readers."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union, overload

import numpy as np

from samkit.errors import DatasetError

__all__ = ["Sample", "ClipSample", "LazyDataset"]


@dataclass
class Sample:
    """One image with its instance masks."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    masks: np.ndarray  # N x H x W bool, one mask per instance (N may be 0)
    ignore: Optional[np.ndarray]  # H x W bool: pixels left out of losses and clicks, or None
    name: str  # identifier (file stem or folder name)

    def __post_init__(self) -> None:
        img, masks = self.image, self.masks
        if not (
            isinstance(img, np.ndarray)
            and img.ndim == 3
            and img.shape[2] == 3
            and img.dtype == np.uint8
        ):
            shape = getattr(img, "shape", None)
            raise DatasetError(
                f"sample {self.name!r}: image must be an H x W x 3 uint8 array, got shape {shape}"
            )
        h, w = img.shape[:2]
        if not (isinstance(masks, np.ndarray) and masks.ndim == 3 and masks.shape[1:] == (h, w)):
            raise DatasetError(
                f"sample {self.name!r}: masks must be N x {h} x {w}, got shape "
                f"{getattr(masks, 'shape', None)}"
            )
        if masks.dtype != np.bool_:
            self.masks = masks != 0
        if self.ignore is not None:
            if not (isinstance(self.ignore, np.ndarray) and self.ignore.shape == (h, w)):
                raise DatasetError(
                    f"sample {self.name!r}: ignore must be {h} x {w}, got shape "
                    f"{getattr(self.ignore, 'shape', None)}"
                )
            if self.ignore.dtype != np.bool_:
                self.ignore = self.ignore != 0


@dataclass
class ClipSample:
    """One clip with its objects' masks (training, tracking evaluation, generated clips).

    Object ``k`` (``1..K``) is ``masks[k - 1]``; :meth:`labels` gives the same truth as one
    label map per frame (0 background, ``k`` where object ``k`` is), and :meth:`from_labels`
    builds a clip from label maps.

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
        self.frames, self.masks = f, m

    @classmethod
    def from_labels(cls, frames: np.ndarray, labels: np.ndarray, num_objects: int, name: str = "") -> "ClipSample":
        """A clip from ``T x H x W x 3`` uint8 frames and ``T x H x W`` integer label maps (0
        background, ``k`` in ``1..num_objects`` where object ``k`` is; other values are ignored)."""
        labels = np.asarray(labels)
        if labels.ndim != 3:
            raise DatasetError(f"clip {name!r}: label maps must be T x H x W, got shape {labels.shape}")
        masks = labels[None] == np.arange(1, int(num_objects) + 1)[:, None, None, None]  # K x T x H x W
        return cls(frames=frames, masks=masks, name=name)

    @property
    def num_frames(self) -> int:
        """``T``."""
        return int(self.masks.shape[1])

    @property
    def num_objects(self) -> int:
        """``K``."""
        return int(self.masks.shape[0])

    def labels(self) -> np.ndarray:
        """The masks as ``T x H x W`` uint8 label maps: 0 background, ``k`` where object ``k``
        is (where masks overlap, the highest id). Inverse of :meth:`from_labels` for masks that
        do not overlap."""
        if self.num_objects > 255:
            raise DatasetError(f"clip {self.name!r}: {self.num_objects} objects do not fit uint8 label maps")
        out = np.zeros(self.masks.shape[1:], dtype=np.uint8)
        for k, mask in enumerate(self.masks, start=1):
            out[mask] = k
        return out

    def object_mask(self, frame: int, object_id: int) -> np.ndarray:
        """``H x W`` bool: object ``object_id`` (``1..K``) on frame ``frame``."""
        if not 1 <= object_id <= self.num_objects:
            raise DatasetError(f"clip {self.name!r}: object_id must be in 1..{self.num_objects}, got {object_id}")
        return self.masks[object_id - 1, frame]


class LazyDataset(Sequence):
    """A ``Sequence`` of samples over a sequence of entries (file lists, or ``range(n)`` for
    generated data), each turned into its sample by :meth:`_load` only when indexed."""

    _entries: Sequence[Any]

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Sample, list[Sample]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        n = len(self._entries)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        return self._load(self._entries[i])

    def _load(self, entry: Any) -> Any:
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        """The sample names, in index order."""
        return [self._name(e) for e in self._entries]

    def _name(self, entry: Any) -> str:
        raise NotImplementedError
