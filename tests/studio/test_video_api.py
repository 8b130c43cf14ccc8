"""The studio's video routes: objects, prompts, tracking with progress and cancel, corrections,
the files on disk, restart, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from samkit.masks.rle import decode_rle_counts  # noqa: E402
from samkit.prompts import sample_center_error_click  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from samkit.video.synthetic import SyntheticVideo  # noqa: E402
from samkit.video.writers import read_masks_png, write_clip_mp4  # noqa: E402
from tests.studio.helpers import default_model, iou, mask_of, write_scenes  # noqa: E402

FRAMES, H, W = 12, 96, 128


@pytest.fixture()
def clip(tmp_path: Path):
    images = tmp_path / "images"
    write_scenes(images, count=1)  # entry 0: an image
    video = SyntheticVideo(FRAMES, H, W, num_objects=2, seed=7)
    write_clip_mp4(video.iter_frames(), images / "clip.mp4", fps=10)  # entry 1: the video
    return images, tmp_path / "out", video


def make_client(images: Path, out: Path, **options) -> TestClient:
    model, description = default_model()
    return TestClient(create_app(StudioConfig(images, out, **options), model=model, model_description=description))


def centre(mask: np.ndarray) -> tuple[float, float]:
    pts, _ = sample_center_error_click(torch.from_numpy(np.ascontiguousarray(mask))[None])
    return float(pts[0, 0, 0]), float(pts[0, 0, 1])


def wait_job(client: TestClient, vid: int, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/videos/{vid}/job").json()
        if job["state"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError("tracking did not finish")


def test_prompt_track_and_the_files_on_disk(clip) -> None:
    images, out, video = clip
    with make_client(images, out) as client:
        rows = client.get("/api/images").json()["images"]
        assert [(r["name"], r["kind"]) for r in rows] == [("clip.mp4", "video"), ("scene_0.png", "image")]
        vid = 0
        view = client.get(f"/api/videos/{vid}").json()
        assert (view["num_frames"], view["width"], view["height"], view["fps"]) == (FRAMES, W, H, 10.0)
        assert view["objects"] == [] and view["job"]["state"] == "idle"
        assert client.get(f"/api/videos/{vid}/frames/3").headers["content-type"] == "image/jpeg"
        assert client.get(f"/api/videos/{vid}/frames/3/masks").json() == {"frame": 3, "masks": [], "prompts": []}
        obj = client.post(f"/api/videos/{vid}/objects", json={"name": "left"}).json()
        assert obj == {"id": 1, "name": "left"}
        x, y = centre(video.object_masks(0)[0])
        shown = client.post(f"/api/videos/{vid}/prompt",
                            json={"frame": 0, "obj": 1, "type": "point", "x": x, "y": y, "label": 1}).json()
        (first,) = shown["masks"]
        assert first["obj"] == 1 and iou(mask_of(first["mask"]), video.object_masks(0)[0]) > 0.5
        job = client.post(f"/api/videos/{vid}/track", json={"direction": "both"}).json()
        assert job["state"] == "running" and job["total"] == FRAMES
        with client.stream("GET", f"/api/videos/{vid}/events") as events:  # server-sent progress
            text = "".join(events.iter_text())
        progress = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")][:-1]
        assert text.count("event: progress") == FRAMES and "event: end" in text
        assert [p["done"] for p in progress] == list(range(1, FRAMES + 1))
        assert wait_job(client, vid)["state"] == "done"
        late = client.get(f"/api/videos/{vid}/frames/{FRAMES - 1}/masks").json()["masks"]
        assert late and iou(mask_of(late[0]["mask"]), video.object_masks(FRAMES - 1)[0]) > 0.3
    saved = json.loads((out / "clip" / "video.json").read_text())
    assert saved["video"] == {"file_name": "clip.mp4", "height": H, "width": W, "num_frames": FRAMES, "fps": 10.0}
    assert saved["objects"] == [{"id": 1, "name": "left"}] and saved["masklet_id"] == [1]
    assert saved["masklet_frames"] == list(range(FRAMES))
    assert saved["prompts"] == [{"type": "point", "x": x, "y": y, "label": 1, "frame": 0, "obj": 1}]
    rle = saved["masklet"][FRAMES - 1][0]
    from_json = decode_rle_counts(rle["counts"], *rle["size"])
    labels = read_masks_png(out / "clip" / "labels" / f"{FRAMES - 1:05d}.png")
    assert np.array_equal(labels == 1, from_json) and np.array_equal(from_json, mask_of(late[0]["mask"]))


def test_correction_restart_and_tracking_again(clip) -> None:
    images, out, video = clip
    with make_client(images, out) as client:
        client.post("/api/videos/0/objects")
        client.post("/api/videos/0/objects")
        for obj in (1, 2):
            x, y = centre(video.object_masks(0)[obj - 1])
            client.post("/api/videos/0/prompt", json={"frame": 0, "obj": obj, "type": "point", "x": x, "y": y,
                                                     "label": 1})
        client.post("/api/videos/0/track", json={"direction": "forward"})
        wait_job(client, 0)
        # a correction on frame 8: a box around object 2's true mask, then a negative click
        ys, xs = np.nonzero(video.object_masks(8)[1])
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        masks = client.post("/api/videos/0/prompt", json={"frame": 8, "obj": 2, "type": "box", "box": box}).json()
        assert {m["obj"] for m in masks["masks"]} == {1, 2}
        assert iou(mask_of(next(m for m in masks["masks"] if m["obj"] == 2)["mask"]), video.object_masks(8)[1]) > 0.5
        assert client.get("/api/videos/0").json()["prompted_frames"] == [0, 8]
    with make_client(images, out) as client:  # restart: objects, prompts and masks come back
        view = client.get("/api/videos/0").json()
        assert [o["id"] for o in view["objects"]] == [1, 2] and view["prompted_frames"] == [0, 8]
        assert view["tracked_frames"] == FRAMES
        assert len(client.get("/api/videos/0/frames/8/masks").json()["prompts"]) == 1
        client.post("/api/videos/0/track", json={"direction": "both"})  # the memory is rebuilt from the prompts
        assert wait_job(client, 0)["state"] == "done"
        gone = client.post("/api/videos/0/clear", json={"frame": 8, "obj": 2}).json()
        assert gone["prompts"] == [] and {m["obj"] for m in gone["masks"]} == {1}
        assert client.delete("/api/videos/0/objects/2").json() == {"deleted": 2}
        assert all(m["obj"] == 1 for m in client.get("/api/videos/0/frames/5/masks").json()["masks"])
        assert set(np.unique(read_masks_png(out / "clip" / "labels" / "00005.png"))) <= {0, 1}
        overlay = client.post("/api/videos/0/overlay").json()
        assert overlay == {"file": "clip/overlay.mp4"} and (out / "clip" / "overlay.mp4").stat().st_size > 0


def test_cancel_stops_tracking_and_keeps_what_was_done(tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    video = SyntheticVideo(200, H, W, num_objects=1, seed=2)
    write_clip_mp4(video.iter_frames(), images / "long.mp4")
    with make_client(images, tmp_path / "out") as client:
        client.post("/api/videos/0/objects")
        x, y = centre(video.object_masks(0)[0])
        client.post("/api/videos/0/prompt", json={"frame": 0, "obj": 1, "type": "point", "x": x, "y": y, "label": 1})
        client.post("/api/videos/0/track", json={"direction": "forward"})
        while client.get("/api/videos/0/job").json()["done"] < 3:
            time.sleep(0.05)
        busy = client.post("/api/videos/0/prompt", json={"frame": 1, "obj": 1, "type": "point", "x": x, "y": y,
                                                        "label": 1})
        assert busy.status_code == 409 and "being tracked" in busy.json()["error"]
        assert client.post("/api/videos/0/track").status_code == 409
        client.post("/api/videos/0/cancel")
        job = wait_job(client, 0)
        assert job["state"] == "cancelled" and 3 <= job["done"] < 200
        assert client.get("/api/videos/0").json()["tracked_frames"] == job["done"]
    saved = json.loads((tmp_path / "out" / "long" / "video.json").read_text())
    assert len(saved["masklet_frames"]) == job["done"]  # written at the end of the job, cancelled or not


def test_single_video_and_frames_folder_modes(tmp_path) -> None:
    video = SyntheticVideo(5, H, W, num_objects=1, seed=1)
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(5):
        Image.fromarray(np.asarray(video.frame(t))).save(frames / f"{t:03d}.png")
    with make_client(tmp_path, tmp_path / "out", only=[Path("frames")]) as client:
        rows = client.get("/api/images").json()["images"]
        assert [(r["name"], r["kind"]) for r in rows] == [("frames", "video")]
        assert client.get("/api/videos/0").json()["num_frames"] == 5
        client.post("/api/videos/0/objects")
        x, y = centre(video.object_masks(2)[0])
        client.post("/api/videos/0/prompt", json={"frame": 2, "obj": 1, "type": "point", "x": x, "y": y, "label": 1})
    assert (tmp_path / "out" / "frames" / "video.json").exists()
    assert (tmp_path / "out" / "frames" / "labels" / "00002.png").exists()


@pytest.mark.parametrize("method, path, body, status, message", [
    ("GET", "/api/videos/0/frames/12", None, 400, "frames 0 to 11"),
    ("POST", "/api/videos/0/prompt", {"frame": 0, "obj": 9, "type": "point", "x": 1, "y": 1, "label": 1}, 404,
     "no object 9"),
    ("POST", "/api/videos/0/prompt", {"frame": "0", "obj": 1, "type": "point", "x": 1, "y": 1, "label": 1}, 400,
     "'frame' must be an integer"),
    ("POST", "/api/videos/0/prompt", {"frame": 0, "obj": 1, "type": "point", "x": 500, "y": 1, "label": 1}, 400,
     "outside the 128 x 96 frame"),
    ("POST", "/api/videos/0/track", {"direction": "sideways"}, 400, "'direction' is one of"),
    ("POST", "/api/videos/0/track", {}, 409, "no object has a prompt"),
    ("GET", "/api/videos/1", None, 404, "is an image, not a video"),
    ("GET", "/api/images/0", None, 422, "is a video"),
    ("PATCH", "/api/videos/0/objects/5", {"name": "x"}, 404, "no object 5"),
    ("GET", "/api/videos/7", None, 404, "no image 7"),
])
def test_bad_video_requests(clip, method, path, body, status, message) -> None:
    images, out, _ = clip
    with make_client(images, out) as client:
        client.post("/api/videos/0/objects")
        response = client.request(method, path, json=body)
        assert response.status_code == status and message in response.json()["error"], response.text


def test_a_video_that_cannot_be_read(tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.mp4").write_bytes(b"not a video")
    with make_client(images, tmp_path / "out") as client:
        response = client.get("/api/videos/0")
        assert response.status_code == 422 and "broken.mp4" in response.json()["error"]
