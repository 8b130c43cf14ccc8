"""``samkit track``: objects followed through a video from clicks and boxes -> label PNGs and
``overlay.mp4`` (see :func:`samkit.video.export.track_video`)."""

from __future__ import annotations

import argparse

from samkit.cli.common import add_model_args, model_from_args
from samkit.cli.outputs import check_out_dir
from samkit.errors import PromptError
from samkit.video.export import BoxSpec, PointSpec, track_video

__all__ = ["register"]


def cmd_track(args: argparse.Namespace) -> int:
    """Track every prompted object from its earliest prompted frame to both ends of the video."""
    prompts: list[PointSpec | BoxSpec] = [PointSpec.parse(s) for s in args.point]
    prompts += [BoxSpec.parse(s) for s in args.box]
    if not prompts:
        raise PromptError("give at least one --point FRAME,X,Y[,LABEL[,OBJ]] or --box FRAME,X0,Y0,X1,Y1[,OBJ]")
    check_out_dir(args.out)
    model = model_from_args(args)
    res = track_video(model, args.video, prompts, args.out, fill_hole_area=args.fill_hole_area,
                      overlay_video=not args.no_overlay, fps=args.fps)
    where = f"{res.mask_dir}" + (f", {res.overlay_path}" if res.overlay_path else "")
    print(f"tracked {len(res.obj_ids)} object(s) over {res.num_frames} frames in {res.seconds:.1f} s -> {where}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``track``."""
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
