"""Generated "lab" images like LabPics V1, and a fake LabPics dataset on disk.

:func:`make_labpics_scene` draws transparent-looking vessels with materials inside, corks and
labels, and a few unannotated pixels, with LabPics-style instance id maps;
:func:`write_synthetic_labpics` writes such scenes in the LabPics V1 ``Simple`` layout, so that
the LabPics reader and the whole training pipeline can be exercised without the real dataset.

Everything is deterministic for a given ``numpy.random.Generator`` state / seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from samkit.data.labpics import LABPICS_IGNORE
from samkit.data.synthetic.scenes import canvas, dilate, erode, to_mask
from samkit.data.synthetic.textures import random_colour, scene_texture
from samkit.errors import ConfigError
from samkit.fileio import atomic_write

__all__ = ["LabPicsScene", "make_labpics_scene", "write_synthetic_labpics"]

PathLike = Union[str, os.PathLike]


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
    """``H x W`` bool: a beaker (rounded rectangle) or a flask (round body and a neck) between
    columns ``x0`` and ``x1`` and rows ``top`` and ``bottom``."""
    img, draw = canvas(h, w)
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
    return to_mask(img)


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
    bench = scene_texture(rng, h, w) * 0.6 + 60
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
            img, draw = canvas(h, w)
            draw.rectangle([cx0 - 1, max(0, ctop - h * 0.06), cx1 + 1, ctop + h * 0.04], fill=255)
            cork = to_mask(img)
            region |= cork
        # This vessel hides everything behind it.
        vessels[region] = v
        parts[region] = 0
        materials[region] = 0
        # Glass: mostly see-through, a tint and a bright rim.
        tint = random_colour(rng) * 0.3 + 150
        image[body] = image[body] * 0.7 + tint * 0.3
        rim = dilate(body, 1) & ~erode(body, 1)
        image[rim] = image[rim] * 0.3 + 230 * 0.7
        # Materials: one or two layers from a fill level to the bottom, inside the walls.
        inner = erode(body, 2)
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
                liquid = scene_texture(rng, h, w)
                image[layer] = image[layer] * 0.25 + liquid[layer] * 0.75
        if cork.any():
            parts[cork] = next_part
            next_part += 1
            image[cork] = scene_texture(rng, h, w)[cork] * 0.5 + 40
        if rng.random() < 0.3 and inner.any():  # a label stuck on the side
            ys, xs = np.nonzero(inner)
            cy, cx = np.median(ys), np.median(xs)
            lh, lw = (ys.max() - ys.min()) * 0.15, (xs.max() - xs.min()) * 0.3
            img, draw = canvas(h, w)
            draw.rectangle([cx - lw, cy - lh, cx + lw, cy + lh], fill=255)
            label = to_mask(img) & inner
            if label.any():
                parts[label] = next_part
                next_part += 1
                materials[label] = 0
                image[label] = 235 + rng.normal(0, 5, size=(int(label.sum()), 3))
    if rng.random() < 0.8:  # a few unannotated (254) pixels in one map
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(2, max(3.0, min(h, w) * 0.05))
        img, draw = canvas(h, w)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        blob = to_mask(img)
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
            jpeg, png = Image.fromarray(scene.image), Image.fromarray(scene.instance_png())
            atomic_write(image_dir / f"{stem}.jpg", lambda f: jpeg.save(f, format="JPEG", quality=95, subsampling=0))
            atomic_write(inst_dir / f"{stem}.png", lambda f: png.save(f, format="PNG"))
    return base
