"""Mask, box and run-length helpers for the automatic mask generator and the data engine.

Everything here works on batches: masks are ``N x H x W`` tensors, boxes ``N x 4`` XYXY
(``x0, y0, x1, y1``, inclusive pixel indices for boxes made from masks), points ``N x 2``
(x, y). Point grids and crop boxes are numpy / plain lists because that is what the
official automatic mask generator takes and returns.

Sections: point grids and crops; stability scores; boxes and NMS (bit-identical to
torchvision's); crops of boxes, points and masks; run-length encoding (COCO layout);
connected components (8-connectivity, on runs); exact statistics of upsampled logits
without making the full-size maps (:class:`LazyUpsample`); a container for rows of
candidate masks (:class:`MaskRecords`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import DatasetError, MissingDependencyError

__all__ = [
    "build_point_grid",
    "build_all_layer_point_grids",
    "generate_crop_boxes",
    "count_above",
    "stability_score",
    "stability_from_counts",
    "masks_to_boxes",
    "box_xyxy_to_xywh",
    "box_area",
    "nms",
    "batched_nms",
    "is_box_near_crop_edge",
    "uncrop_boxes_xyxy",
    "uncrop_points",
    "uncrop_masks",
    "mask_to_rle",
    "rle_to_mask",
    "rle_area",
    "rle_to_coco",
    "require_pycocotools",
    "connected_components",
    "connected_component_areas",
    "remove_small_regions",
    "fill_holes_and_sprinkles",
    "UpsamplePlan",
    "ARITHMETICS",
    "LazyUpsample",
    "upsample_logits",
    "upsample_masks",
    "MaskRecords",
]

# ---------------------------------------------------------------------------------------------
# point grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """Points at the centres of an ``n x n`` grid of cells covering ``[0, 1]²``.

    Returns ``n² x 2`` float64 (x, y), x varying fastest (row by row from the top).
    """
    half_cell = 1.0 / (2 * n_per_side)
    ticks = np.linspace(half_cell, 1.0 - half_cell, n_per_side)
    xs, ys = np.meshgrid(ticks, ticks)  # both n x n, xs[i, j] = ticks[j], ys[i, j] = ticks[i]
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One point grid per crop layer ``0..n_layers``; layer ``i`` has
    ``int(n_per_side / scale_per_layer**i)`` points per side."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Sequence[int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes of every layer: layer 0 is the whole image, layer ``i >= 1`` tiles it with
    ``2**i x 2**i`` overlapping crops.

    ``im_size`` is ``(H, W)``. The overlap of layer ``i`` is ``overlap_ratio * min(H, W) * 2 / 2**i``
    pixels. Returns ``(boxes, layer_of_box)``, boxes as ``[x0, y0, x1, y1]`` ints; within a layer
    the crops are listed column of crops by column of crops (x0 outer, y0 inner).
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layers: list[int] = [0]
    short_side = min(im_h, im_w)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + im_w) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + im_h) / per_side)
        starts_x = [int((crop_w - overlap) * k) for k in range(per_side)]
        starts_y = [int((crop_h - overlap) * k) for k in range(per_side)]
        for x0 in starts_x:
            for y0 in starts_y:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layers.append(layer)
    return boxes, layers


# ---------------------------------------------------------------------------------------------
# stability


def count_above(values: torch.Tensor, threshold: float, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """How many entries of each ``H x W`` map are ``> threshold``: ``... x H x W`` -> ``...`` int64.

    Works through the batch in chunks of about ``chunk_elems`` entries, so the only temporary
    is a boolean map of one chunk.
    """
    lead = values.shape[:-2]
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    per_chunk = max(1, chunk_elems // max(1, flat.shape[1]))
    counts = [torch.count_nonzero(part > threshold, dim=1) for part in flat.split(per_chunk)]
    out = torch.cat(counts) if counts else flat.new_zeros(0, dtype=torch.int64)
    return out.reshape(lead)


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``mask_threshold + offset`` and ``mask_threshold - offset``.

    For ``offset >= 0`` the first mask lies inside the second, so the IoU is the ratio of
    their areas. ``logits``: ``... x H x W`` -> ``...`` float32 (NaN where both are empty).
    """
    inner = count_above(logits, mask_threshold + offset)
    outer = count_above(logits, mask_threshold - offset)
    return stability_from_counts(inner, outer)


def stability_from_counts(inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """``inner / outer`` as float32, the way the stability score divides its two areas."""
    return inner.to(torch.float32) / outer.to(torch.float32)


# ---------------------------------------------------------------------------------------------
# boxes and NMS


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive pixel indices) around boolean masks.

    ``... x H x W`` bool -> ``... x 4`` int64; an empty mask gives ``[0, 0, 0, 0]``.
    """
    h, w = masks.shape[-2:]
    lead = masks.shape[:-2]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    m = masks.reshape(-1, h, w)
    rows = m.any(dim=2)  # N x H: which rows hold a pixel
    cols = m.any(dim=1)  # N x W
    nonempty = rows.any(dim=1)
    top = _first_true(rows)
    bottom = h - 1 - _first_true(rows.flip(1))
    left = _first_true(cols)
    right = w - 1 - _first_true(cols.flip(1))
    boxes = torch.stack([left, top, right, bottom], dim=1) * nonempty[:, None]
    return boxes.reshape(*lead, 4)


def _first_true(flags: torch.Tensor) -> torch.Tensor:
    """Index of the first True along dim 1 (0 when there is none): ``N x L`` -> ``N`` int64."""
    return flags.to(torch.uint8).argmax(dim=1)


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``... x 4`` XYXY -> ``... x 4`` XYWH (a new tensor)."""
    return torch.cat([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``N x 4`` XYXY -> ``N`` areas ``(x1 - x0) * (y1 - y0)`` in the boxes' dtype."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _overlaps(ref: torch.Tensor, ref_area: torch.Tensor, boxes: torch.Tensor,
              areas: torch.Tensor) -> torch.Tensor:
    """IoU of each of ``K`` reference boxes with each of ``M`` boxes: ``K x M``.

    The arithmetic (operation order and dtype) is that of torchvision's CPU NMS kernel, so
    that equal inputs give bit-equal IoUs and therefore the same suppression decisions.
    """
    w = torch.minimum(ref[:, None, 2], boxes[None, :, 2]).sub_(torch.maximum(ref[:, None, 0], boxes[None, :, 0]))
    h = torch.minimum(ref[:, None, 3], boxes[None, :, 3]).sub_(torch.maximum(ref[:, None, 1], boxes[None, :, 1]))
    inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
    union = (ref_area[:, None] + areas[None, :]).sub_(inter)
    return inter.div_(union)


def _exceeds(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """``values > threshold`` with ``threshold`` taken as a float64 (as C++ compares a float
    with a double), without converting ``values``."""
    if values.dtype == torch.float64:
        return values > threshold
    as_float = torch.tensor(threshold, dtype=values.dtype)
    if float(as_float) > threshold:  # rounded up: compare with the float just below
        as_float = torch.nextafter(as_float, torch.tensor(-math.inf, dtype=values.dtype))
    # no value of this dtype lies strictly between as_float and threshold
    return values > as_float.to(values.device)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, block: int = 128) -> torch.Tensor:
    """Greedy non-maximum suppression, identical to ``torchvision.ops.nms``.

    ``boxes`` ``N x 4`` XYXY float, ``scores`` ``N``. Visits boxes by decreasing score (ties in
    index order) and drops every later box whose IoU with a kept one is ``> iou_threshold``
    (the IoU computed in the boxes' dtype exactly as torchvision's CPU kernel does, compared
    with the threshold as a float64). Returns the kept indices (int64), highest score first.

    The greedy pass runs ``block`` boxes at a time: one vectorised IoU matrix per block, a short
    sequential resolve inside it, then one vectorised suppression of the remaining boxes.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = scores.sort(dim=0, descending=True, stable=True).indices
    ranked = boxes[order]
    areas = box_area(boxes)[order]
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    kept: list[int] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        alive = (~suppressed[start:stop]).nonzero().flatten() + start
        if alive.numel() == 0:
            continue
        over = _exceeds(_overlaps(ranked[alive], areas[alive], ranked[alive], areas[alive]), iou_threshold)
        alive_list = alive.tolist()
        over_rows = over.tolist()
        gone = [False] * len(alive_list)
        chosen: list[int] = []  # positions in alive_list
        for i in range(len(alive_list)):
            if gone[i]:
                continue
            chosen.append(i)
            row = over_rows[i]
            for j in range(i + 1, len(alive_list)):
                if row[j]:
                    gone[j] = True
        kept.extend(alive_list[i] for i in chosen)
        if stop < n:
            rest = (~suppressed[stop:]).nonzero().flatten() + stop
            if rest.numel():
                sel = alive[torch.tensor(chosen, device=boxes.device)]
                hit = _exceeds(_overlaps(ranked[sel], areas[sel], ranked[rest], areas[rest]),
                               iou_threshold).any(dim=0)
                suppressed[rest[hit]] = True
    return order[torch.tensor(kept, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each category ``idxs``, identical to ``torchvision.ops.batched_nms``
    (including the order of the result and the choice between tied scores).

    ``boxes`` ``N x 4`` XYXY float, ``scores`` ``N``, ``idxs`` ``N`` int. Returns kept indices
    (int64) by decreasing score.
    """
    small = 4000 if boxes.device.type == "cpu" else 100_000
    if boxes.numel() <= small:
        # shift each category far away from the others, then one NMS over everything
        if boxes.numel() == 0:
            return torch.empty(0, dtype=torch.int64, device=boxes.device)
        shift = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
        return nms(boxes + shift[:, None], scores, iou_threshold)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        keep[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[scores[kept].sort(descending=True)[1]]


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int],
                          atol: float = 20.0) -> torch.Tensor:
    """Which boxes come within ``atol`` pixels of a crop edge that is not an image edge.

    ``boxes`` ``N x 4`` XYXY in the crop's frame; ``crop_box`` and ``orig_box`` XYXY in the
    image frame. Returns ``N`` bool.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    placed = uncrop_boxes_xyxy(boxes, crop_box).float()
    at_crop = torch.isclose(placed, crop[None], atol=atol, rtol=0)
    at_image = torch.isclose(placed, image[None], atol=atol, rtol=0)
    return (at_crop & ~at_image).any(dim=1)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Boxes ``... x 4`` from a crop's frame to the image frame."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Points ``... x 2`` (x, y) from a crop's frame to the image frame."""
    return points + torch.tensor([int(crop_box[0]), int(crop_box[1])], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Masks ``... x h x w`` of a crop -> ``... x orig_h x orig_w``, zero outside the crop."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    out = masks.new_zeros(*masks.shape[:-2], orig_h, orig_w)
    out[..., y0:y1, x0:x1] = masks
    return out


# ---------------------------------------------------------------------------------------------
# run-length encoding (COCO's uncompressed RLE: column-major runs, starting with a 0-run)


def mask_to_rle(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Uncompressed RLEs of ``N x H x W`` boolean masks: ``{"size": [H, W], "counts": [...]}``.

    Runs go down the columns (Fortran order, as COCO); ``counts`` alternates 0-runs and
    1-runs and starts with a (possibly empty) 0-run. Every mask is encoded in one pass.
    """
    n, h, w = masks.shape
    if n == 0:
        return []
    total = h * w
    flat = masks.transpose(1, 2).reshape(n, total)
    which, where = (flat[:, 1:] != flat[:, :-1]).nonzero(as_tuple=True)
    changes = torch.bincount(which, minlength=n)  # value changes per mask
    runs = changes + 1
    last = torch.cumsum(runs, 0) - 1  # position of each mask's final run in the joint list
    first = last - changes
    ends = torch.empty(int(runs.sum()), dtype=torch.int64, device=masks.device)
    ends[torch.arange(which.numel(), device=masks.device) + which] = where + 1
    ends[last] = total
    starts = torch.zeros_like(ends)
    starts[1:] = ends[:-1]
    starts[first] = 0
    lengths = (ends - starts).tolist()
    opens_with_one = flat[:, 0].tolist()
    bounds = first.tolist() + [len(lengths)]
    out = []
    for i in range(n):
        counts = lengths[bounds[i]:bounds[i + 1]]
        if opens_with_one[i]:
            counts = [0] + counts
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """An uncompressed RLE -> ``H x W`` bool array (a transposed view of column-major data)."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise DatasetError(f"RLE counts must be non-negative run lengths adding up to H*W = {h * w} "
                           f"for size {[h, w]}; got {counts.size} runs adding up to {int(counts.sum())}")
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).T


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixels of an uncompressed RLE (the sum of its 1-runs)."""
    return int(sum(rle["counts"][1::2]))


def require_pycocotools() -> Any:
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise MissingDependencyError(
            "COCO RLE needs pycocotools, which is not installed: pip install 'samkit[coco]'") from None
    return coco_mask


def rle_to_coco(rle: dict[str, Any]) -> dict[str, Any]:
    """An uncompressed RLE -> COCO compressed RLE ``{"size": [H, W], "counts": str}``.

    The result decodes with ``pycocotools.mask.decode`` and serialises to JSON.
    Needs pycocotools (``pip install 'samkit[coco]'``).
    """
    coco_mask = require_pycocotools()
    h, w = (int(v) for v in rle["size"])
    encoded = coco_mask.frPyObjects({"size": [h, w], "counts": list(rle["counts"])}, h, w)
    counts = encoded["counts"]
    return {"size": [h, w], "counts": counts.decode("utf-8") if isinstance(counts, bytes) else counts}


# ---------------------------------------------------------------------------------------------
# connected components (8-connectivity)


def _run_components(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8-connected components of ``N x H x W`` boolean masks, found on horizontal runs.

    Returns, for the ``R`` runs of foreground pixels in row-major order over the whole batch:
    ``start`` (flat index of the run's first pixel), ``length`` and ``root`` (index of the
    first run of the run's component, so a component is named by where it starts).

    Runs in consecutive rows of a mask touch (8-connectivity) when their column ranges, one
    widened by a pixel on each side, intersect; for each run those neighbours below form a
    contiguous range found by binary search. The run graph is then collapsed by repeatedly
    hooking the larger of two joined roots under the smaller and compressing paths.
    """
    n, h, w = masks.shape
    first = masks.clone()
    first[..., 1:] &= ~masks[..., :-1]
    last = masks.clone()
    last[..., :-1] &= ~masks[..., 1:]
    start = first.reshape(-1).nonzero().flatten()
    end = last.reshape(-1).nonzero().flatten()
    row = torch.div(start, w, rounding_mode="floor")  # row over the whole batch: n * H + y
    x0 = start - row * w
    x1 = end - row * w
    # sortable keys (row, column + 1) with columns -1..W allowed
    span = w + 2
    by_end = row * span + x1 + 1
    by_start = row * span + x0 + 1
    below = (row + 1) * span
    lo = torch.searchsorted(by_end, below + x0, side="left")  # first run below with x1' >= x0 - 1
    hi = torch.searchsorted(by_start, below + x1 + 2, side="right")  # past the last with x0' <= x1 + 1
    touching = (hi - lo).clamp(min=0)
    touching[row % h == h - 1] = 0  # the next row belongs to the next mask
    upper = torch.repeat_interleave(torch.arange(start.numel(), device=masks.device), touching)
    offsets = torch.arange(upper.numel(), device=masks.device) - (torch.cumsum(touching, 0) - touching)[upper]
    lower = lo[upper] + offsets
    root = torch.arange(start.numel(), device=masks.device)
    while True:
        ru, rl = root[upper], root[lower]
        split = ru != rl
        if not bool(split.any()):
            break
        ru, rl = ru[split], rl[split]
        root.scatter_reduce_(0, torch.maximum(ru, rl), torch.minimum(ru, rl), reduce="amin")
        while True:
            jumped = root[root]
            if torch.equal(jumped, root):
                break
            root = jumped
    return start, x1 - x0 + 1, root


def _paint_runs(masks: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """An int64 map, same shape as ``masks``, holding ``values[r]`` on the pixels of run ``r``
    (runs in row-major order) and 0 elsewhere."""
    out = torch.zeros(masks.shape, dtype=torch.int64, device=masks.device)
    return out.masked_scatter_(masks, torch.repeat_interleave(values, lengths))


def connected_components(masks: torch.Tensor) -> torch.Tensor:
    """8-connected components of boolean masks ``... x H x W`` -> int64 labels, same shape.

    0 is background; a component's label is ``1 +`` the row-major index (within its own
    ``H x W`` map) of its first pixel, so labels sort components by where they start.
    """
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(masks.shape, dtype=torch.int64, device=masks.device)
    m = masks.reshape(-1, h, w).bool()
    start, length, root = _run_components(m)
    first_pixel = start[root]
    label = first_pixel - torch.div(first_pixel, h * w, rounding_mode="floor") * (h * w) + 1
    return _paint_runs(m, label, length).reshape(masks.shape)


def connected_component_areas(masks: torch.Tensor) -> torch.Tensor:
    """The area of each pixel's 8-connected component (0 on background).

    ``... x H x W`` bool -> int64, same shape.
    """
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(masks.shape, dtype=torch.int64, device=masks.device)
    m = masks.reshape(-1, h, w).bool()
    start, length, root = _run_components(m)
    size = torch.zeros_like(length).index_add_(0, root, length)
    return _paint_runs(m, size[root], length).reshape(masks.shape)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill small holes (``mode="holes"``) or drop small islands (``mode="islands"``) of one mask.

    A region is small when its 8-connected area is ``< area_thresh``. Islands mode keeps the
    largest island (the first one in row-major order on ties) if all of them are small.
    ``mask`` ``H x W`` bool -> ``(mask, changed)``; the input is returned as is when nothing
    changes.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    region = torch.from_numpy(np.ascontiguousarray(mask != holes))  # the pixels whose components we judge
    labels = connected_components(region[None])[0].reshape(-1)
    ids, sizes = torch.unique(labels[labels > 0], return_counts=True)
    small = ids[sizes < area_thresh]
    if small.numel() == 0:
        return mask, False
    if holes:
        out = ~region.reshape(-1) | torch.isin(labels, small)
    else:
        big = ids[sizes >= area_thresh]
        if big.numel() == 0:
            big = _largest_component(labels, ids, sizes, mask.shape[1])[None]
        out = torch.isin(labels, big)
    return out.reshape(mask.shape).numpy(), True


def _largest_component(labels: torch.Tensor, ids: torch.Tensor, sizes: torch.Tensor, width: int) -> torch.Tensor:
    """The label of the largest component; on ties the one whose first 2 x 2 pixel block
    (blocks in row-major order) comes first, which is the order OpenCV numbers components in.

    ``labels`` flat ``H*W`` labels of a ``width``-wide map; ``ids``/``sizes`` its components.
    """
    pixels = (labels > 0).nonzero().flatten()
    block = (pixels // width // 2) * ((width + 1) // 2) + (pixels % width) // 2
    first_block = torch.full((int(ids.max()) + 1,), int(block.max()) + 1, dtype=torch.int64)
    first_block.scatter_reduce_(0, labels[pixels], block, reduce="amin")
    largest = ids[sizes == sizes.max()]
    return largest[first_block[largest].argmin()]


def fill_holes_and_sprinkles(logits: torch.Tensor, max_hole_area: float, max_sprinkle_area: float,
                             threshold: float = 0.0) -> torch.Tensor:
    """Clean low-resolution mask logits the way SAM 2's predictor does before upsampling.

    Background components (``<= threshold``) of at most ``max_hole_area`` pixels become
    ``threshold + 10``; then foreground components (``> threshold``) of at most
    ``max_sprinkle_area`` pixels become ``threshold - 10``. Both sets of components are those
    of the input (as SAM 2 does), so a speck next to a filled hole is judged without it.
    8-connectivity; a zero area switches that step off. ``... x H x W`` -> same shape (a new
    tensor).
    """
    out = logits.clone()
    if max_hole_area > 0:
        area = connected_component_areas(logits <= threshold)
        out = torch.where((area > 0) & (area <= max_hole_area), threshold + 10.0, out)
    if max_sprinkle_area > 0:
        area = connected_component_areas(logits > threshold)  # the input's specks, not the filled map's
        out = torch.where((area > 0) & (area <= max_sprinkle_area), threshold - 10.0, out)
    return out


# ---------------------------------------------------------------------------------------------
# exact facts about upsampled logits, without making the full-size maps
#
# The official generator upsamples every candidate's 256 x 256 logits to the image size
# (``F.interpolate``, bilinear, ``align_corners=False``) and thresholds them. Along each
# axis an output sample is a weighted sum of one or two neighbouring inputs, so an output
# pixel lies between the min and the max of (at most) a 2 x 2 block of inputs. Outputs that
# share the same input block form a rectangle, so whole rectangles can be decided from the
# low-resolution logits; only rectangles that straddle a threshold are evaluated pixel by
# pixel, with float32 arithmetic replicating the kernel bit for bit where it matters.


def _fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 ``a * b + c`` (a fused multiply-add) from float32 inputs.

    The product is exact in float64 and the sum is split into ``s + e`` exactly; rounding
    ``s`` to float32 is right except when ``s`` sits exactly between two floats, where the
    sign of ``e`` decides.
    """
    p = a.double() * b.double()
    cd = c.double()
    s = p + cd
    back = s - p
    e = (p - (s - back)) + (cd - back)
    r = s.float()
    rd = r.double()
    away = torch.where(s > rd, math.inf, -math.inf).to(r.dtype)
    other = torch.nextafter(r, away)
    halfway = (rd + other.double() == 2 * s) & (s != rd) & (e != 0)
    return torch.where(halfway & ((e > 0) == (other > r)), other, r)


@dataclass(frozen=True)
class _Axis:
    """Bilinear (``align_corners=False``) resampling of ``n_in`` samples to ``n_out`` along one axis.

    Outputs come in ``S`` segments of consecutive outputs that read the same one or two inputs;
    segment ``S`` (the last entry) is an empty placeholder. Inputs are grouped in tiles of
    ``tile`` samples, and a segment belongs to the tile of its first input.
    """

    src0: torch.Tensor  # n_out int64, first input sample of each output
    src1: torch.Tensor  # n_out int64, second input sample (== src0 at the far edge)
    w0: torch.Tensor  # n_out float32 weight of src0
    w1: torch.Tensor  # n_out float32 weight of src1
    seg_start: torch.Tensor  # S+1 int64 first output of each segment
    seg_len: torch.Tensor  # S+1 int64 outputs in it (0 for the placeholder)
    seg_lo: torch.Tensor  # S+1 int64 the inputs it reads: seg_lo..seg_hi (seg_hi - seg_lo <= 1)
    seg_hi: torch.Tensor  # S+1 int64
    tile_segs: torch.Tensor  # T x M int64 segments of each tile, padded with the placeholder S
    tile_start: torch.Tensor  # T int64 first output of each tile
    tile_len: torch.Tensor  # T int64 outputs of each tile

    @classmethod
    def build(cls, n_in: int, n_out: int, fused: bool, tile: int, device: torch.device) -> "_Axis":
        # which inputs each output really reads: resample one-hot signals with the kernel itself
        probe = torch.eye(n_in, device=device).view(n_in, 1, n_in, 1)
        weights = F.interpolate(probe, size=(n_out, 1), mode="bilinear", align_corners=False)[:, 0, :, 0]
        used = (weights != 0).to(torch.uint8)  # n_in x n_out
        lo = used.argmax(0)
        hi = n_in - 1 - used.flip(0).argmax(0)
        _, seg_len = torch.unique_consecutive(lo * (n_in + 1) + hi, return_counts=True)
        seg_start = torch.cumsum(seg_len, 0) - seg_len
        seg_lo, seg_hi = lo[seg_start], hi[seg_start]
        n_seg = seg_len.numel()
        owner = torch.div(seg_lo, tile, rounding_mode="floor")
        n_tiles = -(-n_in // tile)
        per_tile = torch.bincount(owner, minlength=n_tiles)
        first = torch.cumsum(per_tile, 0) - per_tile
        tile_segs = torch.full((n_tiles, max(1, int(per_tile.max()))), n_seg, dtype=torch.int64, device=device)
        tile_segs[owner, torch.arange(n_seg, device=device) - first[owner]] = torch.arange(n_seg, device=device)
        tile_len = torch.zeros(n_tiles, dtype=torch.int64, device=device).index_add_(0, owner, seg_len)
        tile_start = torch.where(per_tile > 0, seg_start[first.clamp(max=n_seg - 1)], 0)
        zero = torch.zeros(1, dtype=torch.int64, device=device)
        # the kernel's own indices and weights (source position = scale * (i + 0.5) - 0.5)
        scale = torch.full((n_out,), float(np.float32(n_in) / np.float32(n_out)), device=device)
        centre = torch.arange(n_out, dtype=torch.float32, device=device) + 0.5
        if fused:
            src = _fma32(scale, centre, torch.full_like(scale, -0.5))
        else:
            src = scale * centre - 0.5
        src = src.clamp(min=0)
        src0 = src.floor().long().clamp(max=n_in - 1)
        lam = (src - src0.float()).clamp(0, 1)
        src1 = torch.where(src0 < n_in - 1, src0 + 1, src0)
        return cls(src0, src1, 1 - lam, lam, torch.cat([seg_start, zero]), torch.cat([seg_len, zero]),
                   torch.cat([seg_lo, zero]), torch.cat([seg_hi, zero]), tile_segs, tile_start, tile_len)


@dataclass(frozen=True)
class UpsamplePlan:
    """How ``F.interpolate(x, out_hw, mode="bilinear", align_corners=False)`` maps ``h x w``
    maps to ``H x W`` on this machine, built with :meth:`build`.

    The kernel's float32 arithmetic is not the same everywhere: it may use fused
    multiply-adds, and may sum the four weighted inputs in a different order depending on
    the number of channels of the tensor and of threads. ``channels`` is the channel count
    of the calls being reproduced (maps are upsampled in groups of that many);
    ``arithmetic`` names the replica that matched the kernel bit for bit on this machine
    (:data:`ARITHMETICS`), or is ``None`` when none did: exact per-pixel values are then
    unavailable and callers fall back to full-size upsampling.
    """

    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    rows: _Axis
    cols: _Axis
    arithmetic: str | None
    channels: int = 1
    tile: int = 8  # input samples per tile side in LazyUpsample's coarse pass

    @classmethod
    def build(cls, in_hw: tuple[int, int], out_hw: tuple[int, int], device: torch.device | str = "cpu",
              channels: int = 1, tile: int = 8) -> "UpsamplePlan":
        """Build the plan and check the replicas against the kernel, called on
        ``B x channels x h x w`` tensors with the current number of threads (once per size)."""
        device = torch.device(device)
        in_hw = (int(in_hw[0]), int(in_hw[1]))
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        gen = torch.Generator().manual_seed(0)
        test = (torch.randn(2 * channels, *in_hw, generator=gen) * 8).to(device)
        test[-1, ::3] = torch.randint(-2, 3, (in_hw[1],), generator=gen).float().to(device)
        reference = upsample_logits(test, out_hw, channels)
        index, ys, xs = _check_pixels(out_hw, gen, device)
        index = index * (2 * channels - 1)  # the first and the last map
        expected = reference[index, ys, xs]
        plan, axes = None, {}
        for arithmetic in ARITHMETICS:
            fused = arithmetic.startswith("fused")
            if fused not in axes:
                axes[fused] = (_Axis.build(in_hw[0], out_hw[0], fused, tile, device),
                               _Axis.build(in_hw[1], out_hw[1], fused, tile, device))
            plan = cls(in_hw, out_hw, *axes[fused], arithmetic, channels, tile)
            if torch.equal(plan.values_at(test, index, ys, xs), expected):
                return plan
        return replace(plan, arithmetic=None)

    def values_at(self, logits: torch.Tensor, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                  arithmetic: str | None = None) -> torch.Tensor:
        """Upsampled values at ``P`` pixels: ``logits`` ``N x h x w``; ``index``, ``ys``, ``xs``
        ``P`` (which map, output row, output column) -> ``P`` float32.

        With the plan's verified arithmetic the values equal the kernel's bit for bit;
        ``arithmetic="plain"`` is cheaper and within a few float32 roundings of them.
        """
        arithmetic = arithmetic or self.arithmetic or "plain"
        h, w = self.in_hw
        flat = logits.reshape(-1)
        base = index * (h * w)
        top = base + self.rows.src0[ys] * w
        bottom = base + self.rows.src1[ys] * w
        left, right = self.cols.src0[xs], self.cols.src1[xs]
        wx0, wx1 = self.cols.w0[xs], self.cols.w1[xs]
        wy0, wy1 = self.rows.w0[ys], self.rows.w1[ys]
        a, b = flat[top + left], flat[top + right]
        c, d = flat[bottom + left], flat[bottom + right]
        if arithmetic == "fused":  # rows first, then columns, one product of each pair fused
            return _fma32(_fma32(a, wx0, b * wx1), wy0, _fma32(c, wx0, d * wx1) * wy1)
        if arithmetic == "fused4":  # four weights (row weight x column weight) accumulated in turn
            return _fma32(d, wy1 * wx1, _fma32(c, wy1 * wx0, _fma32(a, wy0 * wx0, b * (wy0 * wx1))))
        if arithmetic == "plain4":
            return ((b * (wy0 * wx1) + a * (wy0 * wx0)) + c * (wy1 * wx0)) + d * (wy1 * wx1)
        return (a * wx0 + b * wx1) * wy0 + (c * wx0 + d * wx1) * wy1


def _check_pixels(out_hw: tuple[int, int], gen: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels of two ``H x W`` maps to compare the replica with the kernel on: every column of
    a few rows, every row of a few columns (so each weight is used), and random pixels."""
    h, w = out_hw
    some_rows = torch.tensor(sorted({0, 1, 2, h // 3, h // 2, h - 3, h - 2, h - 1} & set(range(h))))
    some_cols = torch.tensor(sorted({0, 1, 2, w // 3, w // 2, w - 3, w - 2, w - 1} & set(range(w))))
    ry, rx = torch.meshgrid(some_rows, torch.arange(w), indexing="ij")
    cy, cx = torch.meshgrid(torch.arange(h), some_cols, indexing="ij")
    n_random = 20000
    ys = torch.cat([ry.reshape(-1), cy.reshape(-1), torch.randint(0, h, (n_random,), generator=gen)])
    xs = torch.cat([rx.reshape(-1), cx.reshape(-1), torch.randint(0, w, (n_random,), generator=gen)])
    index = torch.arange(ys.numel()) % 2
    return index.to(device), ys.to(device), xs.to(device)


# replicas of the kernel's arithmetic tried by UpsamplePlan.build, in order
ARITHMETICS = ("fused", "fused4", "plain", "plain4")


def upsample_logits(logits: torch.Tensor, out_hw: tuple[int, int], channels: int = 1) -> torch.Tensor:
    """``N x h x w`` -> ``N x H x W`` bilinear (``align_corners=False``), as the predictors do.

    The maps go through ``F.interpolate`` in groups of ``channels`` (a ``B x channels x h x w``
    tensor, zero-padded), because the kernel's rounding can depend on the channel count: to
    reproduce a predictor's ``B x 3 x h x w`` call bit for bit, pass ``channels=3``.
    """
    n = logits.shape[0]
    groups = -(-n // channels)
    if groups * channels != n:
        logits = torch.cat([logits, logits.new_zeros(groups * channels - n, *logits.shape[1:])])
    out = F.interpolate(logits.reshape(groups, channels, *logits.shape[1:]), size=tuple(out_hw),
                        mode="bilinear", align_corners=False)
    return out.flatten(0, 1)[:n]


class LazyUpsample:
    """Exact threshold statistics of ``upsample_logits(logits, plan.out_hw)`` computed from the
    low-resolution logits, touching full-size pixels only where a threshold crosses them.

    ``logits``: ``N x h x w`` float32 (finite). Decisions go coarse to fine: tiles of
    ``plan.tile`` x ``plan.tile`` inputs, then the 2 x 2 input blocks inside undecided tiles,
    then the pixels of undecided blocks. Every result equals what thresholding the full
    upsampled maps gives; where the plan has no verified arithmetic the full maps are made (in
    chunks) instead.
    """

    def __init__(self, logits: torch.Tensor, plan: UpsamplePlan) -> None:
        self.logits = logits
        self.plan = plan
        t = plan.tile
        n_rows, n_cols = plan.rows.tile_len.numel(), plan.cols.tile_len.numel()
        h, w = logits.shape[-2:]
        self.padded = F.pad(logits[:, None], (0, n_cols * t + 1 - w, 0, n_rows * t + 1 - h), mode="replicate")[:, 0]
        patches = self._patches()
        self.tile_max = patches.amax((-2, -1))  # N x TR x TC
        self.tile_min = patches.amin((-2, -1))
        # bound on float32 rounding in the kernel (a few ulps of the largest magnitude), generously
        self.slack = (logits.abs().flatten(1).amax(1) + 1) * 1e-5  # N

    def _patches(self) -> torch.Tensor:
        """``N x TR x TC x (t+1) x (t+1)`` view: the inputs each tile's outputs can read."""
        t = self.plan.tile
        return self.padded.unfold(1, t + 1, t).unfold(2, t + 1, t)

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def select(self, keep: torch.Tensor) -> "LazyUpsample":
        """The maps picked by a boolean mask or an index tensor."""
        out = object.__new__(LazyUpsample)
        out.plan = self.plan
        for name in ("logits", "padded", "tile_max", "tile_min", "slack"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    def _tile_area(self) -> torch.Tensor:
        return self.plan.rows.tile_len[:, None] * self.plan.cols.tile_len[None, :]

    def _decide(self, low: torch.Tensor, high: torch.Tensor, slack: torch.Tensor,
                level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(all_above, maybe_above)`` for ``value > level`` of regions whose values lie in
        ``[low, high]`` up to rounding; ``slack`` broadcasts against them."""
        slack = slack + abs(level) * 1e-6
        return low > level + slack, high > level - slack

    def _blocks(self, index: torch.Tensor, tile_r: torch.Tensor,
                tile_c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The 2 x 2-input blocks of ``K`` tiles: ``(min, max, area K x Mr x Mc, segments
        rows K x Mr, segments cols K x Mc)``; padding blocks have area 0."""
        rows, cols, t = self.plan.rows, self.plan.cols, self.plan.tile
        patch = self._patches()[index, tile_r, tile_c]  # K x (t+1) x (t+1)
        seg_r, seg_c = rows.tile_segs[tile_r], cols.tile_segs[tile_c]
        r0 = (rows.seg_lo[seg_r] - tile_r[:, None] * t).clamp(0, t)[:, :, None].expand(-1, -1, t + 1)
        r1 = (rows.seg_hi[seg_r] - tile_r[:, None] * t).clamp(0, t)[:, :, None].expand(-1, -1, t + 1)
        top, bottom = patch.gather(1, r0), patch.gather(1, r1)  # K x Mr x (t+1)
        m = seg_r.shape[1]
        c0 = (cols.seg_lo[seg_c] - tile_c[:, None] * t).clamp(0, t)[:, None, :].expand(-1, m, -1)
        c1 = (cols.seg_hi[seg_c] - tile_c[:, None] * t).clamp(0, t)[:, None, :].expand(-1, m, -1)
        hi_rows, lo_rows = torch.maximum(top, bottom), torch.minimum(top, bottom)
        block_max = torch.maximum(hi_rows.gather(2, c0), hi_rows.gather(2, c1))
        block_min = torch.minimum(lo_rows.gather(2, c0), lo_rows.gather(2, c1))
        area = rows.seg_len[seg_r][:, :, None] * cols.seg_len[seg_c][:, None, :]
        return block_min, block_max, area, seg_r, seg_c

    def count_bounds(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds (``N`` int64 each) on the number of upsampled pixels
        ``> level``, from the low-resolution logits alone."""
        sure, maybe = self._decide(self.tile_min, self.tile_max, self.slack[:, None, None], level)
        lower = (sure * self._tile_area()).sum((1, 2))
        upper = lower.clone()
        index, tile_r, tile_c = (maybe & ~sure).nonzero(as_tuple=True)
        block_min, block_max, area, _, _ = self._blocks(index, tile_r, tile_c)
        sure_b, maybe_b = self._decide(block_min, block_max, self.slack[index][:, None, None], level)
        lower.index_add_(0, index, (sure_b * area).sum((1, 2)))
        upper.index_add_(0, index, (maybe_b * area).sum((1, 2)))
        return lower, upper

    def counts_and_boxes(self, thresholds: Sequence[float], box_threshold: float, chunk_pixels: int = 1 << 21,
                         dense_fraction: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact ``(counts N x T int64, boxes N x 4 int64)``: pixels ``> thresholds[t]`` in each
        upsampled map, and the XYXY box of its pixels ``> box_threshold`` (zeros if none).

        Maps whose undecided pixels exceed ``dense_fraction`` of the full size (noise-like
        logits with boundaries everywhere) are upsampled in full instead, which is then cheaper.
        """
        if self.plan.arithmetic is None:
            return _dense_counts_and_boxes(self.logits, self.plan.out_hw, thresholds, box_threshold,
                                           self.plan.channels)
        rows, cols = self.plan.rows, self.plan.cols
        levels = list(thresholds) + [box_threshold]
        n = len(self)
        extent_lo = torch.tensor(self.plan.out_hw, device=self.logits.device).repeat(n, 1)  # N x 2 (y, x)
        extent_hi = torch.full_like(extent_lo, -1)
        # 1. tiles
        slack = self.slack[:, None, None]
        tiles = [self._decide(self.tile_min, self.tile_max, slack, t) for t in levels]
        open_tiles = torch.zeros_like(tiles[0][0])
        for sure, maybe in tiles:
            open_tiles |= maybe & ~sure
        area = self._tile_area()
        full_size = self.plan.out_hw[0] * self.plan.out_hw[1]
        dense = (open_tiles * area).sum((1, 2)) > 3 * dense_fraction * full_size  # hopeless already
        open_tiles &= ~dense[:, None, None]
        counts = torch.stack([((sure & ~open_tiles) * area).sum((1, 2)) for sure, _ in tiles[:-1]], 1)
        idx, tr, tc = (tiles[-1][0] & ~open_tiles & (area > 0)).nonzero(as_tuple=True)
        _merge_extents(extent_lo, extent_hi, idx, rows.tile_start[tr], rows.tile_len[tr],
                       cols.tile_start[tc], cols.tile_len[tc])
        # 2. blocks of the undecided tiles
        index, tile_r, tile_c = open_tiles.nonzero(as_tuple=True)
        block_min, block_max, area, seg_r, seg_c = self._blocks(index, tile_r, tile_c)
        slack = self.slack[index][:, None, None]
        blocks = [self._decide(block_min, block_max, slack, t) for t in levels]
        open_blocks = torch.zeros_like(blocks[0][0])
        for sure, maybe in blocks:
            open_blocks |= maybe & ~sure
        open_blocks &= area > 0
        undecided = torch.zeros(n, dtype=torch.int64, device=index.device)
        undecided.index_add_(0, index, (open_blocks * area).sum((1, 2)))
        dense |= undecided > dense_fraction * full_size
        open_blocks &= ~dense[index][:, None, None]
        for k, (sure, _) in enumerate(blocks[:-1]):
            counts[:, k].index_add_(0, index, ((sure & ~open_blocks) * area).sum((1, 2)))
        k, i, j = (blocks[-1][0] & ~open_blocks & (area > 0)).nonzero(as_tuple=True)
        r, c = seg_r[k, i], seg_c[k, j]
        _merge_extents(extent_lo, extent_hi, index[k], rows.seg_start[r], rows.seg_len[r],
                       cols.seg_start[c], cols.seg_len[c])
        # 3. pixels of the undecided blocks
        k, i, j = open_blocks.nonzero(as_tuple=True)
        index, seg_r, seg_c = index[k], seg_r[k, i], seg_c[k, j]
        dy = torch.arange(int(rows.seg_len.max()), device=index.device)
        dx = torch.arange(int(cols.seg_len.max()), device=index.device)
        per_chunk = max(1, chunk_pixels // (dy.numel() * dx.numel()))
        for part in range(0, index.numel(), per_chunk):
            i, r, c = (v[part:part + per_chunk] for v in (index, seg_r, seg_c))
            ys = (rows.seg_start[r][:, None] + dy).clamp(max=self.plan.out_hw[0] - 1)  # K x bh
            xs = (cols.seg_start[c][:, None] + dx).clamp(max=self.plan.out_hw[1] - 1)  # K x bw
            inside = (dy < rows.seg_len[r][:, None])[:, :, None] & (dx < cols.seg_len[c][:, None])[:, None, :]
            values = self._block_values(i, r, c, ys, xs, levels).masked_fill_(~inside, -math.inf)
            for q, t in enumerate(thresholds):
                counts[:, q].index_add_(0, i, (values > t).sum((1, 2)))
            hit = values > box_threshold
            rows_hit, cols_hit = hit.any(2), hit.any(1)  # K x bh, K x bw
            some = rows_hit.any(1)
            top = _first_true(rows_hit)
            bottom = dy.numel() - 1 - _first_true(rows_hit.flip(1))
            left = _first_true(cols_hit)
            right = dx.numel() - 1 - _first_true(cols_hit.flip(1))
            start_y, start_x = rows.seg_start[r], cols.seg_start[c]
            _merge_extents(extent_lo, extent_hi, i[some], (start_y + top)[some], (bottom - top + 1)[some],
                           (start_x + left)[some], (right - left + 1)[some])
        boxes = torch.stack([extent_lo[:, 1], extent_lo[:, 0], extent_hi[:, 1], extent_hi[:, 0]], 1)
        boxes = boxes * (extent_hi[:, :1] >= 0)
        if bool(dense.any()):
            counts[dense], boxes[dense] = _dense_counts_and_boxes(self.logits[dense], self.plan.out_hw, thresholds,
                                                                  box_threshold, self.plan.channels)
        return counts, boxes

    def _block_values(self, index: torch.Tensor, seg_r: torch.Tensor, seg_c: torch.Tensor, ys: torch.Tensor,
                      xs: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
        """Upsampled values on ``K`` blocks (``ys`` ``K x bh``, ``xs`` ``K x bw`` their pixels):
        ``K x bh x bw``. Cheap separable float32 values, replaced by the kernel's exact ones
        wherever a value is close enough to a level for rounding to matter."""
        rows, cols = self.plan.rows, self.plan.cols
        x = self.logits
        top, bottom = rows.seg_lo[seg_r], rows.seg_hi[seg_r]
        left, right = cols.seg_lo[seg_c], cols.seg_hi[seg_c]
        # every pixel of a block reads the same (up to) 2 x 2 inputs
        a, b = x[index, top, left][:, None], x[index, top, right][:, None]
        c, d = x[index, bottom, left][:, None], x[index, bottom, right][:, None]
        wx0, wx1 = cols.w0[xs], cols.w1[xs]
        upper = a * wx0 + b * wx1  # K x bw
        lower = c * wx0 + d * wx1
        values = upper[:, None, :] * rows.w0[ys][:, :, None] + lower[:, None, :] * rows.w1[ys][:, :, None]
        slack = self.slack[index][:, None, None]
        near = torch.zeros_like(values, dtype=torch.bool)
        for t in levels:
            near |= (values - t).abs() <= slack + abs(t) * 1e-6
        if bool(near.any()):
            k, yy, xx = near.nonzero(as_tuple=True)
            values[k, yy, xx] = self.plan.values_at(x, index[k], ys[k, yy], xs[k, xx])
        return values


def _merge_extents(lo: torch.Tensor, hi: torch.Tensor, index: torch.Tensor, y0: torch.Tensor, height: torch.Tensor,
                   x0: torch.Tensor, width: torch.Tensor) -> None:
    """Widen the pixel extents ``lo``/``hi`` (``N x 2`` (y, x) minima / maxima) in place to cover
    rectangles ``[y0, y0 + height) x [x0, x0 + width)`` of maps ``index`` (all ``M``)."""
    where = index[:, None].expand(-1, 2)
    lo.scatter_reduce_(0, where, torch.stack([y0, x0], 1), reduce="amin")
    hi.scatter_reduce_(0, where, torch.stack([y0 + height - 1, x0 + width - 1], 1), reduce="amax")


def _dense_counts_and_boxes(logits: torch.Tensor, out_hw: tuple[int, int], thresholds: Sequence[float],
                            box_threshold: float, channels: int = 1,
                            chunk_pixels: int = 1 << 25) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`LazyUpsample.counts_and_boxes` by making the full-size maps, a chunk at a time."""
    per_chunk = max(1, chunk_pixels // max(1, out_hw[0] * out_hw[1]))
    counts, boxes = [], []
    for part in logits.split(per_chunk):
        full = upsample_logits(part, out_hw, channels)
        counts.append(torch.stack([count_above(full, t) for t in thresholds], 1))
        boxes.append(masks_to_boxes(full > box_threshold))
    if not counts:
        return (torch.zeros(0, len(thresholds), dtype=torch.int64, device=logits.device),
                torch.zeros(0, 4, dtype=torch.int64, device=logits.device))
    return torch.cat(counts), torch.cat(boxes)


def upsample_masks(logits: torch.Tensor, out_hw: tuple[int, int], threshold: float,
                   channels: int = 1) -> torch.Tensor:
    """``N x h x w`` logits -> ``N x H x W`` bool masks ``upsample_logits(...) > threshold``."""
    return upsample_logits(logits, out_hw, channels) > threshold


# ---------------------------------------------------------------------------------------------
# rows of candidate masks


@dataclass
class MaskRecords:
    """Row-aligned data of ``N`` candidate masks, the generator's working set.

    A full-resolution mask is never stored: ``low_res_logits`` keeps the decoder's logits,
    and full masks are rebuilt (upsampled to the crop, thresholded, placed in the image) only
    for the records that survive every filter.
    """

    low_res_logits: torch.Tensor  # N x h x w float32 mask logits in the crop's model frame
    iou_preds: torch.Tensor  # N float32, the decoder's predicted IoU
    points: torch.Tensor  # N x 2 float32 (x, y) prompt point, image pixels
    stability_score: torch.Tensor  # N float32
    boxes: torch.Tensor  # N x 4 int64 XYXY (inclusive) box of the full mask, image frame
    crop_boxes: torch.Tensor  # N x 4 int64 XYXY crop the mask was predicted in

    def __len__(self) -> int:
        return int(self.iou_preds.shape[0])

    def select(self, keep: torch.Tensor) -> "MaskRecords":
        """The rows picked by a boolean mask or an index tensor (in that order)."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @classmethod
    def cat(cls, parts: Sequence["MaskRecords"]) -> "MaskRecords":
        """All rows of ``parts``, in order (``parts`` must not be empty)."""
        if not parts:
            raise ValueError("MaskRecords.cat needs at least one part")
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls, low_res_hw: tuple[int, int], device: torch.device | str = "cpu") -> "MaskRecords":
        """No rows, with the right trailing shapes and dtypes."""
        f32 = dict(dtype=torch.float32, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        return cls(low_res_logits=torch.zeros(0, *low_res_hw, **f32), iou_preds=torch.zeros(0, **f32),
                   points=torch.zeros(0, 2, **f32), stability_score=torch.zeros(0, **f32),
                   boxes=torch.zeros(0, 4, **i64), crop_boxes=torch.zeros(0, 4, **i64))
