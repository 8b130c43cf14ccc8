"""StreamingTracker: frames pushed one at a time give propagate_in_video's masks; memory stays flat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.builder import load_model
from samkit.errors import StateError, VideoError
from samkit.prompts import sample_center_error_click
from samkit.video.predictor import VideoPredictor
from samkit.video.streaming import StreamingTracker
from samkit.video.synthetic import SyntheticVideo

FRAMES = 24  # more than max_obj_ptrs_in_encoder (16): pointer distances normalise as in any long video


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_model()[0]


def _clip(num_frames: int = FRAMES, seed: int = 3):
    video = SyntheticVideo(num_frames, 96, 128, num_objects=2, seed=seed, image_size=256)
    return [np.array(video.frame(t)) for t in range(num_frames)], video


def _centre(mask: np.ndarray) -> list[list[float]]:
    pts, _ = sample_center_error_click(torch.from_numpy(mask)[None])
    return [[float(pts[0, 0, 0]), float(pts[0, 0, 1])]]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.slow
def test_streamed_masks_equal_propagate_in_video(model) -> None:
    frames, video = _clip()
    targets = video.object_masks(0)  # K x H x W
    clicks = {k + 1: _centre(targets[k]) for k in range(2)}
    predictor = VideoPredictor(model, progress=False)
    state = predictor.init_state(frames)
    for obj, pts in clicks.items():
        predictor.add_new_points_or_box(state, 0, obj, points=pts, labels=[1])
    expected = {t: (m[:, 0] > 0).numpy() for t, _, m in predictor.propagate_in_video(state)}

    tracker = StreamingTracker(model)
    for obj, pts in clicks.items():
        ids, first = tracker.add_new_points_or_box(frames[0], obj, points=pts, labels=[1])
    assert ids == [1, 2] and np.array_equal(first, expected[0])
    worst = 1.0
    for t in range(1, FRAMES):
        ids, masks = tracker.track(frames[t])
        assert ids == [1, 2] and masks.shape == (2, 96, 128) and masks.dtype == bool
        worst = min(worst, *(_iou(masks[k], expected[t][k]) for k in range(2)))
    assert worst >= 0.999, worst
    assert tracker.frame_idx == FRAMES - 1


@pytest.mark.slow
def test_a_long_stream_keeps_a_bounded_state(model) -> None:
    frames, video = _clip(num_frames=60, seed=4)
    tracker = StreamingTracker(model)
    tracker.add_new_points_or_box(frames[0], 1, points=_centre(video.object_masks(0)[0]), labels=[1])
    sizes = []
    for t in range(1, 60):
        tracker.track(frames[t])
        track = tracker._state.objects[1]
        sizes.append((len(track.history), len(track.heavy), len(tracker._source._kept)))
    assert sizes[-1] == sizes[30]  # flat after the windows fill
    assert sizes[-1][0] <= tracker._history + 2 and sizes[-1][2] <= 8  # the window, this frame, the prompted one


def test_frames_before_a_prompt_pass_and_a_prompt_on_a_later_frame_starts_tracking(model) -> None:
    frames, video = _clip(num_frames=8, seed=5)
    tracker = StreamingTracker(model)
    ids, masks = tracker.track(frames[0])
    assert ids == [] and masks.shape == (0, 96, 128)
    tracker.track(frames[1])
    ids, masks = tracker.add_new_points_or_box(None, "cup", points=_centre(video.object_masks(1)[0]), labels=[1])
    assert ids == ["cup"] and tracker.frame_idx == 1
    assert _iou(masks[0], video.object_masks(1)[0]) > 0.3
    ids, masks = tracker.track(frames[2])
    assert ids == ["cup"] and masks[0].any()
    tracker.add_new_points_or_box(frames[2], "cup", points=[[5.0, 5.0]], labels=[0], clear_old_points=False)
    tracker.track(frames[3])  # a correction on the current frame is committed before the next
    tracker.remove_object("cup")
    assert tracker.track(frames[4])[0] == []


def test_stream_errors(model) -> None:
    tracker = StreamingTracker(model)
    with pytest.raises(StateError, match="no frame yet"):
        tracker.add_new_points_or_box(None, 1, points=[[1, 1]], labels=[1])
    tracker.track(np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(VideoError, match="all frames must have one size"):
        tracker.track(np.zeros((40, 48, 3), np.uint8))
    with pytest.raises(VideoError, match="RGB image"):
        tracker.track(np.zeros((4,), np.uint8))
