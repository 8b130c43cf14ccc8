"""The studio's latency, end to end over HTTP: a real server (uvicorn, in a thread of this process)
and an HTTP client, as the page sees it.

    python benchmarks/studio.py [--models samkit_nano sam2.1_hiera_tiny] [--clicks 60] [--threads 2]

For each model (``samkit_nano`` with its shipped weights, the others with random weights) and each
image (the real photos of ../shared/data/images when present: truck.jpg 1800 x 1200 and
groceries.jpg 800 x 534; else scikit-image's astronaut), it measures:

- the first mask of a new image: ``GET /api/images/{id}`` then the first click (the embedding is
  computed on the way; the studio's prefetch is off so nothing is ahead);
- refinement clicks with the embedding cached: objects of 1 to 5 clicks (positive inside a box
  around the first click, negative outside), each click's ``POST /prompt`` until its mask arrives,
  p50 and p95.

The official package has no annotation server, so there is no side-by-side ratio here.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samkit.builder import load_model  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from tests.studio.helpers import running_server  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"


def images_for_run(folder: Path) -> list[str]:
    """Write the benchmark's images into ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name in ("truck.jpg", "groceries.jpg"):
        if (PHOTOS / name).is_file():
            (folder / name).write_bytes((PHOTOS / name).read_bytes())
            names.append(name)
    if not names:
        from skimage import data as skdata

        Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
        names.append("astronaut.png")
    return sorted(names)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(model_name: str, clicks: int, seed: int) -> list[dict]:
    model, description = load_model(model_name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        names = images_for_run(Path(tmp) / "images")
        config = StudioConfig(Path(tmp) / "images", Path(tmp) / "out", prefetch=False)
        app = create_app(config, model=model, model_description=description)
        with running_server(app) as base, httpx.Client(base_url=base, timeout=600,
                                                        headers={"X-Studio-Client": "bench"}) as http:
            http.get("/api/info")
            for image_id, name in enumerate(names):
                rng = random.Random(seed + image_id)
                t0 = time.perf_counter()
                view = http.get(f"/api/images/{image_id}").json()
                w, h = view["width"], view["height"]
                first = http.post(f"/api/images/{image_id}/prompt",
                                  json={"type": "point", "x": w / 2, "y": h / 2, "label": 1})
                first.raise_for_status()
                first_mask = time.perf_counter() - t0
                http.post(f"/api/images/{image_id}/clear")
                times: list[float] = []
                while len(times) < clicks:
                    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
                    for k in range(rng.randint(1, 5)):
                        inside = k == 0 or rng.random() < 0.6
                        if inside:
                            x = min(max(cx + rng.uniform(-0.05, 0.05) * w, 0), w)
                            y = min(max(cy + rng.uniform(-0.05, 0.05) * h, 0), h)
                        else:
                            x, y = rng.uniform(0, w), rng.uniform(0, h)
                        t = time.perf_counter()
                        r = http.post(f"/api/images/{image_id}/prompt",
                                      json={"type": "point", "x": x, "y": y, "label": 1 if inside else 0})
                        r.raise_for_status()
                        r.json()
                        times.append(time.perf_counter() - t)
                    http.post(f"/api/images/{image_id}/clear")
                rows.append({"model": model_name, "image": f"{name} ({w} x {h})", "first": first_mask,
                             "p50": percentile(times, 50), "p95": percentile(times, 95), "clicks": len(times)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["samkit_nano", "sam2.1_hiera_tiny"])
    ap.add_argument("--clicks", type=int, default=60, help="refinement clicks measured per image")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for name in args.models for row in measure(name, args.clicks, args.seed)]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fp32, CPU")
    print("| model | image | first mask of a new image | refinement click p50 | p95 | clicks |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['image']} | {r['first'] * 1000:.0f} ms | {r['p50'] * 1000:.0f} ms | "
              f"{r['p95'] * 1000:.0f} ms | {r['clicks']} |")


if __name__ == "__main__":
    main()
