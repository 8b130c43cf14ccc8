"""The textures of generated data: what the pixels of scenes and clips look like.

- Scenes (:mod:`~samkit.data.synthetic.scenes`, :mod:`~samkit.data.synthetic.labpics`):
  :func:`scene_texture` (a colour with stripes, a checker, a gradient or blotchy noise) and
  :func:`photo_texture` (a random crop of a real photo from :func:`dependency_photos`).
- Clips (:mod:`~samkit.data.synthetic.clips`): :func:`clip_background` (noise at several
  scales plus a colour ramp), and each object's :func:`object_colours` painted with
  :func:`pattern_colours` (stripes, checker or rings in the object's own frame).

Every function draws from the ``numpy.random.Generator`` it is given, in a fixed order, so a
texture is a function of the generator's state. Float images are ``H x W x 3`` in ``[0, 255]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from samkit.errors import MissingDependencyError
from samkit.visualize import hsv_to_rgb

__all__ = [
    "random_colour",
    "scene_texture",
    "photo_texture",
    "dependency_photos",
    "clip_background",
    "object_colours",
    "pattern_colours",
]


# --------------------------------------------------------------------------- shared helpers


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A ``3`` float64 RGB colour, each channel uniform in ``[0, 255)``."""
    return rng.uniform(0, 255, size=3)


def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(yy, xx)``: two ``H x W`` float32 arrays of the pixel rows and columns."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _upsample(grid: np.ndarray, h: int, w: int, resample: Image.Resampling) -> np.ndarray:
    """A coarse ``h' x w'`` (float32) or ``h' x w' x 3`` (uint8) grid resized to ``h x w`` with PIL."""
    return np.asarray(Image.fromarray(grid).resize((w, h), resample))


# --------------------------------------------------------------------------- scenes


def scene_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``H x W x 3`` float32 image in ``[0, 255]``: a colour with a random pattern (fine noise,
    stripes, checker, linear gradient or blotchy noise) mixed with a second colour."""
    base = random_colour(rng)
    yy, xx = _pixel_grid(h, w)
    kind = rng.integers(0, 5)
    if kind == 0:  # flat with fine noise
        pattern = rng.normal(0, 1, size=(h, w)).astype(np.float32) * 0.3
    elif kind == 1:  # stripes
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(4, 24)
        pattern = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    elif kind == 2:  # checker
        cell = int(rng.integers(3, 16))
        pattern = (((xx // cell) + (yy // cell)) % 2) * 2.0 - 1.0
    elif kind == 3:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        g = xx * math.cos(angle) + yy * math.sin(angle)
        pattern = (g - g.min()) / max(float(np.ptp(g)), 1.0) * 2.0 - 1.0
    else:  # blotchy noise (upsampled coarse noise)
        coarse = rng.normal(0, 1, size=(max(2, h // 16), max(2, w // 16))).astype(np.float32)
        pattern = _upsample(coarse, h, w, Image.Resampling.BICUBIC)
    contrast = rng.uniform(10, 60)
    second = random_colour(rng)
    mix = np.clip(pattern[..., None] * 0.5 + 0.5, 0, 1) * rng.uniform(0, 0.6)
    out = base * (1 - mix) + second * mix + pattern[..., None] * contrast * 0.3
    return np.clip(out, 0, 255).astype(np.float32)


def photo_texture(rng: np.random.Generator, photos: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """``H x W x 3`` float32 image: a random crop of a random photo (``H' x W' x 3`` uint8 each;
    a random fraction of its size, maybe mirrored), resized to ``h x w``."""
    photo = photos[int(rng.integers(0, len(photos)))]
    ph, pw = photo.shape[:2]
    frac = rng.uniform(0.3, 1.0)
    ch = max(8, int(round(min(ph, pw * h / w) * frac)))
    cw = max(8, int(round(ch * w / h)))
    ch, cw = min(ch, ph), min(cw, pw)
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = Image.fromarray(np.ascontiguousarray(photo[y0:y0 + ch, x0:x0 + cw]))
    crop = crop.resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32)


def dependency_photos(exclude: Sequence[str] = ("astronaut", "coffee")) -> list[np.ndarray]:
    """Real colour photos that scikit-image ships (``H x W x 3`` uint8 each), for scene
    backgrounds and object textures. ``exclude`` keeps photos out (the demo's photos stay
    unseen by the default model). Raises :class:`MissingDependencyError` without scikit-image."""
    try:
        import skimage.data as data  # optional dependency
    except ImportError as e:
        raise MissingDependencyError(
            "photo backgrounds need scikit-image: pip install scikit-image") from e
    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
             "brick", "grass", "gravel", "camera", "coins", "moon", "clock")
    out = []
    for name in names:
        if name in exclude:
            continue
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out


# --------------------------------------------------------------------------- clips


def clip_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``H x W x 3`` uint8: uniform noise upsampled from four scales (64, 24, 8 and 3 pixels)
    around a random tone, plus a colour ramp in a random direction."""
    acc = np.zeros((height, width, 3), dtype=np.float64)
    for scale, weight in ((64, 1.0), (24, 0.6), (8, 0.35), (3, 0.2)):
        gh, gw = max(2, height // scale + 2), max(2, width // scale + 2)
        grid = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.uint8)
        up = _upsample(grid, height, width, Image.Resampling.BILINEAR)
        acc += weight * (up.astype(np.float64) - 127.5)
    tone = rng.uniform(60, 190, size=3)
    gy, gx = np.mgrid[0:height, 0:width]
    direction = rng.uniform(-1, 1, size=2)
    ramp = (gx * direction[0] / max(width, 1) + gy * direction[1] / max(height, 1))[..., None]
    acc = tone + 0.45 * acc + 40.0 * ramp * rng.uniform(-1, 1, size=3)
    return np.clip(acc, 0, 255).astype(np.uint8)


def object_colours(rng: np.random.Generator) -> np.ndarray:
    """``2 x 3`` float64 RGB in ``[0, 255]``: a saturated bright colour and a darker one of a
    nearby hue, the two colours of a clip object's pattern."""
    hue = rng.uniform()
    c1 = hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    hue2 = (hue + rng.uniform(-0.12, 0.12)) % 1.0
    c2 = hsv_to_rgb(hue2, rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.6))
    return np.stack([c1, c2])


def pattern_colours(colours: np.ndarray, pattern: int, period: float, angle: float,
                    u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The colours of ``N`` points of an object: ``N x 3`` float32, a mix of the ``2 x 3``
    ``colours`` by ``pattern`` (0 stripes at ``angle``, 1 checker, 2 rings) of ``period``
    pixels, at the points' object-frame coordinates ``u``, ``v`` (``N`` each)."""
    ca, sa = math.cos(angle), math.sin(angle)
    if pattern == 0:  # stripes
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * (ca * u + sa * v) / period)
    elif pattern == 1:  # checker
        mix = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    else:  # rings
        mix = 0.5 + 0.5 * np.cos(2 * math.pi * np.hypot(u, v) / period)
    return (colours[0] * (1 - mix[:, None]) + colours[1] * mix[:, None]).astype(np.float32)
