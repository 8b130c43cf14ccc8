"""Stability scores: how much a mask changes when its logit threshold moves."""

from __future__ import annotations

import torch

__all__ = ["count_above", "stability_score", "stability_from_counts"]


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
