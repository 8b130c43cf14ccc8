"""Synthetic video clips of moving objects, with exact ground-truth masks.

Used by tests, benchmarks and training. A clip shows ``K`` textured objects (ellipses and
star-shaped polygons) that move, bounce off the borders, spin, slightly deform and occlude
each other in a fixed depth order, over a random texture background seen by a slowly
panning camera. The ground truth of frame ``t`` is an ``H x W`` uint8 label map: 0 for
background, ``k`` (1..K) where object ``k`` is visible.

Everything is a pure function of ``(seed, frame index)``: any frame can be rendered alone,
in any order, with the same result. :class:`SyntheticVideo` is the lazy form (a
:class:`~samkit.video.frames.FrameSource` that renders frames on demand, for clips of
thousands of frames); :func:`make_clip` gives a :class:`SyntheticClip`, materialised in
lists or, with ``lazy=True``, backed by a :class:`SyntheticVideo`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
from PIL import Image

from samkit.errors import VideoError
from samkit.video.frames import FrameSource, _LRU, require_cv2

__all__ = [
    "SceneConfig",
    "SyntheticClip",
    "SyntheticVideo",
    "make_clip",
    "write_clip_jpegs",
    "write_clip_masks",
    "write_clip_mp4",
    "label_palette",
]

@dataclass(frozen=True)
class SceneConfig:
    """How a synthetic scene looks and moves. Sizes are fractions of ``min(H, W)``."""

    min_size: float = 0.10  # smallest object radius
    max_size: float = 0.22  # largest object radius
    max_speed: float = 0.02  # largest object speed, per frame
    max_spin: float = 0.06  # largest rotation speed, radians per frame
    deform: float = 0.12  # relative amplitude of the shape's periodic deformation (0: rigid)
    camera_motion: float = 0.03  # amplitude of the background pan (0: static camera)
    noise_std: float = 2.0  # std of the per-frame pixel noise, in 0..255 units
    shapes: tuple[str, ...] = ("ellipse", "polygon")  # shapes to draw objects from
    fps: float = 24.0  # frame rate recorded in the clip (for writing videos)

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


def label_palette() -> list[int]:
    """A 256-colour palette (flat ``[r, g, b, ...]``) for label PNGs: 0 black, distinct colours.

    Built by spreading the bits of the label over the three channels, high bits first, the
    usual scheme of segmentation datasets.
    """
    palette: list[int] = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as an RGB float array in 0..255."""
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float64) * 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random texture: noise at several scales plus a colour gradient, H x W x 3 uint8."""
    acc = np.zeros((height, width, 3), dtype=np.float64)
    for scale, weight in ((64, 1.0), (24, 0.6), (8, 0.35), (3, 0.2)):
        gh, gw = max(2, height // scale + 2), max(2, width // scale + 2)
        grid = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.uint8)
        up = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BILINEAR))
        acc += weight * (up.astype(np.float64) - 127.5)
    tone = rng.uniform(60, 190, size=3)
    gy, gx = np.mgrid[0:height, 0:width]
    direction = rng.uniform(-1, 1, size=2)
    ramp = (gx * direction[0] / max(width, 1) + gy * direction[1] / max(height, 1))[..., None]
    acc = tone + 0.45 * acc + 40.0 * ramp * rng.uniform(-1, 1, size=3)
    return np.clip(acc, 0, 255).astype(np.uint8)


class SyntheticVideo(FrameSource):
    """A lazy synthetic clip: frame ``t`` and its label map are rendered when asked for.

    Memory stays at a few frames whatever ``num_frames`` is. Also a :class:`FrameSource`,
    so it plugs into anything that reads videos.

    Args:
        num_frames: length of the clip.
        height, width: frame size in pixels.
        num_objects: number of objects ``K`` (1..255).
        seed: everything is determined by it.
        scene: appearance and motion settings.
        image_size: side ``S`` of the model input (:meth:`model_input`).
        cache_size, input_cache_size, prefetch: see :class:`FrameSource`.
    """

    def __init__(
        self,
        num_frames: int,
        height: int,
        width: int,
        num_objects: int,
        seed: int = 0,
        *,
        scene: SceneConfig | None = None,
        image_size: int = 1024,
        cache_size: int = 4,
        input_cache_size: int = 1,
        prefetch: int = 0,
    ) -> None:
        if num_frames <= 0:
            raise VideoError(f"num_frames must be positive, got {num_frames}")
        if height < 8 or width < 8:
            raise VideoError(f"frames must be at least 8x8 pixels, got {height}x{width}")
        if not 0 <= num_objects <= 255:
            raise VideoError(f"num_objects must be in 0..255 (uint8 labels), got {num_objects}")
        self.scene = scene or SceneConfig()
        self.seed = int(seed)
        self.num_objects = int(num_objects)
        self._num_frames = int(num_frames)
        super().__init__(
            image_size=image_size,
            height=height,
            width=width,
            cache_size=cache_size,
            input_cache_size=input_cache_size,
            prefetch=prefetch,
        )
        rng = np.random.default_rng(self.seed)
        side = min(height, width)
        self._pad = int(round(self.scene.camera_motion * max(height, width)))
        self._pan_phase = rng.uniform(0, 2 * math.pi, size=2)
        self._pan_rate = rng.uniform(0.01, 0.04, size=2)
        self._bg = _background(rng, height + 2 * self._pad, width + 2 * self._pad)
        self._objects = [self._make_object(rng, side) for _ in range(self.num_objects)]
        self._masks: _LRU[int, np.ndarray] = _LRU(max(cache_size, 1))

    @property
    def fps(self) -> float:
        """Frame rate recorded for the clip."""
        return self.scene.fps

    def __len__(self) -> int:
        return self._num_frames

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
        hue = rng.uniform()
        c1 = _hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
        hue2 = (hue + rng.uniform(-0.12, 0.12)) % 1.0
        c2 = _hsv_to_rgb(hue2, rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.6))
        h, w = self._height, self._width
        margin = 0.1
        bounds = np.array([[margin * w, (1 - margin) * w], [margin * h, (1 - margin) * h]])
        speed = rng.uniform(0.3, 1.0) * cfg.max_speed * side
        heading = rng.uniform(0, 2 * math.pi)
        return _Object(
            polygon=is_polygon,
            vertex_angles=angles,
            radii=radii,
            deform_phase=rng.uniform(0, 2 * math.pi, size=len(radii)),
            deform_rate=float(rng.uniform(0.05, 0.2)),
            colors=np.stack([c1, c2]),
            pattern=int(rng.integers(0, 3)),
            period=float(rng.uniform(0.15, 0.5) * size),
            pattern_angle=float(rng.uniform(0, math.pi)),
            start=np.array([rng.uniform(*bounds[0]), rng.uniform(*bounds[1])]),
            velocity=speed * np.array([math.cos(heading), math.sin(heading)]),
            bounds=bounds,
            angle0=float(rng.uniform(0, 2 * math.pi)),
            spin=float(rng.uniform(-1, 1) * cfg.max_spin),
        )

    # ------------------------------------------------------------------ rendering
    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render frame ``index`` without caching.

        Returns:
            ``(frame, labels)``: ``H x W x 3`` uint8 RGB and ``H x W`` uint8 label map
            (0 background, ``k`` where object ``k`` is in front).
        """
        t = float(self._check_index(index))  # negative indices already resolved
        h, w = self._height, self._width
        pan = np.rint(self._pad * np.sin(self._pan_rate * t + self._pan_phase)).astype(int)
        ox, oy = self._pad + int(pan[0]), self._pad + int(pan[1])  # camera offset in the background
        image = self._bg[oy : oy + h, ox : ox + w].astype(np.float32)
        labels = np.zeros((h, w), dtype=np.uint8)
        for k, obj in enumerate(self._objects, start=1):  # later objects are in front
            self._draw(obj, t, k, image, labels)
        if self.scene.noise_std > 0:
            rng = np.random.default_rng([self.seed, int(t), 7])
            image += rng.normal(0.0, self.scene.noise_std, size=image.shape).astype(np.float32)
        frame = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return frame, labels

    def _shape(
        self, obj: _Object, t: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray] | None:
        """Where ``obj`` is at time ``t``: ``(rows, cols, inside, u, v)`` over its bounding box
        (``inside`` bool, ``u``/``v`` the object-frame coordinates), or None if off-frame."""
        h, w = self._height, self._width
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
        """Paint object ``obj`` at time ``t`` into ``image`` (H x W x 3 float) and ``labels``."""
        placed = self._shape(obj, t)
        if placed is None:
            return
        rows, cols, inside, u, v = placed
        if not inside.any():
            return
        ca, sa = math.cos(obj.pattern_angle), math.sin(obj.pattern_angle)
        uu, vv = u[inside], v[inside]
        if obj.pattern == 0:  # stripes
            mix = 0.5 + 0.5 * np.sin(2 * math.pi * (ca * uu + sa * vv) / obj.period)
        elif obj.pattern == 1:  # checker
            mix = ((np.floor(uu / obj.period) + np.floor(vv / obj.period)) % 2).astype(np.float64)
        else:  # rings
            mix = 0.5 + 0.5 * np.cos(2 * math.pi * np.hypot(uu, vv) / obj.period)
        colors = obj.colors[0] * (1 - mix[:, None]) + obj.colors[1] * mix[:, None]
        image[rows, cols][inside] = colors.astype(np.float32)
        labels[rows, cols][inside] = label

    def object_masks(self, index: int) -> np.ndarray:
        """Full (amodal) masks of every object in frame ``index``, ignoring occlusion.

        Returns:
            ``K x H x W`` bool; ``object_masks(t)[k - 1]`` is object ``k``'s whole shape,
            of which ``mask(t) == k`` is the visible part.
        """
        t = float(self._check_index(index))
        out = np.zeros((self.num_objects, self._height, self._width), dtype=bool)
        for k, obj in enumerate(self._objects):
            placed = self._shape(obj, t)
            if placed is not None:
                rows, cols, inside, _, _ = placed
                out[k, rows, cols] = inside
        return out

    def _decode(self, index: int) -> np.ndarray:
        frame, labels = self.render(index)
        labels.flags.writeable = False
        with self._lock:
            self._masks.put(index, labels)
        return frame

    def mask(self, index: int) -> np.ndarray:
        """Ground-truth label map of frame ``index``: ``H x W`` uint8, read-only.

        0 is background, ``k`` (1..K) where object ``k`` is visible.
        """
        i = self._check_index(index)
        with self._lock:
            hit = self._masks.get(i)
        if hit is not None:
            return hit
        with self._decode_lock:
            frame, labels = self.render(i)
        labels.flags.writeable = False
        frame.flags.writeable = False
        with self._lock:
            self._masks.put(i, labels)
            self._frames.put(i, frame)
        return labels

    def clip(self) -> SyntheticClip:
        """This video as a lazy :class:`SyntheticClip` (frames and masks rendered on access)."""
        return SyntheticClip(
            frames=_LazySequence(self, masks=False),
            masks=_LazySequence(self, masks=True),
            num_objects=self.num_objects,
            fps=self.fps,
            video=self,
        )


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


class _LazySequence(Sequence[np.ndarray]):
    """Frames or masks of a :class:`SyntheticVideo`, rendered on access."""

    def __init__(self, video: SyntheticVideo, *, masks: bool) -> None:
        self._video = video
        self._masks = masks

    def __len__(self) -> int:
        return len(self._video)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._video.mask(index) if self._masks else self._video.frame(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


@dataclass
class SyntheticClip:
    """A clip with ground truth.

    Attributes:
        frames: ``T`` frames, each ``H x W x 3`` uint8 RGB (a list, or a lazy sequence).
        masks: ``T`` label maps, each ``H x W`` uint8: 0 background, 1..K object ids.
        num_objects: ``K``.
        fps: frame rate for writing the clip as a video.
        video: the lazy source behind the clip, when it was made with ``lazy=True``.
    """

    frames: Sequence[np.ndarray]
    masks: Sequence[np.ndarray]
    num_objects: int
    fps: float = 24.0
    video: SyntheticVideo | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        """``T``."""
        return len(self.frames)

    @property
    def height(self) -> int:
        """``H``."""
        return int(self.masks[0].shape[0])

    @property
    def width(self) -> int:
        """``W``."""
        return int(self.masks[0].shape[1])

    def object_mask(self, frame: int, object_id: int) -> np.ndarray:
        """Binary mask ``H x W`` bool of object ``object_id`` (1..K) in frame ``frame``."""
        if not 1 <= object_id <= self.num_objects:
            raise VideoError(f"object_id must be in 1..{self.num_objects}, got {object_id}")
        return self.masks[frame] == object_id


def make_clip(
    num_frames: int = 16,
    height: int = 240,
    width: int = 320,
    num_objects: int = 3,
    seed: int = 0,
    *,
    scene: SceneConfig | None = None,
    lazy: bool = False,
) -> SyntheticClip:
    """Make a synthetic clip of moving, deforming, occluding objects with ground truth.

    Args:
        num_frames: ``T``.
        height, width: frame size ``H x W``.
        num_objects: ``K`` (object ids 1..K in the masks).
        seed: the clip is a pure function of the arguments.
        scene: appearance and motion settings (:class:`SceneConfig`).
        lazy: ``False`` renders every frame into lists now; ``True`` returns lazy
            sequences that render on access and keep only a few frames in memory.

    Returns:
        A :class:`SyntheticClip`.
    """
    video = SyntheticVideo(num_frames, height, width, num_objects, seed, scene=scene)
    if lazy:
        return video.clip()
    frames, masks = [], []
    for i in range(num_frames):
        frame, labels = video.render(i)
        frames.append(frame)
        masks.append(labels)
    return SyntheticClip(frames=frames, masks=masks, num_objects=num_objects, fps=video.fps)


def write_clip_jpegs(
    clip: SyntheticClip, folder: str | os.PathLike[str], *, quality: int = 95
) -> list[Path]:
    """Write the frames as ``00000.jpg``, ``00001.jpg``, ... (the official frame-folder layout).

    Args:
        clip: the clip; a lazy clip is written frame by frame.
        folder: created if missing.
        quality: JPEG quality 1..95.

    Returns:
        The paths written, in frame order.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(clip.frames):
        path = out / f"{i:05d}.jpg"
        Image.fromarray(frame).save(path, quality=quality)
        paths.append(path)
    return paths


def write_clip_masks(clip: SyntheticClip, folder: str | os.PathLike[str]) -> list[Path]:
    """Write the label maps as palette PNGs ``00000.png``, ... (pixel value = object id).

    Returns:
        The paths written, in frame order.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    palette = label_palette()
    paths = []
    for i, labels in enumerate(clip.masks):
        png = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # mode "L"
        png.putpalette(palette)  # becomes mode "P", pixel values unchanged
        path = out / f"{i:05d}.png"
        png.save(path)
        paths.append(path)
    return paths


def write_clip_mp4(
    clip: SyntheticClip,
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    codec: str = "mp4v",
) -> Path:
    """Write the frames as a video file with OpenCV (``pip install samkit[video]``).

    Args:
        clip: the clip; a lazy clip is written frame by frame.
        path: output file (``.mp4`` for the default codec).
        fps: frame rate; default ``clip.fps``.
        codec: FourCC code of the codec.

    Returns:
        ``path`` as a Path.

    Raises:
        VideoError: OpenCV missing, or it cannot write this file/codec.
    """
    cv2 = require_cv2()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(out), cv2.VideoWriter_fourcc(*codec), float(fps or clip.fps), (clip.width, clip.height)
    )
    if not writer.isOpened():
        raise VideoError(f"OpenCV cannot write {str(out)!r} with codec {codec!r}")
    try:
        for frame in clip.frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out
