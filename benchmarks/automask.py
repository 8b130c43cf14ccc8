"""Automatic mask generation: samkit vs the official package, same weights, same image.

    python benchmarks/automask.py [--image PATH] [--points-per-side 32] [--model sam2.1_hiera_tiny]

Prints the time of ``generate()`` for both, the ratio, samkit's time in the model (image
embedding + decoder) and in the rest, and whether both returned the same masks. The weights are random (no trained weights can be downloaded here), which gives few
masks and noisy ones: the worst case for samkit's low-resolution decisions.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import samkit  # noqa: E402
from samkit.automask.generator import AutoMaskGenerator  # noqa: E402
from samkit.imageio import load_image  # noqa: E402
from tests.parity.oracle import build_oracle  # noqa: E402

TRUCK = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "truck.jpg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default=str(TRUCK) if TRUCK.exists() else None)
    ap.add_argument("--points-per-side", type=int, default=32)
    args = ap.parse_args()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    if args.image:
        image, what = load_image(args.image), Path(args.image).name
    else:
        from skimage import data
        image, what = data.astronaut(), "skimage astronaut"
    oracle = build_oracle(args.model)
    ours = samkit.build_model(args.model)
    ours.load_state_dict(oracle.state_dict())
    kw = dict(points_per_side=args.points_per_side)
    og, sg = SAM2AutomaticMaskGenerator(oracle, **kw), AutoMaskGenerator(ours, **kw)

    t = time.perf_counter()
    a = og.generate(image)
    t_official = time.perf_counter() - t
    t = time.perf_counter()
    b = sg.generate(image)
    t_ours = time.perf_counter() - t

    # the model's share: image embedding + decoding every grid point, without post-processing
    pred = sg.predictor
    t = time.perf_counter()
    pred.set_image(image)
    grid = sg.point_grids[0] * pred.model.image_size
    with torch.inference_mode():
        for i in range(0, len(grid), 64):
            pts = torch.as_tensor(grid[i:i + 64], dtype=torch.float32)[:, None]
            pred.predict_low_res(pts, torch.ones(len(pts), 1, dtype=torch.int32))
    t_model = time.perf_counter() - t

    same = len(a) == len(b) and all(
        np.array_equal(x["segmentation"], y["segmentation"]) for x, y in
        zip(sorted(a, key=lambda r: -r["area"]), sorted(b, key=lambda r: -r["area"])))
    h, w = image.shape[:2]
    print(f"{args.model} (random weights), {what} ({w}x{h}), points_per_side={args.points_per_side}, fp32 CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}")
    print("| | official (s) | samkit (s) | speed-up |")
    print("|---|---|---|---|")
    print(f"| generate() | {t_official:.1f} | {t_ours:.1f} | {t_official / t_ours:.2f}x |")
    print(f"| samkit: of which the model (embedding + decoder) | | {t_model:.1f} | |")
    print(f"| samkit: the rest (filters, NMS, upsampling, RLE) | | {max(t_ours - t_model, 0.01):.1f} | |")
    print(f"masks: official {len(a)}, samkit {len(b)}; identical: {same}")


if __name__ == "__main__":
    main()
