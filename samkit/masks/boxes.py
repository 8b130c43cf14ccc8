"""Boxes around masks and non-maximum suppression.

Boxes are ``N x 4`` XYXY (``x0, y0, x1, y1``); boxes made from masks use inclusive pixel
indices. The NMS is bit-identical to torchvision's CPU kernel.
"""

from __future__ import annotations

import math

import torch

__all__ = ["masks_to_boxes", "first_true_index", "box_xyxy_to_xywh", "box_area", "nms", "batched_nms"]


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
    top = first_true_index(rows)
    bottom = h - 1 - first_true_index(rows.flip(1))
    left = first_true_index(cols)
    right = w - 1 - first_true_index(cols.flip(1))
    boxes = torch.stack([left, top, right, bottom], dim=1) * nonempty[:, None]
    return boxes.reshape(*lead, 4)


def first_true_index(flags: torch.Tensor) -> torch.Tensor:
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
