"""``samkit models`` and ``samkit segment``: the registered variants, and one object of an image."""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from samkit.cli.common import add_model_args, box_arg, model_from_args, point_arg
from samkit.configs import get_config, list_models
from samkit.errors import SamkitError
from samkit.fileio import write_image
from samkit.image_predictor import ImagePredictor, check_prompt_extent
from samkit.imageio import load_image
from samkit.visualize import candidates_sheet, overlay
from samkit.weights import OFFICIAL, bundled_checkpoint, cache_dir, cached_file

__all__ = ["register"]


def _weights_status(name: str) -> str:
    """Which trained weights variant ``name`` has on this machine (no hashing: a listing)."""
    shipped = bundled_checkpoint(name)
    if shipped is not None:
        return f"weights ship with samkit ({shipped.name})"
    if name not in OFFICIAL:
        return "random weights (none to download)"
    row = cached_file(name)
    if row is not None:
        return f"cached: {row.resolved()} ({row.size / 1e6:.0f} MB)"
    path = cache_dir() / OFFICIAL[name].file_name
    if path.is_file():
        return f"in the cache, verified on first use: {path}"
    return f"not downloaded (samkit download {name})"


def cmd_models(args: argparse.Namespace) -> int:
    """Print every registered variant with its trunk size, input resolution and weights here."""
    for name in list_models():
        cfg = get_config(name)
        h = cfg.hiera
        print(f"{name:22s} trunk width {h.embed_dim:3d}, blocks {sum(h.stages):2d}, input {cfg.image_size:4d}px; "
              f"{_weights_status(name)}")
    print("aliases: t, s, b+, l (e.g. sam2.1_hiera_t); Hugging Face ids (facebook/sam2.1-hiera-tiny)")
    print(f"weights cache: {cache_dir()} (SAMKIT_HOME); `--model NAME --pretrained` downloads into it once")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment one object from points and/or a box; write the mask (and an overlay, and the three
    candidates side by side)."""
    if not args.point and not args.box:
        raise SamkitError("give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    image = load_image(args.image)
    # point_arg / box_arg checked the numbers, the labels (0 or 1) and the box's corner order
    pts = np.array([p[:2] for p in args.point], dtype=np.float32) if args.point else None
    labels = np.array([int(p[2]) for p in args.point]) if args.point else None
    box = np.array(args.box, dtype=np.float32) if args.box else None
    for what, coords in (("--point", pts), ("--box", box)):
        if coords is not None:  # before the model loads
            check_prompt_extent(coords, image.shape[:2], True, what)
    model = model_from_args(args)
    pred = ImagePredictor(model)
    t0 = time.perf_counter()
    pred.set_image(image)
    t1 = time.perf_counter()
    multimask = args.point is not None and len(args.point) == 1 and box is None
    masks, scores, _ = pred.predict(point_coords=pts, point_labels=labels, box=box, multimask_output=multimask)
    best = int(np.argmax(scores))
    mask = masks[best] > 0
    t2 = time.perf_counter()
    write_image(args.out, Image.fromarray((mask * 255).astype(np.uint8)))
    print(f"embedding {t1 - t0:.2f} s, prediction {t2 - t1:.2f} s; mask area {int(mask.sum())} px, "
          f"predicted IoU {scores[best]:.3f}")
    print(f"wrote {args.out}")
    boxes = None if box is None else box[None]
    if args.overlay:
        write_image(args.overlay, overlay(image, mask[None], points=pts, labels=labels, boxes=boxes))
        print(f"wrote {args.overlay}")
    if args.all_candidates:
        if not multimask:  # the mask above came from the single-mask output: ask for the three candidates too
            masks, scores, _ = pred.predict(point_coords=pts, point_labels=labels, box=box, multimask_output=True)
        write_image(args.all_candidates, candidates_sheet(image, masks > 0, scores, points=pts, labels=labels,
                                                          boxes=boxes))
        print(f"wrote {args.all_candidates}: the {len(scores)} candidates, predicted IoU "
              + ", ".join(f"{s:.3f}" for s in scores))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` and ``segment``."""
    p = sub.add_parser("models", help="list the model variants and which weights are here")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("segment", help="segment one object in an image from points and/or a box",
                       description="Segment one object of IMAGE from clicks and/or a box and write its mask. "
                                   "Without --model or --checkpoint the default model (samkit_nano, its weights "
                                   "ship with samkit) is used. One click gives three candidate masks and the one "
                                   "with the highest predicted IoU is written; --all-candidates shows all three.")
    p.add_argument("image", help="the image file (jpg, png, tif, webp, bmp)")
    add_model_args(p)
    p.add_argument("--point", action="append", type=point_arg, metavar="X,Y[,LABEL]",
                   help="a click in pixels; LABEL 1 = object (default), 0 = background; repeatable")
    p.add_argument("--box", type=box_arg, metavar="X0,Y0,X1,Y1", help="a box around the object, in pixels")
    p.add_argument("--out", required=True, help="binary mask PNG to write (255 on the object)")
    p.add_argument("--overlay", metavar="PNG", help="also write the mask drawn over the image")
    p.add_argument("--all-candidates", metavar="PNG",
                   help="also write the three candidate masks side by side (each drawn over the image, captioned "
                        "with its predicted IoU)")
    p.set_defaults(func=cmd_segment)
