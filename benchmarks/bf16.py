"""Quality of the bf16 fast mode against samkit's own float32, on the trained default model.

    python benchmarks/bf16.py [--scenes 40] [--frames 50] [--threads 2]

The same model (``samkit_nano`` with its shipped weights) in float32 and in the bf16 fast mode
(``set_compute_dtype(model, torch.bfloat16)``), on the same inputs, and the IoU of each bf16 mask
with its float32 counterpart:

- generated scenes (the training generator's held-out seeds, scikit-image photo textures, 1-4
  objects, 256 px): one positive point at each object's most interior pixel (multimask, the
  best-scored candidate kept) and each object's true box (one mask);
- the photos of ../shared/data/images when present (truck.jpg, groceries.jpg): 40 random points;
- everything-mode (32 x 32 points, thresholds 0.5 / 0.7) on the photos and 4 generated scenes:
  the mask counts and the mean IoU of each bf16 mask with its best float32 match;
- a generated clip of ``--frames`` frames, 2 objects from one click each: the mean IoU of the bf16
  track with the float32 track over the frames;
- for scale, the same comparisons between float32 on the image and float32 on the image with
  +-1 grey level of noise (a change nobody can see): how much the model's masks move anyway.

The official package has no bf16 mode of its own on the CPU, so there is no ratio here; the
speed of the mode against the official float32 is in benchmarks/image_predictor.py,
benchmarks/automask.py (``--bf16``) and benchmarks/video.py.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samkit.automask.generator import AutoMaskGenerator  # noqa: E402
from samkit.builder import build_model  # noqa: E402
from samkit.data.synthetic.scenes import SyntheticSceneDataset  # noqa: E402
from samkit.data.synthetic.textures import dependency_photos  # noqa: E402
from samkit.image_predictor import ImagePredictor  # noqa: E402
from samkit.imageio import load_image  # noqa: E402
from samkit.model.precision import set_compute_dtype  # noqa: E402
from samkit.video.predictor import VideoPredictor  # noqa: E402
from samkit.video.synthetic import SyntheticVideo  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def jitter(image: np.ndarray, seed: int) -> np.ndarray:
    """``image`` with +-1 grey level of uniform noise."""
    noise = np.random.default_rng(seed).integers(-1, 2, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def best_mask(predictor: ImagePredictor, **prompt) -> np.ndarray:
    masks, scores, _ = predictor.predict(**prompt)
    return masks[int(np.argmax(scores))].astype(bool)


def interior_point(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return np.array([[x, y]], dtype=np.float64)


def true_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


class Trio:
    """The float32, bf16 and float32-on-jittered-image predictors of one image."""

    def __init__(self, fp32: ImagePredictor, bf16: ImagePredictor, noisy: ImagePredictor) -> None:
        self.fp32, self.bf16, self.noisy = fp32, bf16, noisy

    def set_image(self, image: np.ndarray, seed: int) -> None:
        self.fp32.set_image(image)
        self.bf16.set_image(image)
        self.noisy.set_image(jitter(image, seed))

    def compare(self, out: dict[str, list[float]], **prompt) -> None:
        ref = best_mask(self.fp32, **prompt)
        out["bf16"].append(iou(best_mask(self.bf16, **prompt), ref))
        out["noise"].append(iou(best_mask(self.noisy, **prompt), ref))


def everything_agreement(ours: list[dict], ref: list[dict]) -> float:
    """Mean IoU of each of ``ours`` with its best match in ``ref`` (1.0 when both are empty)."""
    if not ours or not ref:
        return 1.0 if not ours and not ref else 0.0
    return float(np.mean([max(iou(r["segmentation"], q["segmentation"]) for q in ref) for r in ours]))


def track(predictor: VideoPredictor, video: SyntheticVideo, frames: int) -> list[np.ndarray]:
    """Masks ``K x H x W`` per frame of two objects, each from one click at frame 0."""
    state = predictor.init_state(video)
    first = video.object_masks(0)
    for obj in range(first.shape[0]):
        predictor.add_new_points_or_box(state, 0, obj + 1, points=interior_point(first[obj]), labels=[1])
    out = []
    for _, _, logits in predictor.propagate_in_video(state, max_frame_num_to_track=frames - 1):
        out.append((logits[:, 0] > 0).cpu().numpy())
    return out


def summary(values: list[float]) -> str:
    v = np.asarray(values)
    return f"{v.mean():.4f} (min {v.min():.3f}, {(v < 0.9).sum()} of {len(v)} below 0.9)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=40, help="generated scenes for points and boxes")
    ap.add_argument("--frames", type=int, default=50, help="frames of the generated clip")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fp32 = build_model()
    bf16 = set_compute_dtype(copy.deepcopy(fp32), torch.bfloat16)
    trio = Trio(ImagePredictor(fp32), ImagePredictor(bf16), ImagePredictor(fp32))
    rows: list[tuple[str, str, str]] = []

    scenes = SyntheticSceneDataset(args.scenes, size=(256, 256), seed=1_000_003, photos=dependency_photos(),
                                   num_objects=(1, 4))
    points: dict[str, list[float]] = {"bf16": [], "noise": []}
    boxes: dict[str, list[float]] = {"bf16": [], "noise": []}
    for i, sample in enumerate(scenes):
        trio.set_image(sample.image, i)
        for mask in sample.masks:
            if mask.sum() < 100:
                continue
            trio.compare(points, point_coords=interior_point(mask), point_labels=np.array([1]))
            trio.compare(boxes, box=true_box(mask), multimask_output=False)
    rows.append((f"generated scenes: a point inside each object ({len(points['bf16'])})",
                 summary(points["bf16"]), summary(points["noise"])))
    rows.append((f"generated scenes: each object's true box ({len(boxes['bf16'])})",
                 summary(boxes["bf16"]), summary(boxes["noise"])))

    photos = [p for p in (PHOTOS / "truck.jpg", PHOTOS / "groceries.jpg") if p.is_file()]
    everything_inputs = [(p.name, load_image(p)) for p in photos]
    for k, path in enumerate(photos):
        image = load_image(path)
        trio.set_image(image, 100 + k)
        h, w = image.shape[:2]
        rng = np.random.default_rng(k)
        found: dict[str, list[float]] = {"bf16": [], "noise": []}
        for _ in range(40):
            trio.compare(found, point_coords=rng.uniform((0, 0), (w, h), (1, 2)), point_labels=np.array([1]))
        rows.append((f"{path.name}: 40 random points", summary(found["bf16"]), summary(found["noise"])))

    everything_inputs += [(f"generated scene {i}", scenes[i].image) for i in range(4)]
    kw = dict(points_per_side=32, pred_iou_thresh=0.5, stability_score_thresh=0.7)
    gens = [AutoMaskGenerator(m, **kw) for m in (fp32, bf16)]
    for k, (name, image) in enumerate(everything_inputs):
        ref, fast = (g.generate(image) for g in gens)
        noisy = gens[0].generate(jitter(image, 200 + k))
        rows.append((f"everything-mode, {name}: masks fp32 {len(ref)} / bf16 {len(fast)} / noise {len(noisy)}",
                     f"{everything_agreement(fast, ref):.4f}", f"{everything_agreement(noisy, ref):.4f}"))

    video = SyntheticVideo(args.frames, 240, 320, 2, seed=3, image_size=fp32.image_size)
    a = track(VideoPredictor(fp32, progress=False), video, args.frames)
    b = track(VideoPredictor(bf16, progress=False), video, args.frames)
    per_frame = [np.mean([iou(x, y) for x, y in zip(fa, fb)]) for fa, fb in zip(a, b)]
    rows.append((f"generated clip, 2 objects, {len(per_frame)} frames tracked (per-frame mean IoU)",
                 summary(per_frame), ""))

    print(f"samkit_nano (shipped weights), bf16 mode vs float32, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {platform.machine()}")
    print("| inputs | mean IoU, bf16 vs fp32 | mean IoU, fp32 +-1 grey level vs fp32 |")
    print("|---|---|---|")
    for name, x, y in rows:
        print(f"| {name} | {x} | {y} |")


if __name__ == "__main__":
    main()
