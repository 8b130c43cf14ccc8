"""Video evaluation: how well objects prompted once are tracked through a clip.

Protocol (semi-supervised video object segmentation with a click): every object visible on
the first frame gets one positive click, at the object pixel farthest from its boundary (the
first click of the interactive protocol); :class:`~samkit.video.predictor.VideoPredictor`
propagates to the end; each later frame's mask of each object is compared with the truth. The
score is the mean IoU over (object, frame) pairs where the object is visible in the truth
(frame 0 excluded: it is prompted, not tracked), plus the per-frame curve.

:func:`evaluate_tracking` runs it on any clips with ground truth (the generated clips of
:mod:`samkit.video.synthetic`, or :class:`~samkit.train.clips.ClipSample`);
``samkit eval-track`` runs it on generated clips and writes a CSV, a JSON summary and a plot.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from samkit.errors import ConfigError
from samkit.model.sam2 import SAM2Model

__all__ = ["evaluate_tracking", "write_tracking_report", "register_cli"]

PathLike = str | os.PathLike


def _label_maps(clip: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """``(frames, per-object truth per frame as K x H x W bool, object ids)`` of a clip."""
    if hasattr(clip, "masks") and np.asarray(clip.masks[0]).ndim == 2:  # SyntheticClip: label maps
        frames = [np.asarray(f) for f in clip.frames]
        labels = [np.asarray(m) for m in clip.masks]
        ids = list(range(1, int(clip.num_objects) + 1))
        truth = [np.stack([lab == k for k in ids]) for lab in labels]
        return frames, truth, ids
    frames = [np.asarray(f) for f in clip.frames]  # ClipSample: K x T x H x W
    masks = np.asarray(clip.masks)
    ids = list(range(1, masks.shape[0] + 1))
    return frames, [masks[:, t] for t in range(masks.shape[1])], ids


def evaluate_tracking(model: SAM2Model, clips: Sequence[Any], *, fill_hole_area: int = 8,
                      progress: bool = True) -> dict[str, Any]:
    """Track every object of every clip from one click on frame 0.

    Args:
        model: the network.
        clips: clips with ground truth (``frames`` + label maps, or :class:`ClipSample`).
        fill_hole_area: the predictor's hole filling.
        progress: a progress bar over clips.

    Returns:
        ``{"mIoU": float, "per_frame": list of the mean IoU on frames 1..T-1 (NaN where no object
        is visible), "num_clips", "num_objects", "num_pairs", "per_object": list of
        {"clip", "object", "mIoU"}}``.
    """
    from tqdm.auto import tqdm

    from samkit.evaluate.metrics import mask_iou
    from samkit.train.prompts import evaluation_click
    from samkit.video.predictor import VideoPredictor

    if len(clips) == 0:
        raise ConfigError("evaluate_tracking needs at least one clip")
    predictor = VideoPredictor(model, fill_hole_area=fill_hole_area, progress=False)
    n_frames = max(len(c.frames) for c in clips)
    sums, counts = np.zeros(n_frames), np.zeros(n_frames)
    per_object: list[dict[str, Any]] = []
    for ci, clip in enumerate(tqdm(clips, desc="tracking eval", unit="clip", disable=not progress)):
        frames, truth, ids = _label_maps(clip)
        state = predictor.init_state(frames)
        prompted = []
        for j, k in enumerate(ids):
            if truth[0][j].any():
                x, y, _ = evaluation_click(truth[0][j])
                predictor.add_new_points_or_box(state, 0, k, points=[[x, y]], labels=[1])
                prompted.append(j)
        if not prompted:
            continue
        obj_sums = {j: [] for j in prompted}
        for f, obj_ids, masks in predictor.propagate_in_video(state):
            if f == 0:
                continue
            for row, k in enumerate(obj_ids):
                j = ids.index(int(k))
                if not truth[f][j].any():
                    continue
                iou = mask_iou(masks[row, 0].cpu().numpy() > 0, truth[f][j])
                sums[f] += iou
                counts[f] += 1
                obj_sums[j].append(iou)
        for j, vals in obj_sums.items():
            if vals:
                per_object.append({"clip": ci, "object": ids[j], "mIoU": float(np.mean(vals))})
    pairs = int(counts[1:].sum())
    if pairs == 0:
        raise ConfigError("no object is visible after the first frame of any clip: nothing to evaluate")
    per_frame = [float(s / c) if c else float("nan") for s, c in zip(sums[1:], counts[1:])]
    return {"mIoU": float(sums[1:].sum() / pairs), "per_frame": per_frame, "num_clips": len(clips),
            "num_objects": len(per_object), "num_pairs": pairs, "per_object": per_object}


def write_tracking_report(result: dict[str, Any], out_dir: PathLike, name: str = "tracking") -> list[Path]:
    """``<name>_summary.json``, ``<name>_per_frame.csv`` and ``<name>_iou_per_frame.png`` (the
    plot only with matplotlib). Returns the paths written."""
    from samkit.errors import MissingDependencyError
    from samkit.fileio import write_bytes, write_json

    out = Path(out_dir)
    written = [write_json(out / f"{name}_summary.json", {k: v for k, v in result.items()}, indent=2)]
    rows = "frame,mean_iou\n" + "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(result["per_frame"]))
    written.append(write_bytes(out / f"{name}_per_frame.csv", rows.encode()))
    try:
        from samkit.evaluate.plots import _new_figure, _save

        fig = _new_figure(7, 4)
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
        written.append(_save(fig, out / f"{name}_iou_per_frame.png", 100))
    except MissingDependencyError:
        pass
    return written


def cmd_eval_track(args: argparse.Namespace) -> int:
    from samkit.cli import load_model
    from samkit.video.synthetic import make_clip

    model = load_model(args)
    clips = [make_clip(args.frames, args.size, args.size, args.objects, seed=args.seed + i)
             for i in range(args.clips)]
    print(f"data: {args.clips} generated clips of {args.frames} frames ({args.size}x{args.size}, "
          f"{args.objects} objects, seeds {args.seed}..{args.seed + args.clips - 1})")
    result = evaluate_tracking(model, clips, progress=not args.no_progress)
    paths = write_tracking_report(result, args.out, args.name)
    print(f"tracked-mask mean IoU {result['mIoU']:.3f} over {result['num_pairs']} object-frames "
          f"({result['num_objects']} objects)")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``eval-track`` to the ``samkit`` command."""
    from samkit.cli import add_model_args

    p = sub.add_parser("eval-track", help="tracking quality on generated clips (one click per object on frame 0)",
                       description="Every object gets one click on frame 0 (the point farthest from its "
                                   "boundary); the video predictor tracks it; the score is the mean IoU with "
                                   "the truth over later frames where the object is visible.")
    add_model_args(p)
    p.add_argument("--out", required=True, help="folder for the JSON/CSV/PNG report")
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--size", type=int, default=256, help="side of the generated frames")
    p.add_argument("--objects", type=int, default=3, help="objects per clip")
    p.add_argument("--seed", type=int, default=10_000, help="seed of the first clip (training clips use others)")
    p.add_argument("--name", default="generated_clips")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval_track)
