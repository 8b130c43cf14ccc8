"""``samkit auto`` and ``samkit annotate``: the data engine on one image or a folder tree
(see :mod:`samkit.engine`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from samkit.automask.generator import THRESHOLD_FIELDS, AutoMaskConfig, AutoMaskGenerator
from samkit.cli.common import add_model_args, model_from_args
from samkit.engine import AnnotateWorker, SA1BWriter, annotate_folder, parse_shard
from samkit.imageio import load_image

__all__ = ["register"]


def _generator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points-per-side", type=int, default=32,
                   help="the grid of single-click prompts: N x N points over the image (and each crop)")
    p.add_argument("--points-per-batch", type=int, default=64,
                   help="prompts decoded together: memory against speed; it changes no mask")
    p.add_argument("--pred-iou-thresh", type=float, default=None,
                   help="keep masks whose predicted IoU is above this, in [0, 1] (default: the model's: 0.8 for "
                        "the official models, 0.6 for samkit_nano)")
    p.add_argument("--stability-score-thresh", type=float, default=None,
                   help="keep masks whose stability score is at least this, in [0, 1] (default: the model's: "
                        "0.95 for the official models, 0.8 for samkit_nano)")
    p.add_argument("--box-nms-thresh", type=float, default=0.7,
                   help="of two masks whose boxes overlap with an IoU above this, keep the higher-scored one")
    p.add_argument("--crop-n-layers", type=int, default=0,
                   help="layers of image crops segmented too, 0..4 (0: the whole image only; layer i has 4^i crops)")
    p.add_argument("--min-mask-region-area", type=int, default=0,
                   help="fill holes and remove islands smaller than this many pixels in each mask (0: off)")


def _generator_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The generator arguments of the command's options (thresholds only where given)."""
    kwargs: dict[str, Any] = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                                  box_nms_thresh=args.box_nms_thresh, crop_n_layers=args.crop_n_layers,
                                  min_mask_region_area=args.min_mask_region_area, output_mode="coco_rle")
    kwargs.update({name: getattr(args, name) for name in THRESHOLD_FIELDS if getattr(args, name) is not None})
    return kwargs


def make_generator(args: argparse.Namespace) -> AutoMaskGenerator:
    """The mask generator of the command's model and generator options (COCO RLE output);
    prints the thresholds it uses and where they came from."""
    kwargs = _generator_kwargs(args)
    AutoMaskConfig(**kwargs).validate()  # a bad option fails before the model loads (the generator checks again)
    gen = AutoMaskGenerator(model_from_args(args), **kwargs)
    print(f"thresholds: {gen.describe_thresholds()}")
    return gen


def _why_no_mask(gen: AutoMaskGenerator) -> str:
    """The generator's explanation of an empty result, with the command's option names."""
    text = gen.last_stats.explain() if gen.last_stats is not None else "no mask kept"
    for name in THRESHOLD_FIELDS:
        text = text.replace(f"lower {name}", f"lower --{name.replace('_', '-')}")
    return text


def cmd_auto(args: argparse.Namespace) -> int:
    """One image -> ``OUT/<stem>.json`` (SA-1B) and ``OUT/<stem>.overlay.png``."""
    image = load_image(args.image)  # an unreadable image is an error before the model is loaded
    writer = SA1BWriter(args.out, overlays=True)
    gen = make_generator(args)
    worker = AnnotateWorker(gen, writer, Path(args.image).parent)
    rel = Path(Path(args.image).name)
    status = worker.annotate(rel, image)
    print(f"{status.masks} masks in {status.seconds:.1f} s -> {writer.json_path(rel)}, {writer.overlay_path(rel)}")
    if not status.masks:
        print(_why_no_mask(gen))
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    """A folder tree -> SA-1B JSON per image, resumable and shardable."""
    shard = parse_shard(args.shard)
    gen = make_generator(args)
    s = annotate_folder(gen, args.images_dir, args.out, overlays=args.overlays, shard=shard, overwrite=args.overwrite)
    info = s.to_json()
    print(f"{info['images_done']} images done ({s.annotated} this run, {s.skipped_existing} already done), "
          f"{len(s.failed)} unreadable, {info['masks_total']} masks; summary in {args.out}")
    if s.annotated and info["masks_total"] == 0:
        print(f"the last image: {_why_no_mask(gen)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``auto`` and ``annotate``."""
    p = sub.add_parser("auto", help="segment everything in one image -> SA-1B JSON + overlay PNG")
    p.add_argument("image", help="the image file")
    add_model_args(p)
    _generator_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_auto)

    p = sub.add_parser("annotate", help="annotate a folder of images (recursive, resumable, shardable)")
    p.add_argument("images_dir", help="folder of images (jpg, png, tif, webp, bmp), searched recursively")
    add_model_args(p)
    _generator_args(p)
    p.add_argument("--out", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("--overlays", action="store_true", help="also write an overlay PNG per image")
    p.add_argument("--shard", default="0/1", help="I/N: process the I-th of N deterministic shares")
    p.add_argument("--overwrite", action="store_true",
                   help="redo the outputs in --out made with other settings (model, generator options); without "
                        "it such a rerun is refused. Outputs made with the same settings are always kept")
    p.set_defaults(func=cmd_annotate)
