"""COCO instance JSON: polygons, compressed and uncompressed RLE; crowd regions become the ignore mask.

Uses pycocotools when installed (the ``coco`` extra), else samkit's own decoders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Optional, Sequence, Union

import numpy as np

from samkit.data.files import PathLike, read_image, require_dir, stack_masks
from samkit.data.sample import LazyDataset, Sample
from samkit.errors import DatasetError, MissingDependencyError
from samkit.masks.rle import decode_rle_counts

__all__ = ["CocoDataset", "check_coco_json", "decode_coco_segmentation", "rasterize_polygons"]


def rasterize_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Fill COCO polygons (``[x0, y0, x1, y1, ...]`` each) into an ``H x W`` bool mask.

    Gives the same pixels as pycocotools (``frPyObjects`` + ``merge`` + ``decode``): each
    polygon is traced on a 5x finer grid, the points where its outline crosses the pixel
    columns' centres are snapped to the coarse grid, and each column is filled between
    them (even-odd rule); the polygons' masks are then united. Polygons with fewer than 3
    points are skipped.
    """
    out = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1)
        if pts.size < 6:
            continue
        out |= _rasterize_one_polygon(pts[: pts.size // 2 * 2].reshape(-1, 2), height, width)
    return out


def _rasterize_one_polygon(xy: np.ndarray, h: int, w: int, scale: float = 5.0) -> np.ndarray:
    """One closed polygon (``K x 2`` float x, y) -> ``H x W`` bool; see rasterize_polygons."""
    k = xy.shape[0]
    # Vertices on the fine grid (C-style truncation, as integer casts do).
    x = np.trunc(scale * xy[:, 0] + 0.5).astype(np.int64)
    y = np.trunc(scale * xy[:, 1] + 0.5).astype(np.int64)
    x_next, y_next = np.roll(x, -1), np.roll(y, -1)
    dx, dy = np.abs(x_next - x), np.abs(y_next - y)
    # Step one fine pixel at a time along the longer axis of each edge, always walking in the
    # increasing direction of that axis (so the traced points do not depend on the edge's
    # orientation), but list the points in the polygon's own order.
    major_x = dx >= dy
    flip = np.where(major_x, x > x_next, y > y_next)
    x0, x1 = np.where(flip, x_next, x), np.where(flip, x, x_next)
    y0, y1 = np.where(flip, y_next, y), np.where(flip, y, y_next)
    span = np.maximum(dx, dy)
    safe = np.where(span == 0, 1, span)
    slope = np.where(major_x, (y1 - y0) / safe, (x1 - x0) / safe)
    counts = span + 1
    edge = np.repeat(np.arange(k), counts)
    step = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    t = np.where(flip[edge], span[edge] - step, step)
    minor = np.where(
        major_x[edge], y0[edge] + slope[edge] * t + 0.5, x0[edge] + slope[edge] * t + 0.5
    )
    minor = np.trunc(minor).astype(np.int64)
    u = np.where(major_x[edge], x0[edge] + t, minor)  # fine x of every traced point
    v = np.where(major_x[edge], minor, y0[edge] + t)  # fine y
    # Where consecutive points change fine column, see whether that column is the centre
    # of a coarse pixel column; if so, the outline crosses it at the (snapped) row below.
    u_cur, u_prev, v_cur, v_prev = u[1:], u[:-1], v[1:], v[:-1]
    col = np.where(u_cur < u_prev, u_cur, u_cur - 1).astype(np.float64)
    col = (col + 0.5) / scale - 0.5
    keep = (u_cur != u_prev) & (np.floor(col) == col) & (col >= 0) & (col <= w - 1)
    row = (np.minimum(v_cur, v_prev).astype(np.float64) + 0.5) / scale - 0.5
    row = np.ceil(np.clip(row, 0, h))
    # Each crossing toggles inside/outside from there on, in column-major pixel order.
    flat_pos = col[keep].astype(np.int64) * h + row[keep].astype(np.int64)
    toggles = (np.bincount(flat_pos, minlength=h * w + 1)[: h * w] & 1).astype(np.uint8)
    inside = np.cumsum(toggles, dtype=np.uint8) & 1  # parity survives uint8 wrap-around
    return inside.view(bool).reshape(w, h).T


def _pycocotools_mask() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:
        raise MissingDependencyError(
            "use_pycocotools=True needs pycocotools, which is not installed; install it with "
            "pip install 'samkit[coco]' (or pip install pycocotools), or pass "
            "use_pycocotools=None to use samkit's own decoder"
        ) from exc
    return mask_utils


def decode_coco_segmentation(
    segmentation: Union[list, dict], height: int, width: int, use_pycocotools: Optional[bool] = None
) -> np.ndarray:
    """An annotation's ``segmentation`` (polygons, or RLE with compressed or uncompressed
    counts) as an ``H x W`` bool mask.

    Args:
        segmentation: the COCO field.
        height, width: the image size.
        use_pycocotools: ``True``: use pycocotools (``coco`` extra, error if missing);
            ``False``: samkit's decoders; ``None``: pycocotools when importable.
    """
    mask_utils = None
    if use_pycocotools is None:
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            mask_utils = None
    elif use_pycocotools:
        mask_utils = _pycocotools_mask()

    if isinstance(segmentation, list):
        if mask_utils is not None:
            polys = [p for p in segmentation if len(p) >= 6]
            if not polys:
                return np.zeros((height, width), dtype=bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
            return mask_utils.decode(rle).astype(bool)
        return rasterize_polygons(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size", [height, width])
        h, w = int(size[0]), int(size[1])
        counts = segmentation["counts"]
        if mask_utils is not None:
            rle = (
                mask_utils.frPyObjects(segmentation, h, w)
                if isinstance(counts, list)
                else {"size": [h, w], "counts": counts}
            )
            mask = mask_utils.decode(rle).astype(bool)
        else:
            mask = decode_rle_counts(counts, h, w)
        if mask.shape != (height, width):
            raise DatasetError(
                f"RLE of size {h} x {w} does not match the image size {height} x {width}"
            )
        return mask
    raise DatasetError(
        "a COCO segmentation must be a list of polygons or an RLE dict with 'counts' and "
        f"'size', got {type(segmentation).__name__}"
    )


def _is_int(value: Any) -> bool:
    """An integer, or a float with an integral value (some writers store sizes as 480.0)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})" if len(repr(value)) <= 40 else type(value).__name__


def check_coco_json(data: Any, path: PathLike = "the COCO JSON") -> None:
    """Check the structure samkit reads from a COCO instance file, before anything else reads it.

    Needed: a top-level object with ``images`` and ``annotations`` lists; every image an object
    with an integer ``id``, a string ``file_name`` and positive integer ``height`` and ``width``;
    every annotation an object with an integer ``image_id`` and, when present, a ``segmentation``
    that is a list of polygons or an RLE object with ``counts``; optional ``categories`` objects
    with an integer ``id``. Polygon coordinates are not looked at here (a file can hold hundreds
    of millions); a bad one fails when its image is read.

    Raises:
        DatasetError: the first problem found, naming the entry (``images[3]``) and the key.
    """
    where = f"COCO JSON {str(path)!r}"
    if not isinstance(data, dict):
        raise DatasetError(f"{where} is not a COCO instance file: its top level is a {type(data).__name__}, "
                           "not an object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if key not in data:
            raise DatasetError(f"{where} has no {key!r} list; a COCO instance file needs 'images' and "
                               "'annotations'")
        if not isinstance(data[key], list):
            raise DatasetError(f"{where}: {key!r} must be a list, got {type(data[key]).__name__}")
    image_keys = "every image needs 'id', 'file_name', 'height' and 'width'"
    for i, info in enumerate(data["images"]):
        if not isinstance(info, dict):
            raise DatasetError(f"{where}: images[{i}] must be an object, got {_kind(info)}")
        for key in ("id", "file_name", "height", "width"):
            if key not in info:
                raise DatasetError(f"{where}: images[{i}] has no {key!r} ({image_keys})")
        if not _is_int(info["id"]):
            raise DatasetError(f"{where}: images[{i}]['id'] must be an integer, got {_kind(info['id'])}")
        if not isinstance(info["file_name"], str) or not info["file_name"]:
            raise DatasetError(f"{where}: images[{i}]['file_name'] must be a file name, got "
                               f"{_kind(info['file_name'])}")
        for key in ("height", "width"):
            if not _is_int(info[key]) or info[key] <= 0:
                raise DatasetError(f"{where}: images[{i}][{key!r}] must be a positive integer, got "
                                   f"{_kind(info[key])}")
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError(f"{where}: annotations[{j}] must be an object, got {_kind(ann)}")
        if "image_id" not in ann:
            raise DatasetError(f"{where}: annotations[{j}] has no 'image_id' (the id of its image)")
        if not _is_int(ann["image_id"]):
            raise DatasetError(f"{where}: annotations[{j}]['image_id'] must be an integer, got "
                               f"{_kind(ann['image_id'])}")
        for key in ("category_id", "iscrowd"):
            if key in ann and not _is_int(ann[key]) and not isinstance(ann[key], bool):
                raise DatasetError(f"{where}: annotations[{j}][{key!r}] must be an integer, got {_kind(ann[key])}")
        seg = ann.get("segmentation")
        if seg is None:
            continue
        if isinstance(seg, list):
            bad = next((p for p in seg if not isinstance(p, list)), None)
            if bad is not None:
                raise DatasetError(f"{where}: annotations[{j}]['segmentation'] must be a list of polygons "
                                   f"([x0, y0, x1, y1, ...] each), got an element {_kind(bad)}")
        elif not isinstance(seg, dict) or "counts" not in seg:
            raise DatasetError(f"{where}: annotations[{j}]['segmentation'] must be a list of polygons or an RLE "
                               f"object with 'counts' and 'size', got {_kind(seg)}")
    for k, cat in enumerate(data.get("categories") or []):
        if not isinstance(cat, dict) or "id" not in cat or not _is_int(cat["id"]):
            raise DatasetError(f"{where}: categories[{k}] must be an object with an integer 'id', got {_kind(cat)}")


class CocoDataset(LazyDataset):
    """Images and instance masks from a COCO-style instance annotation JSON.

    Each image's non-crowd annotations become its masks (in annotation order); crowd
    annotations (``iscrowd: 1``) become the ignore mask (``None`` when the image has none),
    or are dropped with ``crowd_as_ignore=False``.

    Args:
        annotation_json: path to the JSON (``images``, ``annotations``, optional
            ``categories``).
        images_dir: folder holding the images' ``file_name`` paths.
        category_ids: keep only annotations of these categories (``None``: all).
        skip_empty: leave out images with no non-crowd annotation.
        crowd_as_ignore: crowd regions become ignored pixels.
        use_pycocotools: see :func:`decode_coco_segmentation`.

    Raises:
        DatasetError: an unreadable JSON, missing images, or no image left.
    """

    def __init__(
        self,
        annotation_json: PathLike,
        images_dir: PathLike,
        *,
        category_ids: Optional[Collection[int]] = None,
        skip_empty: bool = True,
        crowd_as_ignore: bool = True,
        use_pycocotools: Optional[bool] = None,
    ) -> None:
        self.annotation_json = Path(annotation_json)
        self.images_dir = Path(images_dir)
        self.crowd_as_ignore = crowd_as_ignore
        self.use_pycocotools = use_pycocotools
        if use_pycocotools:
            _pycocotools_mask()  # fail now, not at the first sample
        if not self.annotation_json.is_file():
            raise DatasetError(f"COCO annotation file {str(self.annotation_json)!r} does not exist")
        require_dir(self.images_dir, "COCO images")
        try:
            with self.annotation_json.open("r", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(
                f"cannot read COCO JSON {str(self.annotation_json)!r}: {exc}"
            ) from exc
        check_coco_json(data, self.annotation_json)
        self.categories: dict[int, str] = {
            int(c["id"]): str(c.get("name", c["id"])) for c in data.get("categories", [])
        }
        wanted = None if category_ids is None else {int(c) for c in category_ids}
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if wanted is not None and int(ann.get("category_id", -1)) not in wanted:
                continue
            if "segmentation" not in ann:
                continue
            by_image.setdefault(int(ann["image_id"]), []).append(ann)

        self._entries = []
        missing: list[str] = []
        present = {p.name for p in self.images_dir.iterdir()}
        for info in data["images"]:
            anns = by_image.get(int(info["id"]), [])
            if skip_empty and not any(not a.get("iscrowd", 0) for a in anns):
                continue
            file_name = str(info["file_name"])
            if file_name not in present and not (self.images_dir / file_name).is_file():
                missing.append(file_name)
                continue
            self._entries.append((info, anns))
        if missing:
            raise DatasetError(
                f"{len(missing)} images listed in {str(self.annotation_json)!r} are missing from "
                f"{str(self.images_dir)!r}: " + ", ".join(repr(n) for n in missing[:5])
            )
        if not self._entries:
            raise DatasetError(
                f"no usable image in {str(self.annotation_json)!r}"
                + (" (skip_empty=True left out images without annotations)" if skip_empty else "")
            )

    def _name(self, entry: tuple[dict, list[dict]]) -> str:
        return Path(str(entry[0]["file_name"])).stem

    def _load(self, entry: tuple[dict, list[dict]]) -> Sample:
        info, anns = entry
        h, w = int(info["height"]), int(info["width"])
        image = read_image(self.images_dir / str(info["file_name"]), (h, w))
        masks: list[np.ndarray] = []
        ignore: Optional[np.ndarray] = None
        for ann in anns:
            mask = decode_coco_segmentation(ann["segmentation"], h, w, self.use_pycocotools)
            if ann.get("iscrowd", 0):
                if self.crowd_as_ignore:
                    ignore = mask if ignore is None else ignore | mask
            else:
                masks.append(mask)
        return Sample(
            image=image, masks=stack_masks(masks, (h, w)), ignore=ignore, name=self._name(entry)
        )
