"""Video evaluation: how well objects prompted once are tracked through a clip.

Protocol (:data:`TRACKING_PROTOCOL`; semi-supervised video object segmentation with a click):
every object visible on the first frame gets one positive click, at the object pixel farthest
from its boundary (the first click of the interactive RITM protocol, :func:`first_frame_clicks`);
:class:`~samkit.video.predictor.VideoPredictor` propagates to the end; each later frame's mask
of each object is compared with the truth. The score is the mean IoU over (object, frame)
pairs where the object is visible in the truth (frame 0 excluded: it is prompted, not
tracked), plus the per-frame curve.

:func:`evaluate_tracking` runs it on clips with ground truth (:class:`~samkit.data.sample.ClipSample`,
such as the generated clips of :func:`~samkit.data.synthetic.clips.make_clip`); ``samkit
eval-track`` and ``samkit demo`` report it, and :func:`write_tracking_report` writes a CSV, a
JSON summary and a plot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from samkit.data.sample import ClipSample
from samkit.errors import ConfigError, MissingDependencyError
from samkit.evaluate.plots import new_figure, save_figure
from samkit.fileio import write_bytes, write_json
from samkit.masks import mask_iou
from samkit.model.sam2 import SAM2Model
from samkit.prompts import evaluation_click
from samkit.video.predictor import VideoPredictor

__all__ = ["TRACKING_PROTOCOL", "first_frame_clicks", "evaluate_tracking", "write_tracking_report"]

PathLike = str | os.PathLike

TRACKING_PROTOCOL = ("one click per object on frame 0 (the RITM first click: the object pixel farthest from its "
                     "boundary), tracked to the end; mean IoU over later frames where the object is visible")

# on_frame(clip index, frame index, object ids, K x 1 x H x W mask logits) for every propagated frame
FrameCallback = Callable[[int, int, list[int], torch.Tensor], None]


def first_frame_clicks(clip: ClipSample) -> dict[int, tuple[int, int]]:
    """``{object id: (x, y)}``: the click of the protocol for every object visible on frame 0,
    in id order (objects absent from frame 0 get none and are not tracked)."""
    clicks = {}
    for k in range(1, clip.num_objects + 1):
        truth = clip.object_mask(0, k)
        if truth.any():
            x, y, _ = evaluation_click(truth)
            clicks[k] = (x, y)
    return clicks


def evaluate_tracking(model: SAM2Model, clips: Sequence[ClipSample], *, fill_hole_area: int = 8,
                      progress: bool = True, on_frame: Optional[FrameCallback] = None) -> dict[str, Any]:
    """Track every object of every clip from one click on frame 0 and score the tracked masks.

    Args:
        model: the network.
        clips: clips with ground truth (``T x H x W x 3`` frames, ``K x T x H x W`` masks).
        fill_hole_area: the predictor's hole filling.
        progress: a progress bar over clips.
        on_frame: called with ``(clip index, frame index, object ids, K x 1 x H x W logits)``
            for every frame the predictor outputs (frame 0 included), e.g. to write the masks.

    Returns:
        ``{"mIoU": float, "per_frame": list of the mean IoU on frames 1..T-1 (NaN where no object
        is visible), "num_clips", "num_objects", "num_pairs", "per_object": list of
        {"clip", "object", "mIoU"}}``.
    """
    if len(clips) == 0:
        raise ConfigError("evaluate_tracking needs at least one clip")
    predictor = VideoPredictor(model, fill_hole_area=fill_hole_area, progress=False)
    n_frames = max(c.num_frames for c in clips)
    sums, counts = np.zeros(n_frames), np.zeros(n_frames)
    per_object: list[dict[str, Any]] = []
    for ci, clip in enumerate(tqdm(clips, desc="tracking eval", unit="clip", disable=not progress)):
        clicks = first_frame_clicks(clip)
        if not clicks:
            continue
        state = predictor.init_state(clip.frames)
        for k, (x, y) in clicks.items():
            predictor.add_new_points_or_box(state, 0, k, points=[[x, y]], labels=[1])
        obj_ious: dict[int, list[float]] = {k: [] for k in clicks}
        for f, obj_ids, masks in predictor.propagate_in_video(state):
            ids = [int(k) for k in obj_ids]
            if on_frame is not None:
                on_frame(ci, f, ids, masks)
            if f == 0:
                continue
            for row, k in enumerate(ids):
                truth = clip.object_mask(f, k)
                if not truth.any():
                    continue
                iou = float(mask_iou(masks[row, 0].cpu() > 0, truth, empty=1.0))
                sums[f] += iou
                counts[f] += 1
                obj_ious[k].append(iou)
        for k, vals in obj_ious.items():
            if vals:
                per_object.append({"clip": ci, "object": k, "mIoU": float(np.mean(vals))})
    pairs = int(counts[1:].sum())
    if pairs == 0:
        raise ConfigError("no object is visible after the first frame of any clip: nothing to evaluate")
    per_frame = [float(s / c) if c else float("nan") for s, c in zip(sums[1:], counts[1:])]
    return {"mIoU": float(sums[1:].sum() / pairs), "per_frame": per_frame, "num_clips": len(clips),
            "num_objects": len(per_object), "num_pairs": pairs, "per_object": per_object}


def write_tracking_report(result: dict[str, Any], out_dir: PathLike, name: str = "tracking") -> list[Path]:
    """``<name>_summary.json``, ``<name>_per_frame.csv`` and ``<name>_iou_per_frame.png`` (the
    plot only with matplotlib). Returns the paths written."""
    out = Path(out_dir)
    written = [write_json(out / f"{name}_summary.json", {k: v for k, v in result.items()}, indent=2)]
    rows = "frame,mean_iou\n" + "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(result["per_frame"]))
    written.append(write_bytes(out / f"{name}_per_frame.csv", rows.encode()))
    try:
        fig = new_figure(7, 4)
        ax = fig.add_subplot(1, 1, 1)
        xs = np.arange(1, len(result["per_frame"]) + 1)
        ax.plot(xs, result["per_frame"], linewidth=1.5)
        ax.axhline(result["mIoU"], linestyle=":", color="gray")
        ax.set_xlabel("frame (0 = the prompted frame)")
        ax.set_ylabel("mean IoU of tracked objects")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{name}: mean IoU {result['mIoU']:.3f} over {result['num_pairs']} object-frames")
        fig.tight_layout()
        written.append(save_figure(fig, out / f"{name}_iou_per_frame.png", 100))
    except MissingDependencyError:
        pass
    return written
