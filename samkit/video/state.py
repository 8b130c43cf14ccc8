"""Typed inference state of the video predictor.

One :class:`InferenceState` per video session. It holds the lazy frame source, the video
size, a small LRU of image features, and one :class:`ObjectTrack` per tracked object with
that object's prompts and per-frame results.

Bounded memory
--------------
A committed result has a light part, kept for every tracked frame in a :class:`FrameHistory`
(the object pointer, the object score and the low-resolution mask at one bit per pixel:
about 9 KiB per frame and object for the 1024-pixel models, 1.5 KiB at 256 px), and a heavy
part (:class:`HeavyParts`: the exact low-resolution logits and the memory features, about
0.75 MiB at 1024 px) kept only while the memory bank may need it:

* conditioning frames and frames with prompts (always);
* frames within the memory window of a conditioning or prompted frame (so that propagating
  backwards after forwards, or from a correction, finds the same memories as before);
* the ``window`` most recently tracked frames (the memory bank of the next frame).

The light parts live in preallocated blocks of frames rather than in small tensors per frame:
small long-lived allocations interleaved with each frame's large temporary ones fragment the
C heap, and the process would grow by several times the stored data.

When the heavy part of a frame is needed again after it was dropped (re-propagating from an
arbitrary frame, or a correction far from any prompt), the predictor re-encodes the memory
from the frame's image and its bit mask, which is close to, but not bit-identical with, the
memory computed while tracking. ``bounded_memory=False`` in
:class:`~samkit.video.predictor.VideoPredictor` keeps every heavy part, as the official
predictor does.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

import torch

from samkit.lru import LRUCache
from samkit.video.frames import FrameSource

__all__ = [
    "PointPrompt",
    "MaskPrompt",
    "FrameOutput",
    "HeavyParts",
    "FrameHistory",
    "FrameFeatures",
    "ObjectTrack",
    "InferenceState",
    "pack_bits",
    "unpack_bits",
]

# Logit given to every pixel of a mask rebuilt from its bits.
COMPACT_LOGIT = 10.0

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean mask of any shape -> ``ceil(numel / 8)`` uint8, first pixel in the high bit."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: -> ``height x width`` bool."""
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=bits.device)
    return ((bits[:, None] & weights) != 0).reshape(-1)[: height * width].view(height, width)


@dataclass
class PointPrompt:
    """Clicks (and box corners) for one object on one frame, in model-input pixels.

    ``coords``: ``1 x N x 2`` float32 (x, y); ``labels``: ``1 x N`` int32 (1 positive,
    0 negative, 2 / 3 top-left / bottom-right box corner).
    """

    coords: torch.Tensor
    labels: torch.Tensor

    @property
    def num_points(self) -> int:
        return int(self.labels.shape[1])

    def extended(self, coords: torch.Tensor, labels: torch.Tensor) -> "PointPrompt":
        """These points followed by more (``1 x M x 2``, ``1 x M``)."""
        return PointPrompt(torch.cat([self.coords, coords], dim=1), torch.cat([self.labels, labels], dim=1))


@dataclass
class MaskPrompt:
    """A mask given for one object on one frame: ``1 x 1 x S x S`` float32 of 0/1 at the
    model-input size ``S``."""

    mask: torch.Tensor


Prompt = PointPrompt | MaskPrompt


@dataclass
class FrameOutput:
    """One object's result on one frame, as a tracking step produces it.

    ``obj_ptr`` ``1 x C`` float32; ``object_score`` ``1 x 1`` float32 (negative: the object
    is absent); ``logits`` ``1 x 1 x 4h x 4w`` float32 low-resolution mask logits (after hole
    filling); ``memory`` ``1 x C_mem x h x w`` memory features (in the predictor's memory
    dtype; None until encoded); ``is_cond``: a conditioning result.
    """

    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    logits: torch.Tensor
    memory: torch.Tensor | None = None
    is_cond: bool = False


@dataclass
class HeavyParts:
    """The parts of a committed result that are kept only near the memory window:
    ``logits`` ``1 x 1 x 4h x 4w`` float32 (None once dropped, or when only the memory was
    re-encoded) and ``memory`` ``1 x C_mem x h x w``."""

    logits: torch.Tensor | None
    memory: torch.Tensor | None


class FrameHistory:
    """The light part of every committed result of one object, in blocks of frames.

    Per frame: the object pointer (``C`` float32), the object score (float32) and the
    low-resolution mask ``logits > 0`` packed at one bit per pixel. Storage grows by one
    block of ``block`` frames at a time, allocated where frames are stored, on ``device``
    (the session's storage device: the CPU when the state is offloaded).
    """

    def __init__(self, block: int = 256, device: torch.device | str = "cpu") -> None:
        self.block = int(block)
        self.device = torch.device(device)
        self._frames: set[int] = set()
        self._ptr: dict[int, torch.Tensor] = {}  # block index -> block x C
        self._score: dict[int, torch.Tensor] = {}  # block index -> block
        self._bits: dict[int, torch.Tensor] = {}  # block index -> block x nbytes
        self._mask_hw: tuple[int, int] | None = None

    def __contains__(self, frame: object) -> bool:
        return frame in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def frames(self) -> list[int]:
        return sorted(self._frames)

    def put(self, frame: int, obj_ptr: torch.Tensor, object_score: torch.Tensor, logits: torch.Tensor) -> None:
        """Store frame ``frame``: ``obj_ptr`` ``1 x C``, ``object_score`` ``1 x 1``, ``logits``
        ``1 x 1 x h x w`` (only their sign is kept)."""
        h, w = logits.shape[-2:]
        if self._mask_hw is None:
            self._mask_hw = (int(h), int(w))
        b, row = divmod(frame, self.block)
        if b not in self._ptr:
            nbytes = -(-self._mask_hw[0] * self._mask_hw[1] // 8)
            self._ptr[b] = torch.zeros(self.block, obj_ptr.shape[-1], device=self.device)
            self._score[b] = torch.zeros(self.block, device=self.device)
            self._bits[b] = torch.zeros(self.block, nbytes, dtype=torch.uint8, device=self.device)
        self._ptr[b][row].copy_(obj_ptr.reshape(-1))
        self._score[b][row] = object_score.reshape(()).to(self.device, torch.float32)
        self._bits[b][row].copy_(pack_bits(logits > 0).to(self.device))
        self._frames.add(frame)

    def remove(self, frame: int) -> None:
        self._frames.discard(frame)

    def clear(self) -> None:
        self._frames.clear()
        self._ptr.clear()
        self._score.clear()
        self._bits.clear()

    def _locate(self, frame: int) -> tuple[int, int]:
        if frame not in self._frames:
            raise KeyError(frame)
        return divmod(frame, self.block)

    def obj_ptr(self, frame: int) -> torch.Tensor:
        """``1 x C`` float32 (a view into the block)."""
        b, row = self._locate(frame)
        return self._ptr[b][row:row + 1]

    def object_score(self, frame: int) -> torch.Tensor:
        """``1 x 1`` float32."""
        b, row = self._locate(frame)
        return self._score[b][row:row + 1].view(1, 1)

    def mask(self, frame: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``h x w`` bool."""
        b, row = self._locate(frame)
        bits = self._bits[b][row]
        if device is not None:
            bits = bits.to(device)
        return unpack_bits(bits, *self._mask_hw)

    def mask_logits(self, frame: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The stored mask as logits ``1 x 1 x h x w`` float32: +-:data:`COMPACT_LOGIT`."""
        m = self.mask(frame, device)
        return torch.where(m, COMPACT_LOGIT, -COMPACT_LOGIT)[None, None].float()

    @property
    def nbytes(self) -> int:
        """Bytes held by the blocks."""
        return sum(t.numel() * t.element_size() for d in (self._ptr, self._score, self._bits) for t in d.values())


@dataclass
class FrameFeatures:
    """Image features of one frame (batch of one).

    ``vision``: ``1 x C x h x w`` coarsest map (no memory); ``high_res``: the decoder's skip
    features ``[1 x C/8 x 4h x 4w, 1 x C/4 x 2h x 2w]`` or None.
    """

    vision: torch.Tensor
    high_res: list[torch.Tensor] | None


@dataclass
class ObjectTrack:
    """Everything known about one object.

    ``prompts``: frame -> the prompt given there. Committed results (the only ones used as
    memory): light parts in ``history``, heavy parts of some frames in ``heavy``, and the set
    ``cond`` of conditioning frames. ``pending``: results of prompts not yet committed (their
    memory is encoded by
    :meth:`~samkit.video.predictor.VideoPredictor.propagate_in_video_preflight`).
    ``tracked``: frame -> whether it was last tracked in reverse (decides the memory
    direction of a later correction there). ``window``: the memory window (frames).
    """

    obj_id: Hashable
    window: int
    history: FrameHistory
    bounded: bool = True
    prompts: dict[int, Prompt] = field(default_factory=dict)
    cond: set[int] = field(default_factory=set)
    heavy: dict[int, HeavyParts] = field(default_factory=dict)
    pending: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)
    _recent: deque[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=max(1, self.window))

    # ----------------------------------------------------------------- queries
    def has(self, frame: int) -> bool:
        """Whether ``frame`` has a committed result."""
        return frame in self.history

    @property
    def cond_frames(self) -> list[int]:
        """Committed conditioning frames, ascending."""
        return sorted(self.cond)

    def obj_ptr(self, frame: int) -> torch.Tensor:
        """``1 x C`` object pointer of a committed result."""
        return self.history.obj_ptr(frame)

    def object_score(self, frame: int) -> torch.Tensor:
        """``1 x 1`` object score of a committed result."""
        return self.history.object_score(frame)

    def logits(self, frame: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``1 x 1 x 4h x 4w`` logits of a committed result: exact while its heavy part is
        kept, else rebuilt from its bit mask (+-:data:`COMPACT_LOGIT`)."""
        parts = self.heavy.get(frame)
        if parts is not None and parts.logits is not None:
            return parts.logits if device is None else parts.logits.to(device)
        return self.history.mask_logits(frame, device)

    def memory(self, frame: int) -> torch.Tensor | None:
        """The memory features of a committed result, or None if not held."""
        parts = self.heavy.get(frame)
        return None if parts is None else parts.memory

    def latest_logits(self, frame: int, device: torch.device | str | None = None) -> torch.Tensor | None:
        """The most recent logits on ``frame``: a pending result first, then the committed one."""
        out = self.pending.get(frame)
        if out is not None:
            return out.logits if device is None else out.logits.to(device)
        return self.logits(frame, device) if self.has(frame) else None

    def anchors(self) -> list[int]:
        """Frames whose neighbourhood stays uncompacted: prompted and conditioning frames."""
        return sorted(set(self.prompts) | self.cond)

    def is_pinned(self, frame: int, anchors: list[int] | None = None) -> bool:
        """Whether ``frame``'s heavy part must be kept (see the module notes)."""
        if frame in self.prompts or frame in self.cond:
            return True
        anchors = self.anchors() if anchors is None else anchors
        i = bisect.bisect_left(anchors, frame - self.window)
        return i < len(anchors) and anchors[i] <= frame + self.window

    # ----------------------------------------------------------------- updates
    def commit(self, frame: int, out: FrameOutput) -> None:
        """Store a result as committed (its light part in the history, its heavy part kept
        until :meth:`trim` drops it)."""
        self.history.put(frame, out.obj_ptr, out.object_score, out.logits)
        if out.is_cond:
            self.cond.add(frame)
        else:
            self.cond.discard(frame)
        self.heavy[frame] = HeavyParts(out.logits, out.memory)

    def set_memory(self, frame: int, memory: torch.Tensor) -> None:
        """Keep re-encoded memory features for a committed result."""
        parts = self.heavy.setdefault(frame, HeavyParts(None, None))
        parts.memory = memory

    def uncondition(self, frame: int) -> None:
        """Turn a conditioning result into an ordinary tracked result."""
        self.cond.discard(frame)

    def touch(self, frame: int) -> None:
        """Mark ``frame`` as just tracked (part of the next frame's memory window)."""
        if frame in self._recent:
            self._recent.remove(frame)
        self._recent.append(frame)

    def trim(self) -> int:
        """Drop every heavy part outside the pinned set and the recent window. Returns how
        many were dropped. Does nothing when not ``bounded``."""
        if not self.bounded:
            return 0
        anchors = self.anchors()
        recent = set(self._recent)
        drop = [t for t in self.heavy if t not in recent and not self.is_pinned(t, anchors)]
        for t in drop:
            del self.heavy[t]
        return len(drop)

    def forget(self, frame: int) -> None:
        """Remove the committed result of ``frame``."""
        self.history.remove(frame)
        self.heavy.pop(frame, None)
        self.cond.discard(frame)
        if frame in self._recent:
            self._recent.remove(frame)

    def clear(self) -> None:
        """Drop every prompt and result."""
        self.prompts.clear()
        self.history.clear()
        self.cond.clear()
        self.heavy.clear()
        self.pending.clear()
        self.tracked.clear()
        self._recent.clear()

    @property
    def num_heavy(self) -> int:
        """How many committed results hold heavy parts now."""
        return len(self.heavy)


@dataclass
class InferenceState:
    """A video session: what ``VideoPredictor.init_state`` returns.

    ``video`` is the lazy frame source (``3 x S x S`` model inputs on demand);
    ``objects`` maps object ids to their tracks in the order they were added.
    ``memory_pos`` (``1 x C_mem x h x w``) and ``vision_pos`` (``1 x C x h x w``) are the
    position encodings shared by every frame, filled on first use.
    """

    video: FrameSource
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device
    storage_device: torch.device
    offload_video_to_cpu: bool
    offload_state_to_cpu: bool
    features: LRUCache[int, FrameFeatures]
    objects: dict[Hashable, ObjectTrack] = field(default_factory=dict)
    memory_pos: torch.Tensor | None = None
    vision_pos: torch.Tensor | None = None

    @property
    def obj_ids(self) -> list[Hashable]:
        """Object ids in the order they were added (the order of mask batches)."""
        return list(self.objects)

    def tracks(self) -> Iterator[ObjectTrack]:
        return iter(self.objects.values())

    def heavy_results(self) -> int:
        """How many (frame, object) results keep heavy parts (a bounded number)."""
        return sum(t.num_heavy for t in self.objects.values())

    def close(self) -> None:
        """Release the video (file handle, prefetch thread) and the cached features."""
        self.features.clear()
        self.video.close()
