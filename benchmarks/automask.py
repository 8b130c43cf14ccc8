"""Automatic mask generation: samkit vs the official package, same weights, same image.

    python benchmarks/automask.py [--image PATH] [--points-per-side 32] [--model sam2.1_hiera_tiny]
    python benchmarks/automask.py --model samkit_nano --pred-iou-thresh 0.6 --stability-score-thresh 0.8
        # the shipped default model's trained weights, at thresholds its masks pass

Prints the time of ``generate()`` for both, the ratio, samkit's time in the image embedding
and in the rest (decoder and post-processing), and whether both returned the same masks.

Weights: for the official variants random ones (no trained SAM 2 weights can be downloaded
here); with random weights hardly any candidate passes the default IoU and stability
thresholds, so the run measures the cost of decoding every prompt, and samkit skips the mask
upscaling of prompts without a candidate above ``pred_iou_thresh``, which such weights favour.
For ``samkit_nano`` the trained weights that ship with samkit (the official code is built with
the same architecture and loaded with the same state dict), where many masks survive.
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
from samkit.weights import bundled_checkpoint  # noqa: E402
from tests.parity.oracle import build_oracle, build_oracle_like  # noqa: E402

TRUCK = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "truck.jpg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default=str(TRUCK) if TRUCK.exists() else None)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.8, help="the official default: 0.8")
    ap.add_argument("--stability-score-thresh", type=float, default=0.95, help="the official default: 0.95")
    args = ap.parse_args()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    if args.image:
        image, what = load_image(args.image), Path(args.image).name
    else:
        from skimage import data
        image, what = data.astronaut(), "skimage astronaut"
    shipped = bundled_checkpoint(args.model)
    if shipped is not None:  # samkit's own model: its trained weights, the official code built like it
        ours = samkit.build_model(args.model, shipped)
        oracle = build_oracle_like(ours.cfg, ours.state_dict())
        weights = "trained weights shipped with samkit"
    else:
        oracle = build_oracle(args.model)
        ours = samkit.build_model(args.model)
        ours.load_state_dict(oracle.state_dict())
        weights = "random weights"
    kw = dict(points_per_side=args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
              stability_score_thresh=args.stability_score_thresh)
    og, sg = SAM2AutomaticMaskGenerator(oracle, **kw), AutoMaskGenerator(ours, **kw)
    e = oracle.image_size // 16  # the official predictor assumes a 1024-px input: tell it the feature sizes
    og.predictor._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]

    t = time.perf_counter()
    a = og.generate(image)
    t_official = time.perf_counter() - t
    t = time.perf_counter()
    b = sg.generate(image)
    t_ours = time.perf_counter() - t

    # the image embedding's share of samkit's time (the rest: decoder, filters, NMS, upsampling, RLE)
    t = time.perf_counter()
    sg.predictor.set_image(image)
    t_embed = time.perf_counter() - t

    same = len(a) == len(b) and all(
        np.array_equal(x["segmentation"], y["segmentation"]) for x, y in
        zip(sorted(a, key=lambda r: -r["area"]), sorted(b, key=lambda r: -r["area"])))
    h, w = image.shape[:2]
    print(f"{args.model} ({weights}), {what} ({w}x{h}), points_per_side={args.points_per_side}, "
          f"pred_iou_thresh={args.pred_iou_thresh}, stability_score_thresh={args.stability_score_thresh}, fp32 CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}")
    print("| | official (s) | samkit (s) | speed-up |")
    print("|---|---|---|---|")
    print(f"| generate() | {t_official:.1f} | {t_ours:.1f} | {t_official / t_ours:.2f}x |")
    print(f"| samkit: of which the image embedding | | {t_embed:.1f} | |")
    print(f"| samkit: the rest (decoder, filters, NMS, upsampling, RLE) | | {max(t_ours - t_embed, 0.0):.1f} | |")
    print(f"masks: official {len(a)}, samkit {len(b)}; identical: {same}")


if __name__ == "__main__":
    main()
