"""Lazy video frame sources.

A :class:`FrameSource` gives random access to the frames of a video without holding them
all in memory: frames are decoded on demand and kept in a small LRU cache, so a long video
costs only a few frames of memory. Each frame comes in two forms:

- :meth:`FrameSource.frame`: the original ``H x W x 3`` uint8 RGB pixels;
- :meth:`FrameSource.model_input`: the ``3 x S x S`` float32 tensor the image encoder reads,
  prepared exactly as the official video loader prepares a folder of JPEG frames (PIL
  bicubic resize to ``S x S``, ``/ 255``, ImageNet mean/std; see
  :func:`samkit.imageio.preprocess_video_frame`).

Sources: :class:`ImageFolderSource` (a folder of JPEG/PNG frames, any names, natural
order), :class:`VideoFileSource` (.mp4 and other containers through OpenCV, optional
dependency ``pip install samkit[video]``), :class:`ArraySource` (frames already in memory).
:func:`open_video` picks one from what it is given.

Video files: the official loader decodes .mp4 with ``decord`` and lets the decoder's scaler
resize the frames. samkit instead decodes the full-size frame with OpenCV and resizes it
exactly like a JPEG frame, so an .mp4 and the same frames extracted to a folder give the same
model input up to the codec's own losses; results can differ slightly from the official
.mp4 path.
"""

from __future__ import annotations

import operator
import os
import re
import stat
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from samkit.errors import ImageError, VideoError
from samkit.imageio import (
    IMAGE_EXTENSIONS,
    ImageLike,
    describe_access_error,
    image_pixel_limit,
    open_image,
    preprocess_video_frame,
    to_rgb_uint8,
)
from samkit.lru import LRUCache

__all__ = [
    "FrameSource",
    "ImageFolderSource",
    "VideoFileSource",
    "ArraySource",
    "VideoLike",
    "open_video",
    "natural_sort_key",
    "require_cv2",
    "VIDEO_EXTENSIONS",
]

# file extensions listed as videos where a folder holds images and videos (the studio)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

# Extensions of one family may be mixed in a frame folder; different families may not.
_FAMILY = {".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}

VideoLike = Union[str, os.PathLike, np.ndarray, Sequence[ImageLike], "FrameSource"]
"""What :func:`open_video` accepts."""


def require_cv2() -> ModuleType:
    """Import OpenCV, or raise a :class:`VideoError` saying how to install it."""
    try:
        import cv2
    except ImportError as exc:
        raise VideoError(
            "reading or writing video files (.mp4, ...) needs OpenCV, which is not installed; "
            "install it with `pip install samkit[video]`, or extract the frames into a "
            "folder of JPEG files and open that folder instead"
        ) from exc
    return cv2


def natural_sort_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``.

    Text is compared case-insensitively; names equal under this key keep a stable order
    when the caller breaks ties with the name itself.
    """
    parts = re.split(r"(\d+)", name)
    key = []
    for i, part in enumerate(parts):
        if i % 2:  # a run of digits
            key.append((0, int(part), ""))
        elif part:
            key.append((1, 0, part.lower()))
    return tuple(key)


class FrameSource(ABC):
    """Random access to the frames of one video, decoded lazily and cached in small LRUs.

    Subclasses implement :meth:`__len__` and :meth:`_decode`; everything else is shared.
    ``source[i]`` is ``source.model_input(i)``, so a source can stand where the official
    predictor keeps its tensor of preprocessed frames.

    Thread safety: the public methods may be called from several threads; decoding is
    serialised.

    Args:
        image_size: side ``S`` of the square model input.
        height, width: size of the original frames (every frame must have it).
        cache_size: how many decoded ``H x W x 3`` frames to keep (LRU).
        input_cache_size: how many ``3 x S x S`` model inputs to keep (LRU); raised to
            ``prefetch + 1`` when prefetching so prefetched inputs are not evicted early.
        prefetch: how many frames ahead (in the direction of the last access) to prepare
            in a background thread after each :meth:`model_input` call; 0 turns it off.
    """

    def __init__(
        self,
        *,
        image_size: int,
        height: int,
        width: int,
        cache_size: int = 4,
        input_cache_size: int = 1,
        prefetch: int = 0,
    ) -> None:
        if image_size <= 0:
            raise VideoError(f"image_size must be a positive number of pixels, got {image_size}")
        if cache_size < 0 or input_cache_size < 0 or prefetch < 0:
            raise VideoError(
                "cache_size, input_cache_size and prefetch must be >= 0, got "
                f"{cache_size}, {input_cache_size}, {prefetch}"
            )
        self.image_size = int(image_size)
        self._height = int(height)
        self._width = int(width)
        self._prefetch = int(prefetch)
        self._frames: LRUCache[int, np.ndarray] = LRUCache(cache_size)
        # Prefetched inputs must survive until they are asked for: keep the whole window.
        inputs_kept = max(input_cache_size, self._prefetch + 1 if self._prefetch else 0)
        self._inputs: LRUCache[int, torch.Tensor] = LRUCache(inputs_kept)
        self._lock = threading.Lock()  # guards the caches, _pending, _executor, _closed
        self._decode_lock = threading.Lock()  # serialises _decode (decoders are stateful)
        self._pending: dict[int, Future[torch.Tensor]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._last_index = -1
        self._closed = False

    # ----------------------------------------------------------------- subclass API
    @abstractmethod
    def __len__(self) -> int:
        """Number of frames."""

    @abstractmethod
    def _decode(self, index: int) -> np.ndarray:
        """Decode frame ``index`` (``0 <= index < len``) as ``H x W x 3`` uint8 RGB.

        Never called concurrently; may be called from the prefetch thread.
        """

    def _release(self) -> None:
        """Free decoder resources; called once by :meth:`close`."""

    # ----------------------------------------------------------------- public API
    @property
    def height(self) -> int:
        """Height in pixels of the original frames."""
        return self._height

    @property
    def width(self) -> int:
        """Width in pixels of the original frames."""
        return self._width

    @property
    def num_cached_frames(self) -> int:
        """How many decoded frames are held in memory now (at most ``cache_size``)."""
        with self._lock:
            return len(self._frames)

    @property
    def num_cached_inputs(self) -> int:
        """How many model inputs are held in memory now (at most ``input_cache_size``)."""
        with self._lock:
            return len(self._inputs)

    def frame(self, index: int) -> np.ndarray:
        """The original frame ``index`` as an ``H x W x 3`` uint8 RGB array.

        The array is read-only (it may be shared with the cache): copy it to draw on it.
        Negative indices count from the end.

        Raises:
            VideoError: index out of range, or the frame cannot be decoded.
        """
        i = self._check_index(index)
        with self._lock:
            hit = self._frames.get(i)
        if hit is not None:
            return hit
        with self._decode_lock:
            with self._lock:  # another thread may have decoded it while we waited
                hit = self._frames.get(i)
            if hit is not None:
                return hit
            arr = self._decode(i)
        if arr.shape != (self._height, self._width, 3) or arr.dtype != np.uint8:
            raise VideoError(
                f"frame {i} has shape {tuple(arr.shape)} and dtype {arr.dtype}, but the video's "
                f"frames are {self._height}x{self._width}x3 uint8 (all frames must have the size "
                "of the first)"
            )
        arr.flags.writeable = False
        with self._lock:
            self._frames.put(i, arr)
        return arr

    def model_input(self, index: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The model-ready frame ``index``: ``3 x S x S`` float32, resized and normalised.

        The tensor may be shared with the cache: do not modify it in place.

        Args:
            index: frame index; negative indices count from the end.
            device: move the result there (``None``: leave it on the CPU).

        Raises:
            VideoError: index out of range, or the frame cannot be decoded.
        """
        i = self._check_index(index)
        with self._lock:
            cached = self._inputs.get(i)
            future = self._pending.get(i)
        if cached is None and future is not None:
            try:
                cached = future.result()
            except Exception:  # redo below in this thread, so the real error is raised here
                cached = None
        if cached is None:
            cached = self._compute_input(i)
        self._schedule_prefetch(i)
        return cached if device is None else cached.to(device)

    def __getitem__(self, index: int) -> torch.Tensor:
        """``model_input(index)``: ``3 x S x S`` float32."""
        return self.model_input(index)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Model inputs of every frame in order, each ``3 x S x S`` float32."""
        for i in range(len(self)):
            yield self.model_input(i)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Original frames ``start .. stop - 1`` in order, each ``H x W x 3`` uint8."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(start, stop):
            yield self.frame(i)

    def close(self) -> None:
        """Stop the prefetch thread, drop the caches and release the decoder.

        Idempotent. Later calls to :meth:`frame` / :meth:`model_input` raise VideoError.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        with self._decode_lock:
            self._release()
        with self._lock:
            self._frames.clear()
            self._inputs.clear()
            self._pending.clear()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            try:
                executor.shutdown(wait=False, cancel_futures=True)
            except Exception:  # interpreter shutting down; nothing useful to do
                pass

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(frames={len(self)}, height={self._height}, "
            f"width={self._width}, image_size={self.image_size})"
        )

    # ----------------------------------------------------------------- internals
    def _check_index(self, index: int) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise VideoError(
                f"frame index must be an integer, got {type(index).__name__}"
            ) from None
        n = len(self)
        if not -n <= i < n:
            raise VideoError(f"frame index {index} is out of range for a video of {n} frames")
        if self._closed:
            raise VideoError(f"{type(self).__name__} is closed")
        return i + n if i < 0 else i

    def _compute_input(self, i: int) -> torch.Tensor:
        x = preprocess_video_frame(self.frame(i), self.image_size)  # 3 x S x S
        with self._lock:
            self._inputs.put(i, x)
        return x

    def _prefetch_one(self, i: int) -> torch.Tensor:
        try:
            return self._compute_input(i)
        finally:
            with self._lock:
                self._pending.pop(i, None)

    def _schedule_prefetch(self, i: int) -> None:
        if self._prefetch == 0:
            return
        step = -1 if i < self._last_index else 1
        self._last_index = i
        n = len(self)
        with self._lock:
            if self._closed:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="samkit-frames")
            for k in range(1, self._prefetch + 1):
                j = i + k * step
                if not 0 <= j < n:
                    break
                if j in self._inputs or j in self._pending:
                    continue
                self._pending[j] = self._executor.submit(self._prefetch_one, j)


class ImageFolderSource(FrameSource):
    """Frames stored as image files in one folder, ordered by natural sort of the names.

    Any names work (``00000.jpg``, ``frame2.png`` before ``frame10.png``); hidden files are
    ignored. The folder must hold one image format (``.jpg`` and ``.jpeg`` count as one):
    with mixed formats, pass ``extensions`` to choose. Frames larger than the pixel limit
    (see :func:`samkit.imageio.image_pixel_limit`) are refused from their header, before
    decoding.

    Args:
        folder: the folder of frames.
        image_size: side ``S`` of the model input.
        extensions: file endings to read (case-insensitive), default :data:`IMAGE_EXTENSIONS`.
        cache_size, input_cache_size, prefetch: see :class:`FrameSource`.
        max_pixels: refuse frames with more pixels than this (default
            ``$SAMKIT_MAX_IMAGE_PIXELS`` or :data:`samkit.imageio.MAX_IMAGE_PIXELS`).

    Raises:
        VideoError: missing or unreadable folder, no frames in it, mixed formats, unreadable
            or too large first frame.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        image_size: int,
        *,
        extensions: Sequence[str] | None = None,
        cache_size: int = 4,
        input_cache_size: int = 1,
        prefetch: int = 0,
        max_pixels: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not _is_folder(self.folder):
            raise VideoError(f"frame folder {str(self.folder)!r} does not exist or is not a folder")
        self._max_pixels = image_pixel_limit(max_pixels)
        self.paths = _list_frames(self.folder, extensions)
        height, width = _image_size_of(self.paths[0], self._max_pixels)
        super().__init__(
            image_size=image_size,
            height=height,
            width=width,
            cache_size=cache_size,
            input_cache_size=input_cache_size,
            prefetch=prefetch,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:  # missing, unreadable, not an image, too large: the message names the file
            img = open_image(path, max_pixels=self._max_pixels)
        except ImageError as exc:
            raise VideoError(f"cannot read frame {index}: {exc}") from exc
        with img:
            try:
                img.load()
                return to_rgb_uint8(img)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                # a GIF frame or TIFF tile larger than the header said
                raise VideoError(f"cannot read frame {index} from {str(path)!r}: {exc}") from None
            except (OSError, SyntaxError, ValueError, IndexError, EOFError, struct.error) as exc:
                # truncated or corrupt pixel data; ImageError (a ValueError) for odd pixel values
                raise VideoError(f"cannot read frame {index} from {str(path)!r}: {exc}") from exc


def _file_mode(path: Path) -> int | None:
    """``st_mode`` of ``path``, or None if it does not exist; VideoError if this user may not
    look (a folder on the way cannot be entered)."""
    try:
        return os.stat(path).st_mode
    except PermissionError:
        raise VideoError(f"cannot open {str(path)!r}: {describe_access_error(path)}") from None
    except (OSError, ValueError):  # missing, a file on the way, a name with a NUL byte
        return None


def _is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder; raises VideoError if this user may not look."""
    mode = _file_mode(path)
    return mode is not None and stat.S_ISDIR(mode)


def _list_frames(folder: Path, extensions: Sequence[str] | None) -> list[Path]:
    """The frame files of ``folder`` in natural order; raises VideoError if none or mixed."""
    allowed = IMAGE_EXTENSIONS if extensions is None else tuple(
        (e if e.startswith(".") else "." + e).lower() for e in extensions
    )
    try:
        names = [
            entry.name
            for entry in os.scandir(folder)
            if not entry.name.startswith(".")
            and os.path.splitext(entry.name)[1].lower() in allowed
            and entry.is_file()
        ]
    except PermissionError:
        raise VideoError(
            f"cannot list the frame folder {str(folder)!r}: permission denied; ask its owner "
            "for read access (e.g. chmod o+rx on the folder) or copy the frames somewhere "
            "you can read"
        ) from None
    if not names:
        raise VideoError(
            f"no frames found in folder {str(folder)!r} (looked for files ending in "
            f"{', '.join(allowed)})"
        )
    families: dict[str, int] = {}
    for name in names:
        ext = os.path.splitext(name)[1].lower()
        family = _FAMILY.get(ext, ext)
        families[family] = families.get(family, 0) + 1
    if len(families) > 1:
        found = ", ".join(f"{count} {family}" for family, count in sorted(families.items()))
        raise VideoError(
            f"folder {str(folder)!r} mixes image formats ({found}); a frame folder must hold "
            "one format: pass extensions=[...] to choose which files are frames"
        )
    names.sort(key=lambda name: (natural_sort_key(name), name))
    return [folder / name for name in names]


def _image_size_of(path: Path, max_pixels: int) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header (refused over ``max_pixels``)."""
    try:
        with open_image(path, max_pixels=max_pixels) as img:
            width, height = img.size
    except ImageError as exc:
        raise VideoError(f"cannot read the first frame: {exc}") from exc
    return height, width


class VideoFileSource(FrameSource):
    """Frames of a video file (.mp4, .avi, .mov, ...) decoded with OpenCV.

    Reading frames in order decodes each once; a short jump forward skips frames without
    converting them; only a jump backwards or far forward seeks. The first frame is
    decoded on opening (it gives the size and is where prompts usually go).

    Args:
        path: the video file.
        image_size: side ``S`` of the model input.
        exact_count: count the frames by decoding the whole video once instead of trusting
            the container's frame count (slower to open; for files whose count is wrong).
        max_skip: a forward jump of at most this many frames is done by reading through
            them rather than seeking.
        cache_size, input_cache_size, prefetch: see :class:`FrameSource`.

    Raises:
        VideoError: OpenCV missing, file missing, not a video, or no decodable frame.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        image_size: int,
        *,
        exact_count: bool = False,
        max_skip: int = 32,
        cache_size: int = 4,
        input_cache_size: int = 1,
        prefetch: int = 0,
    ) -> None:
        self.path = Path(path)
        mode = _file_mode(self.path)
        if mode is None or not stat.S_ISREG(mode):
            raise VideoError(f"video file {str(self.path)!r} does not exist")
        if not os.access(self.path, os.R_OK):
            raise VideoError(
                f"cannot open video file {str(self.path)!r}: {describe_access_error(self.path)}"
            )
        self._cv2 = require_cv2()
        self._max_skip = int(max_skip)
        self._cap: Any = self._open()
        first = self._read_next()
        if first is None:
            self._cap.release()
            raise VideoError(f"video file {str(self.path)!r} has no frame that OpenCV can decode")
        count = int(self._cap.get(self._cv2.CAP_PROP_FRAME_COUNT))
        if exact_count or count <= 0:
            count = 1
            while self._cap.grab():
                count += 1
            self._cap.release()
            self._cap = self._open()
            self._read_next()
        self._count = count
        self._next_index = 1  # the frame the next read() returns
        try:
            super().__init__(
                image_size=image_size,
                height=first.shape[0],
                width=first.shape[1],
                cache_size=cache_size,
                input_cache_size=input_cache_size,
                prefetch=prefetch,
            )
        except VideoError:
            self._cap.release()
            raise
        first.flags.writeable = False
        self._frames.put(0, first)

    @property
    def fps(self) -> float:
        """Frames per second as the container reports it (0.0 if unknown)."""
        with self._decode_lock:
            return float(self._cap.get(self._cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0

    def __len__(self) -> int:
        return self._count

    def _open(self) -> Any:
        cap = self._cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise VideoError(
                f"OpenCV cannot open {str(self.path)!r}: it is not a video file, or its codec "
                "is not supported by this OpenCV build"
            )
        return cap

    def _read_next(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def _decode(self, index: int) -> np.ndarray:
        if self._cap is None:
            raise VideoError(f"{type(self).__name__} is closed")
        gap = index - self._next_index
        if gap != 0:
            if 0 < gap <= self._max_skip:
                for _ in range(gap):
                    if not self._cap.grab():
                        break
            else:
                self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, index)
        rgb = self._read_next()
        if rgb is None:
            self._next_index = -1  # position unknown: seek next time
            raise VideoError(
                f"cannot decode frame {index} of {str(self.path)!r} (the container reports "
                f"{self._count} frames; open it with exact_count=True if that is wrong)"
            )
        self._next_index = index + 1
        return rgb

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ArraySource(FrameSource):
    """Frames already in memory: an ``N x H x W x C`` array or a sequence of images.

    Each frame is converted with :func:`samkit.imageio.to_rgb_uint8` when first used, so
    any image it accepts works (uint8 RGB arrays are used without copying).

    Args:
        frames: ``N x H x W x 3`` (or ``x 1`` / ``x 4``) array, or a sequence of numpy
            arrays / PIL images, all of one size.
        image_size: side ``S`` of the model input.
        cache_size, input_cache_size, prefetch: see :class:`FrameSource`.

    Raises:
        VideoError: no frames, a 3-D array, or a first frame that is not an image.
    """

    def __init__(
        self,
        frames: np.ndarray | Sequence[ImageLike],
        image_size: int,
        *,
        cache_size: int = 4,
        input_cache_size: int = 1,
        prefetch: int = 0,
    ) -> None:
        if isinstance(frames, np.ndarray) and frames.ndim != 4:
            raise VideoError(
                f"an array of frames must be N x H x W x C, got shape {tuple(frames.shape)}; "
                "wrap a single image in a list, and add a channel axis to grayscale frames "
                "(frames[..., None])"
            )
        if len(frames) == 0:
            raise VideoError("the sequence of frames is empty")
        self._source = frames
        first = self._convert(0)
        super().__init__(
            image_size=image_size,
            height=first.shape[0],
            width=first.shape[1],
            cache_size=cache_size,
            input_cache_size=input_cache_size,
            prefetch=prefetch,
        )

    def __len__(self) -> int:
        return len(self._source)

    def _convert(self, index: int) -> np.ndarray:
        try:
            return to_rgb_uint8(self._source[index])
        except ImageError as exc:
            raise VideoError(f"frame {index}: {exc}") from exc

    def _decode(self, index: int) -> np.ndarray:
        # A fresh view, so that marking the cached frame read-only leaves the caller's
        # array (which to_rgb_uint8 may return as is) writable.
        return self._convert(index).view()


def open_video(
    source: VideoLike,
    image_size: int = 1024,
    *,
    cache_size: int = 4,
    input_cache_size: int = 1,
    prefetch: int = 0,
) -> FrameSource:
    """Open a video for lazy, cached frame access.

    Args:
        source: a folder of frame images, a video file path, an ``N x H x W x C`` array, a
            list of images (numpy arrays or PIL images), or a :class:`FrameSource` (returned
            as is; its ``image_size`` must equal ``image_size``).
        image_size: side ``S`` of the model input (1024 for the official SAM 2 models).
        cache_size, input_cache_size, prefetch: see :class:`FrameSource`.

    Returns:
        A :class:`FrameSource`; close it (or use ``with``) to release a video file early.

    Raises:
        VideoError: missing path, empty folder, unreadable file, unsupported type.
    """
    options = dict(cache_size=cache_size, input_cache_size=input_cache_size, prefetch=prefetch)
    if isinstance(source, FrameSource):
        if source.image_size != image_size:
            raise VideoError(
                f"the frame source prepares {source.image_size}-pixel model inputs, but "
                f"image_size={image_size} was asked for"
            )
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if _is_folder(path):
            return ImageFolderSource(path, image_size, **options)
        if _file_mode(path) is None:
            raise VideoError(f"video path {str(path)!r} does not exist")
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise VideoError(
                f"{str(path)!r} is a single image; a video is a folder of frames, a video "
                "file, or a list of images"
            )
        return VideoFileSource(path, image_size, **options)
    if isinstance(source, (bytes, bytearray)):
        raise VideoError(
            "video bytes are not supported; write them to a file and pass its path"
        )
    if isinstance(source, np.ndarray) or (
        isinstance(source, Sequence) and not isinstance(source, str)
    ):
        return ArraySource(source, image_size, **options)
    raise VideoError(
        f"cannot open a video from an object of type {type(source).__name__}; pass a folder of "
        "frames, a video file path, an N x H x W x 3 array, or a list of images"
    )
