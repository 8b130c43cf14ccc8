"""Intersection over union of binary masks."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

__all__ = ["mask_iou"]

MaskLike = Union[torch.Tensor, np.ndarray]


def mask_iou(pred: MaskLike, target: MaskLike, *, empty: float, ignore: Optional[MaskLike] = None) -> torch.Tensor:
    """IoU of binary masks over their last two dimensions, skipping ignored pixels.

    Args:
        pred: ``... x H x W`` masks (nonzero = inside), tensor or array.
        target: masks broadcastable to ``pred`` (e.g. ``B x 1 x H x W`` against ``B x M x H x W``).
        empty: the IoU to report where both masks are empty (the union has no pixel); callers
            say which convention they need (evaluation counts two empty masks as a match, 1.0;
            a training target counts them as no overlap, 0.0).
        ignore: masks broadcastable to ``pred``; nonzero pixels count for neither mask.

    Returns:
        ``...`` float64 tensor (the broadcast leading shape) on ``pred``'s device.
    """
    p = torch.as_tensor(pred) != 0
    t = torch.as_tensor(target, device=p.device) != 0
    if p.shape[-2:] != t.shape[-2:]:
        raise ValueError(f"mask sizes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    p, t = torch.broadcast_tensors(p, t)
    if ignore is not None:
        keep = torch.as_tensor(ignore, device=p.device) == 0
        p = p & keep
        t = t & keep
    inter = (p & t).flatten(-2).sum(-1, dtype=torch.float64)
    union = (p | t).flatten(-2).sum(-1, dtype=torch.float64)
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.full_like(union, float(empty)))
