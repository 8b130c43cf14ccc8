"""``samkit eval``: interactive evaluation (NoC, NoF, mIoU@k) of one or more models.

    samkit eval --data DIR --format labpics [--split Test] --checkpoint A.pt [--checkpoint B.pt] --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.errors import ConfigError

__all__ = ["register_cli"]


def _labels(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """``(kind, value, label)`` for every model asked for, in command-line order of kind."""
    entries = [("checkpoint", c) for c in (args.checkpoint or [])] + [("model", m) for m in (args.model or [])]
    if not entries:
        entries = [("model", None)]
    names = list(args.label or [])
    if names and len(names) != len(entries):
        raise ConfigError(f"--label was given {len(names)} times for {len(entries)} models; give one per model "
                          "or none")
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
    from samkit.cli import load_model
    from samkit.evaluate.interactive import compare_interactive
    from samkit.train.cli import open_dataset

    dataset = open_dataset(args.format, args.data, args.split or "Test", layout=args.layout, images=args.images,
                           synthetic_count=args.synthetic_count, synthetic_size=args.synthetic_size, seed=args.seed,
                           synthetic_photos=args.synthetic_photos, synthetic_objects=args.synthetic_objects)
    models = {}
    for kind, value, label in _labels(args):
        ns = argparse.Namespace(checkpoint=value if kind == "checkpoint" else None,
                                model=value if kind == "model" else None, device=args.device)
        models[label] = load_model(ns)
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


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the ``samkit`` command."""
    from samkit.train.cli import add_data_args

    p = sub.add_parser("eval", help="interactive evaluation (NoC@85/90, mIoU per click) of one or more models",
                       description="The standard interactive protocol (RITM/SimpleClick): first click at the "
                                   "object's centre, each next click in the larger error region farthest from "
                                   "its boundary, previous mask fed back; several --checkpoint/--model are "
                                   "compared in one plot.")
    add_data_args(p)
    p.add_argument("--checkpoint", action="append", help="checkpoint to evaluate; repeat to compare several")
    p.add_argument("--model", action="append", help="registered model with random weights (a baseline); "
                                                    "repeatable")
    p.add_argument("--label", action="append", help="names of the models in the report, one per model "
                                                    "(checkpoints first, then --model)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--out", required=True, help="folder for the CSV/JSON/PNG report")
    p.add_argument("--name", help="dataset name in the report's file names (default from --data and --split)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--max-samples", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--max-objects", type=int, default=None, help="at most N objects per image")
    p.add_argument("--min-area", type=int, default=1, help="skip objects with fewer pixels")
    p.add_argument("--threshold", type=float, default=0.0, help="mask logit threshold")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)
