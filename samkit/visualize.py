"""Pictures of results: masks, points and boxes drawn over an image, and the colours they use
(:func:`palette` for overlays, :func:`label_palette` for label PNGs, :func:`hsv_to_rgb`)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (each in ``[0, 1]``) as a ``3`` float64 RGB array in ``[0, 255]``."""
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float64) * 255.0


def palette(n: int, seed: int = 3) -> np.ndarray:
    """``n x 3`` uint8 distinct-looking colours for overlays (deterministic): hues spread by the
    golden ratio from a random start, saturation 0.75, value 1."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.61803398875 + rng.random()) % 1.0
    out = [hsv_to_rgb(float(h), 0.75, 1.0).astype(np.uint8) for h in hues]  # astype truncates, as int()
    return np.array(out, dtype=np.uint8).reshape(-1, 3)


def label_palette() -> list[int]:
    """The 256-colour palette (flat ``[r, g, b, ...]``, 768 ints) of label PNGs: 0 black, then
    distinct colours, built by spreading the bits of the label over the three channels, high
    bits first (the PASCAL VOC / DAVIS scheme, so other tools show the same colours)."""
    flat: list[int] = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        flat += [r, g, b]
    return flat


def overlay(image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray], *, alpha: float = 0.5,
            points: np.ndarray | None = None, labels: np.ndarray | None = None,
            boxes: np.ndarray | None = None, colors: np.ndarray | None = None,
            outline: bool = True) -> Image.Image:
    """Draw masks (``N x H x W`` bool/0-1, or an ``H x W`` label map with ids 1..K) over an
    ``H x W x 3`` uint8 image. Points (``P x 2``, green = positive, red = negative) and boxes
    (``B x 4`` XYXY) are drawn on top. Returns a PIL image."""
    img = np.asarray(image).astype(np.float32).copy()
    m = np.asarray(masks)
    if m.ndim == 2 and m.dtype != bool and m.max(initial=0) > 1:  # label map
        ids = [i for i in np.unique(m) if i != 0]
        m = np.stack([m == i for i in ids]) if ids else np.zeros((0,) + m.shape, bool)
    elif m.ndim == 2:
        m = m[None]
    m = m.astype(bool)
    cols = palette(len(m)) if colors is None else np.asarray(colors, np.uint8)
    for k, mask in enumerate(m):
        if not mask.any():
            continue
        c = cols[k % len(cols)].astype(np.float32)
        img[mask] = img[mask] * (1 - alpha) + c * alpha
        if outline:
            edge = mask & ~_erode(mask)
            img[edge] = c
    pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    r = max(3, round(min(pil.size) / 120))
    if boxes is not None:
        for b in np.asarray(boxes, dtype=float).reshape(-1, 4):
            draw.rectangle([float(v) for v in b], outline=(255, 255, 0), width=max(2, r // 2))
    if points is not None:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        labs = np.ones(len(pts)) if labels is None else np.asarray(labels).reshape(-1)
        for (x, y), lab in zip(pts, labs):
            fill = (40, 220, 40) if lab == 1 else (230, 40, 40)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255), width=max(1, r // 3))
    return pil


def _erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbour erosion of a bool mask (image border counts as outside)."""
    p = np.pad(mask, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
