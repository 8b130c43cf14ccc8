"""Prompt checks and conversion for the ONNX Runtime predictor, in numpy (no torch).

They accept what :class:`samkit.image_predictor.ImagePredictor` accepts and refuse the same
prompts with :class:`~samkit.errors.PromptError`, saying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from samkit.errors import PromptError

__all__ = ["VALID_LABELS", "Prompts", "prepare_prompts"]

VALID_LABELS = (-1, 0, 1, 2, 3)
_LABEL_MEANING = "1 foreground, 0 background, -1 padding, 2/3 box corners"


@dataclass
class Prompts:
    """Prompts of ``B`` predictions in the model-input frame (any part may be None).

    ``coords`` ``B x N x 2`` float32 pixels, ``labels`` ``B x N`` int64, ``boxes`` ``B x 2 x 2``
    float32 corners, ``mask_input`` ``B x 1 x 4h x 4w`` float32 logits.
    """

    coords: np.ndarray | None = None
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    mask_input: np.ndarray | None = None

    @property
    def batch(self) -> int:
        return max((t.shape[0] for t in (self.coords, self.boxes, self.mask_input) if t is not None), default=1)


def _floats(x: Any, what: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} must be numeric, got {type(x).__name__} ({exc})") from None
    if not np.isfinite(a).all():
        raise PromptError(f"{what} contains NaN or infinite values")
    return a


def _labels(x: Any) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        a = np.asarray(None)
    if a.dtype.kind not in "biuf":
        raise PromptError(f"point_labels must be an array of integers, got {type(x).__name__}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise PromptError("point_labels contains NaN or infinite values")
    as_int = a.astype(np.int64)
    if a.dtype.kind == "f" and not np.array_equal(a, as_int):
        raise PromptError(f"point_labels must be integers ({_LABEL_MEANING}), got "
                          f"{sorted(set(a[a != as_int].tolist()))}")
    bad = ~np.isin(as_int, VALID_LABELS)
    if bad.any():
        raise PromptError(f"point_labels must be in {{-1, 0, 1, 2, 3}} ({_LABEL_MEANING}), got "
                          f"{sorted(set(as_int[bad].tolist()))}")
    return as_int


def _check_box_order(boxes: np.ndarray) -> None:
    b = boxes.reshape(-1, 4)
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        x0, y0, x1, y1 = (float(v) for v in b[i])
        which = f" {i}" if b.shape[0] > 1 else ""
        wrong = f"x1 ({x1:g}) < x0 ({x0:g})" if x1 < x0 else f"y1 ({y1:g}) < y0 ({y0:g})"
        raise PromptError(f"box{which} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] has {wrong}: boxes are x0,y0,x1,y1 "
                          "(top-left corner, then bottom-right) with x0 <= x1 and y0 <= y1")


def _check_extent(coords: np.ndarray, orig_hw: tuple[int, int], normalized: bool, what: str) -> None:
    """Points more than one image size outside the image are almost surely in another frame."""
    c = coords.reshape(-1, 2).astype(np.float64)
    h, w = (float(v) for v in orig_hw)
    size = np.array([w, h]) if normalized else np.ones(2)
    bad = ((c < -size) | (c > 2 * size)).any(axis=1)
    if not bad.any():
        return
    x, y = c[int(np.flatnonzero(bad)[0])]
    frame = (f"pixels of the {int(h)} x {int(w)} image (H x W); accepted: x in [{-w:g}, {2 * w:g}], y in "
             f"[{-h:g}, {2 * h:g}]" if normalized else
             "fractions of the image's width and height with normalize_coords=False; accepted: [-1, 2]")
    raise PromptError(f"{what} has a point (x={x:g}, y={y:g}) far outside the image: coordinates are {frame}")


def prepare_prompts(point_coords: Any, point_labels: Any, box: Any, mask_input: Any, *, orig_hw: tuple[int, int],
                    resolution: int, mask_size: tuple[int, int], normalize_coords: bool = True,
                    where: str = "predict") -> Prompts:
    """Check the prompts of one image and move them to the model-input frame (``resolution``
    pixels a side): pixel coordinates of an ``orig_hw`` image when ``normalize_coords``, else
    fractions of its size."""
    if point_coords is None and point_labels is None and box is None and mask_input is None:
        raise PromptError(f"{where} has no prompt: give point_coords with point_labels, a box (x0, y0, x1, y1), "
                          "or a mask_input (the low-res logits of an earlier predict)")
    h, w = orig_hw
    size = np.array([w, h] if normalize_coords else [1, 1], dtype=np.float32)

    def to_model(xy: np.ndarray) -> np.ndarray:  # ... x 2 -> model-input pixels
        return xy / size * np.float32(resolution)

    out = Prompts()
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise PromptError("point_coords and point_labels must be given together")
        pc, pl = _floats(point_coords, "point_coords"), _labels(point_labels)
        if pc.ndim == 2:
            pc, pl = pc[None], (pl[None] if pl.ndim == 1 else pl)
        if pc.ndim != 3 or pc.shape[-1] != 2:
            raise PromptError(f"point_coords must have shape N x 2 or B x N x 2 (x, y), got {pc.shape}")
        if pl.shape != pc.shape[:2]:
            raise PromptError(f"point_labels shape {pl.shape} does not match point_coords {pc.shape}: one label "
                              "per point is needed")
        _check_extent(pc, orig_hw, normalize_coords, "point_coords")
        out.coords, out.labels = to_model(pc), pl
    if box is not None:
        bx = _floats(box, "box")
        if bx.shape[-1:] != (4,) or bx.ndim > 2:
            raise PromptError(f"box must have shape 4 or B x 4 (x0, y0, x1, y1), got {bx.shape}")
        _check_box_order(bx)
        _check_extent(bx, orig_hw, normalize_coords, "box")
        out.boxes = to_model(bx.reshape(-1, 2, 2))
    if mask_input is not None:
        mi = _floats(mask_input, "mask_input")
        if mi.ndim == 3:
            mi = mi[None]
        if mi.ndim != 4 or mi.shape[1] != 1 or mi.shape[-2:] != tuple(mask_size):
            raise PromptError(f"mask_input must have shape 1 x {mask_size[0]} x {mask_size[1]} or B x 1 x "
                              f"{mask_size[0]} x {mask_size[1]} (low-res logits from a previous predict), got "
                              f"{mi.shape}")
        out.mask_input = mi
    sizes = {t.shape[0] for t in (out.coords, out.boxes, out.mask_input) if t is not None}
    if len(sizes - {1}) > 1:
        raise PromptError(f"prompt batch sizes disagree: points {None if out.coords is None else out.coords.shape[0]}, "
                          f"boxes {None if out.boxes is None else out.boxes.shape[0]}, "
                          f"masks {None if out.mask_input is None else out.mask_input.shape[0]}")
    return out
