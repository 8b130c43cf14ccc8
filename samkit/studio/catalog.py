"""The studio's images: one listing made at start, addressed by index, never by a client's path."""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from samkit.engine.annotate import scan_images
from samkit.errors import ImageError
from samkit.imageio import IMAGE_EXTENSIONS, load_image
from samkit.lru import LRUCache
from samkit.video.frames import VIDEO_EXTENSIONS

__all__ = ["Catalog", "LoadedImage", "OutsideImagesError"]


class OutsideImagesError(ImageError):
    """An image's file resolves outside the images folder (a symbolic link out of it)."""


@dataclass(frozen=True)
class LoadedImage:
    """One decoded image, as the model sees it (EXIF orientation applied)."""

    rgb: np.ndarray  # H x W x 3 uint8
    jpeg: bytes  # the same pixels for the page

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.rgb.nbytes) + len(self.jpeg)


class Catalog:
    """The image and video files below ``images_dir`` (recursive, hidden ones and ``skip`` left
    out), in sorted order; entry ``i`` is ``rels[i]``. Files are resolved on every read and refused
    when they lead outside ``images_dir``. Decoded images are kept in a small LRU (thread-safe).

    ``only``: serve just these entries (relative paths: one video file, or a folder of frames as
    one clip, listed as a video).
    """

    def __init__(self, images_dir: str | os.PathLike, *, skip: Optional[str | os.PathLike] = None,
                 only: Optional[list[Path]] = None, cache_images: int = 8, cache_bytes: int = 256 << 20,
                 jpeg_quality: int = 92) -> None:
        self.root = Path(images_dir).resolve()
        if only is None:
            scan = scan_images(self.root, tuple(IMAGE_EXTENSIONS) + VIDEO_EXTENSIONS, skip=skip)
            self.rels: list[Path] = scan.files
            self.folders_not_read = scan.folders_not_read
        else:
            self.rels = [Path(p) for p in only]
            self.folders_not_read = []
        self.jpeg_quality = jpeg_quality
        self._images: LRUCache[int, LoadedImage] = LRUCache(cache_images, max_bytes=cache_bytes,
                                                            sizeof=lambda im: im.nbytes)
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self.rels)

    def has(self, image_id: int) -> bool:
        return 0 <= image_id < len(self.rels)

    def kind(self, image_id: int) -> str:
        """``video`` for a video file or a folder of frames, else ``image``."""
        rel = self.rels[image_id]
        return "video" if rel.suffix.lower() in VIDEO_EXTENSIONS or (self.root / rel).is_dir() else "image"

    def name(self, image_id: int) -> str:
        """The image's path relative to the images folder, with ``/``."""
        return self.rels[image_id].as_posix()

    def path(self, image_id: int) -> Path:
        """The image's file, checked to be inside the images folder.

        Raises:
            OutsideImagesError: the file (through a symbolic link) is outside the images folder.
        """
        path = (self.root / self.rels[image_id]).resolve()
        if not path.is_relative_to(self.root):
            raise OutsideImagesError(f"image {self.name(image_id)!r} is a link to a file outside the images "
                                     f"folder; the studio only opens files inside it (copy the file in instead)")
        return path

    def load(self, image_id: int) -> LoadedImage:
        """The decoded image (cached).

        Raises:
            ImageError: unreadable, not an image, too large, or outside the images folder.
        """
        with self._lock:
            cached = self._images.get(image_id)
            if cached is not None:
                return cached
            gate = self._loading.setdefault(image_id, threading.Lock())
        with gate:  # one decode per image at a time; others wait for it
            with self._lock:
                cached = self._images.get(image_id)
            if cached is not None:
                return cached
            if self.kind(image_id) == "video":
                raise ImageError(f"{self.name(image_id)!r} is a video: open it with /api/videos/{image_id}")
            rgb = load_image(self.path(image_id))
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=self.jpeg_quality)
            loaded = LoadedImage(rgb=rgb, jpeg=buf.getvalue())
            with self._lock:
                self._images.put(image_id, loaded)
                self._loading.pop(image_id, None)
            return loaded
