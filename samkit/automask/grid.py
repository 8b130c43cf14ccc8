"""Point grids, crop boxes, and moving boxes, points and masks between a crop and the image.

numpy only at import time: the boxes and points functions take numpy arrays or torch tensors
(and return the same kind), ``uncrop_masks`` takes tensors.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from samkit.errors import ImageError

__all__ = ["build_point_grid", "build_all_layer_point_grids", "generate_crop_boxes", "check_crop_boxes",
           "is_box_near_crop_edge", "uncrop_boxes_xyxy", "uncrop_points", "uncrop_masks"]


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


def check_crop_boxes(im_size: Sequence[int], boxes: Sequence[Sequence[int]], layers: Sequence[int]) -> None:
    """Raise :class:`~samkit.errors.ImageError` when a crop of :func:`generate_crop_boxes` is
    empty: an image too small for its crop layers. The message gives the image's size
    ``(H, W)``, not the crop's."""
    im_h, im_w = int(im_size[0]), int(im_size[1])
    for box, layer in zip(boxes, layers):
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ImageError(f"the image ({im_h} x {im_w} pixels, H x W) is too small for crop_n_layers="
                             f"{max(layers)}: crop {[x0, y0, x1, y1]} (x0, y0, x1, y1) of crop layer {layer} is "
                             "empty; use fewer crop layers (crop_n_layers=0 works for any image size) or a larger "
                             "image")


def is_box_near_crop_edge(boxes: Any, crop_box: Sequence[int], orig_box: Sequence[int],
                          atol: float = 20.0) -> Any:
    """Which boxes come within ``atol`` pixels of a crop edge that is not an image edge.

    ``boxes`` ``N x 4`` XYXY in the crop's frame (a numpy array, or a torch tensor on any device);
    ``crop_box`` and ``orig_box`` XYXY in the image frame. Returns ``N`` bool of the same kind.
    """
    if not isinstance(boxes, np.ndarray):  # a torch tensor: N x 4 numbers, decided in numpy
        import torch

        near = is_box_near_crop_edge(boxes.detach().cpu().numpy(), crop_box, orig_box, atol)
        return torch.from_numpy(near).to(boxes.device)
    crop = np.asarray(crop_box, dtype=np.float32)
    image = np.asarray(orig_box, dtype=np.float32)
    placed = uncrop_boxes_xyxy(boxes, crop_box).astype(np.float32)
    at_crop = np.isclose(placed, crop[None], atol=atol, rtol=0)
    at_image = np.isclose(placed, image[None], atol=atol, rtol=0)
    return (at_crop & ~at_image).any(axis=1)


def _offset_like(values: Any, offset: list[int]) -> Any:
    """``offset`` as an array of the kind of ``values``: numpy in its dtype, or an int64 tensor
    on its device (which adds to int64 and float tensors alike)."""
    if isinstance(values, np.ndarray):
        return np.asarray(offset, dtype=values.dtype)
    import torch

    return torch.tensor(offset, device=values.device)


def uncrop_boxes_xyxy(boxes: Any, crop_box: Sequence[int]) -> Any:
    """Boxes ``... x 4`` (numpy array or torch tensor) from a crop's frame to the image frame."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + _offset_like(boxes, [x0, y0, x0, y0])


def uncrop_points(points: Any, crop_box: Sequence[int]) -> Any:
    """Points ``... x 2`` (x, y) (numpy array or torch tensor) from a crop's frame to the image frame."""
    return points + _offset_like(points, [int(crop_box[0]), int(crop_box[1])])


def uncrop_masks(masks: Any, crop_box: Sequence[int], orig_h: int, orig_w: int) -> Any:
    """Masks ``... x h x w`` (a torch tensor) of a crop -> ``... x orig_h x orig_w``, zero outside the crop."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    out = masks.new_zeros(*masks.shape[:-2], orig_h, orig_w)
    out[..., y0:y1, x0:x1] = masks
    return out
