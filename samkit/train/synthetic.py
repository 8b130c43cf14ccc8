"""Synthetic data: random scenes for training, and a fake LabPics dataset on disk.

- :func:`make_scene` draws a random scene with many textured shapes, occlusions, objects
  nested in others and objects touching each other, and returns it as a :class:`Sample`;
  :class:`SyntheticSceneDataset` is an endless-looking ``Sequence[Sample]`` of them.
- :func:`make_labpics_scene` draws "lab" images (transparent-looking vessels with materials
  inside, corks and labels, a few unannotated pixels), and :func:`write_synthetic_labpics`
  writes them in the LabPics V1 ``Simple`` layout, so that the LabPics reader and the whole
  training pipeline can be exercised without the real dataset.

Everything is deterministic for a given ``numpy.random.Generator`` state / seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union, overload

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from samkit.errors import ConfigError, MissingDependencyError
from samkit.train.datasets import LABPICS_IGNORE, Sample

__all__ = [
    "LabPicsScene",
    "make_labpics_scene",
    "write_synthetic_labpics",
    "make_scene",
    "SyntheticSceneDataset",
    "dependency_photos",
]

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- drawing helpers


def _canvas(h: int, w: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", (w, h), 0)
    return img, ImageDraw.Draw(img)


def _to_mask(img: Image.Image) -> np.ndarray:
    return np.asarray(img) > 0


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return _to_mask(img.filter(ImageFilter.MinFilter(2 * radius + 1)))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return _to_mask(img.filter(ImageFilter.MaxFilter(2 * radius + 1)))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``H x W x 3`` float image in ``[0, 255]``: a colour with a random pattern."""
    base = _random_colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
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
        img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        pattern = np.asarray(img)
    contrast = rng.uniform(10, 60)
    second = _random_colour(rng)
    mix = np.clip(pattern[..., None] * 0.5 + 0.5, 0, 1) * rng.uniform(0, 0.6)
    out = base * (1 - mix) + second * mix + pattern[..., None] * contrast * 0.3
    return np.clip(out, 0, 255).astype(np.float32)


def _photo_texture(rng: np.random.Generator, photos: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """``H x W x 3`` float image: a random crop of a random photo (random scale, maybe
    mirrored), resized to ``h x w``."""
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
        import skimage.data as data
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


def _random_shape(
    rng: np.random.Generator, h: int, w: int, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """A random filled shape around ``centre`` (x, y) of about ``radius`` pixels."""
    cx, cy = centre
    img, draw = _canvas(h, w)
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
    return _to_mask(img)


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
            (and the scene for a given ``rng`` state is what it always was).
        photo_prob: see ``photos``.

    Returns:
        A :class:`Sample` with ``ignore=None``.
    """
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ConfigError(f"make_scene needs a size of at least 8 x 8, got {size}")
    lo, hi = num_objects
    def texture(prob: float) -> np.ndarray:
        if photos and rng.random() < prob:
            return _photo_texture(rng, photos, h, w)
        return _texture(rng, h, w)

    image = texture(photo_prob)
    instances: list[np.ndarray] = []
    scale = min(h, w)
    for _ in range(int(rng.integers(lo, hi + 1))):
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        radius = scale * rng.uniform(0.06, 0.3)
        shape = _random_shape(rng, h, w, centre, radius)
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
            inner = _random_shape(
                rng, h, w, (float(xs[pick]), float(ys[pick])), radius * rng.uniform(0.2, 0.5)
            )
            part = inner & _erode(shape, 1)
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


class SyntheticSceneDataset(Sequence):
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

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Sample, list[Sample]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        i = int(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        rng = np.random.default_rng([self.seed, i])
        return make_scene(rng, self.size, num_objects=self.num_objects, name=f"scene_{i:06d}",
                          photos=self.photos, photo_prob=self.photo_prob)


# --------------------------------------------------------------------------- LabPics-like


@dataclass
class LabPicsScene:
    """A synthetic lab image and its LabPics-style instance id maps (0 = none, 254 =
    unannotated)."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    vessels: np.ndarray  # H x W uint8 vessel instance ids
    parts: np.ndarray  # H x W uint8 vessel-part ids (corks, labels)
    materials: np.ndarray  # H x W uint8 material instance ids

    def instance_png(self) -> np.ndarray:
        """``H x W x 3`` uint8 in PIL's RGB order (R vessels, G parts, B materials), which
        OpenCV reads as (materials, parts, vessels): the LabPics ``Instance`` PNG."""
        return np.stack([self.vessels, self.parts, self.materials], axis=-1)


def _vessel_shape(
    rng: np.random.Generator, h: int, w: int, x0: float, x1: float, top: float, bottom: float
) -> np.ndarray:
    img, draw = _canvas(h, w)
    width = x1 - x0
    if rng.random() < 0.5:  # beaker / bottle: rounded rectangle
        draw.rounded_rectangle(
            [x0, top, x1, bottom], radius=float(width * rng.uniform(0.1, 0.35)), fill=255
        )
    else:  # flask: round body and a neck
        body = min(width, (bottom - top) * 0.75)
        cx = (x0 + x1) / 2
        draw.ellipse([cx - body / 2, bottom - body, cx + body / 2, bottom], fill=255)
        neck = width * rng.uniform(0.2, 0.4) / 2
        draw.rectangle([cx - neck, top, cx + neck, bottom - body * 0.8], fill=255)
    return _to_mask(img)


def make_labpics_scene(
    rng: np.random.Generator, size: tuple[int, int] = (192, 256)
) -> LabPicsScene:
    """A random "lab" image: transparent vessels with materials, corks and labels.

    Vessels are drawn left to right, each possibly occluding the one before. Inside each
    vessel are one or two material layers (liquid, foam / sediment); some vessels get a cork
    on top (a part) or a label on their side (a part hiding the material behind it). Most
    scenes also get a small blob of 254 (unannotated) in one of the three maps.

    Args:
        rng: the random generator.
        size: ``(H, W)``, at least 32 x 32.
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise ConfigError(f"make_labpics_scene needs a size of at least 32 x 32, got {size}")
    bench = _texture(rng, h, w) * 0.6 + 60
    image = bench.copy()
    vessels = np.zeros((h, w), np.uint8)
    parts = np.zeros((h, w), np.uint8)
    materials = np.zeros((h, w), np.uint8)
    n_vessels = int(rng.integers(1, 4))
    next_part = next_material = 1
    slot = w / n_vessels
    for v in range(1, n_vessels + 1):
        centre = slot * (v - 0.5) + rng.uniform(-0.25, 0.25) * slot
        half = slot * rng.uniform(0.3, 0.6)
        x0, x1 = centre - half, centre + half
        bottom = h * rng.uniform(0.8, 0.97)
        top = h * rng.uniform(0.1, 0.4)
        body = _vessel_shape(rng, h, w, x0, x1, top, bottom)
        region = body.copy()
        cork = np.zeros_like(body)
        if rng.random() < 0.5:  # a cork sticking out of the top
            ys, xs = np.nonzero(body)
            ctop = ys.min()
            cols = xs[ys == ctop]
            cx0, cx1 = cols.min(), cols.max()
            img, draw = _canvas(h, w)
            draw.rectangle([cx0 - 1, max(0, ctop - h * 0.06), cx1 + 1, ctop + h * 0.04], fill=255)
            cork = _to_mask(img)
            region |= cork
        # This vessel hides everything behind it.
        vessels[region] = v
        parts[region] = 0
        materials[region] = 0
        # Glass: mostly see-through, a tint and a bright rim.
        tint = _random_colour(rng) * 0.3 + 150
        image[body] = image[body] * 0.7 + tint * 0.3
        rim = _dilate(body, 1) & ~_erode(body, 1)
        image[rim] = image[rim] * 0.3 + 230 * 0.7
        # Materials: one or two layers from a fill level to the bottom, inside the walls.
        inner = _erode(body, 2)
        ys = np.nonzero(inner)[0]
        if ys.size and rng.random() < 0.85:
            ytop, ybot = ys.min(), ys.max()
            level = ytop + (ybot - ytop) * rng.uniform(0.15, 0.8)
            rows = np.arange(h)[:, None]
            layers = [level]
            if rng.random() < 0.4:
                layers.append(level + (ybot - level) * rng.uniform(0.3, 0.7))
            for i, start in enumerate(layers):
                end = layers[i + 1] if i + 1 < len(layers) else h
                layer = inner & (rows >= start) & (rows < end)
                if not layer.any():
                    continue
                materials[layer] = next_material
                next_material += 1
                liquid = _texture(rng, h, w)
                image[layer] = image[layer] * 0.25 + liquid[layer] * 0.75
        if cork.any():
            parts[cork] = next_part
            next_part += 1
            image[cork] = _texture(rng, h, w)[cork] * 0.5 + 40
        if rng.random() < 0.3 and inner.any():  # a label stuck on the side
            ys, xs = np.nonzero(inner)
            cy, cx = np.median(ys), np.median(xs)
            lh, lw = (ys.max() - ys.min()) * 0.15, (xs.max() - xs.min()) * 0.3
            img, draw = _canvas(h, w)
            draw.rectangle([cx - lw, cy - lh, cx + lw, cy + lh], fill=255)
            label = _to_mask(img) & inner
            if label.any():
                parts[label] = next_part
                next_part += 1
                materials[label] = 0
                image[label] = 235 + rng.normal(0, 5, size=(int(label.sum()), 3))
    if rng.random() < 0.8:  # a few unannotated (254) pixels in one map
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(2, max(3.0, min(h, w) * 0.05))
        img, draw = _canvas(h, w)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        blob = _to_mask(img)
        target = (vessels, parts, materials)[int(rng.integers(0, 3))]
        target[blob] = LABPICS_IGNORE
    image = image + rng.normal(0, 2.0, size=image.shape)
    rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return LabPicsScene(image=rgb, vessels=vessels, parts=parts, materials=materials)


def write_synthetic_labpics(
    root: PathLike,
    n_train: int,
    n_test: int,
    size: tuple[int, int] = (192, 256),
    seed: int = 0,
) -> Path:
    """Write a small synthetic dataset in the LabPics V1 ``Simple`` layout.

    Files: ``root/Simple/{Train,Test}/Image/synthetic_00000.jpg`` (JPEG, quality 95, no
    chroma subsampling) and
    ``root/Simple/{Train,Test}/Instance/synthetic_00000.png`` (see
    :meth:`LabPicsScene.instance_png`). Scenes come from :func:`make_labpics_scene` with one
    ``numpy.random.default_rng(seed)``, train scenes first, then test scenes, so the same
    call writes the same files.

    Args:
        root: the folder to write (created if needed); read it back with
            ``LabPicsDataset(root, split)``.
        n_train, n_test: numbers of images per split.
        size: ``(H, W)``.
        seed: random seed.

    Returns:
        ``root`` as a Path.
    """
    if n_train < 0 or n_test < 0:
        raise ConfigError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    base = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("Train", n_train), ("Test", n_test)):
        image_dir = base / "Simple" / split / "Image"
        inst_dir = base / "Simple" / split / "Instance"
        image_dir.mkdir(parents=True, exist_ok=True)
        inst_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            scene = make_labpics_scene(rng, size)
            stem = f"synthetic_{i:05d}"
            Image.fromarray(scene.image).save(image_dir / f"{stem}.jpg", quality=95, subsampling=0)
            Image.fromarray(scene.instance_png()).save(inst_dir / f"{stem}.png")
    return base
