"""The ``samkit`` command line.

    samkit models
    samkit segment IMAGE (--model NAME | --checkpoint FILE) [--point X,Y[,LABEL]]... [--box X0,Y0,X1,Y1]
                   --out MASK.png [--overlay OVERLAY.png]
    samkit demo --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from samkit.errors import SamkitError


def _floats(text: str, n_min: int, n_max: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not n_min <= len(vals) <= n_max:
        raise argparse.ArgumentTypeError(f"{what} takes {n_min}-{n_max} numbers, got {text!r}")
    return vals


def _point(text: str) -> list[float]:
    v = _floats(text, 2, 3, "--point X,Y[,LABEL]")
    return v if len(v) == 3 else v + [1.0]


def _box(text: str) -> list[float]:
    return _floats(text, 4, 4, "--box X0,Y0,X1,Y1")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="registered model name (see `samkit models`)")
    g.add_argument("--checkpoint", help="checkpoint file (.pt or .safetensors); the variant is detected")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def load_model(args: argparse.Namespace):
    """The model the user asked for, saying which weights it has (and plainly when they are random)."""
    from samkit.builder import DEFAULT_MODEL, build_model
    from samkit.configs import canonical_name
    from samkit.weights import bundled_checkpoint

    if getattr(args, "checkpoint", None):
        model = build_model(checkpoint=args.checkpoint, device=args.device)
        print(f"model: {model.cfg.name} from {args.checkpoint}")
        return model
    name = canonical_name(getattr(args, "model", None) or DEFAULT_MODEL)
    shipped = bundled_checkpoint(name)
    model = build_model(name, device=args.device, pretrained=shipped is not None)
    if shipped is not None:
        print(f"model: {name} (weights shipped with samkit, trained on generated scenes; for SAM 2.1 quality "
              "pass --checkpoint sam2.1_hiera_tiny.pt)")
    else:
        print(f"model: {name} with RANDOM weights (none ship for it): masks are not meaningful. "
              "Pass --checkpoint FILE for real results.")
    return model


def cmd_models(args: argparse.Namespace) -> int:
    from samkit.configs import get_config, list_models

    for name in list_models():
        cfg = get_config(name)
        h = cfg.hiera
        print(f"{name:26s} trunk width {h.embed_dim:3d}, blocks {sum(h.stages):2d}, input {cfg.image_size}px")
    print("aliases: t, s, b+, l (e.g. sam2.1_hiera_t)")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from samkit.fileio import write_image
    from samkit.image_predictor import ImagePredictor
    from samkit.imageio import load_image
    from samkit.visualize import overlay
    from PIL import Image

    if not args.point and not args.box:
        raise SamkitError("give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    image = load_image(args.image)
    model = load_model(args)
    pred = ImagePredictor(model)
    t0 = time.perf_counter()
    pred.set_image(image)
    t1 = time.perf_counter()
    pts = np.array([p[:2] for p in args.point], dtype=np.float32) if args.point else None
    labels = np.array([int(p[2]) for p in args.point]) if args.point else None
    box = np.array(args.box, dtype=np.float32) if args.box else None
    multimask = args.point is not None and len(args.point) == 1 and box is None
    masks, scores, _ = pred.predict(point_coords=pts, point_labels=labels, box=box, multimask_output=multimask)
    best = int(np.argmax(scores))
    mask = masks[best] > 0
    t2 = time.perf_counter()
    write_image(args.out, Image.fromarray((mask * 255).astype(np.uint8)))
    print(f"embedding {t1 - t0:.2f} s, prediction {t2 - t1:.2f} s; mask area {int(mask.sum())} px, "
          f"predicted IoU {scores[best]:.3f}")
    print(f"wrote {args.out}")
    if args.overlay:
        write_image(args.overlay, overlay(image, mask[None], points=pts, labels=labels,
                                          boxes=None if box is None else box[None]))
        print(f"wrote {args.overlay}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from samkit.demo import run_demo

    return run_demo(Path(args.out), device=args.device, model_name=getattr(args, "model", None),
                    checkpoint=getattr(args, "checkpoint", None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samkit", description="Segment Anything 2 in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model variants")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("segment", help="segment one object in an image from points and/or a box")
    p.add_argument("image")
    add_model_args(p)
    p.add_argument("--point", action="append", type=_point, metavar="X,Y[,LABEL]",
                   help="a click in pixels; LABEL 1 = object (default), 0 = background; repeatable")
    p.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1")
    p.add_argument("--out", required=True, help="binary mask PNG to write")
    p.add_argument("--overlay", help="also write the mask drawn over the image")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("demo", help="run the demo: point, box and segment-everything overlays on a photo, and a "
                                    "tracked generated clip")
    add_model_args(p)
    p.add_argument("--out", default="demo_out", help="folder to write pictures to")
    p.set_defaults(func=cmd_demo)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable]:
    """Subcommands that live beside their features (data engine, video, training)."""
    out = []
    for mod, fn in (("samkit.engine", "register_cli"), ("samkit.video.export", "register_cli"),
                    ("samkit.train.cli", "register_cli"), ("samkit.evaluate.cli", "register_cli"),
                    ("samkit.evaluate.tracking", "register_cli")):
        try:
            module = __import__(mod, fromlist=[fn])
        except ImportError:
            continue
        if hasattr(module, fn):
            out.append(getattr(module, fn))
    return out


def main(argv: Sequence[str] | None = None) -> int:
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
