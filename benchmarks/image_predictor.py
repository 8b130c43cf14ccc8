"""ImagePredictor latency: samkit vs the official package, same weights, same image, one run.

    python benchmarks/image_predictor.py [--model sam2.1_hiera_tiny] [--image PATH] [--repeats 3] [--dtype fp32 bf16]

Prints a markdown table of median times and the ratios (official / samkit; > 1 means samkit
is faster): the official predictor in float32 against samkit in each ``--dtype`` (fp32: exact;
bf16: the bf16 fast mode, ``build_model(..., compute_dtype=torch.bfloat16)``), each step timed
for every predictor in turn. On the CPU unless --device is given.
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
from samkit.model.precision import set_compute_dtype  # noqa: E402
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
    ap.add_argument("--dtype", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                    help="samkit's compute dtypes to time against the official float32")
    args = ap.parse_args()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    if args.image:
        image, what = load_image(args.image), Path(args.image).name
    else:
        from skimage import data
        image, what = data.astronaut(), "skimage astronaut"
    oracle = build_oracle(args.model).to(args.device)
    po = SAM2ImagePredictor(oracle)
    ours = {}
    for dtype in args.dtype:
        model = samkit.build_model(args.model, device=args.device, pretrained=False)
        model.load_state_dict(oracle.state_dict())
        ours[dtype] = ImagePredictor(set_compute_dtype(model, dtype))
    h, w = image.shape[:2]
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, [w / 2, h / 2], (100, 2)), rng.uniform([w / 2, h / 2], [w, h], (100, 2))], 1)
    prompts = {
        "predict 1 point (3 masks)": dict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1])),
        "predict box (1 mask)": dict(box=np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.8]), multimask_output=False),
        "predict 100 boxes": dict(box=boxes, multimask_output=False),
    }
    rows = []
    predictors = [po, *ours.values()]
    with torch.inference_mode():
        for p in predictors:  # warm-up
            p.set_image(image)
        rows.append(("set_image", [median_time(lambda: p.set_image(image), args.repeats) for p in predictors]))
        for name, kw in prompts.items():
            for p in predictors:
                p.predict(**kw)
            rows.append((name, [median_time(lambda: p.predict(**kw), args.repeats * 3) for p in predictors]))
    print(f"{args.model}, {what} ({w}x{h}), official fp32 vs samkit {' / '.join(ours)}, {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    head = "".join(f" samkit {d} (s) | speed-up |" for d in ours)
    print(f"| step | official fp32 (s) |{head}")
    print("|---|---|" + "---|---|" * len(ours))
    for name, (a, *bs) in rows:
        print(f"| {name} | {a:.3f} |" + "".join(f" {b:.3f} | {a / b:.2f}x |" for b in bs))


if __name__ == "__main__":
    main()
