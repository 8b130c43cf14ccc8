"""``samkit demo``: what ``make demo`` runs after set-up.

On the bundled photo (``samkit/assets/astronaut.jpg``) it segments one object from a click,
one from a box, and everything with the automatic mask generator; on a generated clip of
moving objects (rendered on the spot, with its ground truth) it tracks every object from one
click on the first frame and measures the tracked masks against the truth with the protocol of
``samkit eval-track`` (:func:`samkit.evaluate.tracking.evaluate_tracking`). Every result is a
picture or a video in the output folder; each step prints what it wrote and how long it took.
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from samkit.automask.generator import AutoMaskGenerator
from samkit.builder import load_model
from samkit.data.synthetic.clips import SceneConfig, make_clip
from samkit.evaluate.tracking import TRACKING_PROTOCOL, evaluate_tracking, first_frame_clicks
from samkit.fileio import write_image
from samkit.image_predictor import ImagePredictor
from samkit.imageio import load_image
from samkit.video.writers import OverlayVideoWriter, masks_to_labels, write_masks_png
from samkit.visualize import overlay

__all__ = ["DemoPrompts", "bundled_photo", "run_demo"]


@dataclass(frozen=True)
class DemoPrompts:
    """The demo's prompts on the bundled photo (pixels of the 512 x 512 image)."""

    point: tuple[float, float] = (400.0, 420.0)  # on the helmet (lower right)
    box: tuple[float, float, float, float] = (350.0, 2.0, 470.0, 285.0)  # around the space shuttle model
    # segment everything uses the model's thresholds (ModelConfig.automask_*): 0.6 / 0.8 for the
    # default model, whose masks on this photo never reach the official 0.8 / 0.95 (25 survive these)


def bundled_photo() -> tuple[np.ndarray, str]:
    """The photo that ships with samkit: ``(H x W x 3 uint8, description)``."""
    path = Path(__file__).resolve().parent / "assets" / "astronaut.jpg"
    return load_image(path), f"{path.name} (bundled, 512x512)"


def _step(label: str, t0: float, wrote: Path | str, extra: str = "") -> None:
    print(f"{label:<22s} {time.perf_counter() - t0:6.2f} s  {extra}{' -> ' if extra else '-> '}{wrote}")


def run_demo(out: Path, device: str = "cpu", model_name: Optional[str] = None, checkpoint: Optional[str] = None,
             *, points_per_side: int = 24, clip_frames: int = 50, progress: bool = False,
             pretrained: Optional[bool] = None, compute_dtype: str = "fp32", compile: bool = False) -> int:
    """Run the demo into ``out`` with the model of :func:`samkit.builder.load_model` (``model_name``
    or ``checkpoint``, default the shipped default model; ``pretrained=True``: the official weights
    of ``model_name``, downloaded once) on ``device``, in ``compute_dtype`` (``"fp32"`` or ``"bf16"``),
    with the decoder compiled when ``compile``. Returns the process exit code (0)."""
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    t = time.perf_counter()
    model, description = load_model(model_name, checkpoint, device, pretrained=pretrained, compile=compile,
                                    compute_dtype=compute_dtype)
    print(f"model: {description}")
    _step("build model", t, f"{model.cfg.name}, {model.image_size} px input")

    image, what = bundled_photo()
    pred = ImagePredictor(model)
    t = time.perf_counter()
    pred.set_image(image)
    _step("image embedding", t, what)

    prompts = DemoPrompts()
    t = time.perf_counter()
    pt = np.array([prompts.point])
    masks, scores, _ = pred.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=True)
    best = int(np.argmax(scores))
    path = write_image(out / "point_overlay.png", overlay(image, masks[best][None] > 0, points=pt,
                                                          labels=np.array([1])))
    _step("point prompt", t, path, f"predicted IoU {scores[best]:.2f}, {int((masks[best] > 0).sum())} px")

    t = time.perf_counter()
    box = np.array(prompts.box)
    masks, scores, _ = pred.predict(box=box, multimask_output=False)
    path = write_image(out / "box_overlay.png", overlay(image, masks[0][None] > 0, boxes=box[None]))
    _step("box prompt", t, path, f"predicted IoU {scores[0]:.2f}, {int((masks[0] > 0).sum())} px")

    t = time.perf_counter()
    gen = AutoMaskGenerator(model, points_per_side=points_per_side, min_mask_region_area=25)
    records = gen.generate(image)
    everything = [r["segmentation"] for r in sorted(records, key=lambda r: -r["area"])]
    pic = overlay(image, np.stack(everything)) if everything else overlay(image, np.zeros((0, *image.shape[:2]), bool))
    path = write_image(out / "everything_overlay.png", pic)
    _step("segment everything", t, path, f"{len(records)} masks from {points_per_side}x{points_per_side} points "
                                         f"(IoU > {gen.pred_iou_thresh:g}, stability >= {gen.stability_score_thresh:g})")

    # A generated clip with ground truth, tracked and measured as `samkit eval-track` does.
    t = time.perf_counter()
    scene = SceneConfig()
    clip = make_clip(num_frames=clip_frames, height=256, width=320, num_objects=3, seed=7, scene=scene)
    h, w = clip.frames.shape[1:3]
    clicks = first_frame_clicks(clip)
    _step("render clip", t, "memory", f"{clip.num_frames} frames {w}x{h}, {len(clicks)} objects, one click each "
                                       "on frame 0")
    t = time.perf_counter()
    mask_dir = out / "tracking" / "masks"
    has_cv2 = importlib.util.find_spec("cv2") is not None  # the overlay video needs OpenCV; PNGs do not
    writer = OverlayVideoWriter(out / "tracking" / "overlay.mp4", w, h, scene.fps, list(clicks)) if has_cv2 else None
    tracked: dict[int, np.ndarray] = {}  # frame -> H x W label map of the tracked objects

    def save(_: int, frame: int, obj_ids: list[int], masks: torch.Tensor) -> None:
        labels = masks_to_labels(masks, obj_ids)
        write_masks_png(mask_dir / f"{frame:05d}.png", labels)
        if writer is not None:
            writer.write(clip.frames[frame], labels)
        tracked[frame] = labels

    try:
        result = evaluate_tracking(model, [clip], progress=progress, on_frame=save)
    finally:
        if writer is not None:
            writer.close()
    sheet = np.concatenate([np.asarray(overlay(clip.frames[f], tracked[f]))
                            for f in np.linspace(0, clip_frames - 1, 5).astype(int)], axis=1)
    write_image(out / "tracking_frames.png", Image.fromarray(sheet))
    fps = clip_frames / max(time.perf_counter() - t, 1e-9)
    _step("track clip", t, writer.path if writer is not None else mask_dir,
          f"{fps:.1f} frames/s, mean IoU vs truth {result['mIoU']:.3f} over {result['num_pairs']} object-frames")
    print(f"{'':<22s} measured as samkit eval-track: {TRACKING_PROTOCOL}")
    print(f"{'':<22s} also {out / 'tracking_frames.png'} and {mask_dir}/ (PNG masks, pixel = object id)")
    print(f"demo done in {time.perf_counter() - total:.1f} s; pictures in {out}/")
    return 0
