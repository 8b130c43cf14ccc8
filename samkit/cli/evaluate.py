"""``samkit eval`` and ``samkit eval-track``: interactive evaluation (NoC, NoF, mIoU@k) of one or
more models, and tracking quality on generated clips.

    samkit eval --data DIR --format labpics [--split Test] --checkpoint A.pt [--checkpoint B.pt] --out DIR
    samkit eval-track --out DIR [--clips N --frames T]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.builder import load_model
from samkit.cli.common import add_data_args, add_model_args, dataset_from_args, model_from_args
from samkit.cli.outputs import check_out_dir
from samkit.data import make_clip
from samkit.errors import ConfigError
from samkit.evaluate.interactive import compare_interactive
from samkit.evaluate.tracking import evaluate_tracking, write_tracking_report

__all__ = ["register"]


def label_names(values: list[str] | None) -> list[str]:
    """The names of ``--label`` options: repeated (``--label a --label b``) and/or comma-separated
    (``--label a,b``), in order; blanks around names are dropped.

    Raises:
        ConfigError: an empty name (``--label a,,b``).
    """
    names = [name.strip() for value in (values or []) for name in value.split(",")]
    if any(not name for name in names):
        raise ConfigError(f"--label has an empty name in {values!r}; give names separated by commas, e.g. "
                          "--label base,tuned")
    return names


def _labels(args: argparse.Namespace) -> list[tuple[str, str | None, str]]:
    """``(kind, value, label)`` for every model asked for, in command-line order of kind."""
    entries: list[tuple[str, str | None]] = [("checkpoint", c) for c in (args.checkpoint or [])]
    entries += [("model", m) for m in (args.model or [])]
    if not entries:
        entries = [("model", None)]
    names = label_names(args.label)
    if names and len(names) != len(entries):
        raise ConfigError(f"--label names {len(names)} models ({', '.join(names)}) but {len(entries)} are evaluated; "
                          "give one name per model (repeat --label, or separate the names by commas), or none")
    out, seen = [], set()
    for i, (kind, value) in enumerate(entries):
        label = names[i] if names else (Path(value).stem if kind == "checkpoint" else (value or "default"))
        base, n = label, 2
        while label in seen:
            label = f"{base}_{n}"
            n += 1
        seen.add(label)
        out.append((kind, value, label))
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate every --checkpoint/--model with the interactive protocol; print and write the report."""
    check_out_dir(args.out)  # before the evaluation, not after it
    dataset = dataset_from_args(args, args.split or "Test")
    models = {}
    for kind, value, label in _labels(args):
        if kind == "model":
            model, description = load_model(value, None, args.device, pretrained=args.pretrained or None)
        else:
            model, description = load_model(None, value, args.device)
        print(f"model {label}: {description}")
        models[label] = model
    name = args.name or (f"{Path(args.data).name}_{args.split or 'Test'}" if args.data else f"{args.format}")
    n = len(dataset) if args.max_samples is None else min(len(dataset), args.max_samples)
    print(f"data: {n} images ({args.format}); {args.max_clicks} clicks per object")
    results = compare_interactive(models, dataset, args.max_clicks, out_dir=args.out, name=name,
                                  threshold=args.threshold, max_samples=args.max_samples,
                                  max_objects=args.max_objects, min_area=args.min_area,
                                  progress=not args.no_progress)
    keys = ["mIoU@1", "mIoU@2", "mIoU@3", "mIoU@5", "mIoU@10", "mIoU@20", "NoC@80", "NoC@85", "NoC@90",
            "NoF@85", "NoF@90"]
    width = max(len(label) for label in results)
    print(f"{'model':{width}s}  objects  " + "  ".join(f"{k:>7s}" for k in keys))
    for label, res in results.items():
        cells = []
        for k in keys:
            v = res[k]
            cells.append(f"{v:7d}" if isinstance(v, int) else f"{v:7.3f}")
        print(f"{label:{width}s}  {res['num_objects']:7d}  " + "  ".join(cells))
    print(f"wrote {args.out}/{name}_summary.csv, _summary.json, per-object CSVs and _miou_vs_clicks.png")
    return 0


def cmd_eval_track(args: argparse.Namespace) -> int:
    """Track generated clips from one click per object; print the mean IoU and write the report."""
    check_out_dir(args.out)
    model = model_from_args(args)
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``eval-track``."""
    p = sub.add_parser("eval", help="interactive evaluation (NoC@85/90, mIoU per click) of one or more models",
                       description="The standard interactive protocol (RITM/SimpleClick): first click at the "
                                   "object's centre, each next click in the larger error region farthest from "
                                   "its boundary, previous mask fed back; several --checkpoint/--model are "
                                   "compared in one plot.")
    add_data_args(p)
    p.add_argument("--checkpoint", action="append", help="checkpoint to evaluate; repeat to compare several")
    p.add_argument("--model", action="append", help="registered model: its shipped trained weights when samkit "
                                                    "ships some (samkit_nano), with --pretrained Meta's official "
                                                    "weights, else random weights (a baseline); repeatable; default, "
                                                    "with no --checkpoint either: samkit_nano with its shipped "
                                                    "weights. One line per model says which weights it has")
    p.add_argument("--pretrained", action="store_true",
                   help="every --model with Meta's official weights, downloaded once into the cache (see `samkit "
                        "download`); checkpoints are their files' weights")
    p.add_argument("--label", action="append", metavar="NAME[,NAME...]",
                   help="names of the models in the report, one per model (checkpoints first, then --model): "
                        "repeat it (--label base --label tuned) or separate them by commas (--label base,tuned); "
                        "default: each checkpoint's file name and each model's name")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--out", required=True, help="folder for the CSV/JSON/PNG report")
    p.add_argument("--name", help="dataset name in the report's file names (default from --data and --split)")
    p.add_argument("--max-clicks", type=int, default=20, help="clicks per object")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate only the first N images (default: all)")
    p.add_argument("--max-objects", type=int, default=None, help="at most N objects per image (default: all)")
    p.add_argument("--min-area", type=int, default=1, help="skip objects with fewer pixels")
    p.add_argument("--threshold", type=float, default=0.0, help="mask logit threshold")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("eval-track", help="tracking quality on generated clips (one click per object on frame 0)",
                       description="Every object gets one click on frame 0 (the point farthest from its "
                                   "boundary); the video predictor tracks it; the score is the mean IoU with "
                                   "the truth over later frames where the object is visible.")
    add_model_args(p)
    p.add_argument("--out", required=True, help="folder for the JSON/CSV/PNG report")
    p.add_argument("--clips", type=int, default=10, help="number of generated clips")
    p.add_argument("--frames", type=int, default=50, help="frames per clip")
    p.add_argument("--size", type=int, default=256, help="side of the generated frames")
    p.add_argument("--objects", type=int, default=3, help="objects per clip")
    p.add_argument("--seed", type=int, default=10_000, help="seed of the first clip (training clips use others)")
    p.add_argument("--name", default="generated_clips", help="the report's file names start with this")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_track)
