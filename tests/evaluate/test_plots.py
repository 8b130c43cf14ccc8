"""Plots: PNGs are written, are real images of the expected size, and pyplot stays unused."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.errors import ConfigError, MissingDependencyError

pytest.importorskip("matplotlib")

from samkit.evaluate.plots import plot_iou_curves, plot_training_curves, read_metrics_csv  # noqa: E402


def _check_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == size
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 5  # not a blank canvas


def test_iou_curves_png(tmp_path: Path) -> None:
    had_pyplot = "matplotlib.pyplot" in sys.modules
    rng = np.random.default_rng(0)
    runs = {
        "samkit": np.clip(np.linspace(0.6, 0.95, 20) + rng.normal(0, 0.02, (10, 20)), 0, 1),
        "baseline": np.linspace(0.5, 0.9, 20),
    }
    out = plot_iou_curves(runs, tmp_path / "plots" / "curves.png", title="test")
    assert out == tmp_path / "plots" / "curves.png"
    _check_png(out, (700, 450))
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    with pytest.raises(ConfigError):
        plot_iou_curves({}, tmp_path / "x.png")


def test_training_curves_png(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    lines = ["step,loss,focal,mIoU@1,note"]
    for step in range(0, 200, 10):
        miou = "" if step % 50 else f"{0.5 + step / 1000:.3f}"
        lines.append(f"{step},{1 / (1 + step):.4f},{0.1 / (1 + step):.5f},{miou},text")
    csv_path.write_text("\n".join(lines) + "\n")
    data = read_metrics_csv(csv_path)
    assert set(data) == {"step", "loss", "focal", "mIoU@1"}  # the text column is dropped
    out = plot_training_curves(csv_path, tmp_path / "train.png")
    _check_png(out, (1200, 300))  # three panels in a row
    two = plot_training_curves(csv_path, tmp_path / "two.png", columns=["loss", "mIoU@1"])
    _check_png(two, (800, 300))
    with pytest.raises(ConfigError):
        plot_training_curves(csv_path, tmp_path / "bad.png", columns=["nope"])
    with pytest.raises(ConfigError):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "bad.png")


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"samkit\[plots\]"):
        plot_iou_curves({"a": [0.5, 0.6]}, tmp_path / "x.png")
