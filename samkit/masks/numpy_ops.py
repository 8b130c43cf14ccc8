"""The mask library on numpy arrays, for code that runs without torch (:mod:`samkit.onnx`).

Tight boxes of masks, greedy box NMS and the hole / speck removal of low-resolution logits,
each with the semantics of its torch counterpart (:func:`samkit.masks.boxes.masks_to_boxes`,
:func:`~samkit.masks.boxes.batched_nms` with one category,
:func:`samkit.masks.components.fill_holes_and_sprinkles`); tests/onnx/test_onnx.py compares
them. Masks are ``N x H x W`` bool, boxes ``N x 4`` XYXY.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from samkit.errors import MissingDependencyError

__all__ = ["masks_to_boxes", "nms", "fill_holes_and_sprinkles", "component_areas", "require_scipy_ndimage"]


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes (inclusive pixel indices) around boolean masks.

    ``N x H x W`` bool -> ``N x 4`` int64; an empty mask gives ``[0, 0, 0, 0]``.
    """
    n, h, w = masks.shape
    if n == 0 or h == 0 or w == 0:
        return np.zeros((n, 4), dtype=np.int64)
    rows = masks.any(axis=2)  # N x H: which rows hold a pixel
    cols = masks.any(axis=1)  # N x W
    top = rows.argmax(axis=1)
    bottom = h - 1 - rows[:, ::-1].argmax(axis=1)
    left = cols.argmax(axis=1)
    right = w - 1 - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([left, top, right, bottom], axis=1).astype(np.int64)
    return boxes * rows.any(axis=1)[:, None]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, as ``torchvision.ops.batched_nms`` with one category.

    ``boxes`` ``N x 4`` XYXY float32, ``scores`` ``N``. Visits boxes by decreasing score (ties
    in index order) and drops every later box whose IoU with a kept one is ``> iou_threshold``.
    The IoU is computed in float32 with the operations of torchvision's CPU kernel and compared
    with the threshold as a float64, so equal inputs give the same decisions. Returns the kept
    indices (int64), highest score first. (For more than 1,000 boxes torchvision sorts the kept
    ones again without a stable sort, so its order among equal scores may differ from this one;
    the kept set is the same.)
    """
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float32)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    x0, y0, x1, y1 = (np.ascontiguousarray(boxes[order, k]) for k in range(4))
    areas = (x1 - x0) * (y1 - y0)
    alive = np.ones(n, dtype=bool)
    zero = np.float32(0.0)
    for i in range(n):
        if not alive[i]:
            continue
        rest = np.flatnonzero(alive[i + 1:]) + (i + 1)
        if rest.size == 0:
            break
        w = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), zero)
        h = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), zero)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):  # two empty boxes: NaN, never above
            iou = inter / (areas[i] + areas[rest] - inter)
        alive[rest[iou.astype(np.float64) > iou_threshold]] = False
    return order[alive].astype(np.int64)


def require_scipy_ndimage(setting: str = "min_mask_region_area", owner: str = "OnnxAutoMaskGenerator") -> ModuleType:
    """``scipy.ndimage``, or :class:`MissingDependencyError` saying how to install it, or which
    ``setting`` of ``owner`` to leave at 0 instead."""
    try:
        from scipy import ndimage
    except ImportError:
        raise MissingDependencyError(f"removing holes and specks without torch ({setting} > 0 in {owner}) needs "
                                     f"scipy's connected components: pip install scipy (or leave {setting} at 0)") \
            from None
    return ndimage


def component_areas(masks: np.ndarray) -> np.ndarray:
    """The area of each pixel's 8-connected component within its own ``H x W`` map (0 on
    background): ``N x H x W`` bool -> int64, same shape. Needs scipy."""
    ndimage = require_scipy_ndimage()
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8 neighbours in the map, none across maps
    labels, _ = ndimage.label(masks, structure=structure)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # the background
    return sizes[labels]


def fill_holes_and_sprinkles(logits: np.ndarray, max_hole_area: float, max_sprinkle_area: float,
                             threshold: float = 0.0) -> np.ndarray:
    """Clean low-resolution mask logits ``N x H x W`` (float32) as
    :func:`samkit.masks.components.fill_holes_and_sprinkles` does.

    Background components (``<= threshold``) of at most ``max_hole_area`` pixels become
    ``threshold + 10``, then foreground components (``> threshold``) of at most
    ``max_sprinkle_area`` pixels become ``threshold - 10``; both sets are components of the
    input. 8-connectivity; a zero area switches that step off. Returns a new array. Needs scipy.
    """
    out = np.array(logits, dtype=np.float32, copy=True)
    if max_hole_area > 0:
        area = component_areas(logits <= threshold)
        out[(area > 0) & (area <= max_hole_area)] = np.float32(threshold + 10.0)
    if max_sprinkle_area > 0:
        area = component_areas(logits > threshold)  # the input's specks, not the filled map's
        out[(area > 0) & (area <= max_sprinkle_area)] = np.float32(threshold - 10.0)
    return out
