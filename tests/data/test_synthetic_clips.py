"""Generated clips (samkit.data.synthetic.clips) and the clip type they come in (ClipSample)."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.data import ClipSample, SyntheticClipDataset
from samkit.data.synthetic.clips import ClipRenderer, SceneConfig, make_clip
from samkit.errors import DatasetError, VideoError


def test_make_clip_shapes_dtypes_and_determinism() -> None:
    a = make_clip(6, 48, 64, 3, seed=11, name="a")
    b = make_clip(6, 48, 64, 3, seed=11)
    other = make_clip(6, 48, 64, 3, seed=12)
    assert isinstance(a, ClipSample) and a.name == "a"
    assert a.frames.shape == (6, 48, 64, 3) and a.frames.dtype == np.uint8
    assert a.masks.shape == (3, 6, 48, 64) and a.masks.dtype == bool
    assert (a.num_frames, a.num_objects) == (6, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames[0], other.frames[0])


def test_any_frame_renders_alone_in_any_order() -> None:
    clip = make_clip(8, 40, 56, 2, seed=4)
    renderer = ClipRenderer(40, 56, 2, seed=4)
    labels = clip.labels()
    for t in (7, 0, 3, 7):
        frame, lab = renderer.render(t)
        np.testing.assert_array_equal(frame, clip.frames[t])
        np.testing.assert_array_equal(lab, labels[t])


def test_objects_are_painted_exactly_where_their_masks_are() -> None:
    """The same seed with no objects renders the background alone (same camera, same noise):
    a frame differs from it only on the objects' pixels, and on almost all of them."""
    for scene in (None, SceneConfig(noise_std=0, camera_motion=0)):
        clip = make_clip(5, 64, 80, 3, seed=6, scene=scene)
        background = make_clip(5, 64, 80, 0, seed=6, scene=scene)
        assert background.masks.shape == (0, 5, 64, 80)
        changed = (clip.frames != background.frames).any(axis=-1)  # T x H x W
        objects = clip.masks.any(axis=0)
        assert not (changed & ~objects).any()
        assert changed[objects].mean() > 0.95


def test_ground_truth_moves_deforms_and_occludes() -> None:
    renderer = ClipRenderer(96, 128, 5, seed=3)
    occluded = moved = False
    previous = None
    for t in range(30):
        _, labels = renderer.render(t)
        assert labels.dtype == np.uint8 and labels.shape == (96, 128) and labels.max() <= 5
        full = renderer.object_masks(t)
        assert full.shape == (5, 96, 128) and full.dtype == bool
        for k in range(1, 6):
            visible = labels == k
            assert not (visible & ~full[k - 1]).any()  # the visible part lies inside the whole shape
            occluded |= bool(full[k - 1].sum() > visible.sum())
        if previous is not None:
            moved |= not np.array_equal(labels, previous)
        previous = labels
    assert occluded and moved
    still = ClipRenderer(64, 64, 2, seed=0, scene=SceneConfig(max_speed=0, max_spin=0, deform=0))
    np.testing.assert_array_equal(still.object_masks(0), still.object_masks(3))


def test_clip_labels_are_the_argmax_of_the_masks() -> None:
    clip = SyntheticClipDataset(2, num_frames=4, size=48, seed=5)[1]
    assert clip.masks.sum(axis=0).max() <= 1  # generated objects never overlap
    argmax = np.where(clip.masks.any(axis=0), clip.masks.argmax(axis=0) + 1, 0)
    labels = clip.labels()
    assert labels.dtype == np.uint8 and labels.shape == clip.frames.shape[:3]
    np.testing.assert_array_equal(labels, argmax)
    k = clip.num_objects
    np.testing.assert_array_equal(clip.object_mask(2, k), clip.masks[k - 1, 2])


def test_clip_sample_label_map_round_trip() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 10, 12, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=(3, 10, 12)).astype(np.uint8)
    clip = ClipSample.from_labels(frames, labels, 3, name="round trip")
    assert clip.masks.shape == (3, 3, 10, 12) and clip.masks.dtype == bool
    for k in (1, 2, 3):
        np.testing.assert_array_equal(clip.masks[k - 1], labels == k)
    np.testing.assert_array_equal(clip.labels(), labels)
    again = ClipSample.from_labels(clip.frames, clip.labels(), clip.num_objects)
    np.testing.assert_array_equal(again.masks, clip.masks)
    # ids above num_objects are not objects; where masks overlap the highest id is kept
    np.testing.assert_array_equal(ClipSample.from_labels(frames, labels, 2).labels(), np.where(labels == 3, 0, labels))
    both = np.stack([np.ones((3, 10, 12), bool), labels == 2])
    np.testing.assert_array_equal(ClipSample(frames, both).labels(), np.where(labels == 2, 2, 1))
    with pytest.raises(DatasetError, match="object_id"):
        clip.object_mask(0, 4)
    with pytest.raises(DatasetError, match="T x H x W"):
        ClipSample.from_labels(frames, labels[0], 3)
    with pytest.raises(DatasetError, match="uint8"):
        ClipSample(frames, np.zeros((256, 3, 10, 12), bool)).labels()


def test_clip_sample_checks_shapes() -> None:
    with pytest.raises(DatasetError, match="T x H x W x 3"):
        ClipSample(frames=np.zeros((4, 8, 8), np.uint8), masks=np.zeros((1, 4, 8, 8), bool))
    with pytest.raises(DatasetError, match="K x T x H x W"):
        ClipSample(frames=np.zeros((4, 8, 8, 3), np.uint8), masks=np.zeros((1, 3, 8, 8), bool))


def test_synthetic_clips_are_deterministic_and_match_label_maps() -> None:
    ds = SyntheticClipDataset(3, num_frames=5, size=64, seed=4, num_objects=(2, 3))
    a, b = ds[1], ds[1]
    assert a.frames.shape == (5, 64, 64, 3) and a.frames.dtype == np.uint8
    k = a.masks.shape[0]
    assert 2 <= k <= 3 and a.masks.shape == (k, 5, 64, 64) and a.masks.dtype == bool
    assert a.name == "clip_000001" and ds[-2].name == "clip_000001" and len(ds[0:2]) == 2
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(ds[0].frames, a.frames)
    # objects never overlap (each pixel shows at most one), and each is visible somewhere
    assert a.masks.sum(axis=0).max() <= 1
    assert all(a.masks[i].any() for i in range(k))
    # objects move: the first object's mask is not the same on the first and last frame
    assert not np.array_equal(a.masks[0, 0], a.masks[0, -1])
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(DatasetError, match="num_frames >= 2"):
        SyntheticClipDataset(2, num_frames=1)


def test_config_validation() -> None:
    with pytest.raises(VideoError):
        SceneConfig(min_size=0.3, max_size=0.1)
    with pytest.raises(VideoError):
        SceneConfig(shapes=("triangle",))
    with pytest.raises(VideoError):
        SceneConfig(deform=1.0)
    with pytest.raises(VideoError, match="8x8"):
        ClipRenderer(4, 32, 1)
    with pytest.raises(VideoError, match="0..255"):
        ClipRenderer(32, 32, 300)
    with pytest.raises(VideoError, match=">= 0"):
        ClipRenderer(32, 32, 1).render(-1)
    with pytest.raises(VideoError, match="positive"):
        make_clip(0, 32, 32, 1)
