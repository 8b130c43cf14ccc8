"""Automatic mask generation: samkit vs the official package, same weights, same image.

    python benchmarks/automask.py [--image PATH ...] [--model NAME ...] [--points-per-side 32]
    python benchmarks/automask.py --model sam2.1_hiera_tiny samkit_nano --image groceries.jpg truck.jpg --compile
        # both models, two photos, and samkit's opt-in compiled decoder as a third column
    python benchmarks/automask.py ... --threads 1   # on a machine shared with other jobs

Prints, per model and image, the time of ``generate()`` for the official generator and for
samkit (eager fp32; with ``--bf16`` also the bf16 fast mode, ``compute_dtype=torch.bfloat16``;
with ``--compile`` also ``build_model(..., compile=True)``, timed after one warm-up call that
compiles; ``--repeats N``: N interleaved rounds, best kept), the ratios, samkit's time in the
image embedding, and how the
masks agree: the counts, the smallest IoU of a samkit mask with its official match and the
largest differences of predicted IoU and stability score.

Thresholds: the official defaults (0.8 / 0.95) for the SAM 2 variants; for ``samkit_nano``
0.5 / 0.7, where its masks pass (``--pred-iou-thresh`` / ``--stability-score-thresh`` set both).

Weights: for the official variants random ones (no trained SAM 2 weights can be downloaded
here); with random weights hardly any candidate passes the thresholds, so the run measures
the cost of decoding every prompt, and samkit skips the mask upscaling of prompts without a
candidate above ``pred_iou_thresh``, which such weights favour. For ``samkit_nano`` the trained
weights that ship with samkit (the official code is built with the same architecture and
loaded with the same state dict), where many masks survive.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import samkit  # noqa: E402
from samkit.automask.generator import AutoMaskGenerator  # noqa: E402
from samkit.builder import compile_decoder  # noqa: E402
from samkit.imageio import load_image  # noqa: E402
from samkit.model.precision import set_compute_dtype  # noqa: E402
from samkit.weights import bundled_checkpoint  # noqa: E402
from tests.parity.oracle import build_oracle, build_oracle_like  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
NANO_THRESHOLDS = (0.5, 0.7)


def agreement(ours: list[dict], official: list[dict]) -> str:
    """Counts, the smallest IoU of a mask with its best official match, the largest score gaps."""
    if not ours or not official:
        return f"official {len(official)}, samkit {len(ours)}"
    a = np.stack([r["segmentation"].ravel() for r in official]).astype(np.float32)
    b = np.stack([r["segmentation"].ravel() for r in ours]).astype(np.float32)
    inter = b @ a.T
    union = b.sum(1)[:, None] + a.sum(1)[None] - inter
    iou = inter / np.maximum(union, 1)
    match = iou.argmax(1)
    d_iou = max(abs(r["predicted_iou"] - official[j]["predicted_iou"]) for r, j in zip(ours, match))
    d_stab = max(abs(r["stability_score"] - official[j]["stability_score"]) for r, j in zip(ours, match))
    return (f"official {len(official)}, samkit {len(ours)}; min matched IoU {iou.max(1).min():.4f}; "
            f"max |d predicted_iou| {d_iou:.1e}; max |d stability| {d_stab:.1e}")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(model_name: str, image_path: str | None, args: argparse.Namespace) -> None:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    if image_path:
        path = Path(image_path)
        if not path.exists() and (PHOTOS / path).exists():
            path = PHOTOS / path
        image, what = load_image(path), path.name
    else:
        from skimage import data
        image, what = data.astronaut(), "skimage astronaut"
    shipped = bundled_checkpoint(model_name)
    if shipped is not None:  # samkit's own model: its trained weights, the official code built like it
        ours = samkit.build_model(model_name, shipped)
        oracle = build_oracle_like(ours.cfg, ours.state_dict())
        weights = "trained weights shipped with samkit"
    else:
        oracle = build_oracle(model_name)
        ours = samkit.build_model(model_name)
        ours.load_state_dict(oracle.state_dict())
        weights = "random weights"
    iou_t, stab_t = (0.8, 0.95) if shipped is None else NANO_THRESHOLDS
    iou_t = args.pred_iou_thresh if args.pred_iou_thresh is not None else iou_t
    stab_t = args.stability_score_thresh if args.stability_score_thresh is not None else stab_t
    kw = dict(points_per_side=args.points_per_side, pred_iou_thresh=iou_t, stability_score_thresh=stab_t)
    og, sg = SAM2AutomaticMaskGenerator(oracle, **kw), AutoMaskGenerator(ours, **kw)
    e = oracle.image_size // 16  # the official predictor assumes a 1024-px input: tell it the feature sizes
    og.predictor._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]

    gens = [("official", og), ("samkit eager", sg)]
    if args.bf16:
        fast = set_compute_dtype(copy.deepcopy(ours), torch.bfloat16)
        gens.append(("samkit bf16 mode (eager)", AutoMaskGenerator(fast, **kw)))
    if args.compile:
        compiled = samkit.build_model(model_name, shipped) if shipped is not None else samkit.build_model(model_name)
        compiled.load_state_dict(ours.state_dict())
        if not compile_decoder(compiled):
            print("--compile: not compiled (see the warning)")
        cg = AutoMaskGenerator(compiled, **kw)
        _, t_warm = timed(lambda: cg.generate(image))  # compiles
        gens.append((f"samkit compiled (first call {t_warm:.0f} s)", cg))
    # interleaved rounds: every generator once per round, the best time of each kept
    times: dict[str, list[float]] = {name: [] for name, _ in gens}
    records: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name, gen in gens:
            records[name], t = timed(lambda: gen.generate(image))
            times[name].append(t)
    _, t_embed = timed(lambda: sg.predictor.set_image(image))  # the image embedding's share
    a, t_official = records["official"], min(times["official"])
    rows = [(name, min(times[name]), records[name]) for name, _ in gens[1:]]

    h, w = image.shape[:2]
    print(f"\n{model_name} ({weights}), {what} ({w}x{h}), points_per_side={args.points_per_side}, "
          f"pred_iou_thresh={iou_t}, stability_score_thresh={stab_t}, fp32 CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}")
    spread = lambda name: f"{min(times[name]):.2f}-{max(times[name]):.2f}"  # noqa: E731
    print(f"best of {args.repeats} interleaved rounds (the range of the rounds in brackets)")
    print("| | generate() (s) | speed-up vs official | masks |")
    print("|---|---|---|---|")
    print(f"| official | {t_official:.2f} ({spread('official')}) | 1.00x | {len(a)} |")
    for name, t, recs in rows:
        print(f"| {name} | {t:.2f} ({spread(name)}) | {t_official / t:.2f}x | {agreement(recs, a)} |")
    print(f"| samkit: of which the image embedding | {t_embed:.2f} | | |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", nargs="+", default=["sam2.1_hiera_tiny"])
    default_image = [str(PHOTOS / "truck.jpg")] if (PHOTOS / "truck.jpg").exists() else [None]
    ap.add_argument("--image", nargs="+", default=default_image,
                    help="image paths (a bare name is looked up in ../shared/data/images)")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pred-iou-thresh", type=float, default=None, help="default: 0.8 (nano 0.5)")
    ap.add_argument("--stability-score-thresh", type=float, default=None, help="default: 0.95 (nano 0.7)")
    ap.add_argument("--compile", action="store_true", help="also time samkit with the compiled decoder")
    ap.add_argument("--bf16", action="store_true",
                    help="also time samkit's bf16 fast mode (compute_dtype=torch.bfloat16; its masks are compared "
                         "with the official float32 ones)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the best time of each is kept")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for model_name in args.model:
        for image_path in args.image:
            run(model_name, image_path, args)


if __name__ == "__main__":
    main()
