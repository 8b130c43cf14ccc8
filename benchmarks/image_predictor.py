"""ImagePredictor latency: samkit vs the official package, same weights, same image, one run.

    python benchmarks/image_predictor.py [--model sam2.1_hiera_tiny] [--image PATH] [--repeats 3]

Prints a markdown table of median times and the ratio (official / samkit; > 1 means samkit
is faster). fp32 on the CPU unless --device is given.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import samkit  # noqa: E402
from samkit.image_predictor import ImagePredictor  # noqa: E402
from samkit.imageio import load_image  # noqa: E402
from tests.parity.oracle import build_oracle  # noqa: E402

TRUCK = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "truck.jpg"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default=str(TRUCK) if TRUCK.exists() else None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    if args.image:
        image, what = load_image(args.image), Path(args.image).name
    else:
        from skimage import data
        image, what = data.astronaut(), "skimage astronaut"
    oracle = build_oracle(args.model).to(args.device)
    ours = samkit.build_model(args.model, device=args.device)
    ours.load_state_dict(oracle.state_dict())
    po, pm = SAM2ImagePredictor(oracle), ImagePredictor(ours)
    h, w = image.shape[:2]
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, [w / 2, h / 2], (100, 2)), rng.uniform([w / 2, h / 2], [w, h], (100, 2))], 1)
    prompts = {
        "predict 1 point (3 masks)": dict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1])),
        "predict box (1 mask)": dict(box=np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.8]), multimask_output=False),
        "predict 100 boxes": dict(box=boxes, multimask_output=False),
    }
    rows = []
    with torch.inference_mode():
        po.set_image(image), pm.set_image(image)  # warm-up
        rows.append(("set_image", median_time(lambda: po.set_image(image), args.repeats),
                     median_time(lambda: pm.set_image(image), args.repeats)))
        for name, kw in prompts.items():
            po.predict(**kw), pm.predict(**kw)
            rows.append((name, median_time(lambda: po.predict(**kw), args.repeats * 3),
                         median_time(lambda: pm.predict(**kw), args.repeats * 3)))
    print(f"{args.model}, {what} ({w}x{h}), fp32 {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| step | official (s) | samkit (s) | speed-up |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
