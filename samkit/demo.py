"""``samkit demo``: what ``make demo`` runs after set-up."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def sample_photo() -> tuple[np.ndarray, str]:
    """A real photo that works offline: scikit-image's astronaut if installed, else a
    generated scene."""
    try:
        from skimage import data

        return data.astronaut(), "scikit-image astronaut.png"
    except ImportError:
        from samkit.video.synthetic import make_clip

        clip = make_clip(num_frames=1, height=384, width=512, num_objects=4, seed=0)
        return np.asarray(clip.frames[0]), "generated scene"


def run_demo(out: Path, device: str = "cpu", model_name: str | None = None, checkpoint: str | None = None) -> int:
    from samkit.builder import DEFAULT_MODEL, build_model
    from samkit.fileio import write_image
    from samkit.image_predictor import ImagePredictor
    from samkit.visualize import overlay

    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if checkpoint:
        model = build_model(checkpoint=checkpoint, device=device)
        note = f"{model.cfg.name} from {checkpoint}"
    else:
        model = build_model(model_name or DEFAULT_MODEL, device=device)
        note = (f"{model.cfg.name} with RANDOM weights: no trained weights ship yet and none can be "
                "downloaded here, so the masks show the pipeline working, not segmentation quality")
    print(f"model: {note} ({time.perf_counter() - t:.1f} s to build)")
    image, what = sample_photo()
    h, w = image.shape[:2]
    pred = ImagePredictor(model)
    t = time.perf_counter()
    pred.set_image(image)
    print(f"image: {what} ({w}x{h}); embedding took {time.perf_counter() - t:.2f} s")
    steps = {
        "point": dict(point_coords=np.array([[w * 0.45, h * 0.3]]), point_labels=np.array([1])),
        "box": dict(box=np.array([w * 0.2, h * 0.05, w * 0.8, h * 0.95])),
    }
    for name, kwargs in steps.items():
        t = time.perf_counter()
        masks, scores, _ = pred.predict(**kwargs)
        best = int(np.argmax(scores))
        pic = overlay(image, masks[best][None] > 0, points=kwargs.get("point_coords"),
                      labels=kwargs.get("point_labels"), boxes=None if "box" not in kwargs else kwargs["box"][None])
        path = write_image(out / f"{name}_overlay.png", pic)
        print(f"{name:6s} prompt: {time.perf_counter() - t:.2f} s, predicted IoU {scores[best]:.2f} -> {path}")
    return 0
