"""samkit.visualize: one palette for every picture (neighbouring ids far apart, the studio page's
list the same), overlays coloured by object id, legends, captions and the candidates sheet."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.errors import ImageError
from samkit.visualize import (
    OBJECT_COLORS,
    candidates_sheet,
    draw_legend,
    label_palette,
    object_color,
    overlay,
    palette,
    side_by_side,
)

STUDIO_JS = Path(__file__).resolve().parents[1] / "samkit" / "studio" / "static" / "studio.js"

# The smallest CIELAB distance (Delta E 1976) between the colours of ids k and k + 1, and k and
# k + 2, over the first 20 ids (measured: 67.9); about 2.3 is the just-noticeable difference.
NEIGHBOUR_BOUND = 60.0
# The same beyond the fixed list, on the golden-ratio hue walk (ids 19..200; measured: lag 1 92,
# lag 2 23: two steps of the walk are a 0.24 turn of the hue circle).
WALK_BOUNDS = {1: 60.0, 2: 20.0}


def cielab(rgb: np.ndarray) -> np.ndarray:
    """``N x 3`` uint8 sRGB -> ``N x 3`` CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def neighbour_distance(colors: np.ndarray, lag: int) -> np.ndarray:
    lab = cielab(colors)
    return np.linalg.norm(lab[lag:] - lab[:-lag], axis=1)


def test_neighbouring_ids_have_distant_colours():
    first = palette(20)
    for lag in (1, 2):
        assert neighbour_distance(first, lag).min() > NEIGHBOUR_BOUND, lag
    # the old palette's objects 1 and 3 were two similar greens: now every pair of the first 20 is distinct
    lab = cielab(first)
    pairs = np.linalg.norm(lab[:, None] - lab[None], axis=2)[np.triu_indices(20, 1)]
    assert pairs.min() > 25
    walk = palette(200)[18:]  # from the end of the fixed list into the hue walk
    for lag, bound in WALK_BOUNDS.items():
        assert neighbour_distance(walk, lag).min() > bound, lag
    assert len({tuple(c) for c in palette(200)}) == 200


def test_object_colours_are_the_palette_by_id():
    assert np.array_equal(object_color(1), [0xE6, 0x19, 0x4B])
    assert all(np.array_equal(palette(30)[k - 1], object_color(k)) for k in range(1, 31))
    with pytest.raises(ImageError, match="start at 1"):
        object_color(0)
    flat = label_palette()
    assert len(flat) == 768 and flat[:3] == [0, 0, 0]
    for k in (1, 2, 20, 21, 255):
        assert flat[3 * k:3 * k + 3] == list(object_color(k))


def test_the_studio_page_has_the_same_colours():
    text = STUDIO_JS.read_text()
    block = re.search(r"const PALETTE = \[(.*?)\];", text, re.S)
    assert block, "studio.js has no `const PALETTE = [...]`"
    js = [c.lower() for c in re.findall(r'"(#[0-9a-fA-F]{6})"', block.group(1))]
    assert js == [c.lower() for c in OBJECT_COLORS]
    assert js == ["#%02x%02x%02x" % tuple(int(v) for v in object_color(k)) for k in range(1, len(js) + 1)]
    # and the page maps object id k to PALETTE[k - 1], as samkit does
    assert "PALETTE[(((id - 1) % PALETTE.length)" in text


def test_overlay_colours_a_label_map_by_id_whichever_ids_are_present():
    image = np.zeros((20, 30, 3), np.uint8)
    labels = np.zeros((20, 30), np.uint8)
    labels[5:15, 5:12] = 3  # object 3 alone: its own colour, not the first colour of the palette
    labels[5:15, 18:25] = 7
    pic = np.asarray(overlay(image, labels, alpha=1.0, outline=False))
    assert np.array_equal(pic[10, 8], object_color(3)) and np.array_equal(pic[10, 20], object_color(7))
    stack = np.zeros((2, 20, 30), bool)
    stack[1, 0:4, 0:4] = True  # mask i of a stack: the colour of id i + 1
    pic = np.asarray(overlay(image, stack, alpha=1.0, outline=False))
    assert np.array_equal(pic[1, 1], object_color(2)) and np.array_equal(pic[10, 28], [0, 0, 0])


def test_legend_and_side_by_side():
    pic = Image.new("RGB", (160, 120), (128, 128, 128))
    draw_legend(pic, [(f"obj {k}", object_color(k)) for k in (1, 2)])
    arr = np.asarray(pic)
    for k in (1, 2):  # a swatch of each colour in the top-left corner
        assert (np.abs(arr[:40, :20].astype(int) - object_color(k).astype(int)).max(axis=2) == 0).sum() > 10
    assert np.array_equal(arr[-1, -1], [128, 128, 128])
    many = Image.new("RGB", (60, 40))
    draw_legend(many, [(f"obj {k}", object_color(k)) for k in range(1, 50)])  # rows that do not fit: "+N more"
    sheet = side_by_side([Image.new("RGB", (30, 20)), Image.new("RGB", (40, 20))], ["a", "b"], gap=4)
    assert sheet.size == (74, 20) and np.array_equal(np.asarray(sheet)[10, 31], [255, 255, 255])
    with pytest.raises(ImageError, match="one height"):
        side_by_side([Image.new("RGB", (3, 2)), Image.new("RGB", (3, 3))])


def test_candidates_sheet():
    image = np.full((40, 50, 3), 200, np.uint8)
    masks = np.zeros((3, 40, 50), bool)
    masks[0, :10], masks[1, :20], masks[2, :30] = True, True, True
    sheet = candidates_sheet(image, masks, np.array([0.5, 0.9, 0.7]), points=np.array([[25, 25]]),
                             labels=np.array([1]))
    assert sheet.size == (3 * 50 + 2 * 4, 40)
