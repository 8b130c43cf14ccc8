"""The studio's annotations on disk: one SA-1B JSON per image, rewritten atomically on every change.

The files are those `samkit annotate` writes (:class:`~samkit.engine.writers.SA1BWriter`'s names and
layout), so the automatic stage's output opens in the studio and the studio's output trains
(``samkit train --format sa1b``). Each annotation also records how it was made: ``source``
(``manual`` or ``auto``), the prompts, their number and the seconds it took. The image's
``samkit.studio.done`` flag marks an image the annotator finished.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from samkit.engine.writers import SA1BWriter
from samkit.errors import DatasetError, StateError
from samkit.fileio import write_json
from samkit.masks import box_xyxy_to_xywh, masks_to_boxes, mask_to_rle, rle_to_coco
from samkit.studio.catalog import Catalog

__all__ = ["AnnotationStore", "make_annotation", "image_status"]

SOURCES = ("manual", "auto")


def make_annotation(mask: torch.Tensor, *, predicted_iou: float, source: str, prompts: list[dict],
                    seconds: Optional[float], category: Optional[str] = None,
                    stability_score: Optional[float] = None) -> dict[str, Any]:
    """One SA-1B annotation (without its ``id``) from an ``H x W`` bool mask and how it was made.

    ``prompts``: the session's history (``{"type": "point", "x", "y", "label"}`` /
    ``{"type": "box", "box"}``); ``point_coords`` are its positive points.
    """
    if source not in SOURCES:
        raise StateError(f"an annotation's source is one of {SOURCES}, got {source!r}")
    mask = mask.bool().cpu()
    h, w = mask.shape
    rle = mask_to_rle(mask[None])[0]
    box = box_xyxy_to_xywh(masks_to_boxes(mask[None]))[0]
    points = [[p["x"], p["y"], p["label"]] for p in prompts if p["type"] == "point"]
    boxes = [p["box"] for p in prompts if p["type"] == "box"]
    return {
        "segmentation": rle_to_coco(rle), "area": int(mask.sum()), "bbox": [float(v) for v in box],
        "predicted_iou": float(predicted_iou),
        "point_coords": [[float(x), float(y)] for x, y, label in points if label == 1],
        "stability_score": float(stability_score) if stability_score is not None else None,
        "crop_box": [0.0, 0.0, float(w), float(h)],
        "source": source, "category": category,
        "prompts": {"points": [[float(x), float(y), int(label)] for x, y, label in points],
                    "box": [float(v) for v in boxes[0]] if boxes else None},
        "num_prompts": len(prompts), "seconds": None if seconds is None else round(float(seconds), 3),
    }


def image_status(record: Optional[dict[str, Any]]) -> str:
    """``done`` (marked finished), ``partial`` (has annotations) or ``untouched``."""
    if record is None:
        return "untouched"
    if ((record.get("samkit") or {}).get("studio") or {}).get("done"):
        return "done"
    return "partial" if record.get("annotations") else "untouched"


def _valid(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("image"), dict) and \
        isinstance(record.get("annotations"), list)


class AnnotationStore:
    """Read and change the SA-1B JSON of the catalog's images below ``out_dir``.

    Every change takes the image's lock, reads the file, changes it and writes it atomically, so
    concurrent requests never interleave and a killed server leaves the old or the new file.
    """

    def __init__(self, out_dir: str | os.PathLike, catalog: Catalog) -> None:
        self.out_dir = Path(out_dir)
        self.catalog = catalog
        self._writer = SA1BWriter(self.out_dir)
        self._writer.plan(catalog.rels)
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._summary: dict[int, tuple[str, int]] = {}  # image id -> (status, annotations)

    def _lock(self, image_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(image_id, threading.Lock())

    def json_path(self, image_id: int) -> Path:
        return self._writer.json_path(self.catalog.rels[image_id])

    def video_dir(self, image_id: int) -> Path:
        """``OUT/<video without suffix>`` (a folder of frames: ``OUT/<folder>``): a video's labels and JSON."""
        rel = self.catalog.rels[image_id]
        return self.out_dir / (rel if (self.catalog.root / rel).is_dir() else rel.with_suffix(""))

    def _video_summary(self, image_id: int) -> tuple[str, int]:
        try:
            saved = json.loads((self.video_dir(image_id) / "video.json").read_text())
            return ("partial" if saved.get("masklet_frames") else "untouched"), len(saved.get("objects") or [])
        except (OSError, ValueError, AttributeError):
            return "untouched", 0

    # ------------------------------------------------------------------ reading
    def read(self, image_id: int) -> Optional[dict[str, Any]]:
        """The image's record, or None when it has none yet.

        Raises:
            DatasetError: the file exists but is not SA-1B JSON (it is never overwritten).
        """
        prior = self._writer.done(self.catalog.rels[image_id])
        path = prior.path if prior is not None else self.json_path(image_id)
        if not path.exists():
            return None
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path} is not readable SA-1B JSON ({exc}); move it away to annotate "
                               f"{self.catalog.name(image_id)!r} again") from None
        if not _valid(record):
            raise DatasetError(f"{path} is not SA-1B JSON (no 'image' and 'annotations'); move it away to "
                               f"annotate {self.catalog.name(image_id)!r} again")
        return record

    def summary(self, image_id: int) -> tuple[str, int]:
        """``(status, number of annotations)`` (a video: of objects); an unreadable file counts as
        ``untouched``."""
        if self.catalog.kind(image_id) == "video":
            return self._video_summary(image_id)  # read each time: tracking changes it
        cached = self._summary.get(image_id)
        if cached is None:
            try:
                record = self.read(image_id)
            except DatasetError:
                record = None
            cached = (image_status(record), len(record["annotations"]) if record else 0)
            self._summary[image_id] = cached
        return cached

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable record of the catalog's images."""
        for image_id in range(len(self.catalog)):
            try:
                record = self.read(image_id)
            except DatasetError:
                continue
            if record is not None:
                yield record

    # ------------------------------------------------------------------ changes
    def _change(self, image_id: int, hw: tuple[int, int], change) -> Any:
        with self._lock(image_id):
            record = self.read(image_id) or {
                "image": {"image_id": image_id, "file_name": self.catalog.name(image_id),
                          "height": int(hw[0]), "width": int(hw[1])},
                "annotations": []}
            result = change(record)
            write_json(self.json_path(image_id), record)
            self._summary[image_id] = (image_status(record), len(record["annotations"]))
            return result

    def add(self, image_id: int, hw: tuple[int, int], annotation: dict[str, Any]) -> dict[str, Any]:
        """Append ``annotation`` (given a new ``id``); returns it as stored."""
        def change(record: dict[str, Any]) -> dict[str, Any]:
            ann = dict(annotation, id=1 + max((int(a.get("id", -1)) for a in record["annotations"]), default=-1))
            record["annotations"].append(ann)
            return ann
        return self._change(image_id, hw, change)

    def remove(self, image_id: int, hw: tuple[int, int], annotation_id: int) -> dict[str, Any]:
        """Delete annotation ``annotation_id``; returns it.

        Raises:
            KeyError: the image has no such annotation.
        """
        def change(record: dict[str, Any]) -> dict[str, Any]:
            for k, ann in enumerate(record["annotations"]):
                if ann.get("id") == annotation_id:
                    return record["annotations"].pop(k)
            raise KeyError(annotation_id)
        return self._change(image_id, hw, change)

    def update(self, image_id: int, hw: tuple[int, int], annotation_id: int, **fields: Any) -> dict[str, Any]:
        """Set ``fields`` of annotation ``annotation_id``; returns it (KeyError when missing)."""
        def change(record: dict[str, Any]) -> dict[str, Any]:
            for ann in record["annotations"]:
                if ann.get("id") == annotation_id:
                    ann.update(fields)
                    return ann
            raise KeyError(annotation_id)
        return self._change(image_id, hw, change)

    def set_done(self, image_id: int, hw: tuple[int, int], done: bool) -> str:
        """Mark the image finished (or not); returns its status."""
        def change(record: dict[str, Any]) -> None:
            provenance = record.setdefault("samkit", {})
            if not isinstance(provenance, dict):
                provenance = record["samkit"] = {}
            provenance.setdefault("studio", {})["done"] = bool(done)
        self._change(image_id, hw, change)
        return self._summary[image_id][0]
