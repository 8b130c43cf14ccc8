"""Pictures of results: masks, points and boxes drawn over an image, legends and captions, and
the one set of colours every picture samkit draws uses.

Object id ``k`` (``k >= 1``) has the colour :func:`object_color` ``(k)``: the ``k``-th entry of
:data:`OBJECT_COLORS` for the first 20 ids (chosen so that ids ``k`` and ``k + 1``, and ``k`` and
``k + 2``, are far apart in CIELAB: at least 67 ΔE76), then a golden-ratio hue walk. Overlays
(:func:`overlay`: mask ``i`` of a stack has id ``i + 1``'s colour, a label map's pixel value is
the id), label PNGs (:func:`label_palette`), overlay videos and the demo use it; the studio page
(``samkit/studio/static/studio.js``) holds the same 20 colours.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from samkit.errors import ImageError, MissingDependencyError

__all__ = ["OBJECT_COLORS", "object_color", "palette", "label_palette", "hsv_to_rgb", "overlay", "draw_prompts",
           "draw_legend", "draw_caption", "side_by_side", "candidates_sheet", "new_figure"]

# The first 20 object colours, in id order (id 1 first). Picked from Trubetskoy's and Kelly's
# lists of distinct colours, leaving out what the studio page draws in its own colours (cyan: the
# object in progress, amber: the focused proposal, white: proposals) and near-black; ordered so
# that neighbouring ids (k, k + 1 and k, k + 2) are far apart. samkit/studio/static/studio.js has
# the same list (tests/test_visualize.py checks it).
OBJECT_COLORS: tuple[str, ...] = (
    "#e6194b", "#3cb44b", "#4363d8", "#f99379", "#dcd300", "#008080", "#b3446c", "#000075", "#bcf60c", "#c2b280",
    "#875692", "#800000", "#808000", "#e6beff", "#f032e6", "#654522", "#aaffc3", "#0067a5", "#e25822", "#008856",
)

_GOLDEN = 0.6180339887498949
POSITIVE_POINT = (40, 220, 40)  # a click on the object
NEGATIVE_POINT = (230, 40, 40)  # a click on the background
BOX_COLOR = (255, 255, 0)  # a box prompt, when no object colour is given


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (each in ``[0, 1]``) as a ``3`` float64 RGB array in ``[0, 255]``."""
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float64) * 255.0


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def object_color(obj_id: int) -> np.ndarray:
    """The colour of object id ``obj_id`` (``>= 1``) as ``3`` uint8 RGB: :data:`OBJECT_COLORS`
    for ids 1..20, then a hue walk by the golden ratio (saturation 0.8, value alternating 1 and
    0.72), which keeps neighbouring ids apart too.

    Raises:
        ImageError: ``obj_id`` below 1 (0 is the background).
    """
    k = int(obj_id)
    if k < 1:
        raise ImageError(f"object ids start at 1 (0 is the background), got {obj_id}")
    if k <= len(OBJECT_COLORS):
        return np.array(_hex(OBJECT_COLORS[k - 1]), dtype=np.uint8)
    j = k - len(OBJECT_COLORS) - 1
    rgb = hsv_to_rgb((j * _GOLDEN) % 1.0, 0.8, 1.0 if j % 2 == 0 else 0.72)
    return np.round(rgb).astype(np.uint8)


def palette(n: int) -> np.ndarray:
    """``n x 3`` uint8: the colours of object ids ``1 .. n`` (:func:`object_color`)."""
    return np.array([object_color(k) for k in range(1, n + 1)], dtype=np.uint8).reshape(-1, 3)


def label_palette() -> list[int]:
    """The 256-colour palette (flat ``[r, g, b, ...]``, 768 ints) of label PNGs: 0 black (the
    background), then the colour of object id ``k`` at index ``k`` (:func:`object_color`), so a
    label PNG shows each object in the colour of its overlays."""
    flat = [0, 0, 0]
    for rgb in palette(255):
        flat += [int(v) for v in rgb]
    return flat


def _font(size: int) -> Any:
    """PIL's default font at ``size`` pixels (its fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size
        return ImageFont.load_default()


def draw_prompts(picture: Image.Image, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                 boxes: np.ndarray | None = None, *, color: Sequence[int] | None = None) -> Image.Image:
    """Draw prompts on ``picture`` in place (and return it): points ``P x 2`` (filled green for
    label 1, red for 0; outlined in white, or in ``color``), boxes ``B x 4`` XYXY (in ``color``,
    default yellow). ``color`` is the prompted object's colour when several objects are drawn."""
    draw = ImageDraw.Draw(picture)
    r = max(3 if color is None else 4, round(min(picture.size) / 120))  # a ringed point: big enough to show its ring
    ring = (255, 255, 255) if color is None else tuple(int(v) for v in color)
    if boxes is not None:
        for b in np.asarray(boxes, dtype=float).reshape(-1, 4):
            draw.rectangle([float(v) for v in b], outline=BOX_COLOR if color is None else ring, width=max(2, r // 2))
    if points is not None:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        labs = np.ones(len(pts)) if labels is None else np.asarray(labels).reshape(-1)
        for (x, y), lab in zip(pts, labs):
            fill = POSITIVE_POINT if lab == 1 else NEGATIVE_POINT
            width = max(1, r // 3) if color is None else max(2, r // 2)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=ring, width=width)
    return picture


def draw_legend(picture: Image.Image, entries: Sequence[tuple[str, Sequence[int]]]) -> Image.Image:
    """Draw a legend in the top-left corner of ``picture`` in place (and return it): one row per
    ``(text, rgb)`` entry, a swatch of the colour and the text, on a dark translucent panel. Rows
    that do not fit in the picture's height are summed up in a last row ``+N more``."""
    if not entries:
        return picture
    size = max(9, round(min(picture.size) / 28))
    font = _font(size)
    pad, gap = max(2, size // 4), max(1, size // 6)
    row = size + gap
    fits = max(1, (picture.size[1] - 2 * pad) // row)
    shown = list(entries)
    if len(shown) > fits:
        rest = len(shown) - (fits - 1)
        shown = shown[: fits - 1] + [(f"+{rest} more", (255, 255, 255))]
    draw = ImageDraw.Draw(picture, "RGBA")
    width = max(int(draw.textlength(text, font=font)) for text, _ in shown) + size + 3 * pad
    draw.rectangle([0, 0, width, 2 * pad + row * len(shown) - gap], fill=(0, 0, 0, 150))
    for i, (text, rgb) in enumerate(shown):
        y = pad + i * row
        draw.rectangle([pad, y, pad + size - 1, y + size - 1], fill=tuple(int(v) for v in rgb) + (255,),
                       outline=(255, 255, 255, 255))
        draw.text((2 * pad + size, y), text, fill=(255, 255, 255, 255), font=font)
    return picture


def draw_caption(picture: Image.Image, text: str) -> Image.Image:
    """Write ``text`` in white on a dark translucent band at the top of ``picture``, in place."""
    size = max(10, round(min(picture.size) / 18))
    font = _font(size)
    pad = max(2, size // 4)
    draw = ImageDraw.Draw(picture, "RGBA")
    draw.rectangle([0, 0, int(draw.textlength(text, font=font)) + 2 * pad, size + 2 * pad], fill=(0, 0, 0, 160))
    draw.text((pad, pad), text, fill=(255, 255, 255, 255), font=font)
    return picture


def side_by_side(pictures: Sequence[Image.Image], captions: Sequence[str] | None = None, *,
                 gap: int = 4) -> Image.Image:
    """One picture of ``pictures`` (all the same height) left to right, ``gap`` white pixels
    apart, each with its caption (:func:`draw_caption`) when given."""
    if not pictures:
        raise ImageError("side_by_side needs at least one picture")
    if captions is not None and len(captions) != len(pictures):
        raise ImageError(f"{len(pictures)} pictures but {len(captions)} captions")
    heights = {p.size[1] for p in pictures}
    if len(heights) != 1:
        raise ImageError(f"side_by_side needs pictures of one height, got {sorted(heights)}")
    sheet = Image.new("RGB", (sum(p.size[0] for p in pictures) + gap * (len(pictures) - 1), heights.pop()),
                      (255, 255, 255))
    x = 0
    for i, p in enumerate(pictures):
        tile = p.convert("RGB")
        if captions is not None:
            draw_caption(tile, captions[i])
        sheet.paste(tile, (x, 0))
        x += p.size[0] + gap
    return sheet


def overlay(image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray], *, alpha: float = 0.5,
            points: np.ndarray | None = None, labels: np.ndarray | None = None,
            boxes: np.ndarray | None = None, colors: np.ndarray | None = None,
            outline: bool = True) -> Image.Image:
    """Draw masks over an ``H x W x 3`` uint8 image and return a PIL image.

    ``masks`` is ``N x H x W`` bool/0-1 (mask ``i`` in the colour of object id ``i + 1``) or an
    ``H x W`` label map with ids 1..K (each id in its own colour, :func:`object_color`, whichever
    ids are present); ``colors`` (``N x 3``, or one row per id present) replaces those colours.
    Points (``P x 2``, green = positive, red = negative) and boxes (``B x 4`` XYXY, yellow) are
    drawn on top (:func:`draw_prompts`)."""
    img = np.asarray(image).astype(np.float32).copy()
    m = np.asarray(masks)
    ids: list[int] | None = None
    if m.ndim == 2 and m.dtype != bool and m.max(initial=0) > 1:  # label map
        ids = [int(i) for i in np.unique(m) if i != 0]
        m = np.stack([m == i for i in ids]) if ids else np.zeros((0,) + m.shape, bool)
    elif m.ndim == 2:
        m = m[None]
    m = m.astype(bool)
    if colors is not None:
        cols = np.asarray(colors, np.uint8).reshape(-1, 3)
    else:
        cols = np.array([object_color(i) for i in ids]) if ids is not None else palette(len(m))
    for k, mask in enumerate(m):
        if not mask.any():
            continue
        c = cols[k % len(cols)].astype(np.float32)
        img[mask] = img[mask] * (1 - alpha) + c * alpha
        if outline:
            edge = mask & ~_erode(mask)
            img[edge] = c
    pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    return draw_prompts(pil, points, labels, boxes)


def candidates_sheet(image: np.ndarray, masks: np.ndarray, scores: np.ndarray | Sequence[float], *,
                     points: np.ndarray | None = None, labels: np.ndarray | None = None,
                     boxes: np.ndarray | None = None) -> Image.Image:
    """The candidate masks of one prompt side by side: one overlay per ``masks[k]`` (``K x H x W``
    bool, e.g. the three of ``predict(..., multimask_output=True)``) with the prompts, captioned
    ``#k IoU 0.912`` (the predicted IoU ``scores[k]``; the highest is marked ``best``)."""
    best = int(np.argmax(np.asarray(scores)))
    pictures = [overlay(image, np.asarray(m, bool)[None], points=points, labels=labels, boxes=boxes) for m in masks]
    captions = [f"#{k + 1} IoU {float(s):.3f}" + (" best" if k == best else "") for k, s in enumerate(scores)]
    return side_by_side(pictures, captions)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure (``width`` x ``height`` inches, 100 dpi) with an Agg canvas of its own,
    so nothing touches pyplot's global state or the process-wide backend.

    Raises:
        MissingDependencyError: matplotlib is not installed (the ``plots`` extra).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "plots need matplotlib, which is not installed; install it with "
            "pip install 'samkit[plots]' (or pip install matplotlib)"
        ) from exc
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbour erosion of a bool mask (image border counts as outside)."""
    p = np.pad(mask, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
