"""Writing video tracking results: per-frame label PNGs, an overlay video, and
:func:`track_video`, the whole "prompts in, files out" run behind ``samkit track``.

Label PNGs hold one pixel value per object: the object id (0 is background). Ids up to 255
give 8-bit palette PNGs (the DAVIS / YouTube-VOS layout); larger ids give 16-bit grayscale.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from samkit.errors import ImageError, PromptError, VideoError
from samkit.fileio import write_image
from samkit.model.sam2 import SAM2Model
from samkit.video.frames import FrameSource, VideoLike, require_cv2
from samkit.video.predictor import VideoPredictor
from samkit.video.synthetic import label_palette
from samkit.visualize import overlay, palette

__all__ = [
    "PointSpec",
    "BoxSpec",
    "TrackResult",
    "masks_to_labels",
    "write_masks_png",
    "read_masks_png",
    "OverlayVideoWriter",
    "track_video",
    "register_cli",
]


# ---------------------------------------------------------------------- prompts

@dataclass(frozen=True)
class PointSpec:
    """A click: object ``obj_id`` at pixel ``(x, y)`` of frame ``frame``; ``label`` 1 marks
    the object, 0 the background."""

    frame: int
    x: float
    y: float
    label: int = 1
    obj_id: int = 1

    @classmethod
    def parse(cls, spec: str) -> "PointSpec":
        """``"FRAME,X,Y[,LABEL[,OBJ]]"`` -> PointSpec."""
        parts = _split(spec, "--point", "FRAME,X,Y[,LABEL[,OBJ]]", 3, 5)
        frame = _as_int(parts[0], "frame", spec)
        x, y = _as_float(parts[1], "x", spec), _as_float(parts[2], "y", spec)
        label = _as_int(parts[3], "label", spec) if len(parts) > 3 else 1
        if label not in (0, 1):
            raise PromptError(f"--point {spec!r}: label must be 1 (object) or 0 (background), got {label}")
        obj = _as_int(parts[4], "object id", spec) if len(parts) > 4 else 1
        return cls(frame, x, y, label, obj)


@dataclass(frozen=True)
class BoxSpec:
    """A box ``(x0, y0, x1, y1)`` around object ``obj_id`` on frame ``frame``."""

    frame: int
    x0: float
    y0: float
    x1: float
    y1: float
    obj_id: int = 1

    @classmethod
    def parse(cls, spec: str) -> "BoxSpec":
        """``"FRAME,X0,Y0,X1,Y1[,OBJ]"`` -> BoxSpec."""
        parts = _split(spec, "--box", "FRAME,X0,Y0,X1,Y1[,OBJ]", 5, 6)
        frame = _as_int(parts[0], "frame", spec)
        x0, y0, x1, y1 = (_as_float(p, n, spec) for p, n in zip(parts[1:5], ("x0", "y0", "x1", "y1")))
        if x1 < x0 or y1 < y0:
            raise PromptError(f"--box {spec!r}: need x0 <= x1 and y0 <= y1")
        obj = _as_int(parts[5], "object id", spec) if len(parts) > 5 else 1
        return cls(frame, x0, y0, x1, y1, obj)


def _split(spec: str, flag: str, form: str, lo: int, hi: int) -> list[str]:
    parts = [p.strip() for p in str(spec).split(",")]
    if not lo <= len(parts) <= hi or any(p == "" for p in parts):
        raise PromptError(f"{flag} {spec!r}: expected {form}")
    return parts


def _as_int(text: str, what: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PromptError(f"{spec!r}: {what} must be an integer, got {text!r}") from None


def _as_float(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PromptError(f"{spec!r}: {what} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise PromptError(f"{spec!r}: {what} must be finite, got {text!r}")
    return value


# ---------------------------------------------------------------------- masks and files

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
    :func:`samkit.video.synthetic.label_palette`); larger: 16-bit grayscale.
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
    with Image.open(path) as img:
        arr = np.array(img)
    return arr.astype(np.uint16 if arr.dtype != np.uint8 else np.uint8)


class OverlayVideoWriter:
    """Writes frames with coloured masks drawn over them to a video file (OpenCV, ``mp4v``).

    ``write(frame, labels)``: ``frame`` ``H x W x 3`` uint8 RGB, ``labels`` ``H x W`` object
    ids. Each object id keeps its colour for the whole video. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float = 24.0,
                 obj_ids: Sequence[int] = (), alpha: float = 0.5, codec: str = "mp4v") -> None:
        self._cv2 = require_cv2()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(width), int(height))
        self.alpha = alpha
        self.obj_ids = [int(i) for i in obj_ids]
        self._colors = palette(max(len(self.obj_ids), 1))
        self._writer = self._cv2.VideoWriter(str(self.path), self._cv2.VideoWriter_fourcc(*codec), float(fps),
                                             self.size)
        if not self._writer.isOpened():
            raise VideoError(f"OpenCV cannot write {str(self.path)!r} with codec {codec!r}")
        self.frames_written = 0

    def write(self, frame: np.ndarray, labels: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise VideoError(f"frame of size {frame.shape[1]}x{frame.shape[0]} does not match the video size "
                             f"{self.size[0]}x{self.size[1]}")
        ids = self.obj_ids or sorted(int(i) for i in np.unique(labels) if i != 0)
        masks = np.stack([labels == i for i in ids]) if ids else np.zeros((0,) + labels.shape, bool)
        picture = np.asarray(overlay(frame, masks, alpha=self.alpha, colors=self._colors[: max(len(ids), 1)]))
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


# ---------------------------------------------------------------------- the whole run

@dataclass
class TrackResult:
    """What :func:`track_video` wrote."""

    out_dir: Path
    mask_dir: Path
    overlay_path: Path | None
    num_frames: int
    obj_ids: list[int]
    seconds: float
    mask_paths: list[Path] = field(default_factory=list, repr=False)


def track_video(model: SAM2Model, video: VideoLike, prompts: Sequence[PointSpec | BoxSpec], out_dir: str | os.PathLike,
                *, fill_hole_area: int = 8, overlay_video: bool = True, fps: float | None = None,
                progress: bool = True, **predictor_options: Any) -> TrackResult:
    """Track objects through a video from clicks and boxes and write the results.

    Prompts are grouped by (frame, object): each object's clicks (and at most one box) on a
    frame go in together. Tracking runs forwards from the earliest prompted frame to the end,
    then backwards from it to frame 0, so every frame gets a mask.

    Args:
        model: the SAM 2 network.
        video: a video file, a folder of frames, or a list of ``H x W x 3`` arrays.
        prompts: :class:`PointSpec` / :class:`BoxSpec` (coordinates in video pixels).
        out_dir: where to write ``masks/00000.png ...`` (pixel value = object id) and
            ``overlay.mp4``.
        fill_hole_area: passed to :class:`VideoPredictor`.
        overlay_video: also write ``overlay.mp4`` (needs OpenCV).
        fps: frame rate of the overlay (default: the source's, else 24).
        progress: show a progress bar.
        predictor_options: more :class:`VideoPredictor` options.

    Returns:
        A :class:`TrackResult`.

    Raises:
        PromptError: no prompts, a prompt outside the video, two boxes for one object on one frame.
        VideoError: the video cannot be read; OpenCV missing for the overlay.
    """
    t0 = time.perf_counter()
    if not prompts:
        raise PromptError("give at least one prompt (a point or a box)")
    out = Path(out_dir)
    mask_dir = out / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    predictor = VideoPredictor(model, fill_hole_area=fill_hole_area, progress=False, **predictor_options)
    state = predictor.init_state(video)
    source: FrameSource = state.video
    n, h, w = state.num_frames, state.video_height, state.video_width

    groups: dict[tuple[int, int], dict[str, Any]] = {}
    for p in prompts:
        if not isinstance(p, (PointSpec, BoxSpec)):
            raise PromptError(f"prompts must be PointSpec or BoxSpec, got {type(p).__name__}")
        if not 0 <= p.frame < n:
            raise PromptError(f"a prompt is on frame {p.frame}, but the video has frames 0..{n - 1}")
        g = groups.setdefault((p.frame, p.obj_id), {"points": [], "labels": [], "box": None})
        if isinstance(p, PointSpec):
            g["points"].append([p.x, p.y])
            g["labels"].append(p.label)
        elif g["box"] is not None:
            raise PromptError(f"two boxes for object {p.obj_id} on frame {p.frame}; give one box per object "
                              "and frame")
        else:
            g["box"] = [p.x0, p.y0, p.x1, p.y1]
    for (frame, obj), g in sorted(groups.items()):
        predictor.add_new_points_or_box(state, frame, obj, points=g["points"] or None,
                                        labels=g["labels"] or None, box=g["box"])
    obj_ids = [int(i) for i in state.obj_ids]
    start = min(frame for frame, _ in groups)

    writer = None
    if overlay_video:
        rate = fps or float(getattr(source, "fps", 0.0) or 0.0) or 24.0
        writer = OverlayVideoWriter(out / "overlay.mp4", w, h, rate, obj_ids)
    paths = [mask_dir / f"{i:05d}.png" for i in range(n)]
    bar = tqdm(total=n, desc="tracking", unit="frame", disable=not progress)
    try:
        def run(reverse: bool) -> None:
            for frame, ids, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                if reverse and frame == start:
                    continue  # written by the forward pass
                labels = masks_to_labels(masks, [int(i) for i in ids])
                write_masks_png(paths[frame], labels)
                if writer is not None and start == 0:
                    writer.write(source.frame(frame), labels)
                bar.update(1)

        run(reverse=False)
        if start > 0:
            run(reverse=True)
            if writer is not None:  # frames 0 .. start-1 came last: write the video in order now
                for frame in range(n):
                    writer.write(source.frame(frame), read_masks_png(paths[frame]))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return TrackResult(out_dir=out, mask_dir=mask_dir, overlay_path=writer.path if writer else None,
                       num_frames=n, obj_ids=obj_ids, seconds=time.perf_counter() - t0, mask_paths=paths)


# ---------------------------------------------------------------------- command line

def register_cli(sub: Any) -> None:
    """Add ``samkit track`` to the command line's subcommands."""
    from samkit.cli import add_model_args

    p = sub.add_parser("track", help="track objects through a video from clicks/boxes -> PNG masks + overlay.mp4")
    p.add_argument("video", help="video file (.mp4, ...) or folder of frames")
    add_model_args(p)
    p.add_argument("--point", action="append", default=[], metavar="FRAME,X,Y[,LABEL[,OBJ]]",
                   help="a click (label 1 object / 0 background, default 1; object id default 1); repeatable")
    p.add_argument("--box", action="append", default=[], metavar="FRAME,X0,Y0,X1,Y1[,OBJ]",
                   help="a box around an object (object id default 1); repeatable")
    p.add_argument("--out", required=True, help="output folder: masks/NNNNN.png and overlay.mp4")
    p.add_argument("--fill-hole-area", type=int, default=8, help="fill mask holes up to this many pixels (0: off)")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--fps", type=float, default=None, help="frame rate of overlay.mp4 (default: the video's)")
    p.set_defaults(func=cmd_track)


def cmd_track(args: argparse.Namespace) -> int:
    from samkit.cli import load_model

    prompts: list[PointSpec | BoxSpec] = [PointSpec.parse(s) for s in args.point]
    prompts += [BoxSpec.parse(s) for s in args.box]
    if not prompts:
        raise PromptError("give at least one --point FRAME,X,Y[,LABEL[,OBJ]] or --box FRAME,X0,Y0,X1,Y1[,OBJ]")
    model = load_model(args)
    res = track_video(model, args.video, prompts, args.out, fill_hole_area=args.fill_hole_area,
                      overlay_video=not args.no_overlay, fps=args.fps)
    where = f"{res.mask_dir}" + (f", {res.overlay_path}" if res.overlay_path else "")
    print(f"tracked {len(res.obj_ids)} object(s) over {res.num_frames} frames in {res.seconds:.1f} s -> {where}")
    return 0

