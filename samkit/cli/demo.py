"""``samkit demo``: point, box and segment-everything overlays on the bundled photo, and a tracked
generated clip (see :mod:`samkit.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.cli.common import add_model_args
from samkit.demo import run_demo

__all__ = ["register"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo into ``--out``."""
    return run_demo(Path(args.out), device=args.device, model_name=args.model, checkpoint=args.checkpoint,
                    pretrained=args.pretrained or None, compute_dtype=args.dtype, compile=args.compile)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = sub.add_parser("demo", help="run the demo: point, box and segment-everything overlays on a photo, and a "
                                    "tracked generated clip")
    add_model_args(p)
    p.add_argument("--out", default="demo_out", help="folder to write pictures to")
    p.set_defaults(func=cmd_demo)
