"""Annotating folders of images: listing, shards, resume, the loop and its summary.

``annotate_folder(generator, IMAGES_DIR, OUT_DIR)`` annotates a whole folder tree, resumably:

* every image (the suffixes of :data:`samkit.imageio.IMAGE_EXTENSIONS`, recursive, hidden files
  skipped) goes through one :class:`AnnotateWorker`, whose writer (by default
  :class:`~samkit.engine.writers.SA1BWriter`: ``OUT_DIR/<relative path>.json``) writes atomically,
  so a killed run leaves no half-written output, and a rerun skips images already done;
* an unreadable image is an error row of the summary and never stops the run;
* ``shard=(I, N)`` takes a deterministic share of the images (by a hash of the relative path),
  so N processes or machines can split the work without talking to each other;
* ``summary.json`` and ``masks_per_image.png`` give the masks-per-image histogram in the SA-1B bins.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from samkit.engine.writers import SA1BWriter, Writer, sa1b_record
from samkit.errors import ImageError, SamkitError
from samkit.fileio import write_image, write_json
from samkit.imageio import IMAGE_EXTENSIONS, load_image

__all__ = ["SA1B_BINS", "MaskGenerator", "ImageStatus", "AnnotateWorker", "Summary", "mask_count_histogram",
           "list_images", "parse_shard", "in_shard", "annotate_image", "annotate_folder", "histogram_png"]

# SA-1B's masks-per-image bins: (label, lower bound inclusive, upper bound exclusive)
SA1B_BINS = (("<50", 0, 50), ("50-100", 50, 100), ("100-200", 100, 200), ("200-300", 200, 300),
             ("300-400", 300, 400), ("400-500", 400, 500), (">500", 500, None))


class MaskGenerator(Protocol):
    """What the engine needs: ``generate(image) -> list of records`` with COCO RLE masks."""

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...


@dataclass
class ImageStatus:
    """What the worker did with one image (one row of a run's report)."""

    file: str                    # the image's path relative to the images folder
    masks: int | None = None     # masks written; None when the image failed
    seconds: float = 0.0         # reading, generating and writing
    error: str | None = None     # why the image failed (it is unreadable)


class AnnotateWorker:
    """Annotates single images: holds the mask generator (built once) and the output writer.

    ``run(rel)`` reads ``images_dir / rel``, generates its masks and writes them; an unreadable
    image gives an error row, never an exception. The local loop (:func:`annotate_folder`) uses one
    worker; a distributed backend gives each process its own.
    """

    def __init__(self, generator: MaskGenerator, writer: Writer, images_dir: str | os.PathLike) -> None:
        self.generator = generator
        self.writer = writer
        self.images_dir = Path(images_dir)

    def run(self, rel: Path) -> ImageStatus:
        """Annotate the image at ``images_dir / rel``."""
        t0 = time.perf_counter()
        try:
            image = load_image(self.images_dir / rel)
        except ImageError as exc:
            return ImageStatus(rel.as_posix(), None, time.perf_counter() - t0, str(exc))
        return self.annotate(rel, image, t0)

    def annotate(self, rel: Path, image: np.ndarray, t0: float | None = None) -> ImageStatus:
        """Annotate an image already read (``H x W x 3`` uint8), named ``rel`` in the output;
        ``t0`` is when the work on it began (default: now)."""
        t0 = time.perf_counter() if t0 is None else t0
        image_id = zlib.crc32(rel.as_posix().encode())
        count = self.writer.write(rel, image, self.generator.generate(image), image_id)
        return ImageStatus(rel.as_posix(), count, time.perf_counter() - t0)


@dataclass
class Summary:
    """What an annotate run did (also written as ``summary.json``)."""

    images_total: int = 0            # images in this shard
    annotated: int = 0               # annotated in this run
    skipped_existing: int = 0        # already done by an earlier run
    failed: list[dict[str, str]] = field(default_factory=list)   # {"file", "error"}
    masks_per_image: dict[str, int] = field(default_factory=dict)  # relative path -> count
    seconds: float = 0.0

    def add(self, status: ImageStatus) -> None:
        """Count one worker row."""
        if status.error is not None:
            self.failed.append({"file": status.file, "error": status.error})
        else:
            self.annotated += 1
            self.masks_per_image[status.file] = int(status.masks or 0)

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


def annotate_image(generator: MaskGenerator, image: np.ndarray, file_name: str, image_id: int = 0) -> dict[str, Any]:
    """The SA-1B record of one image (nothing written)."""
    records = generator.generate(image)
    return sa1b_record(records, file_name, image_id, image.shape[:2])


def annotate_folder(generator: MaskGenerator, images_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    overlays: bool = False, shard: tuple[int, int] = (0, 1), progress: bool = True,
                    extensions: Sequence[str] = IMAGE_EXTENSIONS, writer: Writer | None = None) -> Summary:
    """Annotate every image of ``images_dir`` into ``out_dir`` (see the module docstring).

    Args:
        generator: makes the masks of an image (e.g. ``AutoMaskGenerator(output_mode="coco_rle")``).
        overlays: with the default writer, also write an overlay PNG per image.
        shard: ``(I, N)``: only the I-th of N deterministic shares of the images.
        writer: the output format (default :class:`~samkit.engine.writers.SA1BWriter` into ``out_dir``).
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    worker = AnnotateWorker(generator, writer or SA1BWriter(out_dir, overlays=overlays), images_dir)
    todo = [p for p in list_images(images_dir, extensions) if in_shard(p, shard)]
    summary = Summary(images_total=len(todo))
    t0 = time.perf_counter()
    bar = tqdm(todo, desc="annotate", unit="img", disable=not progress)
    for rel in bar:
        prior = worker.writer.done(rel)
        if prior is not None:
            summary.skipped_existing += 1
            summary.masks_per_image[rel.as_posix()] = prior
            continue
        status = worker.run(rel)
        summary.add(status)
        if status.error is not None:
            bar.write(f"skipped unreadable image {rel}: {status.error}")
        else:
            bar.set_postfix(masks=status.masks)
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
