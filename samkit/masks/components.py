"""Connected components (8-connectivity, found on runs), small-region removal and hole filling."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["connected_components", "connected_component_areas", "remove_small_regions", "fill_holes_and_sprinkles"]


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
