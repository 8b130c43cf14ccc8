"""Metrics of interactive segmentation, from the IoU after each click.

The input is, for every evaluated object, the IoU of the prediction after click 1, 2, ...:
an ``N x K`` array, or a list of 1-D arrays of different lengths (an evaluation that stops
once an object reaches its target IoU). A shorter row is padded with its last value: the
mask is assumed to stay as good once the clicking stopped.

- ``NoC@t`` (number of clicks): per object, the first click after which IoU >= t, or
  ``max_clicks`` when it never gets there within ``max_clicks`` clicks; averaged (RITM).
- ``NoF@t`` (number of failures): how many objects never reach IoU >= t within
  ``max_clicks`` clicks. (The RITM code counts objects whose NoC equals ``max_clicks``,
  which also counts an object that gets there exactly at the last click; samkit counts only
  real failures.)
- ``mIoU@k``: the mean IoU after ``k`` clicks (``NaN`` when fewer than ``k`` were recorded).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

__all__ = [
    "NOC_THRESHOLDS",
    "NOF_THRESHOLDS",
    "MIOU_CLICKS",
    "iou_matrix",
    "number_of_clicks",
    "interactive_metrics",
]

NOC_THRESHOLDS: tuple[float, ...] = (0.80, 0.85, 0.90)
NOF_THRESHOLDS: tuple[float, ...] = (0.85, 0.90)
MIOU_CLICKS: tuple[int, ...] = (1, 2, 3, 5, 10, 20)

IousLike = Union[np.ndarray, Sequence[Sequence[float]]]


def iou_matrix(ious: IousLike) -> np.ndarray:
    """Per-object IoU-after-each-click as an ``N x K`` float array.

    Rows of different lengths are padded with their last value.

    Raises:
        ValueError: no object, an object with no click, or IoUs outside ``[0, 1]``.
    """
    if isinstance(ious, np.ndarray):
        arr = ious.astype(np.float64)
        if arr.ndim == 1:
            raise ValueError("ious must be N x K (one row per object), got a 1-D array")
        if arr.ndim != 2:
            raise ValueError(f"ious must be N x K, got shape {arr.shape}")
    else:
        rows = [np.asarray(r, dtype=np.float64).reshape(-1) for r in ious]
        if not rows:
            raise ValueError("ious is empty: no evaluated object")
        if any(r.size == 0 for r in rows):
            raise ValueError("every object needs the IoU of at least one click")
        k = max(r.size for r in rows)
        arr = np.stack([np.concatenate([r, np.full(k - r.size, r[-1])]) for r in rows])
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"ious must have at least one object and one click, got {arr.shape}")
    if np.isnan(arr).any() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError("IoUs must be numbers in [0, 1]")
    return arr


def number_of_clicks(
    ious: IousLike, threshold: float, max_clicks: Optional[int] = None
) -> np.ndarray:
    """Per object, the number of clicks to reach ``IoU >= threshold``.

    Args:
        ious: ``N x K`` IoUs after clicks 1..K (see :func:`iou_matrix`).
        threshold: target IoU, e.g. 0.9.
        max_clicks: click budget (default ``K``); objects that do not reach the target
            within it count ``max_clicks``.

    Returns:
        ``N`` int array with values in ``1..max_clicks``.
    """
    arr = iou_matrix(ious)
    budget = arr.shape[1] if max_clicks is None else int(max_clicks)
    if budget < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    arr = arr[:, :budget]
    reached = arr >= threshold
    first = reached.argmax(axis=1) + 1
    return np.where(reached.any(axis=1), first, budget).astype(np.int64)


def interactive_metrics(ious: IousLike, max_clicks: Optional[int] = None) -> dict[str, float]:
    """The standard interactive-segmentation summary.

    Args:
        ious: ``N x K`` IoUs after clicks 1..K, or a list of rows of varying length.
        max_clicks: click budget for NoC/NoF (default ``K``, usually 20).

    Returns:
        ``{"NoC@80", "NoC@85", "NoC@90", "NoF@85", "NoF@90", "mIoU@1", "mIoU@2", "mIoU@3",
        "mIoU@5", "mIoU@10", "mIoU@20"}``: NoC as float means, NoF as int counts, mIoU as
        floats (``NaN`` for a click count beyond ``K``).
    """
    arr = iou_matrix(ious)
    budget = arr.shape[1] if max_clicks is None else int(max_clicks)
    out: dict[str, float] = {}
    for thr in NOC_THRESHOLDS:
        out[f"NoC@{round(thr * 100)}"] = float(number_of_clicks(arr, thr, budget).mean())
    for thr in NOF_THRESHOLDS:
        never = ~(arr[:, :budget] >= thr).any(axis=1)
        out[f"NoF@{round(thr * 100)}"] = int(never.sum())
    for k in MIOU_CLICKS:
        out[f"mIoU@{k}"] = float(arr[:, k - 1].mean()) if k <= arr.shape[1] else float("nan")
    return out
