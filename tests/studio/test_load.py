"""50 concurrent clients decode and accept over several images on a real server: no error answer,
no lost or corrupt annotation, memory held by the LRU bounds."""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time

import numpy as np
import pytest

pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from samkit.masks.rle import decode_rle_counts  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from tests.studio.helpers import default_model, running_server, write_scenes  # noqa: E402

CLIENTS = 50
SECONDS = 8.0
CACHE = 2  # embeddings kept: fewer than the images, so the LRU evicts under load


async def _client(base: str, k: int, scenes, accepted: dict, errors: list, counts: dict) -> None:
    rng = random.Random(k)
    headers = {"X-Studio-Client": f"load-{k}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            image_id = rng.randrange(len(scenes))
            scene = scenes[image_id]
            calls = [("GET", f"/api/images/{image_id}", None)]
            ys, xs = np.nonzero(scene.target)
            j = rng.randrange(len(xs))
            calls.append(("POST", f"/api/images/{image_id}/prompt",
                          {"type": "point", "x": float(xs[j]), "y": float(ys[j]), "label": 1}))
            if rng.random() < 0.5:
                calls.append(("POST", f"/api/images/{image_id}/prompt",
                              {"type": "point", "x": float(rng.randrange(256)), "y": float(rng.randrange(256)),
                               "label": 0}))
                if rng.random() < 0.3:
                    calls.append(("POST", f"/api/images/{image_id}/undo", None))
            calls.append(("POST", f"/api/images/{image_id}/accept", {"category": f"c{k % 3}"}))
            for method, path, body in calls:
                response = await http.request(method, path, json=body)
                counts["calls"] += 1
                if response.status_code != 200:
                    errors.append((method, path, response.status_code, response.text[:200]))
                    return
                if path.endswith("/accept"):
                    ann = response.json()["annotation"]
                    accepted.setdefault(image_id, {})[ann["id"]] = ann


@pytest.mark.slow
def test_fifty_concurrent_clients(tmp_path) -> None:
    scenes = write_scenes(tmp_path / "images", count=4)
    model, description = default_model()
    config = StudioConfig(tmp_path / "images", tmp_path / "out", cache_embeddings=CACHE, cache_bytes=256 << 20)
    app = create_app(config, model=model, model_description=description)
    state = app.state.studio
    accepted: dict = {}
    errors: list = []
    counts = {"calls": 0}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with running_server(app) as base:
        async def main() -> None:
            await asyncio.gather(*(_client(base, k, scenes, accepted, errors, counts) for k in range(CLIENTS)))
        asyncio.run(main())
        # memory held by the server: at most CACHE embeddings within their byte bound
        assert len(state._embeddings) <= CACHE and state.embedding_bytes() <= config.cache_bytes
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{counts['calls']} calls by {CLIENTS} clients in {SECONDS:.0f} s; accepts "
          f"{sum(len(v) for v in accepted.values())}; max RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MB")
    assert not errors, errors[:5]
    assert sum(len(v) for v in accepted.values()) >= CLIENTS  # every client accepted at least once
    for image_id, anns in accepted.items():
        record = json.loads((tmp_path / "out" / f"scene_{image_id}.json").read_text())  # valid, complete JSON
        on_disk = {a["id"]: a for a in record["annotations"]}
        assert set(on_disk) == set(anns), "an accepted annotation is missing on disk, or one appeared twice"
        assert len(record["annotations"]) == len(on_disk)  # ids are unique
        for aid, a in on_disk.items():
            mask = decode_rle_counts(a["segmentation"]["counts"], *a["segmentation"]["size"])
            assert int(mask.sum()) == a["area"] == anns[aid]["area"]
