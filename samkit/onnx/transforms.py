"""Model input and output in numpy, as the torch predictors compute them (no torch).

* :func:`image_input`: :func:`samkit.imageio.preprocess` (bilinear resize with antialiasing,
  ``align_corners=False``, then the ImageNet mean/std);
* :func:`upsample_logits`: ``F.interpolate(..., mode="bilinear", align_corners=False)``, how
  low-resolution mask logits reach the image size.

Resizing is separable: along the width, then along the height (torch's order), each output
sample a weighted sum of a few input samples, with torch's weights.
"""

from __future__ import annotations

import math

import numpy as np

from samkit.imageio import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["image_input", "upsample_logits", "normalize"]

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]


def _antialias_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of torch's antialiased bilinear resize (a triangle filter widened by the scale when
    shrinking): ``(indices out x K int64, weights out x K float32)``, unused taps weight 0."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    width = int(math.ceil(support)) * 2 + 1
    idx = np.zeros((out_size, width), dtype=np.int64)
    wts = np.zeros((out_size, width), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - lo
        j = np.arange(n)
        w = np.clip(1.0 - np.abs((j + lo - center + 0.5) * inv), 0.0, None)
        total = w.sum()
        idx[i, :n] = lo + j
        wts[i, :n] = w / total if total != 0.0 else w
    return idx, wts.astype(np.float32)


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of torch's bilinear resize with ``align_corners=False`` (no antialiasing)."""
    # the float32 scale, then scale * (i + 0.5) - 0.5 rounded once (the fused multiply-add of torch's kernel)
    scale = float(np.float32(in_size) / np.float32(out_size))
    src = np.maximum(scale * (np.arange(out_size) + 0.5) - 0.5, 0.0).astype(np.float32)
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < in_size - 1)
    l1 = src - i0.astype(np.float32)
    return np.stack([i0, i1], 1), np.stack([np.float32(1.0) - l1, l1], 1)


def _resample(x: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Resize ``x`` along ``axis``: each output sample the weighted sum of its taps, in order."""
    idx, wts = taps
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    out = np.take(x, idx[:, 0], axis=axis)
    out *= wts[:, 0].reshape(shape)
    for k in range(1, idx.shape[1]):
        term = np.take(x, idx[:, k], axis=axis)
        term *= wts[:, k].reshape(shape)
        out += term
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    """``3 x H x W`` float32 in ``[0, 1]`` -> minus the ImageNet mean, over its std."""
    return (x - _MEAN) / _STD


def image_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """``H x W x 3`` uint8 RGB -> the image encoder's input ``1 x 3 x size x size`` float32."""
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)
    h, w = x.shape[1:]
    x = _resample(x, 2, _antialias_taps(w, size))
    x = _resample(x, 1, _antialias_taps(h, size))
    return normalize(x)[None].astype(np.float32)


def upsample_logits(logits: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``... x h x w`` logits -> ``... x H x W`` float32, bilinear (``align_corners=False``)."""
    x = logits.astype(np.float32, copy=False)
    h, w = x.shape[-2:]
    if (h, w) == tuple(out_hw):
        return x.copy()
    x = _resample(x, x.ndim - 1, _bilinear_taps(w, out_hw[1]))
    return _resample(x, x.ndim - 2, _bilinear_taps(h, out_hw[0]))
