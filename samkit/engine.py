"""The data engine: folders of images -> SA-1B style annotation files.

``samkit auto IMAGE --out DIR`` annotates one image; ``samkit annotate IMAGES_DIR --out OUT_DIR``
a whole folder tree, resumably:

* every image (jpg/jpeg/png/tif/tiff/webp/bmp, recursive) becomes ``OUT_DIR/<relative path>.json``
  in the SA-1B layout ``{"image": {...}, "annotations": [...]}`` with COCO RLE masks;
* writes are atomic, so a killed run leaves no half-written JSON, and a rerun skips images
  whose JSON already exists;
* unreadable images are skipped, listed in the summary, and never stop the run;
* ``--shard I/N`` takes a deterministic share of the images (by a hash of the relative path),
  so N processes or machines can split the work without talking to each other;
* ``summary.json`` and ``masks_per_image.png`` give the masks-per-image histogram in the SA-1B bins.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from samkit.errors import ImageError, SamkitError
from samkit.fileio import write_image, write_json
from samkit.imageio import load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
# SA-1B's masks-per-image bins: (label, lower bound inclusive, upper bound exclusive)
SA1B_BINS = (("<50", 0, 50), ("50-100", 50, 100), ("100-200", 100, 200), ("200-300", 200, 300),
             ("300-400", 300, 400), ("400-500", 400, 500), (">500", 500, None))


class MaskGenerator(Protocol):
    """What the engine needs: ``generate(image) -> list of records`` with COCO RLE masks."""

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...


@dataclass
class Summary:
    """What an annotate run did (also written as ``summary.json``)."""

    images_total: int = 0            # images in this shard
    annotated: int = 0               # annotated in this run
    skipped_existing: int = 0        # already done by an earlier run
    failed: list[dict[str, str]] = field(default_factory=list)   # {"file", "error"}
    masks_per_image: dict[str, int] = field(default_factory=dict)  # relative path -> count
    seconds: float = 0.0

    def histogram(self) -> dict[str, int]:
        return mask_count_histogram(list(self.masks_per_image.values()))

    def to_json(self) -> dict[str, Any]:
        counts = list(self.masks_per_image.values())
        return {
            "images_total": self.images_total, "annotated_this_run": self.annotated,
            "skipped_existing": self.skipped_existing, "images_done": len(counts),
            "failed": self.failed, "masks_total": int(sum(counts)),
            "masks_per_image_mean": float(np.mean(counts)) if counts else 0.0,
            "masks_per_image_histogram": self.histogram(), "seconds": round(self.seconds, 2),
        }


def mask_count_histogram(counts: Sequence[int]) -> dict[str, int]:
    """Number of images per SA-1B bin of masks-per-image."""
    out = {label: 0 for label, _, _ in SA1B_BINS}
    for c in counts:
        for label, lo, hi in SA1B_BINS:
            if c >= lo and (hi is None or c < hi):
                out[label] += 1
                break
    return out


def list_images(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files below ``root`` (recursive, hidden files skipped), as sorted relative paths."""
    root = Path(root)
    if not root.is_dir():
        raise SamkitError(f"images folder not found: {root}")
    exts = {e.lower() for e in extensions}
    found = [p.relative_to(root) for p in root.rglob("*")
             if p.is_file() and p.suffix.lower() in exts and not any(s.startswith(".") for s in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.as_posix())


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SamkitError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise SamkitError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def in_shard(rel: Path, shard: tuple[int, int]) -> bool:
    """Deterministic membership by CRC32 of the relative path (the same on every machine)."""
    i, n = shard
    return zlib.crc32(rel.as_posix().encode()) % n == i


def sa1b_record(records: list[dict[str, Any]], file_name: str, image_id: int, hw: tuple[int, int]) -> dict[str, Any]:
    """The SA-1B JSON for one image from generator records (``output_mode="coco_rle"``)."""
    anns = []
    for k, r in enumerate(records):
        anns.append({
            "id": k, "segmentation": r["segmentation"], "area": int(r["area"]),
            "bbox": [float(v) for v in r["bbox"]], "predicted_iou": float(r["predicted_iou"]),
            "point_coords": [[float(x), float(y)] for x, y in r["point_coords"]],
            "stability_score": float(r["stability_score"]), "crop_box": [float(v) for v in r["crop_box"]],
        })
    return {"image": {"image_id": image_id, "file_name": file_name, "height": hw[0], "width": hw[1]},
            "annotations": anns}


def overlay_records(image: np.ndarray, annotations: list[dict[str, Any]]) -> Image.Image:
    """All masks of an SA-1B record drawn over the image, largest first."""
    from samkit.automask.masks import rle_to_mask
    from samkit.visualize import overlay

    anns = sorted(annotations, key=lambda a: -a["area"])
    if not anns:
        return Image.fromarray(image)
    masks = np.stack([_decode(a["segmentation"], rle_to_mask) for a in anns])
    return overlay(image, masks, alpha=0.45)


def _decode(seg: dict[str, Any], rle_to_mask: Callable) -> np.ndarray:
    if isinstance(seg.get("counts"), str):
        from samkit.train.datasets import decode_rle_counts

        h, w = seg["size"]
        return decode_rle_counts(seg["counts"], h, w).astype(bool)
    return rle_to_mask(seg).astype(bool)


def annotate_image(generator: MaskGenerator, image: np.ndarray, file_name: str, image_id: int = 0) -> dict[str, Any]:
    records = generator.generate(image)
    return sa1b_record(records, file_name, image_id, image.shape[:2])


def _done(path: Path) -> int | None:
    """Number of annotations of a finished output file, or None if absent/unreadable."""
    try:
        with open(path) as f:
            return len(json.load(f)["annotations"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def annotate_folder(generator: MaskGenerator, images_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    overlays: bool = False, shard: tuple[int, int] = (0, 1), progress: bool = True,
                    extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Summary:
    """Annotate every image of ``images_dir`` into ``out_dir`` (see the module docstring)."""
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in list_images(images_dir, extensions) if in_shard(p, shard)]
    summary = Summary(images_total=len(todo))
    t0 = time.perf_counter()
    bar = tqdm(todo, desc="annotate", unit="img", disable=not progress)
    for rel in bar:
        target = out_dir / rel.with_suffix(".json")
        prior = _done(target)
        if prior is not None:
            summary.skipped_existing += 1
            summary.masks_per_image[rel.as_posix()] = prior
            continue
        try:
            image = load_image(images_dir / rel)
        except ImageError as exc:
            summary.failed.append({"file": rel.as_posix(), "error": str(exc)})
            bar.write(f"skipped unreadable image {rel}: {exc}")
            continue
        image_id = zlib.crc32(rel.as_posix().encode())
        record = annotate_image(generator, image, rel.as_posix(), image_id)
        if overlays:
            write_image(out_dir / rel.with_suffix(".overlay.png"), overlay_records(image, record["annotations"]))
        write_json(target, record)  # last: its presence marks the image as done
        summary.annotated += 1
        summary.masks_per_image[rel.as_posix()] = len(record["annotations"])
        bar.set_postfix(masks=len(record["annotations"]))
    summary.seconds = time.perf_counter() - t0
    suffix = "" if shard == (0, 1) else f"-shard{shard[0]}of{shard[1]}"
    write_json(out_dir / f"summary{suffix}.json", summary.to_json(), indent=2)
    write_image(out_dir / f"masks_per_image{suffix}.png", histogram_png(summary.histogram()))
    return summary


def histogram_png(hist: dict[str, int], size: tuple[int, int] = (560, 320)) -> Image.Image:
    """A bar chart of images per masks-per-image bin (drawn with PIL, no plotting package)."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), "images per number of masks (SA-1B bins)", fill="black")
    n = len(hist)
    top = max(hist.values(), default=0) or 1
    left, bottom, bar_w = 40, h - 30, (w - 60) // n
    d.line([(left, 30), (left, bottom), (w - 10, bottom)], fill="black")
    for k, (label, count) in enumerate(hist.items()):
        x0 = left + 5 + k * bar_w
        y0 = bottom - int((bottom - 40) * count / top)
        d.rectangle([x0, y0, x0 + bar_w - 10, bottom], fill=(70, 130, 200))
        d.text((x0, bottom + 5), label, fill="black")
        d.text((x0, y0 - 14), str(count), fill="black")
    return img


# --------------------------------------------------------------------------- command line
def _generator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--points-per-batch", type=int, default=64)
    p.add_argument("--pred-iou-thresh", type=float, default=0.8)
    p.add_argument("--stability-score-thresh", type=float, default=0.95)
    p.add_argument("--box-nms-thresh", type=float, default=0.7)
    p.add_argument("--crop-n-layers", type=int, default=0)
    p.add_argument("--min-mask-region-area", type=int, default=0)


def _make_generator(args: argparse.Namespace):
    from samkit.automask.generator import AutoMaskGenerator
    from samkit.cli import load_model

    return AutoMaskGenerator(load_model(args), points_per_side=args.points_per_side,
                             points_per_batch=args.points_per_batch, pred_iou_thresh=args.pred_iou_thresh,
                             stability_score_thresh=args.stability_score_thresh, box_nms_thresh=args.box_nms_thresh,
                             crop_n_layers=args.crop_n_layers, min_mask_region_area=args.min_mask_region_area,
                             output_mode="coco_rle")


def cmd_auto(args: argparse.Namespace) -> int:
    image = load_image(args.image)
    gen = _make_generator(args)
    t = time.perf_counter()
    name = Path(args.image).name
    record = annotate_image(gen, image, name, zlib.crc32(name.encode()))
    out = Path(args.out)
    stem = Path(args.image).stem
    write_json(out / f"{stem}.json", record)
    write_image(out / f"{stem}.overlay.png", overlay_records(image, record["annotations"]))
    print(f"{len(record['annotations'])} masks in {time.perf_counter() - t:.1f} s -> {out / (stem + '.json')}, "
          f"{out / (stem + '.overlay.png')}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard)
    gen = _make_generator(args)
    s = annotate_folder(gen, args.images_dir, args.out, overlays=args.overlays, shard=shard)
    info = s.to_json()
    print(f"{info['images_done']} images done ({s.annotated} this run, {s.skipped_existing} already done), "
          f"{len(s.failed)} unreadable, {info['masks_total']} masks; summary in {args.out}")
    return 0


def register_cli(sub: Any) -> None:
    from samkit.cli import add_model_args

    p = sub.add_parser("auto", help="segment everything in one image -> SA-1B JSON + overlay PNG")
    p.add_argument("image")
    add_model_args(p)
    _generator_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_auto)

    p = sub.add_parser("annotate", help="annotate a folder of images (recursive, resumable, shardable)")
    p.add_argument("images_dir")
    add_model_args(p)
    _generator_args(p)
    p.add_argument("--out", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("--overlays", action="store_true", help="also write an overlay PNG per image")
    p.add_argument("--shard", default="0/1", help="I/N: process the I-th of N deterministic shares")
    p.set_defaults(func=cmd_annotate)
