"""Writing frames and masks to files: label PNGs (pixel = object id), an overlay video, frame
folders and videos of a clip.

Label PNGs hold one pixel value per object: the object id (0 is background). Ids up to 255
give 8-bit palette PNGs (the DAVIS / YouTube-VOS layout); larger ids give 16-bit grayscale.
Every file is written atomically (:mod:`samkit.fileio`), except videos, which OpenCV writes.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from samkit.errors import ImageError, VideoError
from samkit.fileio import atomic_write, write_bytes, write_image
from samkit.imageio import open_image
from samkit.video.frames import require_cv2
from samkit.visualize import draw_legend, draw_prompts, label_palette, new_figure, object_color, overlay

__all__ = ["masks_to_labels", "write_masks_png", "read_masks_png", "FramePrompts", "OverlayVideoWriter",
           "label_areas", "write_areas_csv", "read_areas_csv", "plot_areas", "lost_frames", "write_clip_jpegs",
           "write_clip_masks", "write_clip_mp4"]


def masks_to_labels(masks: torch.Tensor | np.ndarray, obj_ids: Sequence[int], threshold: float = 0.0) -> np.ndarray:
    """Combine per-object masks into one label map.

    Args:
        masks: ``K x 1 x H x W`` or ``K x H x W`` logits (or bool masks).
        obj_ids: the ``K`` object ids (positive integers, at most 65535).
        threshold: a pixel belongs to an object where its logit is above this.

    Returns:
        ``H x W`` label map (uint8 when every id <= 255, else uint16); where several objects
        claim a pixel, the one with the highest logit wins.
    """
    m = masks.detach().float().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if m.ndim == 4:
        m = m[:, 0]
    if m.ndim != 3:
        raise ImageError(f"masks must be K x 1 x H x W or K x H x W, got shape {m.shape}")
    ids = [int(i) for i in obj_ids]
    if len(ids) != m.shape[0]:
        raise ImageError(f"{m.shape[0]} masks but {len(ids)} object ids")
    if any(i <= 0 or i > 65535 for i in ids):
        raise ImageError(f"object ids must be in 1..65535 to be written as pixel values, got {ids}")
    dtype = np.uint8 if max(ids, default=0) <= 255 else np.uint16
    out = np.zeros(m.shape[1:], dtype=dtype)
    if not ids:
        return out
    scores = m.astype(np.float32) if m.dtype != bool else np.where(m, 1.0, -1.0).astype(np.float32)
    best = scores.argmax(axis=0)
    inside = scores.max(axis=0) > (threshold if m.dtype != bool else 0.0)
    out[inside] = np.asarray(ids, dtype=dtype)[best[inside]]
    return out


def write_masks_png(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write an ``H x W`` label map (pixel value = object id) as a PNG, atomically.

    Values up to 255: 8-bit palette PNG (colours from
    :func:`samkit.visualize.label_palette`); larger: 16-bit grayscale.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ImageError(f"labels must be H x W, got shape {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() > 65535):
        raise ImageError("label values must be in 0..65535")
    if lab.size == 0 or lab.max() <= 255:
        img = Image.frombytes("P", (lab.shape[1], lab.shape[0]), np.ascontiguousarray(lab, dtype=np.uint8).tobytes())
        img.putpalette(label_palette())
    else:
        img = Image.fromarray(lab.astype(np.uint16))
    return write_image(path, img)


def read_masks_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG written by :func:`write_masks_png`: ``H x W`` ints (object ids)."""
    with open_image(path) as img:
        arr = np.array(img)
    return arr.astype(np.uint16 if arr.dtype != np.uint8 else np.uint8)


@dataclass(frozen=True)
class FramePrompts:
    """The prompts of one object on one frame, as the overlay video draws them: clicks
    ``points`` (``[[x, y], ...]``) with their ``labels`` (1 object, 0 background) and at most one
    ``box`` ``[x0, y0, x1, y1]``, in video pixels."""

    obj_id: int
    points: Sequence[Sequence[float]] = ()
    labels: Sequence[int] = ()
    box: Sequence[float] | None = None


class OverlayVideoWriter:
    """Writes frames with coloured masks drawn over them to a video file (OpenCV, ``mp4v``).

    ``write(frame, labels, prompts)``: ``frame`` ``H x W x 3`` uint8 RGB, ``labels`` ``H x W``
    object ids, ``prompts`` the :class:`FramePrompts` given on that frame (drawn over the masks,
    points ringed and boxes outlined in their object's colour). Object id ``k`` has the colour
    :func:`samkit.visualize.object_color` ``(k)`` in every frame; with ``legend`` (default) the top-left
    corner lists each object's id in its colour. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float = 24.0,
                 obj_ids: Sequence[int] = (), alpha: float = 0.5, codec: str = "mp4v", *,
                 legend: bool = True) -> None:
        self._cv2 = require_cv2()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(width), int(height))
        self.alpha = alpha
        self.obj_ids = [int(i) for i in obj_ids]
        self.legend = legend
        self._writer = self._cv2.VideoWriter(str(self.path), self._cv2.VideoWriter_fourcc(*codec), float(fps),
                                             self.size)
        if not self._writer.isOpened():
            raise VideoError(f"OpenCV cannot write {str(self.path)!r} with codec {codec!r}")
        self.frames_written = 0

    def picture(self, frame: np.ndarray, labels: np.ndarray, prompts: Sequence[FramePrompts] = ()) -> Image.Image:
        """The picture :meth:`write` writes for one frame (masks, prompts, legend) as a PIL image."""
        frame = np.asarray(frame)
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise VideoError(f"frame of size {frame.shape[1]}x{frame.shape[0]} does not match the video size "
                             f"{self.size[0]}x{self.size[1]}")
        ids = self.obj_ids or sorted(int(i) for i in np.unique(labels) if i != 0)
        masks = np.stack([labels == i for i in ids]) if ids else np.zeros((0,) + labels.shape, bool)
        colors = np.array([object_color(i) for i in ids], np.uint8) if ids else None
        picture = overlay(frame, masks, alpha=self.alpha, colors=colors)
        for p in prompts:
            color = object_color(p.obj_id)
            draw_prompts(picture, np.asarray(p.points, float).reshape(-1, 2) if len(p.points) else None,
                         np.asarray(p.labels) if len(p.labels) else None,
                         None if p.box is None else np.asarray(p.box, float)[None], color=color)
        if self.legend and ids:
            draw_legend(picture, [(f"obj {i}", object_color(i)) for i in ids])
        return picture

    def write(self, frame: np.ndarray, labels: np.ndarray, prompts: Sequence[FramePrompts] = ()) -> None:
        picture = np.asarray(self.picture(frame, labels, prompts))
        self._writer.write(self._cv2.cvtColor(np.ascontiguousarray(picture), self._cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "OverlayVideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- mask areas per frame

def label_areas(labels: np.ndarray, obj_ids: Sequence[int]) -> dict[int, int]:
    """Pixels of each object in an ``H x W`` label map: ``{obj_id: area}`` (0 where it has none)."""
    lab = np.asarray(labels)
    counts = np.bincount(lab.ravel().astype(np.int64), minlength=max([0, *obj_ids]) + 1)
    return {int(i): int(counts[i]) for i in obj_ids}


def write_areas_csv(path: str | os.PathLike, areas: Mapping[int, Mapping[int, int]]) -> Path:
    """Write ``{frame: {obj_id: area}}`` as a CSV with the columns ``frame,obj,area`` (one row per
    frame and object, by frame then object), atomically."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["frame", "obj", "area"])
    for frame in sorted(areas):
        for obj in sorted(areas[frame]):
            out.writerow([int(frame), int(obj), int(areas[frame][obj])])
    return write_bytes(path, buf.getvalue().encode())


def read_areas_csv(path: str | os.PathLike) -> dict[int, dict[int, int]]:
    """The ``{frame: {obj_id: area}}`` of a CSV written by :func:`write_areas_csv`."""
    areas: dict[int, dict[int, int]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            areas.setdefault(int(row["frame"]), {})[int(row["obj"])] = int(row["area"])
    return areas


def lost_frames(areas: Mapping[int, Mapping[int, int]]) -> dict[int, list[int]]:
    """Per object, the frames where its mask is empty (area 0), in order: where tracking lost it
    (or where it left the view)."""
    lost: dict[int, list[int]] = {}
    for frame in sorted(areas):
        for obj, area in areas[frame].items():
            lost.setdefault(int(obj), [])
            if area == 0:
                lost[int(obj)].append(int(frame))
    return lost


def plot_areas(path: str | os.PathLike, areas: Mapping[int, Mapping[int, int]],
               prompted: Mapping[int, Sequence[int]] | None = None, *, title: str = "mask area per frame") -> Path:
    """Plot each object's mask area against the frame (one line per object in its colour; a
    drop to 0 is where tracking lost it) and write it as a PNG, atomically.

    Args:
        path: the PNG to write.
        areas: ``{frame: {obj_id: area}}`` (:func:`label_areas` per frame).
        prompted: ``{obj_id: [frames]}``: the frames with prompts, marked on the lines.
        title: the plot's title.

    Raises:
        MissingDependencyError: matplotlib is not installed (the ``plots`` extra).
    """
    fig = new_figure(7.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    frames = sorted(areas)
    objs = sorted({int(o) for f in frames for o in areas[f]})
    for obj in objs:
        color = tuple(float(v) / 255 for v in object_color(obj))
        ax.plot(frames, [areas[f].get(obj, 0) for f in frames], color=color, linewidth=1.5, label=f"obj {obj}")
        marks = [f for f in (prompted or {}).get(obj, ()) if f in areas]
        if marks:
            ax.plot(marks, [areas[f].get(obj, 0) for f in marks], "o", color=color, markeredgecolor="black",
                    markersize=5)
    ax.set_xlabel("frame")
    ax.set_ylabel("mask area (pixels)")
    ax.set_title(title + (" (dots: prompted frames)" if prompted else ""))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if objs:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return write_bytes(path, buf.getvalue())


def write_clip_jpegs(frames: Iterable[np.ndarray], folder: str | os.PathLike[str], *,
                     quality: int = 95) -> list[Path]:
    """Write ``H x W x 3`` uint8 frames (``clip.frames``, or ``video.iter_frames()``) as
    ``00000.jpg``, ``00001.jpg``, ... (the official frame-folder layout), each atomically.

    Args:
        frames: the frames, in order; consumed one at a time.
        folder: created if missing.
        quality: JPEG quality 1..95.

    Returns:
        The paths written, in frame order.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        image = Image.fromarray(np.asarray(frame))
        paths.append(atomic_write(out / f"{i:05d}.jpg", lambda f: image.save(f, format="JPEG", quality=quality)))
    return paths


def write_clip_masks(labels: Iterable[np.ndarray], folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``H x W`` label maps (``clip.labels()``, or ``video.mask(t)``) as palette PNGs
    ``00000.png``, ... (pixel value = object id; :func:`write_masks_png`).

    Returns:
        The paths written, in frame order.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return [write_masks_png(out / f"{i:05d}.png", lab) for i, lab in enumerate(labels)]


def write_clip_mp4(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    *,
    fps: float = 24.0,
    codec: str = "mp4v",
) -> Path:
    """Write ``H x W x 3`` uint8 RGB frames as a video file with OpenCV (``pip install samkit[video]``).

    Args:
        frames: the frames, in order (``clip.frames``, or ``video.iter_frames()`` for a long
            clip); all of the first frame's size.
        path: output file (``.mp4`` for the default codec).
        fps: frame rate.
        codec: FourCC code of the codec.

    Returns:
        ``path`` as a Path.

    Raises:
        VideoError: OpenCV missing, no frames, or OpenCV cannot write this file/codec.
    """
    cv2 = require_cv2()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if writer is None:
                size = (int(frame.shape[1]), int(frame.shape[0]))
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), float(fps), size)
                if not writer.isOpened():
                    raise VideoError(f"OpenCV cannot write {str(out)!r} with codec {codec!r}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise VideoError(f"no frames to write to {str(out)!r}")
    return out
