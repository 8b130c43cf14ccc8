"""Frame sources vs the official frame loader (sam2.utils.misc): the same model input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from samkit.video.frames import (
    ImageFolderSource,
    open_video,
)
from samkit.data.synthetic.clips import make_clip
from samkit.video.writers import write_clip_jpegs


def _official_frames(folder: Path, size: int) -> tuple[torch.Tensor, int, int]:
    misc = pytest.importorskip("sam2.utils.misc")
    return misc.load_video_frames(
        video_path=str(folder),
        image_size=size,
        offload_video_to_cpu=True,
        compute_device=torch.device("cpu"),
    )


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic frames 60x80 as 00000.jpg .. 00005.jpg."""
    folder = tmp_path_factory.mktemp("jpegs")
    write_clip_jpegs(make_clip(6, 60, 80, 2, seed=5).frames, folder)
    return folder


# ------------------------------------------------------------------ parity with the oracle
@pytest.mark.parity
@pytest.mark.parametrize("size", [64, 1024])
def test_folder_model_input_equals_official_loader(jpeg_folder: Path, size: int) -> None:
    expected, height, width = _official_frames(jpeg_folder, size)
    source = open_video(jpeg_folder, size)
    assert isinstance(source, ImageFolderSource)
    assert (len(source), source.height, source.width) == (6, height, width) == (6, 60, 80)
    for i in range(len(source)):
        got = source.model_input(i)
        assert got.shape == (3, size, size) and got.dtype == torch.float32
        assert torch.equal(got, expected[i])


@pytest.mark.parity
def test_real_frames_equal_official_loader(shared_data: Path, tmp_path: Path) -> None:
    frames = shared_data / "videos" / "bedroom"
    if not frames.is_dir():
        pytest.skip("bedroom frames are absent")
    for name in sorted(p.name for p in frames.glob("*.jpg"))[:4]:
        shutil.copy(frames / name, tmp_path / name)
    expected, height, width = _official_frames(tmp_path, 1024)
    with open_video(tmp_path, 1024) as source:
        assert (len(source), source.height, source.width) == (4, height, width)
        for i in range(4):
            assert torch.equal(source[i], expected[i])
