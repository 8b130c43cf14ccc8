"""The studio page in a real browser: Chromium driven by Playwright with real mouse clicks and key
presses, against the real app (uvicorn in a thread, the shipped default model), on generated scenes
whose true masks are known.

Set ``SAMKIT_WRITE_SCREENSHOTS=1`` to refresh ``docs/studio/studio.png`` from :func:`test_screenshot`
(it always writes the picture under the test's tmp folder).
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
from tests.studio.helpers import default_model, depth_map, interior_point, iou, running_server  # noqa: E402

# the module takes about 25 s on a 2-core CPU (most of it Chromium)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "studio" / "studio.png"
SIZE = (384, 512)  # H, W of the generated scenes
SEED = 0
NAMES = ["scene_0.png", "scene_1.png", "scene_2.png", "zz_broken.png"]  # ids 0..3; the last cannot be read
VIEWPORT = {"width": 1440, "height": 900}
CURRENT_RGB = np.array([0x1A, 0xD1, 0xFF])  # the page's colour of the object in progress

# IoU with the true mask of one positive click at the object's most interior point, through the
# page and the server with the shipped samkit_nano weights: measured 0.966 (the model alone, best
# candidate by predicted IoU, gives the same); asserted with margin.
ONE_CLICK_IOU = 0.85
# a box dragged 3 px outside the object's bounding box: measured 0.922
BOX_IOU = 0.80


# ------------------------------------------------------------------------------- fixtures
class Scenes:
    """The generated images on disk and the true masks of the objects the tests click."""

    def __init__(self, root: Path) -> None:
        self.images_dir = root / "images"
        self.images_dir.mkdir()
        ds = SyntheticSceneDataset(3, size=SIZE, seed=SEED)
        self.samples = [ds[i] for i in range(3)]
        for name, s in zip(NAMES, self.samples):
            Image.fromarray(s.image).save(self.images_dir / name)
        (self.images_dir / NAMES[3]).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        masks = self.samples[0].masks
        h, w = SIZE
        frac = masks.reshape(len(masks), -1).mean(axis=1)
        good = [i for i in np.argsort(-frac) if 0.03 <= frac[i] <= 0.40]
        assert len(good) >= 2, "the scene of image 0 needs two objects of 3-40% of the image"
        # the largest such object, and the next one for the screenshot
        self.target = masks[good[0]]
        self.second = masks[good[1]]
        self.click = interior_point(self.target)
        union = masks.any(axis=0)
        self.background = interior_point(~union)  # deep inside no object at all


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Scenes:
    return Scenes(tmp_path_factory.mktemp("studio_scenes"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Studio:
    """A running studio and one browser page on it."""

    def __init__(self, url: str, out_dir: Path, page: Page, scenes: Scenes) -> None:
        self.url, self.out_dir, self.page, self.scenes = url, out_dir, page, scenes
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, image_id: int = 0, query: str = "") -> None:
        self.page.goto(f"{self.url}/{query}#{image_id}")
        self.wait_image(image_id)

    def wait_image(self, image_id: int) -> None:
        expect(self.page.locator("#stage")).to_have_attribute("data-image-id", str(image_id))
        expect(self.page.locator("#stage")).to_have_attribute("data-loaded", "1")

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of image pixel (x, y): the canvas box shows exactly the whole image."""
        box = self.page.locator("#canvas").bounding_box()
        h, w = SIZE
        return box["x"] + x / w * box["width"], box["y"] + y / h * box["height"]

    def click(self, x: float, y: float, **kwargs) -> None:
        self.page.mouse.click(*self.at(x + 0.5, y + 0.5), **kwargs)

    def wait_prompts(self, n: int) -> None:
        expect(self.page.locator("#prompt-count")).to_have_text(f"{n} prompt{'' if n == 1 else 's'}")

    def current(self, image_id: int = 0) -> dict | None:
        """The object in progress as the server holds it for this page's client id."""
        client = self.page.evaluate("sessionStorage.getItem('samkit-studio-client')")
        r = httpx.get(f"{self.url}/api/images/{image_id}", headers={"X-Studio-Client": client})
        r.raise_for_status()
        return r.json()["current"]

    def on_disk(self, image_id: int = 0) -> dict:
        return json.loads((self.out_dir / f"{Path(NAMES[image_id]).stem}.json").read_text())

    def canvas_pixel_when(self, x: int, y: int, ok, timeout: float = 5.0) -> np.ndarray:
        """:meth:`canvas_pixel` once ``ok(rgb)`` holds (the page redraws on its next frame), or
        the last one after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        rgb = self.canvas_pixel(x, y)
        while not ok(rgb) and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
            rgb = self.canvas_pixel(x, y)
        return rgb

    def canvas_pixel(self, x: int, y: int) -> np.ndarray:
        """RGB of the canvas at image pixel (x, y), from a screenshot of the element."""
        shot = Image.open(io.BytesIO(self.page.locator("#canvas").screenshot())).convert("RGB")
        h, w = SIZE
        px = int((x + 0.5) / w * shot.width)
        py = int((y + 0.5) / h * shot.height)
        return np.asarray(shot, dtype=np.int32)[py - 1:py + 2, px - 1:px + 2].reshape(-1, 3).mean(axis=0)


@pytest.fixture
def studio(scenes: Scenes, browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Studio]:
    token = getattr(request, "param", None)
    out = tmp_path / "out"
    config = StudioConfig(images_dir=scenes.images_dir, out_dir=out, token=token, automask={"points_per_side": 16})
    model, description = default_model()  # samkit_nano with its shipped weights, built once
    app = create_app(config, model=model, model_description=description)
    with running_server(app) as url:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(20_000)
        page = context.new_page()
        s = Studio(url, out, page, scenes)
        try:
            yield s
        finally:
            context.close()
    assert not s.errors, f"the page threw: {s.errors}"


def mask_of(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    return decode_rle_counts(rle["counts"], h, w)


# ------------------------------------------------------------------------------- tests
def test_click_accept_next_reload_restores(studio: Studio) -> None:
    page, scenes = studio.page, studio.scenes
    studio.open(0)
    canvas = page.locator("#canvas").bounding_box()
    h, w = SIZE
    assert canvas["width"] / canvas["height"] == pytest.approx(w / h, rel=1e-3)  # the whole image, no bars

    studio.click(*scenes.click)
    expect(page.locator("#iou")).to_have_text(re.compile(r"^IoU [01]\.\d\d$"))
    expect(page.locator("#candidates button")).to_have_count(3)  # one click: three candidates
    page.keyboard.press("Enter")
    expect(page.locator("#objects li")).to_have_count(1)
    expect(page.locator("#iou")).to_have_text("")
    expect(page.locator('#images li[data-id="0"]')).to_have_attribute("data-status", "partial")

    page.keyboard.press("n")
    studio.wait_image(1)
    expect(page.locator("#image-name")).to_have_text(NAMES[1])
    expect(page.locator("#objects li")).to_have_count(0)
    studio.click(*interior_point(max(scenes.samples[1].masks, key=np.sum)))  # an object left in progress
    studio.wait_prompts(1)
    page.reload()
    studio.wait_image(1)  # the hash keeps the image across the reload ...
    studio.wait_prompts(1)  # ... and the client id its object in progress
    expect(page.locator("#iou")).not_to_have_text("")
    page.keyboard.press("p")
    studio.wait_image(0)
    expect(page.locator("#objects li")).to_have_count(1)  # restored from the server
    expect(page.locator("#stat-masks")).to_have_text("1")

    record = studio.on_disk(0)
    (ann,) = record["annotations"]
    assert ann["source"] == "manual" and ann["num_prompts"] == 1
    got = mask_of(ann["segmentation"])
    assert got.shape == SIZE
    assert iou(got, scenes.target) >= ONE_CLICK_IOU, iou(got, scenes.target)


def test_negative_points_undo_clear_category_delete_done(studio: Studio) -> None:
    page, scenes = studio.page, studio.scenes
    studio.open(0)
    studio.click(*scenes.click)
    studio.wait_prompts(1)
    bx, by = scenes.background
    page.keyboard.down("Shift")
    studio.click(bx, by)
    page.keyboard.up("Shift")
    studio.wait_prompts(2)
    expect(page.locator("#candidates button")).to_have_count(0)  # more than one prompt: one mask
    studio.click(bx - 20, by, button="right")
    studio.wait_prompts(3)
    labels = [p["label"] for p in studio.current()["prompts"]]
    assert labels == [1, 0, 0]

    page.keyboard.press("z")
    studio.wait_prompts(2)
    page.keyboard.press("Control+z")
    studio.wait_prompts(1)
    assert [p["label"] for p in studio.current()["prompts"]] == [1]
    page.keyboard.press("Escape")
    expect(page.locator("#prompt-count")).to_have_text("Click an object to start")
    expect(page.locator("#iou")).to_have_text("")
    assert studio.current() is None

    # typing a category does not trigger shortcuts (n, d, z are keys); Enter in the field accepts
    studio.click(*scenes.click)
    studio.wait_prompts(1)
    page.locator("#category").click()
    page.keyboard.type("dozen")
    expect(page.locator("#category")).to_have_value("dozen")
    expect(page.locator("#stage")).to_have_attribute("data-image-id", "0")
    expect(page.locator("#status")).not_to_have_attribute("data-status", "done")
    studio.wait_prompts(1)
    page.keyboard.press("Enter")
    expect(page.locator("#objects li")).to_have_count(1)
    expect(page.locator("#objects li .cat")).to_have_text("dozen")
    assert studio.on_disk(0)["annotations"][0]["category"] == "dozen"
    page.keyboard.press("Escape")  # leaves the field

    # Z with nothing in progress takes the accept back
    page.keyboard.press("z")
    expect(page.locator("#objects li")).to_have_count(0)
    studio.wait_prompts(1)
    page.keyboard.press("Enter")
    expect(page.locator("#objects li")).to_have_count(1)

    # select the row, Delete deletes it
    page.locator("#objects li").first.click()
    expect(page.locator("#objects li.selected")).to_have_count(1)
    page.keyboard.press("Delete")
    expect(page.locator("#objects li")).to_have_count(0)
    assert studio.on_disk(0)["annotations"] == []

    # D marks the image done, the button takes it back
    page.keyboard.press("d")
    expect(page.locator("#status")).to_have_attribute("data-status", "done")
    expect(page.locator('#images li[data-id="0"]')).to_have_attribute("data-status", "done")
    assert studio.on_disk(0)["samkit"]["studio"]["done"] is True
    page.locator("#done").click()
    expect(page.locator("#status")).not_to_have_attribute("data-status", "done")


def test_box_drag_and_opacity(studio: Studio) -> None:
    page, scenes = studio.page, studio.scenes
    studio.open(0)
    ys, xs = np.nonzero(scenes.target)
    x0, y0, x1, y1 = xs.min() - 3, ys.min() - 3, xs.max() + 4, ys.max() + 4
    page.mouse.move(*studio.at(x0, y0))
    page.mouse.down()
    page.mouse.move(*studio.at((x0 + x1) / 2, (y0 + y1) / 2), steps=4)
    page.mouse.move(*studio.at(x1, y1), steps=4)
    page.mouse.up()
    studio.wait_prompts(1)
    expect(page.locator("#iou")).not_to_have_text("")
    cur = studio.current()
    assert cur["prompts"][0]["type"] == "box"
    assert cur["prompts"][0]["box"] == pytest.approx([x0, y0, x1, y1], abs=1.0)
    assert iou(mask_of(cur["mask"]), scenes.target) >= BOX_IOU

    # a pixel deep inside the mask: the overlay colour there follows the slider
    depth = depth_map(mask_of(cur["mask"]) & scenes.target)
    py, px = np.unravel_index(int(np.argmax(depth)), depth.shape)
    original = scenes.samples[0].image[py, px].astype(np.int32)
    slider = page.locator("#opacity").bounding_box()
    mid_y = slider["y"] + slider["height"] / 2
    page.mouse.click(slider["x"] + 1, mid_y)  # the far left: (almost) no overlay
    low = int(page.locator("#opacity").input_value())
    faint = studio.canvas_pixel_when(px, py, lambda rgb: np.abs(rgb - original).max() < 40)
    page.mouse.click(slider["x"] + slider["width"] - 1, mid_y)  # the far right: opaque
    high = int(page.locator("#opacity").input_value())
    strong = studio.canvas_pixel_when(px, py, lambda rgb: np.abs(rgb - CURRENT_RGB).max() < 40)
    assert low <= 5 and high >= 95, (low, high)
    assert np.abs(faint - original).max() < 40, (faint, original)  # the bare image
    assert np.abs(strong - CURRENT_RGB).max() < 40, strong  # the mask's colour
    page.keyboard.press("Escape")
    expect(page.locator("#iou")).to_have_text("")


def test_proposals_accept_reject(studio: Studio) -> None:
    page = studio.page
    studio.open(2)
    page.locator("#propose").click()
    state = page.locator("#proposal-state")
    expect(state).to_have_attribute("data-state", "ready", timeout=60_000)
    rows = page.locator("#proposals li")
    n = rows.count()
    assert n >= 2, "the automatic mask generator found fewer than 2 masks in the scene"
    first = rows.first.get_attribute("data-pid")
    expect(page.locator("#proposals li.focused")).to_have_attribute("data-pid", first)
    page.keyboard.press("Tab")
    second = rows.nth(1).get_attribute("data-pid")
    expect(page.locator("#proposals li.focused")).to_have_attribute("data-pid", second)
    page.keyboard.press("a")  # accepts the focused one
    expect(page.locator("#objects li")).to_have_count(1)
    expect(page.locator("#objects li").first).to_have_attribute("data-source", "auto")
    expect(rows).to_have_count(n - 1)
    page.keyboard.press("x")  # rejects the next focused one
    expect(rows).to_have_count(n - 2)
    assert studio.on_disk(2)["annotations"][0]["source"] == "auto"


def test_unreadable_image_shows_its_error(studio: Studio) -> None:
    page = studio.page
    page.goto(f"{studio.url}/#3")
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#message-text")).not_to_have_text("")
    expect(page.locator("#status")).to_have_attribute("data-status", "error")
    expect(page.locator('#images li[data-id="3"]')).to_have_attribute("data-status", "error")
    page.keyboard.press("p")  # the rest keeps working
    studio.wait_image(2)


@pytest.mark.parametrize("studio", ["s3cret-token"], indirect=True)
def test_token(studio: Studio) -> None:
    page = studio.page
    page.goto(f"{studio.url}/#0")
    expect(page.locator("#message-text")).to_contain_text("token")  # 401 without it
    studio.open(0, query="?token=s3cret-token")  # sets the cookie, then the page works
    studio.click(*studio.scenes.click)
    studio.wait_prompts(1)


def test_screenshot(studio: Studio, tmp_path: Path) -> None:
    page, scenes = studio.page, studio.scenes
    studio.open(0)
    for mask, name in ((scenes.target, "tile"), (scenes.second, "blob")):
        page.locator("#category").fill(name)
        studio.click(*interior_point(mask))
        studio.wait_prompts(1)
        page.keyboard.press("Enter")
    expect(page.locator("#objects li")).to_have_count(2)
    expect(page.locator("#stat-masks")).to_have_text("2")
    # one object in progress: the largest other object the model gets well from one click
    masks = scenes.samples[0].masks
    taken = scenes.target | scenes.second
    rest = sorted((m for m in masks if not (m & taken).any() and m.mean() > 0.005), key=lambda m: -m.sum())
    page.locator("#category").fill("")
    for third in rest[:4]:
        studio.click(*interior_point(third))
        studio.wait_prompts(1)
        if iou(mask_of(studio.current()["mask"]), third) >= 0.8:
            break
        page.keyboard.press("Escape")
        expect(page.locator("#iou")).to_have_text("")
    expect(page.locator("#candidates button")).to_have_count(3)
    page.mouse.move(10, 10)  # no hover effects in the picture
    path = tmp_path / "studio.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("SAMKIT_WRITE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)
