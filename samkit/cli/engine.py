"""``samkit auto`` and ``samkit annotate``: the data engine on one image or a folder tree, in this
process or on Ray (see :mod:`samkit.engine`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from samkit.automask.generator import THRESHOLD_FIELDS, AutoMaskConfig, AutoMaskGenerator
from samkit.cli.common import add_model_args
from samkit.engine.annotate import AnnotateWorker, GeneratorSpec, annotate_folder, describe_generator, parse_shard
from samkit.engine.ray_backend import RayOptions, annotate_folder_ray, import_ray
from samkit.engine.writers import SA1BWriter
from samkit.errors import ConfigError
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


def generator_spec(args: argparse.Namespace) -> GeneratorSpec:
    """The generator of the command's model and generator options (COCO RLE output), as data;
    a bad option fails here, before a model loads."""
    kwargs = _generator_kwargs(args)
    AutoMaskConfig(**kwargs).validate()
    return GeneratorSpec(model=args.model, checkpoint=args.checkpoint, pretrained=args.pretrained or None,
                         device=args.device, compile=args.compile, options=kwargs)


def make_generator(args: argparse.Namespace, spec: GeneratorSpec | None = None) -> AutoMaskGenerator:
    """The generator of ``spec`` (default: the command's options); prints which weights it has,
    the thresholds it uses and where they came from."""
    gen, description = (spec or generator_spec(args)).build()
    print(f"model: {description}")
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


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The pool of ``--backend ray`` (None for the local backend, which takes none of its options)."""
    options = RayOptions(address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                         gpus_per_worker=args.gpus_per_worker)
    if args.backend == "ray":
        options.validate()
        return options
    given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(RayOptions)
             if getattr(options, f.name) != f.default]
    if given:
        many = len(given) > 1
        raise ConfigError(f"{', '.join(given)} {'are' if many else 'is'} for the Ray backend: add --backend ray, or "
                          f"drop {'them' if many else 'it'}")
    return None


def cmd_annotate(args: argparse.Namespace) -> int:
    """Images (a folder tree, a list or a glob) -> SA-1B JSON per image, resumable and shardable."""
    shard = parse_shard(args.shard)
    options = _ray_options(args)
    spec = generator_spec(args)
    run = dict(overlays=args.overlays, shard=shard, overwrite=args.overwrite)
    if options is None:
        gen = make_generator(args, spec)
        s = annotate_folder(gen, args.images_dir, args.out, **run)
    else:
        options.check_device(spec.device)
        import_ray()  # a missing Ray fails before the model loads
        gen = make_generator(args, spec.on_cpu())  # here, only to record its settings; the workers build their own
        s = annotate_folder_ray(spec, args.images_dir, args.out, options=options,
                                provenance=describe_generator(gen), **run)
    info = s.to_json()
    print(f"{info['images_done']} images done ({s.annotated} this run, {s.skipped_existing} already done), "
          f"{len(s.failed)} unreadable, {info['masks_total']} masks; summary in {args.out}")
    if s.annotated and info["masks_total"] == 0 and options is None:
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

    p = sub.add_parser("annotate", help="annotate a folder of images (recursive, resumable, shardable; here or on Ray)")
    p.add_argument("images_dir", metavar="IMAGES",
                   help="a folder of images (jpg, png, tif, webp, bmp), searched recursively; or a text file of image "
                        "paths, one a line (relative to the file's folder); or a quoted glob such as 'photos/**/*.jpg'")
    add_model_args(p)
    _generator_args(p)
    p.add_argument("--out", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("--overlays", action="store_true", help="also write an overlay PNG per image")
    p.add_argument("--shard", default="0/1", help="I/N: process the I-th of N deterministic shares")
    p.add_argument("--overwrite", action="store_true",
                   help="redo the outputs in --out made with other settings (model, generator options); without "
                        "it such a rerun is refused. Outputs made with the same settings are always kept")
    g = p.add_argument_group("the Ray backend (pip install \"samkit[distributed]\")")
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this process, one image after another; ray: a pool of Ray workers (a local Ray "
                        "started for the run, or the cluster of --address), each building the model once")
    g.add_argument("--address", default=None,
                   help="ray: the cluster to join, e.g. auto (the one `ray start --head` started on this machine) or "
                        "ray://HOST:10001; without it a local Ray runs for this command")
    g.add_argument("--workers", type=int, default=None,
                   help="ray: workers in the pool; without it as many as the cluster's GPUs (with --gpus-per-worker) "
                        "or CPUs hold, at most one per image")
    g.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="ray: CPUs each worker reserves, also its torch threads (a fraction such as 0.5 shares a CPU)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="ray: GPUs each worker reserves; with --device cuda (a fraction such as 0.5 shares a GPU)")
    p.set_defaults(func=cmd_annotate)
