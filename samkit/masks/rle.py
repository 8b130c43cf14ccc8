"""Run-length encoding of masks (COCO's uncompressed layout) and COCO's compressed form (numpy, no torch)."""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from samkit.errors import DatasetError, MissingDependencyError

__all__ = ["mask_to_rle", "rle_to_mask", "rle_area", "rle_to_coco", "coco_to_rle", "require_pycocotools",
           "decode_rle_counts", "encode_segmentations", "SEGMENTATION_MODES"]

# the automatic mask generators' ``output_mode`` values
SEGMENTATION_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# run-length encoding (COCO's uncompressed RLE: column-major runs, starting with a 0-run)


def mask_to_rle(masks: Any) -> list[dict[str, Any]]:
    """Uncompressed RLEs of ``N x H x W`` boolean masks: ``{"size": [H, W], "counts": [...]}``.

    ``masks`` is a numpy array or a torch tensor (moved to the CPU). Runs go down the columns
    (Fortran order, as COCO); ``counts`` alternates 0-runs and 1-runs and starts with a
    (possibly empty) 0-run. One mask at a time in numpy, which is faster than one vectorised
    torch pass over the batch (measured in docs/onnx/NOTES.md); both generators use it.
    """
    if hasattr(masks, "detach"):  # a torch tensor (torch itself is not imported here)
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks, dtype=bool)
    n, h, w = masks.shape
    total = h * w
    out = []
    for i in range(n):
        flat = masks[i].T.reshape(total)  # column-major pixel order
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], changes, [total]))).tolist() if total else []
        if total and flat[0]:
            counts = [0] + counts
        out.append({"size": [h, w], "counts": counts})
    return out


def encode_segmentations(masks: Any, output_mode: str) -> list[Any]:
    """The ``segmentation`` of each of ``N x H x W`` boolean masks (numpy or torch) as a record
    of ``output_mode`` holds it: ``"binary_mask"`` an ``H x W`` bool array, ``"uncompressed_rle"``
    :func:`mask_to_rle`'s dict, ``"coco_rle"`` :func:`rle_to_coco`'s."""
    if output_mode == "binary_mask":
        if hasattr(masks, "detach"):
            masks = masks.detach().cpu().numpy()
        return list(np.asarray(masks, dtype=bool))
    if output_mode not in SEGMENTATION_MODES:
        raise ValueError(f"output_mode must be one of {SEGMENTATION_MODES}, got {output_mode!r}")
    rles = mask_to_rle(masks)
    return [rle_to_coco(r) for r in rles] if output_mode == "coco_rle" else rles


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
