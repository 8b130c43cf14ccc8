"""Exports of a folder of SA-1B JSON (``samkit annotate`` or ``samkit studio`` output): a COCO
instances file, label PNGs, and the figures of the annotation work; and of the studio's videos in
the same folder (``<rel>/video.json``, SA-V layout, :mod:`samkit.data.sav`).

* :func:`read_annotations`: the folder's SA-1B records (the file detection of
  :func:`samkit.data.sa1b.read_sa1b_folder`: ``summary.json``, histograms and ``.studio/`` skipped);
* :func:`read_video_annotations`: the folder's video records (every ``video.json``);
* :func:`to_coco`: one COCO instances dict (image-only: loads with ``pycocotools.coco.COCO``); with
  videos, also ``"videos"`` and per-object video annotations in the YouTube-VIS layout
  (:func:`video_coco_annotations`);
* :func:`write_label_pngs`: one label PNG per image (0 background, ``1 + k`` annotation ``k``);
* :func:`write_video_mask_pngs`: per video, one folder of 0/255 mask PNGs per object;
* :func:`annotation_stats`: masks, prompts and seconds per mask, per source (also the studio's
  ``GET /api/stats``).

The command ``samkit export ANNOTATIONS_DIR [--coco FILE] [--png DIR] [--stats]`` runs them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from samkit.data.sa1b import SA1B_SOURCES, annotation_source, check_sa1b_record, decode_sa1b_mask, read_sa1b_folder
from samkit.data.sav import VIDEO_JSON, read_video_folder, video_masklets, video_object_names
from samkit.errors import DatasetError
from samkit.fileio import write_image
from samkit.masks.rle import decode_rle_counts, rle_to_coco

__all__ = ["DEFAULT_CATEGORY", "Annotations", "VideoAnnotations", "read_annotations", "read_video_annotations",
           "to_coco", "video_coco_annotations", "write_label_pngs", "label_map", "write_video_mask_pngs",
           "annotation_stats"]

# the COCO category of annotations that name none
DEFAULT_CATEGORY = "object"

# what the exports take: a folder of SA-1B JSON, or what read_annotations returned for one
Annotations = Union[str, os.PathLike, Sequence[tuple[Path, dict[str, Any]]]]

# what the video exports take: a folder, or what read_video_annotations returned for one
VideoAnnotations = Union[str, os.PathLike, Sequence[tuple[Path, dict[str, Any]]]]


def read_annotations(annotations_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """``(JSON path relative to annotations_dir, record)`` for every SA-1B JSON below the folder,
    sorted by path; other JSON files are skipped. Each record is checked (image size, every mask's
    size), so the exports can trust them.

    Raises:
        DatasetError: a missing folder, a JSON that cannot be read, a record without an image
            size or with a mask of another size than its image.
    """
    root = Path(annotations_dir)
    out = []
    for rel, record in read_sa1b_folder(root):
        check_sa1b_record(record, str(root / rel))
        out.append((rel, record))
    return out


def read_video_annotations(annotations_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """``(video folder relative to annotations_dir, record)`` for every ``video.json`` below the
    folder (what ``samkit studio`` writes for each video, :mod:`samkit.data.sav`), sorted by path;
    each record checked (sizes, frames, one mask entry per object and frame).

    Raises:
        DatasetError: a missing folder, a ``video.json`` that cannot be read or does not check.
    """
    return list(read_video_folder(annotations_dir))


def _records(annotations: Annotations) -> Sequence[tuple[Path, dict[str, Any]]]:
    return read_annotations(annotations) if isinstance(annotations, (str, os.PathLike)) else annotations


def _video_records(videos: VideoAnnotations) -> Sequence[tuple[Path, dict[str, Any]]]:
    return read_video_annotations(videos) if isinstance(videos, (str, os.PathLike)) else videos


def _mean(values: list[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _number(value: Any) -> Optional[float]:
    """A recorded number (area, count, duration) as a float; None when absent, not a number, or not finite."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _category(annotation: dict[str, Any]) -> str:
    """An annotation's category name; :data:`DEFAULT_CATEGORY` when it names none."""
    name = annotation.get("category")
    return name.strip() if isinstance(name, str) and name.strip() else DEFAULT_CATEGORY


def _where(record: dict[str, Any], annotation: dict[str, Any]) -> str:
    """An annotation named for messages: its image and id."""
    return f"image {record['image']['file_name']!r}, annotation {annotation.get('id', '?')}"


def _area(annotation: dict[str, Any], mask: Optional[np.ndarray] = None,
          where: str = "an SA-1B annotation") -> int:
    """The recorded ``area``, or the mask's pixel count when none is recorded."""
    area = annotation.get("area")
    if _number(area) is not None:
        return int(area)
    return int((decode_sa1b_mask(annotation, where) if mask is None else mask).sum())


def _bbox(annotation: dict[str, Any], where: str = "an SA-1B annotation") -> list[float]:
    """The recorded ``bbox`` (``[x, y, w, h]``), or the mask's tight box when none is recorded."""
    box = annotation.get("bbox")
    if isinstance(box, (list, tuple)) and len(box) == 4 and all(_number(v) is not None for v in box):
        return [float(v) for v in box]
    mask = decode_sa1b_mask(annotation, where)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _compressed(segmentation: dict[str, Any]) -> dict[str, Any]:
    """The segmentation as COCO compressed RLE: a stored string as it is, a list of runs encoded
    (that needs pycocotools)."""
    h, w = (int(v) for v in segmentation["size"])
    if isinstance(segmentation["counts"], str):
        return {"size": [h, w], "counts": segmentation["counts"]}
    return rle_to_coco({"size": [h, w], "counts": [int(c) for c in segmentation["counts"]]})


def _name(name: Optional[str]) -> str:
    """A video object's category name; :data:`DEFAULT_CATEGORY` when it has none."""
    return name.strip() if isinstance(name, str) and name.strip() else DEFAULT_CATEGORY


def _video_mask(rle: dict[str, Any], where: str) -> np.ndarray:
    h, w = (int(v) for v in rle["size"])
    try:
        return decode_rle_counts(rle["counts"], h, w)
    except DatasetError as exc:
        raise DatasetError(f"{where}: the mask cannot be decoded: {exc}; fix or remove it") from None


def _tight_box(mask: np.ndarray) -> list[float]:
    """``[x, y, w, h]`` of the pixels of a non-empty ``H x W`` mask."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _video_where(record: dict[str, Any], rel: Optional[Path] = None) -> str:
    """A video named for messages: its file name, and its ``video.json`` below the annotations folder."""
    shown = f" ({(rel / VIDEO_JSON).as_posix()})" if rel is not None else ""
    return f"video {record['video']['file_name']!r}{shown}"


def _video_objects(record: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A checked video record's objects that have a mask (with a pixel) on some frame, by object id:
    ``{"obj_id", "category", "segmentations", "areas", "bboxes"}``, each list ``num_frames`` long
    with None where the object has no mask; ``where`` names the video in errors."""
    info = record["video"]
    n = int(info["num_frames"])
    names = video_object_names(record)
    out = []
    for obj, by_frame in video_masklets(record).items():
        segs: list[Optional[dict[str, Any]]] = [None] * n
        areas: list[Optional[int]] = [None] * n
        boxes: list[Optional[list[float]]] = [None] * n
        for t, rle in by_frame.items():
            mask = _video_mask(rle, f"{where}, object {obj}, frame {t}")
            if mask.any():
                segs[t], areas[t], boxes[t] = _compressed(rle), int(mask.sum()), _tight_box(mask)
        if any(seg is not None for seg in segs):
            out.append({"obj_id": obj, "category": _name(names.get(obj)), "segmentations": segs, "areas": areas,
                        "bboxes": boxes})
    return out


def video_coco_annotations(record: dict[str, Any], video_id: int, category_ids: dict[str, int],
                           first_id: int = 1) -> list[dict[str, Any]]:
    """One checked video record's objects as YouTube-VIS annotations, ids from ``first_id``, by object id.

    Each: ``id``, ``video_id``, ``obj_id`` (the object's id in ``video.json``), ``category_id``
    (``category_ids[object name]``, :data:`DEFAULT_CATEGORY` for none), ``segmentations``,
    ``areas`` and ``bboxes`` (lists of the video's ``num_frames``: COCO compressed RLE / pixel
    count / ``[x, y, w, h]`` on each frame where the object has a mask, ``None`` elsewhere; a mask
    without a pixel counts as none), ``iscrowd`` 0, ``height``, ``width``, ``length``. Objects
    without a mask on any frame are left out.

    Raises:
        DatasetError: a mask that cannot be decoded.
        MissingDependencyError: a mask stored as a list of runs, and pycocotools not installed.
    """
    return _video_coco(_video_objects(record, _video_where(record)), record, video_id, category_ids, first_id)


def _video_coco(objects: list[dict[str, Any]], record: dict[str, Any], video_id: int, category_ids: dict[str, int],
                first_id: int) -> list[dict[str, Any]]:
    info = record["video"]
    h, w, n = int(info["height"]), int(info["width"]), int(info["num_frames"])
    return [{"id": first_id + k, "video_id": video_id, "obj_id": o["obj_id"],
             "category_id": category_ids[o["category"]], "segmentations": o["segmentations"], "areas": o["areas"], "bboxes": o["bboxes"], "iscrowd": 0,
             "height": h, "width": w, "length": n} for k, o in enumerate(objects)]


def to_coco(annotations: Annotations, videos: Optional[VideoAnnotations] = None) -> dict[str, Any]:
    """A COCO instances dict of a folder of SA-1B JSON (or of :func:`read_annotations`'s list).

    * ``images``: one per record, in path order, ``id`` 1, 2, ... with the record's ``file_name``
      (relative to the images folder), ``height`` and ``width``;
    * ``annotations``: ``id`` 1, 2, ... across the file, ``image_id``, ``category_id``,
      ``segmentation`` (COCO compressed RLE: as stored; a stored list of runs is compressed),
      ``area``, ``bbox`` ``[x, y, w, h]`` (recorded ones, else from the mask), ``iscrowd`` 0,
      ``score`` (the ``predicted_iou``, when recorded) and ``source`` (``"manual"``/``"auto"``);
    * ``categories``: the annotations' ``category`` names (and the video objects' names), sorted,
      ``id`` from 1; annotations without one are in the category ``"object"``.

    With videos (``videos``: a folder or :func:`read_video_annotations`'s list; None: the videos
    of ``annotations`` when it is a folder, else none), the dict also has ``videos`` (``id`` 1, 2,
    ... in path order, ``file_name``, ``height``, ``width``, ``length`` = frames) and, after the
    image annotations, one annotation per video object (:func:`video_coco_annotations`, the
    YouTube-VIS layout: ``video_id``, ``segmentations`` / ``areas`` / ``bboxes`` per frame).
    Without videos the dict is exactly the image-only one (no ``videos`` key). A file with both
    holds two kinds of annotations: ``pycocotools.coco.COCO`` indexes ``image_id``, YouTube-VIS
    loaders ``video_id``, so a loader of one kind needs the other kind filtered out first.

    Raises:
        DatasetError: see :func:`read_annotations` and :func:`read_video_annotations`.
        MissingDependencyError: a mask stored as a list of runs, and pycocotools not installed.
    """
    records = _records(annotations)
    if videos is None:
        videos = annotations if isinstance(annotations, (str, os.PathLike)) else ()
    video_records = _video_records(videos)
    # each video's masks decoded once, for the categories and the annotations
    video_objects = [_video_objects(record, _video_where(record, rel)) for rel, record in video_records]
    names = sorted({_category(a) for _, record in records for a in record["annotations"]}
                   | {o["category"] for objects in video_objects for o in objects})
    category_ids = {name: k for k, name in enumerate(names, start=1)}
    images, anns = [], []
    for image_id, (_, record) in enumerate(records, start=1):
        info = record["image"]
        images.append({"id": image_id, "file_name": str(info["file_name"]), "height": int(info["height"]),
                       "width": int(info["width"])})
        for ann in record["annotations"]:
            out = {"id": len(anns) + 1, "image_id": image_id, "category_id": category_ids[_category(ann)],
                   "segmentation": _compressed(ann["segmentation"]), "area": _area(ann, where=_where(record, ann)),
                   "bbox": _bbox(ann, _where(record, ann)), "iscrowd": 0}
            iou = _number(ann.get("predicted_iou"))
            if iou is not None:
                out["score"] = iou
            out["source"] = annotation_source(ann)
            anns.append(out)
    coco: dict[str, Any] = {"info": {"description": "SA-1B JSON exported by samkit export"}, "images": images,
                            "annotations": anns}
    if video_records:
        coco["info"]["description"] = "SA-1B JSON and video annotations (SA-V) exported by samkit export"
        coco["videos"] = []
        for video_id, ((_, record), objects) in enumerate(zip(video_records, video_objects), start=1):
            info = record["video"]
            coco["videos"].append({"id": video_id, "file_name": str(info["file_name"]),
                                   "height": int(info["height"]), "width": int(info["width"]),
                                   "length": int(info["num_frames"])})
            anns += _video_coco(objects, record, video_id, category_ids, first_id=len(anns) + 1)
    coco["categories"] = [{"id": i, "name": n} for n, i in category_ids.items()]
    return coco


def label_map(record: dict[str, Any]) -> np.ndarray:
    """One record's masks as an ``H x W`` label map: 0 background, ``1 + k`` where annotation
    ``k`` (its index in the file) is. Masks are drawn largest first (by area, ties in file order),
    so where masks overlap the smaller one wins and small objects stay visible. ``uint8`` for up
    to 255 annotations, ``uint16`` for up to 65535.

    Raises:
        DatasetError: more than 65535 annotations (a label PNG cannot number them).
    """
    h, w = int(record["image"]["height"]), int(record["image"]["width"])
    anns = record["annotations"]
    if len(anns) > np.iinfo(np.uint16).max:
        raise DatasetError(f"image {record['image']['file_name']!r} has {len(anns)} annotations; a 16-bit label PNG "
                           f"numbers at most {np.iinfo(np.uint16).max}: export it with --coco instead")
    out = np.zeros((h, w), dtype=np.uint8 if len(anns) <= np.iinfo(np.uint8).max else np.uint16)
    masks: dict[int, np.ndarray] = {}
    areas = []
    for k, ann in enumerate(anns):
        if _number(ann.get("area")) is None:
            masks[k] = decode_sa1b_mask(ann, _where(record, ann))
        areas.append(_area(ann, masks.get(k)))
    for k in sorted(range(len(anns)), key=lambda k: (-areas[k], k)):
        mask = masks.pop(k) if k in masks else decode_sa1b_mask(anns[k], _where(record, anns[k]))
        out[mask] = k + 1
    return out


def write_label_pngs(annotations: Annotations, out_dir: str | os.PathLike) -> list[Path]:
    """One label PNG (:func:`label_map`) per SA-1B JSON below a folder (or of
    :func:`read_annotations`'s list), at ``out_dir / <JSON's relative path>.png`` (``a/b.json``
    -> ``a/b.png``; the names ``samkit annotate`` chose, so two images never share one), 8-bit
    grey up to 255 annotations, else 16-bit. Images without annotations get an all-zero PNG.
    Every file is written atomically. Returns the written paths, in path order.

    Raises:
        DatasetError: see :func:`read_annotations` and :func:`label_map`.
    """
    out_dir = Path(out_dir)
    written = []
    for rel, record in _records(annotations):
        labels = label_map(record)  # uint8 -> an 8-bit grey PNG, uint16 -> a 16-bit one
        written.append(write_image(out_dir / rel.with_suffix(".png"), Image.fromarray(labels)))
    return written


def write_video_mask_pngs(videos: VideoAnnotations, out_dir: str | os.PathLike) -> list[Path]:
    """Per video (a folder or :func:`read_video_annotations`'s list), one folder of mask PNGs per
    object: ``out_dir / <video folder> / <obj id> / 00000.png`` (frame number, 5 digits), 8-bit
    grey, 255 on the object and 0 elsewhere, for each frame where the object has a mask (with at
    least one pixel); other frames have no file. Every file is written atomically. Returns the
    written paths, by video, object, frame.

    Raises:
        DatasetError: see :func:`read_video_annotations`; a mask that cannot be decoded.
    """
    out_dir = Path(out_dir)
    written = []
    for rel, record in _video_records(videos):
        where = _video_where(record, rel)
        for obj, by_frame in video_masklets(record).items():
            for t, rle in by_frame.items():
                mask = _video_mask(rle, f"{where}, object {obj}, frame {t}")
                if mask.any():
                    image = Image.fromarray(mask.astype(np.uint8) * 255)
                    written.append(write_image(out_dir / rel / str(obj) / f"{t:05d}.png", image))
    return written


def annotation_stats(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the annotation work in SA-1B records (dicts as in the JSON files).

    Returns ``{"images", "annotated_images", "masks", "prompts_per_mask", "seconds_per_mask",
    "by_source": {source: {"masks", "prompts_per_mask", "seconds_per_mask"}}}``: ``images``
    counts the records, ``annotated_images`` those with at least one annotation, ``masks`` the
    annotations. ``prompts_per_mask`` (``seconds_per_mask``) is the mean ``num_prompts``
    (``seconds``) over the annotations that record one, None when none does. ``by_source`` always
    has ``"manual"`` and ``"auto"`` (annotations without ``source``, from ``samkit annotate``, are
    ``"auto"``), then any other source found, sorted.
    """
    images = annotated = 0
    masks: dict[str, int] = {s: 0 for s in SA1B_SOURCES}
    prompts: dict[str, list[float]] = {s: [] for s in SA1B_SOURCES}
    seconds: dict[str, list[float]] = {s: [] for s in SA1B_SOURCES}
    for record in records:
        images += 1
        anns = [a for a in (record.get("annotations") or []) if isinstance(a, dict)]
        annotated += bool(anns)
        for ann in anns:
            source = annotation_source(ann)
            masks[source] = masks.get(source, 0) + 1
            for found, field in ((prompts, "num_prompts"), (seconds, "seconds")):
                value = _number(ann.get(field))
                if value is not None:
                    found.setdefault(source, []).append(value)
    order = list(SA1B_SOURCES) + sorted(set(masks) - set(SA1B_SOURCES))
    return {"images": images, "annotated_images": annotated, "masks": sum(masks.values()),
            "prompts_per_mask": _mean([v for s in order for v in prompts.get(s, [])]),
            "seconds_per_mask": _mean([v for s in order for v in seconds.get(s, [])]),
            "by_source": {s: {"masks": masks[s], "prompts_per_mask": _mean(prompts.get(s, [])),
                              "seconds_per_mask": _mean(seconds.get(s, []))} for s in order}}
