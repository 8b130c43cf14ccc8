"""The studio's video view in a real browser: Chromium driven by Playwright with real mouse clicks
and key presses, against the real app (uvicorn in a thread, the shipped default model), on a
generated clip written as an mp4 whose true masks are known (the generator's label maps).

Set ``SAMKIT_WRITE_SCREENSHOTS=1`` to refresh ``docs/studio/studio_video.png`` from
:func:`test_two_objects_rename_play_export_delete` (it always writes the picture under the test's
tmp folder).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

CHROMIUM = shutil.which("chromium")
if sync_playwright is None:
    pytest.skip("playwright is not installed (pip install playwright): the studio page's browser test needs it",
                allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("no `chromium` on PATH: the studio page's browser test drives a real Chromium "
                "(apt-get install chromium)", allow_module_level=True)

from samkit.data.synthetic.scenes import SyntheticSceneDataset  # noqa: E402
from samkit.masks.rle import decode_rle_counts  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from samkit.video.synthetic import SyntheticVideo  # noqa: E402
from samkit.video.writers import read_masks_png, write_clip_mp4  # noqa: E402
from samkit.visualize import OBJECT_COLORS  # noqa: E402  (the page's colours: studio.js has the same list)
from tests.studio.helpers import default_model, depth_map, interior_point, iou, running_server  # noqa: E402

# the module takes about 30 s on a 2-core CPU (most of it Chromium; tracking 20 frames takes 2 s)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "studio" / "studio_video.png"
FRAMES, H, W, OBJECTS, SEED = 20, 256, 320, 2, 7  # the generated clip
NAMES = ["clip.mp4", "scene.png", "zz_broken.mp4"]  # ids 0..2: the clip, an image, a video that cannot be read
VIEWPORT = {"width": 1440, "height": 900}

# With the shipped samkit_nano weights on this clip (seed 7, written as a lossy mp4), measured
# against the generator's visible masks through the page and the server:
#   one positive click at object 1's most interior pixel on frame 0: IoU 0.91 on frame 0;
#   tracked from it over the 20 frames: mean IoU 0.90, worst frame 0.85;
#   after the correction click on frame 15 and tracking again: mean 0.90, frame 15 0.86;
#   a box dragged 3 px outside object 2 on frame 0: IoU 0.90; tracked with object 1: mean 0.87,
#   worst frame 0.85.
# The model tracks this clip better than most (its mean IoU on generated clips is about 0.7, and
# on some seeds it loses an object); the bounds below hold for this clip, with margin.
CLICK_IOU = 0.80
TRACK_MEAN_IOU = 0.78
TRACK_FRAME_IOU = 0.70
BOX_IOU = 0.80


# ------------------------------------------------------------------------------- fixtures
class Clip:
    """The generated clip on disk (beside an image and a broken video) and its true masks."""

    def __init__(self, root: Path) -> None:
        self.images_dir = root / "images"
        self.images_dir.mkdir()
        self.video = SyntheticVideo(FRAMES, H, W, OBJECTS, seed=SEED)
        write_clip_mp4((self.video.frame(t) for t in range(FRAMES)), self.images_dir / NAMES[0],
                       fps=self.video.fps)
        scene = SyntheticSceneDataset(1, size=(H, W), seed=0)[0]
        Image.fromarray(scene.image).save(self.images_dir / NAMES[1])
        self.scene_click = interior_point(max(scene.masks, key=np.sum))
        (self.images_dir / NAMES[2]).write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")

    def truth(self, t: int, k: int) -> np.ndarray:
        """Object ``k``'s visible mask on frame ``t`` (object k is the k-th drawn, id k)."""
        return self.video.mask(t) == k


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return Clip(tmp_path_factory.mktemp("studio_clip"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Studio:
    """A running studio and one browser page on it."""

    def __init__(self, url: str, out_dir: Path, page: Page, clip: Clip) -> None:
        self.url, self.out_dir, self.page, self.clip = url, out_dir, page, clip
        self.errors: list[str] = []
        self.frame_requests: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.frame_requests.append(r.url) if "/frames/" in r.url
                and not r.url.endswith("/masks") else None)

    def open(self, entry: int = 0) -> None:
        self.page.goto(f"{self.url}/#{entry}")
        self.wait_frame(0)

    def wait_frame(self, t: int) -> None:
        stage = self.page.locator("#stage")
        expect(stage).to_have_attribute("data-loaded", "1")
        expect(stage).to_have_attribute("data-frame", str(t))
        expect(self.page.locator("#frame-input")).to_have_value(str(t))

    def wait_masks(self, objs: str) -> None:
        """Until the frame shown draws exactly these objects' masks ("1,2"; "" for none)."""
        expect(self.page.locator("#stage")).to_have_attribute("data-masks", objs)

    def wait_tracked(self, jobs: int) -> None:
        """Until the page has seen ``jobs`` tracking jobs end, the last one done."""
        status = self.page.locator("#track-status")
        expect(status).to_have_attribute("data-ended", str(jobs), timeout=90_000)
        expect(status).to_have_attribute("data-state", "done")
        expect(self.page.locator("#tracked-count")).to_have_text(f"{FRAMES} / {FRAMES} frames tracked")

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of frame pixel (x, y): the canvas box shows exactly the whole frame."""
        box = self.page.locator("#video-canvas").bounding_box()
        return box["x"] + x / W * box["width"], box["y"] + y / H * box["height"]

    def click(self, x: float, y: float, **kwargs) -> None:
        self.page.mouse.click(*self.at(x + 0.5, y + 0.5), **kwargs)

    def api(self, path: str) -> dict:
        r = httpx.get(f"{self.url}{path}")
        r.raise_for_status()
        return r.json()

    def served_mask(self, t: int, obj: int) -> np.ndarray:
        """Object ``obj``'s mask on frame ``t`` as the server gives it to the page."""
        found = [m["mask"] for m in self.api(f"/api/videos/0/frames/{t}/masks")["masks"] if m["obj"] == obj]
        assert found, f"no mask of object {obj} on frame {t}"
        (rle,) = found
        return decode_rle_counts(rle["counts"], *rle["size"])

    def saved_labels(self, t: int) -> np.ndarray:
        """The label PNG of frame ``t`` on disk (pixel = object id)."""
        return read_masks_png(self.out_dir / "clip" / "labels" / f"{t:05d}.png")

    def saved_json(self) -> dict:
        return json.loads((self.out_dir / "clip" / "video.json").read_text())

    def track_ious(self, obj: int) -> list[float]:
        return [iou(self.saved_labels(t) == obj, self.clip.truth(t, obj)) for t in range(FRAMES)]

    def canvas_pixel(self, x: int, y: int) -> np.ndarray:
        """RGB of the video canvas at frame pixel (x, y), from a screenshot of the element."""
        shot = Image.open(io.BytesIO(self.page.locator("#video-canvas").screenshot())).convert("RGB")
        px = int((x + 0.5) / W * shot.width)
        py = int((y + 0.5) / H * shot.height)
        return np.asarray(shot, dtype=np.int32)[py - 1:py + 2, px - 1:px + 2].reshape(-1, 3).mean(axis=0)

    def canvas_pixel_when(self, x: int, y: int, ok, timeout: float = 5.0) -> np.ndarray:
        deadline = time.monotonic() + timeout
        rgb = self.canvas_pixel(x, y)
        while not ok(rgb) and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
            rgb = self.canvas_pixel(x, y)
        return rgb


@pytest.fixture
def studio(clip: Clip, browser: Browser, tmp_path: Path) -> Iterator[Studio]:
    out = tmp_path / "out"
    model, description = default_model()  # samkit_nano with its shipped weights, built once
    app = create_app(StudioConfig(images_dir=clip.images_dir, out_dir=out), model=model,
                     model_description=description)
    with running_server(app) as url:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(20_000)
        page = context.new_page()
        s = Studio(url, out, page, clip)
        try:
            yield s
        finally:
            context.close()
    assert not s.errors, f"the page threw: {s.errors}"


def rgb_of(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def error_click(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(x, y, label) of a correction: the most interior pixel of the larger error, positive where
    the object was missed, negative where the mask spills over."""
    missed, spilled = truth & ~pred, pred & ~truth
    region, label = (missed, 1) if missed.sum() >= spilled.sum() else (spilled, 0)
    x, y = interior_point(region)
    return x, y, label


# ------------------------------------------------------------------------------- tests
def test_click_track_scrub_correct_reload(studio: Studio) -> None:
    page, clip = studio.page, studio.clip
    studio.open(0)
    canvas = page.locator("#video-canvas").bounding_box()
    assert canvas["width"] / canvas["height"] == pytest.approx(W / H, rel=1e-3)  # the whole frame, no bars
    expect(page.locator('#images li[data-kind="video"] svg.kind')).to_have_count(2)  # a film icon on videos
    expect(page.locator("#frame-last")).to_have_text(f"/ {FRAMES - 1}")
    expect(page.locator("#objectbar")).to_be_hidden()  # the image view's bar
    expect(page.locator("#vobjects li")).to_have_count(0)

    page.keyboard.press("o")
    expect(page.locator("#vobjects li")).to_have_count(1)
    expect(page.locator("#vobjects li.selected")).to_have_attribute("data-obj", "1")
    x, y = interior_point(clip.truth(0, 1))
    studio.click(x, y)
    studio.wait_masks("1")
    expect(page.locator("#frame-prompts")).to_have_text("1 prompt on this frame")
    expect(page.locator("#ticks .tick")).to_have_count(1)  # frame 0 marked on the scrubber
    assert iou(studio.served_mask(0, 1), clip.truth(0, 1)) >= CLICK_IOU
    # the canvas shows it in object 1's colour (opaque with the slider at the far right)
    page.locator("#opacity").fill("100")
    colour = rgb_of(OBJECT_COLORS[0])  # object id 1
    depth = depth_map(studio.served_mask(0, 1) & clip.truth(0, 1)).astype(float)
    ys, xs = np.indices(depth.shape)
    depth[(xs - x) ** 2 + (ys - y) ** 2 < 12 ** 2] = 0  # not under the click's marker
    py, px = np.unravel_index(int(np.argmax(depth)), depth.shape)
    seen = studio.canvas_pixel_when(px, py, lambda rgb: np.abs(rgb - colour).max() < 40)
    assert np.abs(seen - colour).max() < 40, seen
    page.locator("#opacity").fill("50")

    page.keyboard.press("t")
    studio.wait_tracked(1)
    page.keyboard.press("Shift+Period")  # 10 frames on
    studio.wait_frame(10)
    studio.wait_masks("1")
    page.locator("#scrubber").fill(str(FRAMES - 1))
    studio.wait_frame(FRAMES - 1)
    studio.wait_masks("1")
    expect(page).to_have_url(re.compile(rf"#0/f{FRAMES - 1}$"))
    page.keyboard.press("Comma")
    studio.wait_frame(FRAMES - 2)

    # the label PNGs on disk against the generator's masks
    ious = studio.track_ious(1)
    assert np.mean(ious) >= TRACK_MEAN_IOU, np.round(ious, 2)
    assert min(ious[10], ious[FRAMES - 1]) >= TRACK_FRAME_IOU, np.round(ious, 2)
    saved = studio.saved_json()
    assert saved["masklet_id"] == [1] and saved["masklet_frames"] == list(range(FRAMES))

    # a correction on a later frame, then Track again
    t = 15
    page.locator("#frame-input").fill(str(t))
    page.locator("#frame-input").press("Enter")
    studio.wait_frame(t)
    cx, cy, label = error_click(studio.saved_labels(t) == 1, clip.truth(t, 1))
    studio.click(cx, cy, button="left" if label else "right")
    expect(page.locator("#ticks .tick")).to_have_count(2)
    expect(page.locator("#ticks")).to_have_attribute("data-frames", f"0,{t}")
    prompts = studio.saved_json()["prompts"]
    assert [(p["frame"], p["obj"], p["label"]) for p in prompts] == [(0, 1, 1), (t, 1, label)]
    page.locator("#track").click()
    studio.wait_tracked(2)
    again = studio.track_ious(1)
    assert np.mean(again) >= TRACK_MEAN_IOU, np.round(again, 2)
    assert again[t] >= TRACK_FRAME_IOU, np.round(again, 2)

    # a reload restores the video, its frame, the object, the prompts and masks
    page.reload()
    studio.wait_frame(t)
    studio.wait_masks("1")
    expect(page.locator("#vobjects li")).to_have_count(1)
    expect(page.locator("#ticks .tick")).to_have_count(2)
    expect(page.locator("#frame-prompts")).to_have_text("1 prompt on this frame")
    expect(page.locator("#tracked-count")).to_have_text(f"{FRAMES} / {FRAMES} frames tracked")
    expect(page.locator("#track-status")).to_have_attribute("data-state", "done")


def test_two_objects_rename_play_export_delete(studio: Studio, tmp_path: Path) -> None:
    page, clip = studio.page, studio.clip
    studio.open(0)
    for k in (1, 2):
        page.locator("#new-object").click()
        expect(page.locator("#vobjects li")).to_have_count(k)
        expect(page.locator("#active-object")).to_have_attribute("data-obj", str(k))
        studio.click(*interior_point(clip.truth(0, k)))
        studio.wait_masks(",".join(str(i) for i in range(1, k + 1)))
    # a negative click for object 2, then Esc clears object 2's prompts on the frame (object 1's stay)
    bx, by = interior_point(~(clip.truth(0, 1) | clip.truth(0, 2)))
    studio.click(bx, by, button="right")
    expect(page.locator("#frame-prompts")).to_have_text("2 prompts on this frame")
    assert [p["label"] for p in studio.api("/api/videos/0/frames/0/masks")["prompts"] if p["obj"] == 2] == [1, 0]
    page.keyboard.press("Escape")
    studio.wait_masks("1")
    expect(page.locator("#frame-prompts")).to_have_text("Click the object on this frame")
    expect(page.locator("#ticks .tick")).to_have_count(1)
    # a box dragged 3 px outside object 2 instead
    ys, xs = np.nonzero(clip.truth(0, 2))
    x0, y0, x1, y1 = xs.min() - 3, ys.min() - 3, xs.max() + 4, ys.max() + 4
    page.mouse.move(*studio.at(x0, y0))
    page.mouse.down()
    page.mouse.move(*studio.at((x0 + x1) / 2, (y0 + y1) / 2), steps=4)
    page.mouse.move(*studio.at(x1, y1), steps=4)
    page.mouse.up()
    studio.wait_masks("1,2")
    (box,) = [p for p in studio.api("/api/videos/0/frames/0/masks")["prompts"] if p["obj"] == 2]
    assert box["type"] == "box" and box["box"] == pytest.approx([x0, y0, x1, y1], abs=1.0)
    assert iou(studio.served_mask(0, 2), clip.truth(0, 2)) >= BOX_IOU

    page.locator('#vobjects li[data-obj="1"] .cat').dblclick()
    page.keyboard.type("rings")
    page.keyboard.press("Enter")
    expect(page.locator('#vobjects li[data-obj="1"] .cat')).to_have_text("rings")
    page.keyboard.press("1")  # keys 1-9 pick the active object
    expect(page.locator("#vobjects li.selected")).to_have_attribute("data-obj", "1")
    page.keyboard.press("t")
    expect(page.locator("#track-status")).to_have_attribute("data-ended", "1", timeout=90_000)
    assert studio.saved_json()["objects"] == [{"id": 1, "name": "rings"}, {"id": 2, "name": None}]
    assert np.mean(studio.track_ious(2)) >= TRACK_MEAN_IOU, np.round(studio.track_ious(2), 2)

    # playback: Space plays to the last frame, one frame after another, then stops
    page.locator("#frame-input").fill("12")
    page.locator("#frame-input").press("Enter")
    studio.wait_frame(12)
    page.keyboard.press("Space")
    studio.wait_frame(FRAMES - 1)
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Shift+Comma")
    studio.wait_frame(FRAMES - 11)
    studio.wait_masks("1,2")
    frames = [re.sub(r"^.*/frames/", "", u) for u in studio.frame_requests]
    assert all(f.isdigit() for f in frames), frames  # single frames, never the video file
    assert len(frames) == len(set(frames)), frames  # each fetched once: the page keeps them

    page.mouse.move(10, 10)  # no hover effects in the picture
    path = tmp_path / "studio_video.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("SAMKIT_WRITE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)

    page.locator("#export-overlay").click()
    expect(page.locator("#overlay-file")).to_have_attribute("data-file", "clip/overlay.mp4", timeout=60_000)
    assert (studio.out_dir / "clip" / "overlay.mp4").stat().st_size > 1000

    # deleting object 2 takes its masks off every frame
    page.locator('#vobjects li[data-obj="2"]').hover()
    page.locator('#vobjects li[data-obj="2"] .del').click()
    expect(page.locator("#vobjects li")).to_have_count(1)
    studio.wait_masks("1")
    assert [o["id"] for o in studio.saved_json()["objects"]] == [1]
    assert not any((studio.saved_labels(t) == 2).any() for t in range(FRAMES))


def test_image_and_video_views_and_a_broken_video(studio: Studio) -> None:
    page, clip = studio.page, studio.clip
    studio.open(0)
    expect(page.locator("#transport")).to_be_visible()
    page.keyboard.press("n")  # the next in the list: the image
    expect(page.locator("#stage")).to_have_attribute("data-image-id", "1")
    expect(page.locator("#stage")).to_have_attribute("data-loaded", "1")
    expect(page.locator("#transport")).to_be_hidden()
    expect(page.locator("#video-canvas")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"#1$"))
    box = page.locator("#canvas").bounding_box()
    x, y = clip.scene_click
    page.mouse.click(box["x"] + (x + 0.5) / W * box["width"], box["y"] + (y + 0.5) / H * box["height"])
    expect(page.locator("#prompt-count")).to_have_text("1 prompt")  # the image view works as before
    page.keyboard.press("Escape")

    page.locator('#images li[data-id="0"]').click()
    studio.wait_frame(0)
    page.keyboard.press("ArrowRight")
    studio.wait_frame(1)
    expect(page.locator("#objectbar")).to_be_hidden()

    page.locator('#images li[data-id="2"]').click()
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#stage-note")).to_contain_text("This video cannot be opened")
    expect(page.locator('#images li[data-id="2"]')).to_have_attribute("data-status", "error")
    page.keyboard.press("p")  # the rest keeps working
    expect(page.locator("#stage")).to_have_attribute("data-image-id", "1")
    expect(page.locator("#stage")).to_have_attribute("data-loaded", "1")
    page.keyboard.press("p")
    studio.wait_frame(1)  # the video where it was left
