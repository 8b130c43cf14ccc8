"""Generated clips of moving objects with exact ground truth, as :class:`ClipSample`.

A clip shows ``K`` textured objects (ellipses and star-shaped polygons) that move, bounce off
the borders, spin, slightly deform and occlude each other in a fixed depth order, over a
random texture background seen by a slowly panning camera. Object ``k`` (``1..K``) is the
``k``-th drawn, so later objects are in front.

:class:`ClipRenderer` renders frame ``t`` and its ``H x W`` label map (0 background, ``k``
where object ``k`` is visible) as a pure function of ``(seed, t)``: any frame alone, in any
order, with the same result (the video package's ``SyntheticVideo`` reads it lazily as a
video, a floor up). :func:`make_clip` renders a whole clip; :class:`SyntheticClipDataset` is a
``Sequence[ClipSample]`` of varied clips for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from samkit.data.sample import ClipSample, LazyDataset
from samkit.data.synthetic.textures import clip_background, object_colours, pattern_colours
from samkit.errors import DatasetError, VideoError

__all__ = ["SceneConfig", "ClipRenderer", "make_clip", "SyntheticClipDataset"]


@dataclass(frozen=True)
class SceneConfig:
    """How a generated clip looks and moves. Sizes are fractions of ``min(H, W)``."""

    min_size: float = 0.10  # smallest object radius
    max_size: float = 0.22  # largest object radius
    max_speed: float = 0.02  # largest object speed, per frame
    max_spin: float = 0.06  # largest rotation speed, radians per frame
    deform: float = 0.12  # relative amplitude of the shape's periodic deformation (0: rigid)
    camera_motion: float = 0.03  # amplitude of the background pan (0: static camera)
    noise_std: float = 2.0  # std of the per-frame pixel noise, in 0..255 units
    shapes: tuple[str, ...] = ("ellipse", "polygon")  # shapes to draw objects from
    fps: float = 24.0  # frame rate for writing the clip as a video

    def __post_init__(self) -> None:
        if not 0 < self.min_size <= self.max_size:
            raise VideoError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        unknown = set(self.shapes) - {"ellipse", "polygon"}
        if not self.shapes or unknown:
            raise VideoError(
                f"shapes must be a non-empty subset of ('ellipse', 'polygon'), got {self.shapes}"
            )
        for name in ("max_speed", "max_spin", "deform", "camera_motion", "noise_std"):
            if getattr(self, name) < 0:
                raise VideoError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.deform >= 1:
            raise VideoError(f"deform must be < 1, got {self.deform}")


@dataclass(frozen=True)
class _Object:
    """One object's appearance and motion; all positions in pixels, angles in radians."""

    polygon: bool
    vertex_angles: np.ndarray  # V, increasing in [0, 2pi) (polygons only)
    radii: np.ndarray  # V for a polygon, 2 (semi-axes) for an ellipse
    deform_phase: np.ndarray  # same length as radii
    deform_rate: float  # radians per frame
    colors: np.ndarray  # 2 x 3 float, the two colours of the texture
    pattern: int  # 0 stripes, 1 checker, 2 rings
    period: float  # texture period in pixels
    pattern_angle: float
    start: np.ndarray  # 2: (x, y) at frame 0
    velocity: np.ndarray  # 2: pixels per frame
    bounds: np.ndarray  # 2 x 2: [[x_lo, x_hi], [y_lo, y_hi]] the centre bounces within
    angle0: float
    spin: float


def _bounce(x: float, lo: float, hi: float) -> float:
    """Position of a point moving freely along ``x`` but reflected inside ``[lo, hi]``."""
    span = hi - lo
    if span <= 0:
        return lo
    m = (x - lo) % (2 * span)
    return lo + (m if m <= span else 2 * span - m)


def _inside_star_polygon(
    u: np.ndarray, v: np.ndarray, angles: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """Whether points ``(u, v)`` lie inside the polygon whose vertices are at polar
    ``(radii[j], angles[j])`` around the origin (angles increasing, so counter-clockwise).

    The polygon is star-shaped from the origin, so a point is inside exactly when it is on
    the inner side of the edge spanning its own polar angle.
    """
    n = len(angles)
    vx, vy = radii * np.cos(angles), radii * np.sin(angles)
    beta = np.mod(np.arctan2(v, u), 2 * math.pi)
    j = (np.searchsorted(angles, beta, side="right") - 1) % n  # edge j -> j + 1
    k = (j + 1) % n
    ex, ey = vx[k] - vx[j], vy[k] - vy[j]
    cross = ex * (v - vy[j]) - ey * (u - vx[j])
    return cross >= 0


class ClipRenderer:
    """Renders the frames and label maps of one generated clip, any frame on its own.

    The background, camera path and objects are drawn from ``numpy.random.default_rng(seed)``
    here; frame ``t``'s pixel noise from ``default_rng([seed, t, 7])`` when it is rendered.

    Args:
        height, width: frame size in pixels (at least 8 each).
        num_objects: number of objects ``K`` (0..255, the ids of uint8 label maps).
        seed: everything is determined by it.
        scene: appearance and motion settings.
    """

    def __init__(self, height: int, width: int, num_objects: int, seed: int = 0, *,
                 scene: Optional[SceneConfig] = None) -> None:
        if height < 8 or width < 8:
            raise VideoError(f"frames must be at least 8x8 pixels, got {height}x{width}")
        if not 0 <= num_objects <= 255:
            raise VideoError(f"num_objects must be in 0..255 (uint8 labels), got {num_objects}")
        self.height, self.width = int(height), int(width)
        self.num_objects = int(num_objects)
        self.seed = int(seed)
        self.scene = scene or SceneConfig()
        rng = np.random.default_rng(self.seed)
        side = min(height, width)
        self._pad = int(round(self.scene.camera_motion * max(height, width)))
        self._pan_phase = rng.uniform(0, 2 * math.pi, size=2)
        self._pan_rate = rng.uniform(0.01, 0.04, size=2)
        self._bg = clip_background(rng, height + 2 * self._pad, width + 2 * self._pad)  # (H + 2p) x (W + 2p) x 3
        self._objects = [self._make_object(rng, side) for _ in range(self.num_objects)]

    def _make_object(self, rng: np.random.Generator, side: int) -> _Object:
        cfg = self.scene
        size = rng.uniform(cfg.min_size, cfg.max_size) * side
        polygon = rng.choice(len(cfg.shapes)) if len(cfg.shapes) > 1 else 0
        is_polygon = cfg.shapes[int(polygon)] == "polygon"
        if is_polygon:
            n = int(rng.integers(3, 9))
            # Angles spread round the circle, jittered; radii vary so shapes are irregular.
            base = np.sort((np.arange(n) + rng.uniform(-0.3, 0.3, size=n)) * 2 * math.pi / n)
            angles = np.mod(base + rng.uniform(0, 2 * math.pi), 2 * math.pi)
            angles.sort()
            radii = size * rng.uniform(0.6, 1.0, size=n)
        else:
            angles = np.zeros(0)
            radii = size * np.array([1.0, rng.uniform(0.45, 1.0)])
        colors = object_colours(rng)
        h, w = self.height, self.width
        margin = 0.1
        bounds = np.array([[margin * w, (1 - margin) * w], [margin * h, (1 - margin) * h]])
        speed = rng.uniform(0.3, 1.0) * cfg.max_speed * side
        heading = rng.uniform(0, 2 * math.pi)
        return _Object(  # keyword arguments are evaluated in order: the order of the draws
            polygon=is_polygon,
            vertex_angles=angles,
            radii=radii,
            deform_phase=rng.uniform(0, 2 * math.pi, size=len(radii)),
            deform_rate=float(rng.uniform(0.05, 0.2)),
            colors=colors,
            pattern=int(rng.integers(0, 3)),
            period=float(rng.uniform(0.15, 0.5) * size),
            pattern_angle=float(rng.uniform(0, math.pi)),
            start=np.array([rng.uniform(*bounds[0]), rng.uniform(*bounds[1])]),
            velocity=speed * np.array([math.cos(heading), math.sin(heading)]),
            bounds=bounds,
            angle0=float(rng.uniform(0, 2 * math.pi)),
            spin=float(rng.uniform(-1, 1) * cfg.max_spin),
        )

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index`` (``>= 0``; the motion goes on past any clip length).

        Returns:
            ``(frame, labels)``: ``H x W x 3`` uint8 RGB and ``H x W`` uint8 label map
            (0 background, ``k`` where object ``k`` is in front).
        """
        if index < 0:
            raise VideoError(f"frame index must be >= 0, got {index}")
        t = float(index)
        h, w = self.height, self.width
        pan = np.rint(self._pad * np.sin(self._pan_rate * t + self._pan_phase)).astype(int)
        ox, oy = self._pad + int(pan[0]), self._pad + int(pan[1])  # camera offset in the background
        image = self._bg[oy : oy + h, ox : ox + w].astype(np.float32)  # H x W x 3
        labels = np.zeros((h, w), dtype=np.uint8)
        for k, obj in enumerate(self._objects, start=1):  # later objects are in front
            self._draw(obj, t, k, image, labels)
        if self.scene.noise_std > 0:
            rng = np.random.default_rng([self.seed, int(t), 7])
            image += rng.normal(0.0, self.scene.noise_std, size=image.shape).astype(np.float32)
        frame = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return frame, labels

    def object_masks(self, index: int) -> np.ndarray:
        """Full (amodal) masks of every object on frame ``index``, ignoring occlusion.

        Returns:
            ``K x H x W`` bool; ``object_masks(t)[k - 1]`` is object ``k``'s whole shape,
            of which ``render(t)[1] == k`` is the visible part.
        """
        if index < 0:
            raise VideoError(f"frame index must be >= 0, got {index}")
        t = float(index)
        out = np.zeros((self.num_objects, self.height, self.width), dtype=bool)
        for k, obj in enumerate(self._objects):
            placed = self._shape(obj, t)
            if placed is not None:
                rows, cols, inside, _, _ = placed
                out[k, rows, cols] = inside
        return out

    def _shape(
        self, obj: _Object, t: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray] | None:
        """Where ``obj`` is at time ``t``: ``(rows, cols, inside, u, v)`` over its bounding box
        (``inside`` bool, ``u``/``v`` the object-frame coordinates), or None if off-frame."""
        h, w = self.height, self.width
        cx = _bounce(obj.start[0] + obj.velocity[0] * t, *obj.bounds[0])
        cy = _bounce(obj.start[1] + obj.velocity[1] * t, *obj.bounds[1])
        theta = obj.angle0 + obj.spin * t
        scale = 1.0 + self.scene.deform * np.sin(obj.deform_rate * t + obj.deform_phase)
        radii = obj.radii * scale
        reach = float(radii.max()) + 1.0
        x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
        y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dx += 0.5 - cx
        dy += 0.5 - cy
        cos, sin = math.cos(theta), math.sin(theta)
        u = cos * dx + sin * dy  # object frame: rotate by -theta
        v = -sin * dx + cos * dy
        if obj.polygon:
            inside = _inside_star_polygon(u, v, obj.vertex_angles, radii)
        else:
            inside = (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1.0
        return slice(y0, y1), slice(x0, x1), inside, u, v

    def _draw(
        self, obj: _Object, t: float, label: int, image: np.ndarray, labels: np.ndarray
    ) -> None:
        """Paint object ``obj`` at time ``t`` into ``image`` (H x W x 3 float32) and ``labels``."""
        placed = self._shape(obj, t)
        if placed is None:
            return
        rows, cols, inside, u, v = placed
        if not inside.any():
            return
        colours = pattern_colours(obj.colors, obj.pattern, obj.period, obj.pattern_angle, u[inside], v[inside])
        image[rows, cols][inside] = colours
        labels[rows, cols][inside] = label


def make_clip(
    num_frames: int = 16,
    height: int = 240,
    width: int = 320,
    num_objects: int = 3,
    seed: int = 0,
    *,
    scene: Optional[SceneConfig] = None,
    name: str = "",
) -> ClipSample:
    """Render a generated clip of moving, deforming, occluding objects with its ground truth.

    Args:
        num_frames: ``T``.
        height, width: frame size ``H x W``.
        num_objects: ``K`` (object ids 1..K; ``masks[k - 1]`` is object ``k``).
        seed: the clip is a pure function of the arguments.
        scene: appearance and motion settings (:class:`SceneConfig`).
        name: the clip's name.

    Returns:
        A :class:`ClipSample`: ``T x H x W x 3`` frames and ``K x T x H x W`` masks (the
        label maps: :meth:`ClipSample.labels`). For clips too long to hold in memory, render
        frames one at a time with :class:`ClipRenderer` (or read the video package's
        ``SyntheticVideo``).
    """
    if num_frames <= 0:
        raise VideoError(f"num_frames must be positive, got {num_frames}")
    renderer = ClipRenderer(height, width, num_objects, seed, scene=scene)
    frames, labels = zip(*(renderer.render(t) for t in range(num_frames)))
    return ClipSample.from_labels(np.stack(frames), np.stack(labels), num_objects, name=name)


class SyntheticClipDataset(LazyDataset):
    """``length`` generated clips (``num_frames`` frames of ``size x size``, 2 to 5 moving,
    spinning, deforming, occluding objects on a panning textured background). Clip ``i`` is
    a pure function of ``(seed, i)``: its object count, object sizes and speed are drawn from
    ``numpy.random.default_rng([seed, 77, i])``, then :func:`make_clip` renders it."""

    def __init__(self, length: int, num_frames: int = 8, size: int = 256, seed: int = 0,
                 num_objects: tuple[int, int] = (2, 5)) -> None:
        if length < 1 or num_frames < 2:
            raise DatasetError(f"SyntheticClipDataset needs length >= 1 and num_frames >= 2, "
                               f"got {length} and {num_frames}")
        self.length, self.num_frames, self.size, self.seed = int(length), int(num_frames), int(size), int(seed)
        self.num_objects = num_objects
        self._entries = range(self.length)

    def _name(self, i: int) -> str:
        return f"clip_{i:06d}"

    def _load(self, i: int) -> ClipSample:
        rng = np.random.default_rng([self.seed, 77, i])
        k = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        scene = SceneConfig(min_size=float(rng.uniform(0.06, 0.12)), max_size=float(rng.uniform(0.14, 0.25)),
                            max_speed=float(rng.uniform(0.01, 0.04)))
        return make_clip(self.num_frames, self.size, self.size, k, seed=int(rng.integers(0, 2 ** 31)), scene=scene,
                         name=self._name(i))
