"""samkit.video.synthetic: generated clips read lazily as a video, and written as files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.data.synthetic.clips import ClipRenderer, SceneConfig, make_clip
from samkit.errors import VideoError
from samkit.video.synthetic import SyntheticVideo
from samkit.video.writers import write_clip_jpegs, write_clip_masks, write_clip_mp4


def test_synthetic_video_shows_make_clip_in_any_order() -> None:
    clip = make_clip(8, 48, 64, 3, seed=11)
    video = SyntheticVideo(8, 48, 64, 3, seed=11, image_size=32)
    labels = clip.labels()
    assert (len(video), video.height, video.width, video.num_objects, video.fps) == (8, 48, 64, 3, 24.0)
    for t in (7, 2, 0, 7):
        np.testing.assert_array_equal(video.frame(t), clip.frames[t])
        np.testing.assert_array_equal(video.mask(t), labels[t])
        assert not video.mask(t).flags.writeable
    np.testing.assert_array_equal(video.mask(-1), labels[7])
    np.testing.assert_array_equal(video.object_masks(3), ClipRenderer(48, 64, 3, seed=11).object_masks(3))
    with pytest.raises(VideoError):
        video.frame(8)


def test_synthetic_video_validation() -> None:
    with pytest.raises(VideoError):
        SyntheticVideo(0, 32, 32, 1)
    with pytest.raises(VideoError):
        SyntheticVideo(4, 32, 32, 300)
    assert SyntheticVideo(2, 16, 16, 1, scene=SceneConfig(fps=30.0)).fps == 30.0


def test_write_clip_jpegs_and_masks(tmp_path: Path) -> None:
    clip = make_clip(4, 40, 56, 2, seed=8)
    jpgs = write_clip_jpegs(clip.frames, tmp_path / "frames")
    pngs = write_clip_masks(clip.labels(), tmp_path / "masks")
    assert [p.name for p in jpgs] == ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg"]
    assert [p.name for p in pngs] == [p.stem + ".png" for p in jpgs]
    for i, (jpg, png) in enumerate(zip(jpgs, pngs)):
        back = np.asarray(Image.open(jpg).convert("RGB")).astype(np.int16)
        assert np.abs(back - clip.frames[i]).mean() < 4.0
        label_img = Image.open(png)
        assert label_img.mode == "P"
        np.testing.assert_array_equal(np.asarray(label_img), clip.labels()[i])


def test_write_clip_mp4_needs_frames(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    with pytest.raises(VideoError, match="no frames"):
        write_clip_mp4([], tmp_path / "empty.mp4")


def test_lazy_clip_of_2000_frames_stays_small() -> None:
    video = SyntheticVideo(2000, 36, 48, 2, seed=0, image_size=16)
    checksum = 0
    for i, frame in enumerate(video.iter_frames()):
        assert frame.shape == (36, 48, 3)
        checksum += int(video.mask(i)[::8, ::8].sum())
        assert video.num_cached_frames <= 4
    assert i == 1999 and checksum > 0
