"""Output writers of the data engine: one class per output format.

A writer turns the records of one image (what ``AutoMaskGenerator(output_mode="coco_rle")``
returns) into files below its output folder, and tells the engine which images a previous run
finished (:meth:`SA1BWriter.done`), so that a rerun skips them. Every file is written atomically
(:mod:`samkit.fileio`), and the file that marks an image as done is written last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from samkit.fileio import write_image, write_json
from samkit.masks.rle import decode_rle_counts
from samkit.visualize import overlay

__all__ = ["Writer", "SA1BWriter", "sa1b_record", "overlay_records"]


class Writer(Protocol):
    """What the engine needs of an output format."""

    def done(self, rel: Path) -> int | None:
        """Number of masks of image ``rel`` written by an earlier run, or None if not finished."""
        ...

    def write(self, rel: Path, image: np.ndarray, records: list[dict[str, Any]], image_id: int) -> int:
        """Write the masks of image ``rel`` (relative to the images folder); returns their number."""
        ...


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
    """All masks of an SA-1B record (``H x W x 3`` uint8 image) drawn over the image, largest first."""
    anns = sorted(annotations, key=lambda a: -a["area"])
    if not anns:
        return Image.fromarray(image)
    masks = np.stack([decode_rle_counts(a["segmentation"]["counts"], *a["segmentation"]["size"]) for a in anns])
    return overlay(image, masks, alpha=0.45)


class SA1BWriter:
    """SA-1B layout: ``OUT/<relative path>.json`` per image, ``{"image": {...}, "annotations": [...]}``
    with COCO RLE masks; with ``overlays``, also ``OUT/<relative path>.overlay.png``."""

    def __init__(self, out_dir: str | os.PathLike, *, overlays: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overlays = overlays

    def json_path(self, rel: Path) -> Path:
        """Where the JSON of image ``rel`` goes."""
        return self.out_dir / rel.with_suffix(".json")

    def overlay_path(self, rel: Path) -> Path:
        """Where the overlay of image ``rel`` goes."""
        return self.out_dir / rel.with_suffix(".overlay.png")

    def done(self, rel: Path) -> int | None:
        """Number of annotations in the finished JSON of ``rel``, or None if absent/unreadable."""
        try:
            with open(self.json_path(rel)) as f:
                return len(json.load(f)["annotations"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, rel: Path, image: np.ndarray, records: list[dict[str, Any]], image_id: int) -> int:
        """Write the overlay (if asked for), then the JSON: its presence marks ``rel`` as done."""
        record = sa1b_record(records, rel.as_posix(), image_id, image.shape[:2])
        if self.overlays:
            write_image(self.overlay_path(rel), overlay_records(image, record["annotations"]))
        write_json(self.json_path(rel), record)
        return len(record["annotations"])
