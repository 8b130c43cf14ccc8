"""Run-length encoding of masks (COCO's uncompressed layout) and COCO's compressed form."""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import torch

from samkit.errors import DatasetError, MissingDependencyError

__all__ = ["mask_to_rle", "rle_to_mask", "rle_area", "rle_to_coco", "coco_to_rle", "require_pycocotools",
           "decode_rle_counts"]

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


def coco_to_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """A COCO RLE (compressed string or uncompressed list) -> uncompressed ``{"size", "counts"}``,
    without pycocotools.

    Raises:
        DatasetError: the counts do not add up to ``H * W`` pixels of ``size``.
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        runs = _decode_rle_string(counts.encode() if isinstance(counts, str) else counts)
    else:
        runs = [int(c) for c in counts]
    if sum(runs) != h * w or any(r < 0 for r in runs):
        raise DatasetError(f"RLE counts must be non-negative run lengths adding up to H*W = {h * w} "
                           f"for size {[h, w]}; got {len(runs)} runs adding up to {sum(runs)}")
    return {"size": [h, w], "counts": runs}


def decode_rle_counts(
    counts: Union[str, bytes, Sequence[int]], height: int, width: int
) -> np.ndarray:
    """Decode COCO run-length counts into an ``H x W`` bool mask.

    Args:
        counts: uncompressed (a list of run lengths) or compressed (COCO's string).
        height, width: the mask size (the RLE's ``size`` is ``[height, width]``).

    Runs alternate between 0 and 1, starting with 0, over the pixels in column-major order.
    """
    if isinstance(counts, (str, bytes)):
        runs = _decode_rle_string(counts.encode() if isinstance(counts, str) else counts)
    else:
        runs = [int(c) for c in counts]
    return np.ascontiguousarray(rle_to_mask({"size": [height, width], "counts": runs}))


def _decode_rle_string(data: bytes) -> list[int]:
    """COCO's compressed RLE: 5-bit groups, 6 bits per char (offset 48), deltas from
    the count two back from the third count on."""
    runs: list[int] = []
    p = 0
    while p < len(data):
        value = 0
        shift = 0
        while True:
            c = data[p] - 48
            p += 1
            value |= (c & 0x1F) << shift
            shift += 5
            if not c & 0x20:
                if c & 0x10:  # sign bit of the last group
                    value -= 1 << shift
                break
            if p >= len(data):
                raise DatasetError("truncated compressed RLE string")
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs
