"""Tests of samkit.video.frames (lazy frame sources)."""

from __future__ import annotations

import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.errors import VideoError
from samkit.imageio import preprocess_video_frame
from samkit.video.frames import (
    ArraySource,
    FrameSource,
    ImageFolderSource,
    VideoFileSource,
    natural_sort_key,
    open_video,
    require_cv2,
)
from samkit.data.synthetic.clips import make_clip
from samkit.video.synthetic import SyntheticVideo
from samkit.video.writers import write_clip_jpegs, write_clip_mp4


def _has_cv2() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


needs_cv2 = pytest.mark.skipif(not _has_cv2(), reason="OpenCV (samkit[video]) is not installed")


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic frames 60x80 as 00000.jpg .. 00005.jpg."""
    folder = tmp_path_factory.mktemp("jpegs")
    write_clip_jpegs(make_clip(6, 60, 80, 2, seed=5).frames, folder)
    return folder


@pytest.fixture(scope="module")
def mp4_clip(tmp_path_factory: pytest.TempPathFactory):
    """A 40-frame synthetic clip and its .mp4 (mp4v)."""
    if not _has_cv2():
        pytest.skip("OpenCV (samkit[video]) is not installed")
    clip = make_clip(40, 96, 128, 3, seed=2)
    path = write_clip_mp4(clip.frames, tmp_path_factory.mktemp("mp4") / "clip.mp4")
    return clip, path


# ------------------------------------------------------------------ image folders
def test_natural_sort_key_orders_numbers_by_value() -> None:
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame002b.png", "a.png", "frame2.png"]
    ordered = sorted(names, key=lambda n: (natural_sort_key(n), n))
    assert ordered == [
        "a.png", "Frame1.png", "frame2.png", "frame2.png", "frame002b.png", "frame10.png"
    ]
    assert sorted(["10", "9", "100"], key=natural_sort_key) == ["9", "10", "100"]


def test_folder_natural_order_any_names(tmp_path: Path) -> None:
    names = ["frame10.png", "frame2.png", "frame1.png", "frame33.png", "frame3.png"]
    for name in names:
        value = int(name[5:-4])
        Image.fromarray(np.full((4, 6, 3), value, dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / ".hidden.png").write_bytes(b"junk")  # hidden files are ignored
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_video(tmp_path, 32)
    assert [p.name for p in source.paths] == [
        "frame1.png", "frame2.png", "frame3.png", "frame10.png", "frame33.png"
    ]
    assert [int(f[0, 0, 0]) for f in source.iter_frames()] == [1, 2, 3, 10, 33]


def test_folder_mixed_formats_need_extensions(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"{i}.jpg")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "3.jpeg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(VideoError, match="mixes image formats"):
        open_video(tmp_path, 16)
    source = ImageFolderSource(tmp_path, 16, extensions=["jpg", ".JPEG"])
    assert len(source) == 4


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="does not exist"):
        open_video(tmp_path / "missing", 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no frames found"):
        open_video(empty, 16)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "0.png")
    (bad / "1.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(bad / "2.png")
    source = open_video(bad, 16)
    assert len(source) == 3 and source.frame(0).shape == (8, 8, 3)
    with pytest.raises(VideoError, match="1.png"):
        source.frame(1)
    with pytest.raises(VideoError, match="size of the first"):
        source.model_input(2)
    first_bad = tmp_path / "first_bad"
    first_bad.mkdir()
    (first_bad / "0.jpg").write_bytes(b"garbage")
    with pytest.raises(VideoError, match="0.jpg"):
        open_video(first_bad, 16)


def test_index_checks(jpeg_folder: Path) -> None:
    source = open_video(jpeg_folder, 32)
    assert np.array_equal(source.frame(-1), source.frame(5))
    assert source.frame(np.int64(2)).shape == (60, 80, 3)
    for bad in (6, -7, 100):
        with pytest.raises(VideoError, match="out of range"):
            source.frame(bad)
        with pytest.raises(VideoError, match="out of range"):
            source.model_input(bad)
    with pytest.raises(VideoError, match="integer"):
        source.frame(1.5)  # type: ignore[arg-type]
    source.close()
    with pytest.raises(VideoError, match="closed"):
        source.frame(0)


def test_frames_are_read_only(jpeg_folder: Path) -> None:
    source = open_video(jpeg_folder, 32)
    frame = source.frame(0)
    assert not frame.flags.writeable
    with pytest.raises(ValueError):
        frame[0, 0, 0] = 1


# ------------------------------------------------------------------ video files
@needs_cv2
def test_mp4_round_trip(mp4_clip) -> None:
    clip, path = mp4_clip
    source = open_video(path, 64)
    assert isinstance(source, VideoFileSource)
    assert (len(source), source.height, source.width) == (40, 96, 128)
    assert source.fps == pytest.approx(24.0)
    for i, frame in enumerate(source.iter_frames()):
        assert frame.shape == (96, 128, 3) and frame.dtype == np.uint8
        error = np.abs(frame.astype(np.int16) - clip.frames[i].astype(np.int16)).mean()
        assert error < 6.0, f"frame {i} differs by {error:.2f} on average"
    x = source.model_input(7)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert torch.equal(x, preprocess_video_frame(source.frame(7), 64))


@needs_cv2
def test_mp4_random_access_equals_sequential(mp4_clip) -> None:
    _, path = mp4_clip
    sequential = [f.copy() for f in VideoFileSource(path, 32, cache_size=0).iter_frames()]
    source = VideoFileSource(path, 32, cache_size=0, max_skip=4)
    for i in [39, 3, 5, 6, 20, 0, 38, 2, 10, 11, 30, 29]:  # seeks back, skips, long jumps
        assert np.array_equal(source.frame(i), sequential[i]), f"frame {i}"
    exact = VideoFileSource(path, 32, exact_count=True)
    assert len(exact) == 40


@needs_cv2
def test_real_mp4_random_access(shared_data: Path) -> None:
    path = shared_data / "videos" / "bedroom.mp4"
    if not path.is_file():
        pytest.skip("bedroom.mp4 is absent")
    source = open_video(path, 1024, cache_size=0)
    assert (len(source), source.height, source.width) == (200, 540, 960)
    sequential = [source.frame(i).copy() for i in range(60)]
    for i in [50, 3, 40, 41, 59, 0]:
        assert np.array_equal(source.frame(i), sequential[i]), f"frame {i}"
    source.close()


@needs_cv2
def test_video_file_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="junk.mp4"):
        open_video(junk, 32)
    with pytest.raises(VideoError, match="does not exist"):
        open_video(tmp_path / "missing.mp4", 32)
    image = tmp_path / "single.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    with pytest.raises(VideoError, match="single image"):
        open_video(image, 32)


def test_missing_opencv_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` fail
    with pytest.raises(VideoError, match=r"pip install samkit\[video\]"):
        require_cv2()
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(VideoError, match=r"samkit\[video\]"):
        open_video(fake, 32)
    with pytest.raises(VideoError, match=r"samkit\[video\]"):
        write_clip_mp4(make_clip(2, 16, 16, 1).frames, tmp_path / "out.mp4")


# ------------------------------------------------------------------ in-memory frames
def test_array_sources() -> None:
    clip = make_clip(5, 24, 32, 2, seed=1)
    stacked = np.stack(clip.frames)
    for frames in (stacked, list(clip.frames), [Image.fromarray(f) for f in clip.frames]):
        source = open_video(frames, 48)
        assert isinstance(source, ArraySource)
        assert (len(source), source.height, source.width) == (5, 24, 32)
        for i in range(5):
            assert np.array_equal(source.frame(i), clip.frames[i])
            assert torch.equal(source[i], preprocess_video_frame(clip.frames[i], 48))
    assert stacked.flags.writeable and clip.frames[0].flags.writeable  # caller's arrays untouched
    gray = open_video(np.zeros((3, 8, 8, 1), np.uint8), 16)
    assert gray.frame(2).shape == (8, 8, 3)


def test_array_source_errors() -> None:
    with pytest.raises(VideoError, match="empty"):
        open_video([], 16)
    with pytest.raises(VideoError, match="N x H x W x C"):
        open_video(np.zeros((8, 8, 3), np.uint8), 16)
    with pytest.raises(VideoError, match="frame 0"):
        open_video([np.zeros((8, 8, 2), np.uint8)], 16)
    source = open_video([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], 16)
    with pytest.raises(VideoError, match="size of the first"):
        source.frame(1)
    with pytest.raises(VideoError, match="bytes"):
        open_video(b"\x00\x00", 16)
    with pytest.raises(VideoError, match="int"):
        open_video(42, 16)  # type: ignore[arg-type]


def test_open_video_passes_sources_through() -> None:
    source = SyntheticVideo(3, 16, 16, 1, image_size=32)
    assert open_video(source, 32) is source
    with pytest.raises(VideoError, match="image_size"):
        open_video(source, 64)
    with pytest.raises(VideoError, match="image_size"):
        open_video([np.zeros((8, 8, 3), np.uint8)], 0)


# ------------------------------------------------------------------ memory and prefetch
def test_memory_bounded_over_300_frames() -> None:
    source = SyntheticVideo(300, 128, 128, 3, seed=0, image_size=32, cache_size=3)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        for i in range(len(source)):
            source.model_input(i)
            assert source.num_cached_frames <= 3
            assert source.num_cached_inputs <= 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = 128 * 128 * 3
    # 300 frames would be 14.7 MB; a handful of frames plus rendering temporaries is allowed.
    assert peak - before < 40 * frame_bytes


@needs_cv2
def test_video_file_cache_bounded(tmp_path: Path) -> None:
    video = SyntheticVideo(300, 32, 48, 2, seed=4, image_size=16)
    path = write_clip_mp4(video.iter_frames(), tmp_path / "long.mp4")
    source = open_video(path, 16, cache_size=2)
    assert len(source) == 300
    for i, frame in enumerate(source.iter_frames()):
        assert frame.shape == (32, 48, 3)
        assert source.num_cached_frames <= 2


@pytest.mark.parametrize("order", ["forward", "backward", "random"])
def test_prefetch_gives_the_same_inputs(order: str) -> None:
    plain = SyntheticVideo(20, 40, 48, 2, seed=9, image_size=24)
    fetched = SyntheticVideo(20, 40, 48, 2, seed=9, image_size=24, prefetch=3, cache_size=4)
    indices = {
        "forward": list(range(20)),
        "backward": list(range(19, -1, -1)),
        "random": [int(i) for i in np.random.default_rng(0).permutation(20)],
    }[order]
    with fetched:
        for i in indices:
            assert torch.equal(fetched.model_input(i), plain.model_input(i))
            assert fetched.num_cached_inputs <= 4
            assert fetched.num_cached_frames <= 4
    assert fetched._executor is None  # closed: the worker thread was shut down


@needs_cv2
def test_concurrent_reads_of_a_video_file(mp4_clip) -> None:
    _, path = mp4_clip
    expected = [f.copy() for f in VideoFileSource(path, 16).iter_frames()]
    source = VideoFileSource(path, 16, cache_size=2, prefetch=2)
    errors: list[str] = []

    def worker(seed: int) -> None:
        for i in np.random.default_rng(seed).integers(0, 40, size=25):
            if not np.array_equal(source.frame(int(i)), expected[int(i)]):
                errors.append(f"frame {i}")
            source.model_input(int(i))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    source.close()
    assert not errors


def test_custom_source_subclass() -> None:
    class Gradient(FrameSource):
        def __init__(self) -> None:
            super().__init__(image_size=8, height=4, width=5)

        def __len__(self) -> int:
            return 3

        def _decode(self, index: int) -> np.ndarray:
            return np.full((4, 5, 3), index * 10, dtype=np.uint8)

    source = Gradient()
    assert [int(f[0, 0, 0]) for f in source.iter_frames()] == [0, 10, 20]
    assert [tuple(x.shape) for x in source] == [(3, 8, 8)] * 3
    assert "Gradient(frames=3" in repr(source)
