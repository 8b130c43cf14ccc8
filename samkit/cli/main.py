"""The ``samkit`` command line.

    samkit models                       the registered model variants (and which weights are cached)
    samkit download NAME... [--force]   official SAM 2 / 2.1 checkpoints into the cache (names or HF ids)
    samkit segment IMAGE --point X,Y[,LABEL] | --box X0,Y0,X1,Y1 --out MASK.png [--overlay PNG]
    samkit demo [--out DIR]             point, box and segment-everything overlays; a tracked clip
    samkit auto IMAGE --out DIR         segment everything in one image -> SA-1B JSON + overlay
    samkit annotate IMAGES_DIR --out DIR [--shard I/N] [--overlays]   a folder tree, resumable
    samkit studio IMAGES_DIR --out DIR [--propose]   annotate in the browser with the model's help
    samkit export ANNOTATIONS_DIR [--coco FILE.json] [--png DIR] [--stats]   SA-1B JSON -> COCO, label PNGs
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

Exit codes: 0 done; 2 a user error, printed as one line ``samkit CMD: error: ...`` (a
:class:`~samkit.errors.SamkitError`, an operating-system error such as a read-only or full output
folder, or a bad argument, which argparse reports with 2 too); 130 interrupted (Ctrl+C); 1 an
unexpected exception, shown with its traceback: that is a bug to report.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from samkit.cli import demo, engine, evaluate, export, image, studio, train, video, weights
from samkit.cli.common import ArgumentParser
from samkit.errors import SamkitError

__all__ = ["build_parser", "describe_os_error", "main"]

# the command families, in the order of ``samkit --help``
COMMAND_MODULES = (image, weights, demo, engine, studio, export, video, train, evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``samkit`` parser with every subcommand (each one's ``--help`` shows every option's default:
    :class:`~samkit.cli.common.HelpFormatter`)."""
    parser = ArgumentParser(prog="samkit", description="Segment Anything 2 in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


# the temporary file samkit.fileio.atomic_write writes first: ".NAME.XXXXXXXX.tmp" next to NAME
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def _shown_path(path: str | bytes | os.PathLike) -> Path:
    """The path a user asked for behind an error's path (an atomic write's temporary file -> its target)."""
    p = Path(os.fsdecode(path))
    match = _TEMP_NAME.fullmatch(p.name)
    return p.with_name(match["name"]) if match else p


def describe_os_error(exc: OSError) -> str | None:
    """One line naming the path and the problem of an operating-system error, and what to do.

    None when ``exc`` has no errno: then it is not the file system's answer but a library's own
    OSError that samkit failed to turn into a SamkitError (a bug, shown with its traceback).
    """
    if exc.errno is None:
        return None
    raw = exc.filename2 if exc.filename2 is not None else exc.filename  # os.replace(tmp, target): the target
    path = _shown_path(raw) if raw is not None else None
    where = f"'{path}'" if path is not None else "a file"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where}; choose a path you may write (or read), or change its permissions"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system; choose another path"
    if code == errno.EISDIR:
        return f"{where} is a folder where a file is needed; give a file path"
    if code == errno.ENOTDIR:
        return f"a part of {where} is a file where a folder is needed; choose another path or move that file"
    if code == errno.EEXIST:
        if path is not None and not path.is_dir():
            return f"{where} is a file where a folder is needed; choose another path or move that file"
        return f"{where} already exists"
    if code == errno.ENOENT:
        return f"{where} does not exist"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device (or disk quota exceeded) writing {where}; free some space or " \
               "choose another path"
    return f"{exc.strerror or exc}: {where}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error prints ``samkit CMD: error: ...`` and returns 2 (see the module
    docstring for every exit code)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SamkitError as exc:
        print(f"samkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system's answer: a read-only or full folder, a file in the way
        message = describe_os_error(exc)
        if message is None:
            raise
        print(f"samkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
