"""The whole "prompts in, files out" tracking run behind ``samkit track``: :func:`track_video`
with its prompt specs (:class:`PointSpec`, :class:`BoxSpec`) and the range of frames to track
(:func:`frame_range`); the files are written by :mod:`samkit.video.writers` (label PNGs, the
overlay video, the mask areas per frame and their plot)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from samkit.errors import MissingDependencyError, PromptError, VideoError
from samkit.model.sam2 import SAM2Model
from samkit.video.frames import FrameSource, VideoLike
from samkit.video.predictor import VideoPredictor
from samkit.video.writers import (
    FramePrompts,
    OverlayVideoWriter,
    label_areas,
    lost_frames,
    masks_to_labels,
    plot_areas,
    read_masks_png,
    write_areas_csv,
    write_masks_png,
)

__all__ = [
    "PointSpec",
    "BoxSpec",
    "MAX_OBJ_ID",
    "group_prompts",
    "frame_range",
    "TrackResult",
    "track_video",
]


# ---------------------------------------------------------------------- prompts

MAX_OBJ_ID = 65535  # the largest object id a (16-bit) label PNG holds


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
    def parse(cls, spec: str, frame: int | None = None) -> "PointSpec":
        """``"FRAME,X,Y[,LABEL[,OBJ]]"`` -> PointSpec; with ``frame`` given, ``spec`` is
        ``"X,Y[,LABEL[,OBJ]]"`` on that frame (a stream's prompts are all on its first frame)."""
        if frame is None:
            parts = _split(spec, "--point", "FRAME,X,Y[,LABEL[,OBJ]]", 3, 5)
            frame, parts = _as_int(parts[0], "frame", spec), parts[1:]
        else:
            parts = _split(spec, "--point", "X,Y[,LABEL[,OBJ]]", 2, 4)
        x, y = _as_float(parts[0], "x", spec), _as_float(parts[1], "y", spec)
        label = _as_int(parts[2], "label", spec) if len(parts) > 2 else 1
        if label not in (0, 1):
            raise PromptError(f"--point {spec!r}: label must be 1 (object) or 0 (background), got {label}")
        obj = _as_int(parts[3], "object id", spec) if len(parts) > 3 else 1
        return cls(int(frame), x, y, label, obj)


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
    def parse(cls, spec: str, frame: int | None = None) -> "BoxSpec":
        """``"FRAME,X0,Y0,X1,Y1[,OBJ]"`` -> BoxSpec; with ``frame`` given, ``spec`` is
        ``"X0,Y0,X1,Y1[,OBJ]"`` on that frame."""
        if frame is None:
            parts = _split(spec, "--box", "FRAME,X0,Y0,X1,Y1[,OBJ]", 5, 6)
            frame, parts = _as_int(parts[0], "frame", spec), parts[1:]
        else:
            parts = _split(spec, "--box", "X0,Y0,X1,Y1[,OBJ]", 4, 5)
        x0, y0, x1, y1 = (_as_float(p, n, spec) for p, n in zip(parts[:4], ("x0", "y0", "x1", "y1")))
        if x1 < x0 or y1 < y0:
            raise PromptError(f"--box {spec!r}: need x0 <= x1 and y0 <= y1")
        obj = _as_int(parts[4], "object id", spec) if len(parts) > 4 else 1
        return cls(int(frame), x0, y0, x1, y1, obj)


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


def group_prompts(prompts: Sequence[PointSpec | BoxSpec],
                  num_frames: int | None = None) -> dict[tuple[int, int], dict[str, Any]]:
    """Prompts grouped by ``(frame, obj_id)``: ``{"points": [[x, y], ...], "labels": [...],
    "box": [x0, y0, x1, y1] | None}``, so each object's prompts on a frame go in together.

    Raises:
        PromptError: not a PointSpec / BoxSpec, a frame outside ``0 .. num_frames - 1``, an object
            id that a label PNG cannot hold (1..65535), two boxes for one object on one frame.
    """
    groups: dict[tuple[int, int], dict[str, Any]] = {}
    for p in prompts:
        if not isinstance(p, (PointSpec, BoxSpec)):
            raise PromptError(f"prompts must be PointSpec or BoxSpec, got {type(p).__name__}")
        if num_frames is not None and not 0 <= p.frame < num_frames:
            raise PromptError(f"a prompt is on frame {p.frame}, but the video has frames 0..{num_frames - 1}")
        if not 1 <= p.obj_id <= MAX_OBJ_ID:
            raise PromptError(f"object id {p.obj_id}: ids are 1..{MAX_OBJ_ID} (the pixel values of the label PNGs; "
                              "0 is the background)")
        g = groups.setdefault((p.frame, p.obj_id), {"points": [], "labels": [], "box": None})
        if isinstance(p, PointSpec):
            g["points"].append([p.x, p.y])
            g["labels"].append(p.label)
        elif g["box"] is not None:
            raise PromptError(f"two boxes for object {p.obj_id} on frame {p.frame}; give one box per object "
                              "and frame")
        else:
            g["box"] = [p.x0, p.y0, p.x1, p.y1]
    return groups


# ---------------------------------------------------------------------- the whole run

def frame_range(frames: tuple[int, int | None] | None, num_frames: int) -> range:
    """The frames ``start .. stop - 1`` of ``frames = (start, stop)`` in a video of ``num_frames``
    frames (``None``: all of them; ``stop`` None or past the end: to the last frame).

    Raises:
        VideoError: ``start`` below 0 or not before the end of the video, ``stop <= start``.
    """
    if frames is None:
        return range(num_frames)
    start, stop = frames
    stop = num_frames if stop is None else min(int(stop), num_frames)
    if not 0 <= start < num_frames:
        raise VideoError(f"the frames to track start at {start}, but the video has frames 0..{num_frames - 1}; "
                         "give a first frame in that range")
    if stop <= start:
        raise VideoError(f"no frame to track in {start}:{frames[1]} (the end must be after the start; the video has "
                         f"{num_frames} frames)")
    return range(int(start), stop)


@dataclass
class TrackResult:
    """What :func:`track_video` wrote.

    ``frames`` are the video frames tracked (``mask_dir/NNNNN.png`` is video frame ``NNNNN``);
    ``areas_csv`` holds every object's mask area on every tracked frame (``frame,obj,area``),
    ``areas_plot`` the same as a PNG (None without matplotlib: ``plot_note`` says why);
    ``lost[obj]`` lists the frames where the object has no mask.
    """

    out_dir: Path
    mask_dir: Path
    overlay_path: Path | None
    num_frames: int
    obj_ids: list[int]
    seconds: float
    mask_paths: list[Path] = field(default_factory=list, repr=False)
    frames: range = range(0)
    areas_csv: Path | None = None
    areas_plot: Path | None = None
    plot_note: str | None = None
    lost: dict[int, list[int]] = field(default_factory=dict, repr=False)


def _frame_prompts(groups: dict[tuple[int, int], dict[str, Any]]) -> dict[int, list[FramePrompts]]:
    """``{frame: [FramePrompts, ...]}`` of grouped prompts, for the overlay video."""
    out: dict[int, list[FramePrompts]] = {}
    for (frame, obj), g in sorted(groups.items()):
        out.setdefault(frame, []).append(FramePrompts(obj, g["points"], g["labels"], g["box"]))
    return out


def track_video(model: SAM2Model, video: VideoLike, prompts: Sequence[PointSpec | BoxSpec], out_dir: str | os.PathLike,
                *, fill_hole_area: int = 8, overlay_video: bool = True, fps: float | None = None,
                frames: tuple[int, int | None] | None = None, progress: bool = True,
                **predictor_options: Any) -> TrackResult:
    """Track objects through a video (or the frames ``start .. stop - 1`` of it) from clicks and
    boxes and write the results.

    Prompts are grouped by (frame, object): each object's clicks (and at most one box) on a
    frame go in together. Tracking runs forwards from the earliest prompted frame to the last
    frame tracked, then backwards from it to the first, so every tracked frame gets a mask.

    Args:
        model: the SAM 2 network.
        video: a video file, a folder of frames, or a list of ``H x W x 3`` arrays.
        prompts: :class:`PointSpec` / :class:`BoxSpec` (coordinates in video pixels, frames
            numbered as in the video).
        out_dir: where to write ``masks/NNNNN.png`` (pixel value = object id, named by video
            frame), ``overlay.mp4`` (masks, each object's prompts on their frames, a legend of
            the objects' colours), ``areas.csv`` (``frame,obj,area``: each object's mask area per
            frame; 0 where tracking lost it) and ``areas.png`` (its plot, when matplotlib is
            installed).
        fill_hole_area: passed to :class:`VideoPredictor`.
        overlay_video: also write ``overlay.mp4`` (needs OpenCV).
        fps: frame rate of the overlay (default: the source's, else 24).
        frames: ``(start, stop)``: track only frames ``start .. stop - 1`` (``stop`` None or past
            the end: to the last frame); None: the whole video. Every prompt must be on one of them.
        progress: show a progress bar.
        predictor_options: more :class:`VideoPredictor` options.

    Returns:
        A :class:`TrackResult`.

    Raises:
        PromptError: no prompts, a prompt outside the video or the frames tracked, an object id
            outside 1..65535, two boxes for one object on one frame.
        VideoError: the video cannot be read; a frame range outside the video; OpenCV missing for
            the overlay.
    """
    t0 = time.perf_counter()
    if not prompts:
        raise PromptError("give at least one prompt (a point or a box)")
    out = Path(out_dir)
    mask_dir = out / "masks"
    predictor = VideoPredictor(model, fill_hole_area=fill_hole_area, progress=False, **predictor_options)
    state = predictor.init_state(video)
    source: FrameSource = state.video
    n, h, w = state.num_frames, state.video_height, state.video_width
    span = frame_range(frames, n)

    groups = group_prompts(prompts, n)
    outside = sorted({frame for frame, _ in groups if frame not in span})
    if outside:
        raise PromptError(f"a prompt is on frame {outside[0]}, but only frames {span.start}..{span.stop - 1} are "
                          f"tracked; put the prompts on those frames or track a range that holds frame {outside[0]}")
    mask_dir.mkdir(parents=True, exist_ok=True)
    for (frame, obj), g in sorted(groups.items()):
        predictor.add_new_points_or_box(state, frame, obj, points=g["points"] or None,
                                        labels=g["labels"] or None, box=g["box"])
    obj_ids = [int(i) for i in state.obj_ids]
    start = min(frame for frame, _ in groups)
    shown = _frame_prompts(groups)

    writer = None
    if overlay_video:
        rate = fps or float(getattr(source, "fps", 0.0) or 0.0) or 24.0
        writer = OverlayVideoWriter(out / "overlay.mp4", w, h, rate, obj_ids)
    paths = {i: mask_dir / f"{i:05d}.png" for i in span}
    areas: dict[int, dict[int, int]] = {}
    bar = tqdm(total=len(span), desc="tracking", unit="frame", disable=not progress)
    try:
        def run(reverse: bool) -> None:
            count = start - span.start if reverse else span.stop - 1 - start
            for frame, ids, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse,
                                                                  max_frame_num_to_track=count):
                if reverse and frame == start:
                    continue  # written by the forward pass
                labels = masks_to_labels(masks, [int(i) for i in ids])
                write_masks_png(paths[frame], labels)
                areas[frame] = label_areas(labels, obj_ids)
                if writer is not None and start == span.start:
                    writer.write(source.frame(frame), labels, shown.get(frame, ()))
                bar.update(1)

        run(reverse=False)
        if start > span.start:
            run(reverse=True)
            if writer is not None:  # the frames before the first prompt came last: write the video in order now
                for frame in span:
                    writer.write(source.frame(frame), read_masks_png(paths[frame]), shown.get(frame, ()))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    areas_csv = write_areas_csv(out / "areas.csv", areas)
    prompted: dict[int, list[int]] = {}
    for frame, obj in sorted(groups):
        prompted.setdefault(obj, []).append(frame)
    areas_plot, note = None, None
    try:
        areas_plot = plot_areas(out / "areas.png", areas, prompted)
    except MissingDependencyError as exc:
        note = f"areas.png not written: {exc}"
    return TrackResult(out_dir=out, mask_dir=mask_dir, overlay_path=writer.path if writer else None,
                       num_frames=len(span), obj_ids=obj_ids, seconds=time.perf_counter() - t0,
                       mask_paths=[paths[i] for i in span], frames=span, areas_csv=areas_csv, areas_plot=areas_plot,
                       plot_note=note, lost=lost_frames(areas))
