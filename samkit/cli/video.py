"""``samkit track``: objects followed through a video (or frames ``--frames A:B`` of it) from clicks
and boxes -> label PNGs, ``overlay.mp4`` (legend, prompts) and each object's mask area per frame
(``areas.csv``, ``areas.png``; see :func:`samkit.video.export.track_video`); with ``--stream SOURCE``, through a
camera, a network stream or a file read frame by frame, written as the frames arrive (see
:func:`samkit.video.live.track_stream`)."""

from __future__ import annotations

import argparse

from samkit.cli.common import add_model_args, model_from_args
from samkit.cli.outputs import check_out_dir
from samkit.errors import ConfigError, PromptError
from samkit.video.export import BoxSpec, PointSpec, track_video
from samkit.video.live import open_stream, track_stream

__all__ = ["register"]


def cmd_stream(args: argparse.Namespace) -> int:
    """``--stream SOURCE``: prompts on the first frame, then every frame tracked and written as it comes,
    until the stream ends, ``--max-frames``, or Ctrl+C (a clean stop: exit 0, what was written stays)."""
    prompts: list[PointSpec | BoxSpec] = [PointSpec.parse(s, frame=0) for s in args.point]
    prompts += [BoxSpec.parse(s, frame=0) for s in args.box]
    if not prompts:
        raise PromptError("give at least one --point X,Y[,LABEL[,OBJ]] or --box X0,Y0,X1,Y1[,OBJ] (on the stream's "
                          "first frame)")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.frames is not None:
        raise ConfigError("--frames START:STOP needs a VIDEO (a stream is read from its first frame); with --stream, "
                          "give --max-frames N")
    check_out_dir(args.out)
    with open_stream(args.stream) as stream:  # before the model: a source that cannot be opened fails at once
        print(f"stream: {stream.name}" + (f" ({stream.fps:g} fps)" if stream.fps else ""))
        model = model_from_args(args)
        res = track_stream(model, stream, prompts, args.out, max_frames=args.max_frames, overlay=args.overlay,
                           fps=args.fps, fill_hole_area=args.fill_hole_area)
    why = {"end": "the stream ended", "max_frames": f"--max-frames {args.max_frames}",
           "interrupted": "stopped by Ctrl+C"}[res.stopped]
    where = f"{res.label_dir}" + (f", {res.overlay_path}" if res.overlay_path else "")
    print(f"tracked {len(res.obj_ids)} object(s) over {res.num_frames} frames in {res.seconds:.1f} s "
          f"({res.fps:.2f} frames/s; {why}) -> {where}")
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    """Track every prompted object from its earliest prompted frame to both ends of the video."""
    if args.stream is not None:
        if args.video is not None:
            raise ConfigError(f"give a VIDEO or --stream SOURCE, not both (got {args.video!r} and --stream "
                              f"{args.stream!r})")
        return cmd_stream(args)
    if args.video is None:
        raise ConfigError("give a VIDEO (a file or a folder of frames), or --stream SOURCE (a camera index, a URL, "
                          "a file read frame by frame)")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    frames = args.frames if args.frames is not None else (None if args.max_frames is None else (0, args.max_frames))
    prompts: list[PointSpec | BoxSpec] = [PointSpec.parse(s) for s in args.point]
    prompts += [BoxSpec.parse(s) for s in args.box]
    if not prompts:
        raise PromptError("give at least one --point FRAME,X,Y[,LABEL[,OBJ]] or --box FRAME,X0,Y0,X1,Y1[,OBJ]")
    check_out_dir(args.out)
    model = model_from_args(args)
    res = track_video(model, args.video, prompts, args.out, fill_hole_area=args.fill_hole_area,
                      overlay_video=not args.no_overlay, fps=args.fps, frames=frames)
    where = f"{res.mask_dir}" + (f", {res.overlay_path}" if res.overlay_path else "")
    print(f"tracked {len(res.obj_ids)} object(s) over {res.num_frames} frames "
          f"({res.frames.start}..{res.frames.stop - 1}) in {res.seconds:.1f} s -> {where}")
    print(f"mask area per frame and object: {res.areas_csv}" + (f", {res.areas_plot}" if res.areas_plot else ""))
    if res.plot_note:
        print(res.plot_note)
    for obj in res.obj_ids:
        lost = res.lost.get(obj, [])
        if lost:
            print(f"  object {obj}: no mask on {len(lost)} of {res.num_frames} frames ({_spans(lost)})")
    return 0


def _spans(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``: sorted frame numbers as runs (at most 6 shown)."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    text = [f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:6]]
    return ", ".join(text) + (", ..." if len(runs) > 6 else "")


def frames_arg(text: str) -> tuple[int, int | None]:
    """``"A:B"`` -> ``(A, B)``: frames ``A .. B - 1``; ``"A:"`` to the end, ``":B"`` from frame 0."""
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        a = int(start) if start.strip() else 0
        b = int(stop) if stop.strip() else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames takes START:STOP (frames START .. STOP-1, e.g. 0:100; either may "
                                         f"be left out), got {text!r}") from None
    if a < 0 or (b is not None and b <= a):
        raise argparse.ArgumentTypeError(f"--frames START:STOP needs 0 <= START < STOP, got {text!r}")
    return a, b


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``track``."""
    p = sub.add_parser("track", help="track objects through a video (or a live stream) from clicks/boxes -> PNG "
                                      "masks + overlay.mp4",
                       description="Track objects through VIDEO (masks/NNNNN.png, overlay.mp4 with a legend of the "
                                   "objects and the prompts on their frames, areas.csv and areas.png: each object's "
                                   "mask area per frame, 0 where tracking lost it), or through --stream "
                                   "SOURCE read frame by frame (labels/NNNNN.png written as frames arrive, overlay.mp4 "
                                   "with --overlay). With --stream, prompts are on the first frame and have no FRAME "
                                   "part: --point X,Y[,LABEL[,OBJ]], --box X0,Y0,X1,Y1[,OBJ].")
    p.add_argument("video", nargs="?", help="video file (.mp4, ...) or folder of frames")
    p.add_argument("--stream", metavar="SOURCE",
                   help="instead of VIDEO: a camera index (0, 1, ...), a stream URL (rtsp://, http://, ...) or a video "
                        "file, read and tracked frame by frame until it ends, --max-frames, or Ctrl+C")
    add_model_args(p)
    p.add_argument("--point", action="append", default=[], metavar="FRAME,X,Y[,LABEL[,OBJ]]",
                   help="a click (label 1 object / 0 background, default 1; object id default 1); repeatable; "
                        "with --stream: X,Y[,LABEL[,OBJ]] on the first frame")
    p.add_argument("--box", action="append", default=[], metavar="FRAME,X0,Y0,X1,Y1[,OBJ]",
                   help="a box around an object (object id default 1); repeatable; with --stream: X0,Y0,X1,Y1[,OBJ] "
                        "on the first frame")
    p.add_argument("--out", required=True, help="output folder: masks/NNNNN.png, overlay.mp4, areas.csv "
                                                "(frame,obj,area) and areas.png (with matplotlib) (--stream: "
                                                "labels/NNNNN.png, and overlay.mp4 with --overlay)")
    p.add_argument("--fill-hole-area", type=int, default=8, help="fill mask holes up to this many pixels (0: off)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4 (VIDEO)")
    g.add_argument("--overlay", action="store_true", help="--stream: also write overlay.mp4, frame by frame (a VIDEO "
                                                          "gets one unless --no-overlay)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="track only the first N frames (VIDEO: frames 0..N-1, like --frames 0:N; --stream: stop after "
                        "N frames, the first included); default: all")
    g.add_argument("--frames", type=frames_arg, default=None, metavar="START:STOP",
                   help="VIDEO: track only frames START..STOP-1 (e.g. 100:200; 100: to the end); the prompts must be "
                        "on them and masks/NNNNN.png keep the video's frame numbers; default: all")
    p.add_argument("--fps", type=float, default=None, help="frame rate of overlay.mp4 (default: the video's or "
                                                           "stream's, else 24)")
    p.set_defaults(func=cmd_track)
