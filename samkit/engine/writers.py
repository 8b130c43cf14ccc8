"""Output writers of the data engine: one class per output format.

A writer turns the records of one image (what ``AutoMaskGenerator(output_mode="coco_rle")``
returns) into files below its output folder, and tells the engine what a previous run left for
an image (:meth:`SA1BWriter.done`: its mask count and recorded settings), so that a rerun skips
finished images and notices outputs made with other settings. Every file is written atomically
(:mod:`samkit.fileio`), and the file that marks an image as done is written last.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from PIL import Image

from samkit.fileio import write_image, write_json
from samkit.masks.rle import decode_rle_counts
from samkit.visualize import overlay

__all__ = ["Writer", "PriorOutput", "SA1BWriter", "sa1b_record", "overlay_records", "summary_stem"]

# the engine's own files at the top of the output folder: summary.json, summary-shard0of4.json
_SUMMARY_STEM = re.compile(r"summary(-shard\d+of\d+)?", re.IGNORECASE)


def summary_stem(shard: tuple[int, int]) -> str:
    """The name (without suffix) of a run's summary and histogram: ``summary``, ``summary-shard0of4``."""
    return "summary" if shard == (0, 1) else f"summary-shard{shard[0]}of{shard[1]}"


@dataclass(frozen=True)
class PriorOutput:
    """What an earlier run left for one image."""

    masks: int                          # annotations in its output
    provenance: dict[str, Any] | None   # the settings it records (None: written before samkit recorded them)
    path: Path                          # the file


class Writer(Protocol):
    """What the engine needs of an output format."""

    def plan(self, rels: Sequence[Path]) -> None:
        """Told every image of the run (all shards) before anything is written, so that output
        names can be chosen without collisions."""
        ...

    def done(self, rel: Path) -> PriorOutput | None:
        """What an earlier run wrote for image ``rel``, or None if it did not finish it."""
        ...

    def write(self, rel: Path, image: np.ndarray, records: list[dict[str, Any]], image_id: int,
              provenance: dict[str, Any] | None = None) -> int:
        """Write the masks of image ``rel`` (relative to the images folder) with the settings that
        made them; returns their number."""
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


def _read_record(path: Path) -> dict[str, Any] | None:
    """A finished SA-1B JSON (with ``image`` and an ``annotations`` list), or None."""
    try:
        with open(path) as f:
            record = json.load(f)
        if isinstance(record, dict) and isinstance(record.get("annotations"), list) and \
                isinstance(record.get("image"), dict):
            return record
    except (OSError, ValueError):
        pass
    return None


class SA1BWriter:
    """SA-1B layout: ``OUT/<relative path without suffix>.json`` per image,
    ``{"image": {...}, "annotations": [...], "samkit": {...}}`` with COCO RLE masks and, under
    ``"samkit"``, the generator settings and model that made them; with ``overlays``, also
    ``OUT/<relative path without suffix>.overlay.png``.

    Names never collide: images whose names would (``a.jpg`` and ``a.png`` in one folder, or
    ``summary.jpg`` at the top, where the run's ``summary.json`` goes) keep their suffix
    (``a.jpg.json``, ``a.png.json``). :meth:`plan` decides this from all the run's images, so every
    shard chooses the same names. An output belongs to the image its ``image.file_name`` names:
    :meth:`done` looks under both forms of an image's name (so an ``a.json`` written before
    ``a.png`` appeared is still resumed), and :meth:`write` never replaces another image's output
    (``samkit auto a.png`` beside an ``a.json`` of ``a.jpg`` writes ``a.png.json``).
    """

    def __init__(self, out_dir: str | os.PathLike, *, overlays: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overlays = overlays
        self._keep_suffix: set[Path] = set()  # images whose outputs keep the image's suffix

    def plan(self, rels: Sequence[Path]) -> None:
        """Give the images whose stem names would collide (case-insensitively, for case-insensitive
        file systems) names that keep their suffix; repeated until no two names are equal."""
        keep: set[Path] = set()
        while True:
            names: dict[str, list[Path]] = {}
            for rel in rels:
                base = rel if rel in keep else rel.with_suffix("")
                names.setdefault(base.as_posix().casefold(), []).append(rel)
            clash = {rel for group in names.values() if len(group) > 1 for rel in group} - keep
            clash |= {rel for rel in rels if rel not in keep and len(rel.parts) == 1
                      and _SUMMARY_STEM.fullmatch(rel.stem)}
            if not clash:
                break
            keep |= clash
        self._keep_suffix = keep

    def keeps_suffix(self, rel: Path) -> bool:
        """Whether :meth:`plan` named the outputs of ``rel`` with its suffix (its stem collides)."""
        return rel in self._keep_suffix

    def _bases(self, rel: Path) -> tuple[Path, Path]:
        """The planned name of ``rel``'s outputs (without ``.json``) and the other form of it."""
        stem, full = self.out_dir / rel.with_suffix(""), self.out_dir / rel
        return (full, stem) if rel in self._keep_suffix else (stem, full)

    @staticmethod
    def _owner(json_path: Path) -> str | None:
        """The ``file_name`` a finished JSON records, or None when there is none."""
        record = _read_record(json_path)
        return None if record is None else record["image"].get("file_name")

    def _base(self, rel: Path) -> Path:
        """The planned name, unless that file holds another image's output (then the other form)."""
        planned, other = self._bases(rel)
        mine = rel.as_posix()
        taken = self._owner(Path(f"{planned}.json")) not in (None, mine)
        if taken and self._owner(Path(f"{other}.json")) in (None, mine):
            return other
        return planned

    def json_path(self, rel: Path) -> Path:
        """Where the JSON of image ``rel`` goes."""
        return Path(f"{self._base(rel)}.json")

    def overlay_path(self, rel: Path) -> Path:
        """Where the overlay of image ``rel`` goes."""
        return Path(f"{self._base(rel)}.overlay.png")

    def done(self, rel: Path) -> PriorOutput | None:
        """The finished JSON of ``rel`` under either form of its name, or None if there is none; a
        JSON recording another image's ``file_name`` is not ``rel``'s."""
        for base in self._bases(rel):
            path = Path(f"{base}.json")
            record = _read_record(path)
            if record is not None and record["image"].get("file_name") == rel.as_posix():
                provenance = record.get("samkit")
                return PriorOutput(len(record["annotations"]), provenance if isinstance(provenance, dict) else None,
                                   path)
        return None

    def write(self, rel: Path, image: np.ndarray, records: list[dict[str, Any]], image_id: int,
              provenance: dict[str, Any] | None = None) -> int:
        """Write the overlay (if asked for), then the JSON: its presence marks ``rel`` as done. An
        output of ``rel`` under the other form of its name is removed afterwards (it is replaced)."""
        record = sa1b_record(records, rel.as_posix(), image_id, image.shape[:2])
        if provenance is not None:
            record["samkit"] = provenance
        base = self._base(rel)
        if self.overlays:
            write_image(Path(f"{base}.overlay.png"), overlay_records(image, record["annotations"]))
        write_json(Path(f"{base}.json"), record)
        for stale in self._bases(rel):
            if stale != base and self._owner(Path(f"{stale}.json")) == rel.as_posix():
                Path(f"{stale}.json").unlink()
                Path(f"{stale}.overlay.png").unlink(missing_ok=True)
        return len(record["annotations"])
