"""Small helpers shared by test files (no test here)."""

from __future__ import annotations

import numpy as np
import torch


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Perturb every parameter and buffer so that none keeps a constant init (zeros/ones):
    a test then fails if any weight is wired to the wrong place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def blob_masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """``n x h x w`` bool masks made of a few discs and rectangles (mask 0 empty, mask 1 full)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(2, n):
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 3)
            out[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        if i % 3 == 0:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            out[i, y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] ^= True
    out[1] = True
    return torch.from_numpy(out)


def ellipse_masks(b: int = 4, h: int = 40, w: int = 50, seed: int = 0) -> torch.Tensor:
    """``b x h x w`` bool masks, one random ellipse each (none empty)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(b):
        cx, cy = rng.uniform(5, w - 5), rng.uniform(5, h - 5)
        rx, ry = rng.uniform(3, 15), rng.uniform(3, 15)
        out.append(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1)
    return torch.from_numpy(np.stack(out))


def random_rgb(h: int = 12, w: int = 17, seed: int = 0) -> np.ndarray:
    """``h x w x 3`` uint8 noise."""
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
