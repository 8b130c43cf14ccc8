"""ONNX Runtime against samkit's PyTorch model, one run: latency, int8 decoder accuracy, RoPE,
segment-everything.

    python benchmarks/onnx.py [--model samkit_nano sam2.1_hiera_tiny] [--image PATH] [--threads 1]
                              [--repeats 5] [--part latency int8 rope everything]

* ``latency``: median time of the image encoder (``set_image``) and of the decoder for one
  point (3 masks), one box (1 mask) and 64 points at once, for samkit's ImagePredictor in float32
  and in its bf16 mode (``compute_dtype=torch.bfloat16``) and for OnnxImagePredictor (float32
  graphs, and the int8 decoder), each step timed for every predictor in turn.
* ``int8``: the int8 decoder (``samkit export onnx --quantize-decoder``) against the float32
  one on a 16 x 16 grid of point prompts and 64 random boxes: mask IoU of every candidate at the
  image size, and the largest IoU-score difference.
* ``rope``: the memory attention's rotary encoding of queries and keys on the shapes of one
  frame attending to 6 past frames + 1 conditioning frame (``--model`` sets the widths), and the
  whole memory attention on them for scale:
  samkit's complex product (``rotate_pairs``, as the model runs it), its real arithmetic
  (``apply_rope`` with cos/sin tables repeated for the keys, and broadcast over the frames, as the
  exported graph runs it) against the official complex-number version
  (``sam2.modeling.position_encoding.apply_rotary_enc``).
* ``everything`` (only when asked for, on the default model whatever ``--model`` says):
  segment-everything with 32 x 32 points, OnnxAutoMaskGenerator (numpy + ONNX Runtime) against
  AutoMaskGenerator (torch), on groceries.jpg from ../shared/data/images (else the astronaut),
  each timed ``--repeats`` times (median); the number of masks of each and how well they agree
  (each torch mask against the ONNX mask that overlaps it most).

Models without shipped weights get random ones (seed 0); the same weights go to every side.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# this file is named onnx.py: its folder must not shadow the onnx package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import samkit  # noqa: E402
from benchmarks.image_predictor import median_time  # noqa: E402
from samkit.configs import get_config  # noqa: E402
from samkit.automask.generator import AutoMaskGenerator  # noqa: E402
from samkit.image_predictor import ImagePredictor  # noqa: E402
from samkit.imageio import load_image  # noqa: E402
from samkit.masks import mask_iou  # noqa: E402
from samkit.model.attention import apply_rope, axial_rope_angles, rotate_pairs  # noqa: E402
from samkit.model.precision import set_compute_dtype  # noqa: E402
from samkit.model.sam2 import SAM2Model  # noqa: E402
from samkit.onnx.export import export_onnx  # noqa: E402
from samkit.onnx.automask import OnnxAutoMaskGenerator  # noqa: E402
from samkit.onnx.predictor import OnnxImagePredictor  # noqa: E402

TRUCK = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "truck.jpg"
GROCERIES = TRUCK.with_name("groceries.jpg")
ASTRONAUT = Path(__file__).resolve().parents[1] / "samkit" / "assets" / "astronaut.jpg"


def build(name: str) -> SAM2Model:
    torch.manual_seed(0)
    return samkit.build_model(name)


def prompts(h: int, w: int) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.linspace(0.05, 0.95, 8) * w, np.linspace(0.05, 0.95, 8) * h), -1).reshape(-1, 1, 2)
    return {
        "predict 1 point (3 masks)": dict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1])),
        "predict box (1 mask)": dict(box=np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.8]), multimask_output=False),
        "predict 64 points (3 masks each)": dict(point_coords=grid + rng.uniform(-1, 1, grid.shape),
                                                 point_labels=np.ones((64, 1))),
    }


def latency(name: str, folder: Path, image: np.ndarray, repeats: int, threads: int) -> None:
    predictors = {"samkit fp32": ImagePredictor(build(name)),
                  "samkit bf16": ImagePredictor(set_compute_dtype(build(name), torch.bfloat16)),
                  "ONNX Runtime fp32": OnnxImagePredictor(folder, num_threads=threads),
                  "ONNX Runtime int8 decoder": OnnxImagePredictor(folder, num_threads=threads, quantized_decoder=True)}
    h, w = image.shape[:2]
    rows = []
    with torch.inference_mode():
        for p in predictors.values():  # warm-up
            p.set_image(image)
        rows.append(("set_image (image encoder)", [median_time(lambda: p.set_image(image), repeats)
                                                   for p in predictors.values()]))
        for step, kw in prompts(h, w).items():
            for p in predictors.values():
                p.predict(**kw)
            rows.append((step, [median_time(lambda: p.predict(**kw), repeats) for p in predictors.values()]))
    print(f"\n{name}, {image.shape[1]}x{image.shape[0]} image, median of {repeats} (seconds):\n")
    print("| step | " + " | ".join(predictors) + " |")
    print("|---" * (len(predictors) + 1) + "|")
    for step, times in rows:
        print(f"| {step} | " + " | ".join(f"{t:.3f}" for t in times) + " |")


def int8_accuracy(name: str, folder: Path, image: np.ndarray, threads: int) -> None:
    fp32 = OnnxImagePredictor(folder, num_threads=threads)
    int8 = OnnxImagePredictor(folder, num_threads=threads, quantized_decoder=True)
    h, w = image.shape[:2]
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid((np.arange(16) + 0.5) / 16 * w, (np.arange(16) + 0.5) / 16 * h), -1).reshape(-1, 1, 2)
    xy0 = rng.uniform(0, [w * 0.6, h * 0.6], (64, 2))
    boxes = np.concatenate([xy0, xy0 + rng.uniform([w * 0.1, h * 0.1], [w * 0.4, h * 0.4], (64, 2))], 1)
    for p in (fp32, int8):
        p.set_image(image)
    print(f"\n{name}: int8 decoder against the float32 decoder (ONNX Runtime, the same image embedding)\n")
    print("| prompts | masks | mean mask IoU | min mask IoU | masks with IoU < 0.9 | max IoU-score diff |")
    print("|---|---|---|---|---|---|")
    for what, kw in (("256 grid points, 3 masks each", dict(point_coords=grid, point_labels=np.ones((256, 1)))),
                     ("64 boxes, 1 mask each", dict(box=boxes, multimask_output=False))):
        ious, score_diff = [], 0.0
        for i in range(0, 64 if "box" in kw else 256, 16):  # 16 prompts at a time: full-size masks are large
            part = {k: v[i:i + 16] if isinstance(v, np.ndarray) else v for k, v in kw.items()}
            a, sa, _ = fp32.predict(**part)
            b, sb, _ = int8.predict(**part)
            ious.append(mask_iou(a.reshape(-1, h, w) > 0, b.reshape(-1, h, w) > 0, empty=1.0).numpy())
            score_diff = max(score_diff, float(np.abs(sa - sb).max()))
        iou = np.concatenate(ious)
        print(f"| {what} | {iou.size} | {iou.mean():.4f} | {iou.min():.4f} | {(iou < 0.9).sum()} | "
              f"{score_diff:.4f} |")


def rope(name: str, repeats: int) -> None:
    from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

    cfg = get_config(name)
    side, dim = cfg.memory.feat_sizes[0], cfg.memory.d_model // cfg.memory.num_heads
    hw, frames = side * side, cfg.num_maskmem
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, cfg.memory.num_heads, hw, dim, generator=g)
    k = torch.randn(1, cfg.memory.num_heads, frames * hw, dim, generator=g)
    ang = axial_rope_angles(dim, side, side, cfg.memory.rope_theta)
    cos, sin = ang.cos(), ang.sin()
    cis = compute_axial_cis(dim, side, side, cfg.memory.rope_theta)

    freqs = torch.complex(cos, sin)

    def samkit_model():  # RoPEAttention.forward: one complex product, the table broadcast over the key frames
        return rotate_pairs(q, freqs), rotate_pairs(k.unflatten(2, (frames, hw)), freqs).flatten(2, 3)

    def samkit_real():  # the real form with the tables repeated for the keys
        return apply_rope(q, cos, sin), apply_rope(k, cos.repeat(frames, 1), sin.repeat(frames, 1))

    def samkit_graph():  # the exported graph: the tables broadcast over the key frames
        kf = k.reshape(1, -1, frames, hw, dim)
        return apply_rope(q, cos, sin), apply_rope(kf, cos, sin).reshape(k.shape)

    def official():
        return apply_rotary_enc(q, k, cis, repeat_freqs_k=True)

    ref = official()
    print(f"\nRoPE of one memory-attention layer's queries ({hw} x {dim}) and keys ({frames} x {hw} x {dim}), "
          f"{name} widths, median of {repeats}:\n")
    print("| implementation | ms | max abs diff vs official |")
    print("|---|---|---|")
    with torch.inference_mode():
        for label, fn in (("official complex (apply_rotary_enc)", official),
                          ("samkit complex, table broadcast (the model, rotate_pairs)", samkit_model),
                          ("samkit real, tables repeated (apply_rope)", samkit_real),
                          ("samkit real, tables broadcast (the ONNX graph)", samkit_graph)):
            out = fn()
            diff = max(float((a - b).abs().max()) for a, b in zip(out, ref))
            fn()
            print(f"| {label} | {median_time(fn, repeats) * 1000:.1f} | {diff:.1e} |")
        # in context: the whole memory attention on those shapes (+ 16 object pointers)
        model = build(name)
        ptrs = 16 * model.hidden_dim // model.mem_dim
        curr = torch.randn(hw, 1, model.hidden_dim, generator=g)
        memory = torch.randn(frames * hw + ptrs, 1, model.mem_dim, generator=g)
        t = median_time(lambda: model.memory_attention(curr, memory, curr, memory, ptrs), max(1, repeats // 3))
        print(f"\nthe whole memory attention ({cfg.memory.num_layers} layers, each rotating its self-attention "
              f"queries and keys and its cross-attention queries and {frames} x {hw} keys): {t * 1000:.0f} ms")


def _best_matches(ours: list[dict], theirs: list[dict]) -> list[tuple[float, int]]:
    """For each of ``ours``, the mask IoU with the record of ``theirs`` that overlaps it most
    (candidates: the one at the same position and those whose boxes intersect), and its index."""
    masks = [r["segmentation"] for r in theirs]
    boxes = np.array([r["bbox"] for r in theirs]).reshape(-1, 4)
    found = []
    for i, rec in enumerate(ours):
        x, y, w, h = rec["bbox"]
        near = np.flatnonzero((boxes[:, 0] <= x + w) & (boxes[:, 0] + boxes[:, 2] >= x) &
                              (boxes[:, 1] <= y + h) & (boxes[:, 1] + boxes[:, 3] >= y))
        order = ([i] if i < len(theirs) else []) + [j for j in near.tolist() if j != i]
        best = (0.0, -1)
        for j in order:
            iou = float(mask_iou(rec["segmentation"], masks[j], empty=1.0))
            best = max(best, (iou, j))
            if iou >= 0.99:
                break
        found.append(best)
    return found


def everything(path: Path, repeats: int, threads: int) -> None:
    image = load_image(path)
    model = samkit.build_model()  # the default model, with its shipped weights
    generators = {"AutoMaskGenerator (torch)": AutoMaskGenerator(model, points_per_side=32)}
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, tmp)
        generators["OnnxAutoMaskGenerator (numpy + ONNX Runtime)"] = OnnxAutoMaskGenerator(
            OnnxImagePredictor(tmp, num_threads=threads), points_per_side=32)
        times, records = {}, {}
        for label, gen in generators.items():
            gen.generate(image[:64, :64])  # warm-up: sessions, plans
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                records[label] = gen.generate(image)
                runs.append(time.perf_counter() - t)
            times[label] = statistics.median(runs)
    (a_label, ours), (b_label, theirs) = records.items()
    matches = _best_matches(ours, theirs)
    ious = np.array([iou for iou, _ in matches])
    same_place = sum(j == i for i, (_, j) in enumerate(matches))
    pairs = [(ours[i], theirs[j]) for i, (_, j) in enumerate(matches) if j >= 0]
    score_diff = max((abs(x["predicted_iou"] - y["predicted_iou"]) for x, y in pairs), default=0.0)
    stab_diff = max((abs(x["stability_score"] - y["stability_score"]) for x, y in pairs), default=0.0)
    h, w = image.shape[:2]
    print(f"\nsegment everything, samkit_nano, {path.name} ({w}x{h}), 32 x 32 points, {threads} thread(s), median of "
          f"{repeats} (seconds):\n")
    print("| generator | seconds | masks |")
    print("|---|---|---|")
    for label in generators:
        print(f"| {label} | {times[label]:.2f} | {len(records[label])} |")
    print(f"\nagreement ({a_label} masks against their best ONNX match): mean IoU {ious.mean():.5f}, min IoU "
          f"{ious.min():.5f}, {(ious >= 0.99).sum()} of {len(ious)} at IoU >= 0.99, {same_place} at the same "
          f"position in the list; max |predicted IoU diff| {score_diff:.1e}, max |stability diff| {stab_diff:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["samkit_nano", "sam2.1_hiera_tiny"])
    ap.add_argument("--image", default=None, help="default: truck.jpg (groceries.jpg for everything), "
                    "else the astronaut")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--part", nargs="+", choices=("latency", "int8", "rope", "everything"),
                    default=["latency", "int8", "rope"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image_path = args.image or str(TRUCK if TRUCK.exists() else ASTRONAUT)
    image = load_image(image_path)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.machine()}, {os.cpu_count()} cores (load average {load:.1f} at the start), torch "
          f"{torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, {args.threads} thread(s)"
          + (f", image {Path(image_path).name}" if set(args.part) - {"everything"} else ""))
    if "everything" in args.part:
        everything(Path(args.image) if args.image else GROCERIES if GROCERIES.exists() else ASTRONAUT, args.repeats,
                   args.threads)
    for name in args.model:
        with tempfile.TemporaryDirectory() as tmp:
            if "latency" in args.part or "int8" in args.part:
                export_onnx(build(name), tmp, quantize=True)
            if "latency" in args.part:
                latency(name, Path(tmp), image, args.repeats, args.threads)
            if "int8" in args.part:
                int8_accuracy(name, Path(tmp), image, args.threads)
        if "rope" in args.part:
            rope(name, args.repeats)


if __name__ == "__main__":
    main()
