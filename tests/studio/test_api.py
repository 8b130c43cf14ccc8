"""The studio's API through Starlette's test client: every route, persistence, bad input, safety."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from samkit.masks.rle import decode_rle_counts  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from tests.studio.helpers import default_model, iou, mask_of, write_scenes  # noqa: E402

H = {"X-Studio-Client": "tab-1"}


@pytest.fixture()
def folders(tmp_path: Path):
    scenes = write_scenes(tmp_path / "images")
    return tmp_path / "images", tmp_path / "out", scenes


def make_client(images: Path, out: Path, **options) -> TestClient:
    model, description = default_model()
    options.setdefault("automask", {"points_per_side": 8})
    app = create_app(StudioConfig(images, out, **options), model=model, model_description=description)
    return TestClient(app)


def click(client: TestClient, image_id: int, x: float, y: float, label: int = 1, headers=H):
    return client.post(f"/api/images/{image_id}/prompt", json={"type": "point", "x": x, "y": y, "label": label},
                       headers=headers)


def test_listing_info_and_the_image(folders) -> None:
    images, out, scenes = folders
    with make_client(images, out) as client:
        info = client.get("/api/info").json()
        assert info["images"] == 3 and info["annotated"] == 0 and "samkit_nano" in info["model"]
        rows = client.get("/api/images").json()["images"]
        assert [r["name"] for r in rows] == [s.name for s in scenes]
        assert [r["id"] for r in rows] == [0, 1, 2] and {r["status"] for r in rows} == {"untouched"}
        view = client.get("/api/images/1", headers=H).json()
        assert (view["width"], view["height"]) == (256, 256) and view["annotations"] == [] and view["current"] is None
        file = client.get("/api/images/1/file")
        assert file.headers["content-type"] == "image/jpeg"
        shown = np.asarray(Image.open(io.BytesIO(file.content)))
        assert shown.shape == (256, 256, 3) and np.abs(shown.astype(int) - scenes[1].image).mean() < 6


def test_click_refine_choose_undo_accept_and_the_json_on_disk(folders) -> None:
    images, out, scenes = folders
    scene = scenes[0]
    with make_client(images, out) as client:
        first = click(client, 0, *scene.click).json()
        assert len(first["candidates"]) == 3 and first["chosen"] == int(np.argmax([c["iou"] for c in first["candidates"]]))
        mask = mask_of(first["mask"])
        assert mask.shape == scene.target.shape and iou(mask, scene.target) > 0.5
        # a negative click outside the object refines with the previous logits fed back
        ys, xs = np.nonzero(~scene.target)
        second = click(client, 0, float(xs[0]), float(ys[0]), label=0).json()
        assert second["candidates"] == [] and [p["label"] for p in second["prompts"]] == [1, 0]
        assert not mask_of(second["mask"])[ys[0], xs[0]]
        assert client.post("/api/images/0/undo", headers=H).json()["undone"] == "prompt"
        chosen = client.post("/api/images/0/choose", json={"candidate": 2}, headers=H).json()
        assert chosen["chosen"] == 2 and chosen["mask"] == chosen["candidates"][2]["mask"]
        accepted = client.post("/api/images/0/accept", json={"category": "blob"}, headers=H).json()
        ann = accepted["annotation"]
        assert accepted["status"] == "partial" and ann["source"] == "manual" and ann["category"] == "blob"
        assert ann["num_prompts"] == 1 and ann["seconds"] >= 0 and ann["mask"] == chosen["mask"]
        assert client.get("/api/images/0", headers=H).json()["current"] is None
    record = json.loads((out / "scene_0.json").read_text())
    assert record["image"] == {"image_id": 0, "file_name": "scene_0.png", "height": 256, "width": 256}
    (saved,) = record["annotations"]
    size = saved["segmentation"]["size"]
    assert isinstance(saved["segmentation"]["counts"], str)  # COCO compressed, as `samkit annotate` writes
    assert np.array_equal(decode_rle_counts(saved["segmentation"]["counts"], *size), mask_of(chosen["mask"]))
    assert saved["prompts"] == {"points": [[scene.click[0], scene.click[1], 1]], "box": None}
    assert saved["point_coords"] == [[scene.click[0], scene.click[1]]]
    assert saved["area"] == int(mask_of(chosen["mask"]).sum()) and len(saved["bbox"]) == 4
    assert 0 <= saved["stability_score"] <= 1 and saved["crop_box"] == [0.0, 0.0, 256.0, 256.0]


def test_undo_takes_back_an_accept_and_restart_restores_everything(folders) -> None:
    images, out, scenes = folders
    with make_client(images, out) as client:
        click(client, 0, *scenes[0].click)
        client.post("/api/images/0/accept", headers=H)
        click(client, 0, *scenes[0].click)
        box = client.post("/api/images/0/prompt", json={"type": "box", "box": [10, 10, 120, 90]}, headers=H)
        assert box.status_code == 200 and box.json()["prompts"][-1]["type"] == "box"
        client.post("/api/images/0/accept", headers=H)
        undone = client.post("/api/images/0/undo", headers=H).json()
        assert undone["undone"] == "accept" and len(undone["annotations"]) == 1
        assert [p["type"] for p in undone["current"]["prompts"]] == ["point", "box"]  # back in progress
        assert len(json.loads((out / "scene_0.json").read_text())["annotations"]) == 1
        click(client, 2, *scenes[2].click)  # an object in progress, not accepted
        assert client.post("/api/images/1/done", json={"done": True}).json() == {"status": "done", "done": True}
    with make_client(images, out) as client:  # a new server on the same folders
        rows = client.get("/api/images").json()["images"]
        assert [(r["status"], r["annotations"]) for r in rows] == [("partial", 1), ("done", 0), ("untouched", 0)]
        assert len(client.get("/api/images/0", headers=H).json()["annotations"]) == 1
        assert client.get("/api/info").json()["annotated"] == 2


def test_rename_delete_clear_and_stats(folders) -> None:
    images, out, scenes = folders
    with make_client(images, out) as client:
        click(client, 0, *scenes[0].click)
        aid = client.post("/api/images/0/accept", headers=H).json()["annotation"]["id"]
        renamed = client.patch(f"/api/images/0/annotations/{aid}", json={"category": "cell"}).json()
        assert renamed["category"] == "cell"
        click(client, 0, 5.0, 5.0)
        assert client.post("/api/images/0/clear", headers=H).json() == {"current": None}
        assert client.get("/api/images/0", headers=H).json()["current"] is None
        stats = client.get("/api/stats").json()
        assert stats["images"] == 3 and stats["masks"] == 1 and stats["prompts_per_mask"] == 1.0
        assert stats["by_source"]["manual"]["masks"] == 1
        gone = client.delete(f"/api/images/0/annotations/{aid}").json()
        assert gone == {"deleted": aid, "status": "untouched"}
        assert client.delete(f"/api/images/0/annotations/{aid}").status_code == 404
        assert json.loads((out / "scene_0.json").read_text())["annotations"] == []


def test_clients_have_their_own_objects(folders) -> None:
    images, out, scenes = folders
    with make_client(images, out) as client:
        click(client, 0, *scenes[0].click, headers={"X-Studio-Client": "a"})
        assert client.get("/api/images/0", headers={"X-Studio-Client": "b"}).json()["current"] is None
        assert client.get("/api/images/0", headers={"X-Studio-Client": "a"}).json()["current"] is not None
        assert client.get("/api/images/0", headers={"X-Studio-Client": "../etc"}).status_code == 400


def _wait_ready(client: TestClient, image_id: int, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        view = client.get(f"/api/images/{image_id}/proposals").json()
        if view["state"] in ("ready", "error"):
            return view
        time.sleep(0.2)
    raise AssertionError("proposals never finished")


def test_proposals_accept_reject_and_persist(folders) -> None:
    images, out, scenes = folders
    options = {"automask": {"points_per_side": 8, "pred_iou_thresh": 0.3, "stability_score_thresh": 0.5}}
    with make_client(images, out, **options) as client:
        assert client.get("/api/images/0/proposals").json()["state"] == "none"
        assert client.post("/api/images/0/proposals").json()["state"] in ("queued", "running", "ready")
        view = _wait_ready(client, 0)
        assert view["state"] == "ready" and len(view["proposals"]) >= 2, view
        first, second = view["proposals"][:2]
        assert mask_of(first["mask"]).sum() == first["area"]
        ann = client.post(f"/api/images/0/proposals/{first['id']}/accept", json={"category": "x"}).json()["annotation"]
        assert ann["source"] == "auto" and ann["mask"] == first["mask"] and ann["category"] == "x"
        assert client.post(f"/api/images/0/proposals/{first['id']}/accept").status_code == 409
        assert client.post(f"/api/images/0/proposals/{second['id']}/reject").json()["status"] == "rejected"
        assert client.post("/api/images/0/proposals/9999/reject").status_code == 404
    with make_client(images, out, **options) as client:  # decisions survive a restart, nothing recomputed
        statuses = [p["status"] for p in client.get("/api/images/0/proposals").json()["proposals"]]
        assert statuses[:2] == ["accepted", "rejected"] and set(statuses[2:]) <= {"pending"}
        saved = json.loads((out / "scene_0.json").read_text())["annotations"]
        assert [a["source"] for a in saved] == ["auto"]
    with make_client(images, out, propose=True, **options) as client:  # --propose starts them on open
        client.get("/api/images/2", headers=H)
        assert _wait_ready(client, 2)["state"] == "ready"


def test_the_token_guards_every_api_call(folders) -> None:
    images, out, _ = folders
    with make_client(images, out, token="s3cret") as client:
        assert client.get("/api/images").status_code == 401
        assert "token" in client.get("/api/info").json()["error"]
        assert client.get("/api/images", headers={"X-Studio-Token": "wrong"}).status_code == 401
        assert client.get("/api/images", headers={"X-Studio-Token": "s3cret"}).status_code == 200
        assert client.get("/?token=wrong", follow_redirects=False).status_code == 401
        opened = client.get("/?token=s3cret", follow_redirects=False)
        assert opened.status_code == 303 and "samkit_studio_token" in opened.headers["set-cookie"]
        assert client.get("/api/images").status_code == 200  # the cookie now travels


@pytest.mark.parametrize("path", [
    "/api/images/..%2F..%2Fetc%2Fpasswd/file", "/api/images/%2Fetc%2Fpasswd/file", "/api/images/-1",
    "/api/images/3", "/api/images/99999999999999999999/file", "/api/images/0x1", "/static/..%2F..%2Fapp.py",
    "/static/../app.py", "/api/images/1.0/file",
])
def test_paths_from_the_client_are_never_files(folders, path) -> None:
    images, out, _ = folders
    with make_client(images, out) as client:
        response = client.get(path)
        assert response.status_code == 404
        assert b"import" not in response.content and b"root:" not in response.content


def test_a_link_out_of_the_folder_and_an_unreadable_image(folders, tmp_path) -> None:
    images, out, scenes = folders
    outside = tmp_path / "secret.png"
    Image.fromarray(scenes[0].image).save(outside)
    os.symlink(outside, images / "zz_link.png")
    (images / "zz_broken.png").write_bytes(b"not an image at all")
    with make_client(images, out) as client:
        names = [r["name"] for r in client.get("/api/images").json()["images"]]
        link, broken = names.index("zz_link.png"), names.index("zz_broken.png")
        refused = client.get(f"/api/images/{link}/file")
        assert refused.status_code == 403 and "outside the images folder" in refused.json()["error"]
        assert click(client, link, 5, 5).status_code == 403
        bad = client.get(f"/api/images/{broken}", headers=H)
        assert bad.status_code == 422 and "zz_broken.png" in bad.json()["error"]
        assert click(client, broken, 5, 5).status_code == 422
        assert click(client, 0, *scenes[0].click).status_code == 200  # the rest keeps working


@pytest.mark.parametrize("body, status, message", [
    ({"type": "point", "x": 10, "y": 10, "label": 3}, 400, "label"),
    ({"type": "point", "x": "10", "y": 10, "label": 1}, 400, "finite number"),
    (b'{"type": "point", "x": 1e400, "y": 10, "label": 1}', 400, "finite number"),
    (b'{"type": "point", "x": NaN, "y": 10, "label": 1}', 400, "finite number"),
    ({"type": "point", "x": 300, "y": 10, "label": 1}, 400, "outside the 256 x 256 image"),
    ({"type": "point", "x": 10, "y": 10, "label": True}, 400, "label"),
    ({"type": "box", "box": [50, 50, 10, 10]}, 400, "x0 < x1"),
    ({"type": "box", "box": [1, 2, 3]}, 400, "x0, y0, x1, y1"),
    ({"type": "lasso"}, 400, "'point' or 'box'"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_prompts_get_a_clear_400(folders, body, status, message) -> None:
    images, out, _ = folders
    with make_client(images, out) as client:
        send = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = client.post("/api/images/0/prompt", headers=H, **send)
        assert response.status_code == status and message in response.json()["error"], response.text


def test_bad_bodies_and_actions_out_of_place(folders) -> None:
    images, out, scenes = folders
    with make_client(images, out) as client:
        post = lambda path, **kw: client.post(f"/api/images/0/{path}", headers=H, **kw)  # noqa: E731
        assert post("prompt", content=b"{not json").status_code == 400
        big = post("prompt", content=b"[" + b"1," * 40000 + b"1]")
        assert big.status_code == 413 and "limit" in big.json()["error"]
        assert post("accept").status_code == 409 and "nothing" not in post("accept").json()["error"]
        assert post("choose", json={"candidate": 0}).status_code == 409
        assert post("undo").json()["undone"] is None
        click(client, 0, *scenes[0].click)
        assert post("choose", json={"candidate": 5}).status_code == 400
        assert post("choose", json={"candidate": "1"}).status_code == 400
        post("prompt", json={"type": "box", "box": [1, 1, 50, 50]})
        second_box = post("prompt", json={"type": "box", "box": [2, 2, 60, 60]})
        assert second_box.status_code == 409 and "already has a box" in second_box.json()["error"]
        assert post("accept", json={"category": "x" * 500}).status_code == 400
        assert post("done", json={"done": "yes"}).status_code == 400
        assert client.patch("/api/images/0/annotations/0", json={}).status_code == 400
        assert client.get("/api/images/0/prompt").status_code == 405


def test_opening_an_image_computes_its_embedding_and_the_next_ones_ahead(folders) -> None:
    images, out, _ = folders
    with make_client(images, out) as client:
        state = client.app.state.studio
        assert not state.cached(0) and not state.cached(1)
        client.get("/api/images/0", headers=H)
        deadline = time.monotonic() + 60
        while not (state.cached(0) and state.cached(1)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.cached(0) and state.cached(1) and not state.cached(2)


def test_the_event_loop_answers_while_the_model_works(folders) -> None:
    images, out, _ = folders
    with make_client(images, out) as client:
        state = client.app.state.studio
        release = threading.Event()
        state.worker.submit(0, release.wait, 30)  # the model thread is busy until released
        t = time.monotonic()
        assert client.get("/api/images").status_code == 200 and client.get("/api/info").status_code == 200
        assert time.monotonic() - t < 10
        release.set()
