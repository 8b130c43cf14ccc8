"""Generated image scenes with exact instance masks, for training and evaluation.

:func:`make_scene` draws a random scene of many textured shapes (occlusions, objects nested in
others, objects touching each other, rings with holes) and returns it as a :class:`Sample`;
:class:`SyntheticSceneDataset` is a ``Sequence[Sample]`` of them made on demand. The drawing
helpers here (a PIL canvas, erosion, dilation) also draw the LabPics-like scenes of
:mod:`samkit.data.synthetic.labpics`; textures come from :mod:`samkit.data.synthetic.textures`.

Everything is deterministic for a given ``numpy.random.Generator`` state / seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from samkit.data.sample import LazyDataset, Sample
from samkit.data.synthetic.textures import photo_texture, scene_texture
from samkit.errors import ConfigError

__all__ = ["make_scene", "SyntheticSceneDataset"]


# --------------------------------------------------------------------------- drawing helpers


def canvas(h: int, w: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A black ``h x w`` 8-bit PIL image and a drawer on it (draw shapes with ``fill=255``)."""
    img = Image.new("L", (w, h), 0)
    return img, ImageDraw.Draw(img)


def to_mask(img: Image.Image) -> np.ndarray:
    """The drawn pixels of a :func:`canvas` image: ``H x W`` bool."""
    return np.asarray(img) > 0


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """``H x W`` bool ``mask`` eroded by a square of side ``2 * radius + 1``."""
    if radius <= 0:
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return to_mask(img.filter(ImageFilter.MinFilter(2 * radius + 1)))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``H x W`` bool ``mask`` dilated by a square of side ``2 * radius + 1``."""
    if radius <= 0:
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return to_mask(img.filter(ImageFilter.MaxFilter(2 * radius + 1)))


def random_shape(
    rng: np.random.Generator, h: int, w: int, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """``H x W`` bool: a random filled shape (ellipse, rounded rectangle, star polygon, ring or
    thick curved stroke) around ``centre`` (x, y) of about ``radius`` pixels."""
    cx, cy = centre
    img, draw = canvas(h, w)
    kind = rng.integers(0, 5)
    if kind == 0:  # ellipse
        rx, ry = radius * rng.uniform(0.5, 1.2), radius * rng.uniform(0.5, 1.2)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    elif kind == 1:  # rounded rectangle
        rx, ry = radius * rng.uniform(0.5, 1.2), radius * rng.uniform(0.5, 1.2)
        r = float(min(rx, ry) * rng.uniform(0.1, 0.6))
        draw.rounded_rectangle([cx - rx, cy - ry, cx + rx, cy + ry], radius=r, fill=255)
    elif kind == 2:  # star-shaped polygon
        n = int(rng.integers(5, 13))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = radius * rng.uniform(0.4, 1.2, n)
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)]
        draw.polygon(pts, fill=255)
    elif kind == 3:  # ring: a shape with a hole
        rx, ry = radius * rng.uniform(0.6, 1.2), radius * rng.uniform(0.6, 1.2)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        f = rng.uniform(0.35, 0.6)
        draw.ellipse([cx - rx * f, cy - ry * f, cx + rx * f, cy + ry * f], fill=0)
    else:  # thick curved stroke
        n = int(rng.integers(3, 6))
        pts = [
            (cx + rng.uniform(-radius, radius), cy + rng.uniform(-radius, radius)) for _ in range(n)
        ]
        draw.line(pts, fill=255, width=max(2, int(radius * rng.uniform(0.2, 0.5))), joint="curve")
    return to_mask(img)


# --------------------------------------------------------------------------- general scenes


def make_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    *,
    num_objects: tuple[int, int] = (4, 12),
    min_area: int = 24,
    name: str = "scene",
    photos: Sequence[np.ndarray] | None = None,
    photo_prob: float = 0.5,
) -> Sample:
    """A random scene of textured objects, with its instance masks.

    Objects are drawn one over another, so later objects occlude earlier ones (masks are
    the visible parts). Some objects get a part nested inside them (both the whole and the
    part are instances, as in SAM's multi-granular data); some are split into two touching
    instances with different textures; rings have holes.

    Args:
        rng: the random generator (the scene is a function of its state).
        size: ``(H, W)``.
        num_objects: inclusive range of the number of top-level objects.
        min_area: visible instances smaller than this many pixels are dropped.
        name: the sample's name.
        photos: real photos (``H x W x 3`` uint8); when given, the background is a crop of
            one of them with probability ``photo_prob``, and so is an object's texture with
            probability ``photo_prob / 2``. Without photos only generated textures are used
            and no random number is drawn for that choice.
        photo_prob: see ``photos``.

    Returns:
        A :class:`Sample` with ``ignore=None``.
    """
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ConfigError(f"make_scene needs a size of at least 8 x 8, got {size}")
    lo, hi = num_objects

    def texture(prob: float) -> np.ndarray:  # H x W x 3 float32
        if photos and rng.random() < prob:
            return photo_texture(rng, photos, h, w)
        return scene_texture(rng, h, w)

    image = texture(photo_prob)
    instances: list[np.ndarray] = []
    scale = min(h, w)
    for _ in range(int(rng.integers(lo, hi + 1))):
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        radius = scale * rng.uniform(0.06, 0.3)
        shape = random_shape(rng, h, w, centre, radius)
        if not shape.any():
            continue
        for m in instances:  # occlusion: the new object hides what lies under it
            m &= ~shape
        if rng.random() < 0.2:  # two touching instances split along a random line
            angle = rng.uniform(0, math.pi)
            yy, xx = np.mgrid[0:h, 0:w]
            side = (xx - centre[0]) * math.cos(angle) + (yy - centre[1]) * math.sin(angle) > 0
            pieces = [shape & side, shape & ~side]
        else:
            pieces = [shape]
        for piece in pieces:
            tex = texture(photo_prob / 2)
            image[piece] = tex[piece]
            instances.append(piece.copy())
        if rng.random() < 0.3:  # a part nested inside the object
            ys, xs = np.nonzero(shape)
            pick = int(rng.integers(0, ys.size))
            inner = random_shape(
                rng, h, w, (float(xs[pick]), float(ys[pick])), radius * rng.uniform(0.2, 0.5)
            )
            part = inner & erode(shape, 1)
            if part.sum() >= min_area:
                tex = texture(photo_prob / 2)
                image[part] = tex[part]
                instances.append(part)
    # Mild global noise so flat regions are not perfectly flat.
    image = image + rng.normal(0, 3.0, size=image.shape).astype(np.float32)
    rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    kept = [m for m in instances if int(m.sum()) >= min_area]
    masks = np.stack(kept) if kept else np.zeros((0, h, w), dtype=bool)
    return Sample(image=rgb, masks=masks, ignore=None, name=name)


class SyntheticSceneDataset(LazyDataset):
    """``length`` random scenes from :func:`make_scene`, made on demand.

    Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so it is the same
    every time it is indexed, whatever the order. ``photos`` / ``photo_prob``: real photos
    for backgrounds and textures, as in :func:`make_scene`.
    """

    def __init__(
        self,
        length: int,
        size: tuple[int, int] = (256, 256),
        seed: int = 0,
        num_objects: tuple[int, int] = (4, 12),
        photos: Sequence[np.ndarray] | None = None,
        photo_prob: float = 0.5,
    ) -> None:
        if length < 1:
            raise ConfigError(f"SyntheticSceneDataset needs length >= 1, got {length}")
        self.length = int(length)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.num_objects = num_objects
        self.photos = list(photos) if photos is not None else None
        self.photo_prob = float(photo_prob)
        self._entries = range(self.length)

    def _name(self, i: int) -> str:
        return f"scene_{i:06d}"

    def _load(self, i: int) -> Sample:
        rng = np.random.default_rng([self.seed, i])
        return make_scene(rng, self.size, num_objects=self.num_objects, name=self._name(i),
                          photos=self.photos, photo_prob=self.photo_prob)
