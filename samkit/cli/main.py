"""The ``samkit`` command line.

    samkit models                       the registered model variants (and which weights are cached)
    samkit download NAME... [--force]   official SAM 2 / 2.1 checkpoints into the cache (names or HF ids)
    samkit segment IMAGE --point X,Y[,LABEL] | --box X0,Y0,X1,Y1 --out MASK.png [--overlay PNG]
    samkit demo [--out DIR]             point, box and segment-everything overlays; a tracked clip
    samkit auto IMAGE --out DIR         segment everything in one image -> SA-1B JSON + overlay
    samkit annotate IMAGES_DIR --out DIR [--shard I/N] [--overlays]   a folder tree, resumable
    samkit track VIDEO --point F,X,Y | --box F,X0,Y0,X1,Y1 --out DIR  label PNGs + overlay.mp4
    samkit train --data DIR --format FMT --out RUN_DIR | --recipe NAME  interactive fine-tuning
    samkit make-synthetic-labpics OUT   generated scenes in the LabPics layout
    samkit eval --data DIR --format FMT --checkpoint A.pt [...] --out DIR  NoC / mIoU per click
    samkit eval-track --out DIR         tracking quality on generated clips

The commands that load a model take ``--model NAME [--pretrained] | --checkpoint FILE`` and
``--device`` and say which weights the model has. Every command module is imported here, so an
import error in one of them is an error of the whole command line; optional packages (cv2,
matplotlib, pycocotools, tensorboard) are needed only when a command uses them, and their absence
is a clear error then.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from samkit.cli import demo, engine, evaluate, image, train, video, weights
from samkit.errors import SamkitError

__all__ = ["build_parser", "main"]

# the command families, in the order of ``samkit --help``
COMMAND_MODULES = (image, weights, demo, engine, video, train, evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``samkit`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="samkit", description="Segment Anything 2 in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error prints ``samkit CMD: error: ...`` and returns 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SamkitError as exc:
        print(f"samkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
