"""A 2,000-frame clip in the studio: every frame served, a long track, the server's RSS flat."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("starlette")
import torch  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from samkit.prompts import sample_center_error_click  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from samkit.video.synthetic import SyntheticVideo  # noqa: E402
from samkit.video.writers import write_clip_mp4  # noqa: E402
from tests.studio.helpers import default_model  # noqa: E402

FRAMES = 2000
TRACKED = 600


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the RSS from /proc (Linux)")
def test_a_long_clip_keeps_the_server_memory_flat(tmp_path) -> None:
    images = tmp_path / "images"
    video = SyntheticVideo(FRAMES, 72, 96, num_objects=1, seed=11)
    write_clip_mp4(video.iter_frames(), images / "long.mp4", fps=25)
    model, description = default_model()
    app = create_app(StudioConfig(images, tmp_path / "out"), model=model, model_description=description)
    with TestClient(app) as client:
        assert client.get("/api/videos/0").json()["num_frames"] == FRAMES
        samples = {}
        for t in range(FRAMES):  # scrubbing through every frame: decoded on the server, one at a time
            assert client.get(f"/api/videos/0/frames/{t}").status_code == 200
            if t in (200, FRAMES - 1):
                samples[f"frames {t}"] = rss_mb()
        client.post("/api/videos/0/objects")
        pts, _ = sample_center_error_click(torch.from_numpy(video.object_masks(0)[0])[None])
        client.post("/api/videos/0/prompt", json={"frame": 0, "obj": 1, "type": "point", "x": float(pts[0, 0, 0]),
                                                 "y": float(pts[0, 0, 1]), "label": 1})
        client.post("/api/videos/0/track", json={"direction": "forward"})
        while (job := client.get("/api/videos/0/job").json())["done"] < TRACKED:
            if job["done"] >= TRACKED // 3 and "track 1/3" not in samples:
                samples["track 1/3"] = rss_mb()
            time.sleep(0.2)
        samples["track end"] = rss_mb()
        client.post("/api/videos/0/cancel")
    print({k: round(v) for k, v in samples.items()})
    assert samples[f"frames {FRAMES - 1}"] - samples["frames 200"] < 50, samples
    assert samples["track end"] - samples["track 1/3"] < 100, samples
