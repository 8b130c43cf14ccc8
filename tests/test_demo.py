"""`samkit demo` (what `make demo` runs): every picture it promises, with timings, offline."""

from __future__ import annotations

import importlib.util

import numpy as np
from PIL import Image

from samkit.cli.main import main


def test_demo_writes_every_result_and_reports_each_step(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "model: samkit_nano" in text  # the default model (random weights, said plainly, while none ship)
    for step in ("image embedding", "point prompt", "box prompt", "segment everything", "track clip"):
        line = next(line for line in text.splitlines() if line.startswith(step))
        assert " s " in line  # each step says how long it took
    for name in ("point_overlay.png", "box_overlay.png", "everything_overlay.png"):
        with Image.open(out / name) as im:
            assert im.size == (512, 512)  # drawn over the bundled photo
    with Image.open(out / "tracking_frames.png") as im:
        assert im.size == (5 * 320, 256)  # five frames of the generated clip side by side
    masks = sorted((out / "tracking" / "masks").glob("*.png"))
    assert len(masks) == 50
    labels = np.asarray(Image.open(masks[-1]))
    assert labels.shape == (256, 320) and set(np.unique(labels)) <= {0, 1, 2, 3}
    if importlib.util.find_spec("cv2") is not None:
        assert (out / "tracking" / "overlay.mp4").stat().st_size > 10_000
    assert "mean IoU vs truth" in text
    assert f"pictures in {out}/" in text
