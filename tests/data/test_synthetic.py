"""Generated images: the textures, random scenes, and the fake LabPics round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samkit.errors import ConfigError
from samkit.data import LabPicsDataset
from samkit.data.synthetic.labpics import make_labpics_scene, write_synthetic_labpics
from samkit.data.synthetic.scenes import SyntheticSceneDataset, make_scene
from samkit.data.synthetic.textures import (
    clip_background,
    dependency_photos,
    object_colours,
    pattern_colours,
    photo_texture,
    scene_texture,
)

SIZE = (64, 96)


def _expected_masks(maps: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """Masks from the id maps, in the reader's order (materials, parts, vessels)."""
    out = []
    for plane in maps:
        for v in sorted(set(np.unique(plane).tolist()) - {0, 254}):
            out.append(plane == v)
    return out


def test_synthetic_labpics_round_trip(tmp_path: Path) -> None:
    root = write_synthetic_labpics(tmp_path / "lab", n_train=4, n_test=2, size=SIZE, seed=7)
    train = LabPicsDataset(root, "Train")
    test = LabPicsDataset(root, "Test")
    assert len(train) == 4 and len(test) == 2
    rng = np.random.default_rng(7)  # the writer's sequence: train scenes, then test scenes
    saw_ignore = False
    for ds in (train, test):
        for i, sample in enumerate(ds):
            scene = make_labpics_scene(rng, SIZE)
            assert sample.name == f"synthetic_{i:05d}"
            assert sample.image.shape == (*SIZE, 3)
            # JPEG is lossy: close, not equal.
            assert np.abs(sample.image.astype(int) - scene.image.astype(int)).mean() < 4
            expected = _expected_masks((scene.materials, scene.parts, scene.vessels))
            assert sample.masks.shape[0] == len(expected) >= 1
            for got, want in zip(sample.masks, expected):
                np.testing.assert_array_equal(got, want)
            want_ignore = (scene.vessels == 254) | (scene.parts == 254) | (scene.materials == 254)
            assert sample.ignore is not None
            np.testing.assert_array_equal(sample.ignore, want_ignore)
            saw_ignore |= bool(want_ignore.any())
    assert saw_ignore


def test_synthetic_labpics_opencv_channels(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    root = write_synthetic_labpics(tmp_path, n_train=1, n_test=0, size=SIZE, seed=3)
    scene = make_labpics_scene(np.random.default_rng(3), SIZE)
    bgr = cv2.imread(str(root / "Simple" / "Train" / "Instance" / "synthetic_00000.png"))
    np.testing.assert_array_equal(bgr[..., 0], scene.materials)
    np.testing.assert_array_equal(bgr[..., 1], scene.parts)
    np.testing.assert_array_equal(bgr[..., 2], scene.vessels)


def test_synthetic_labpics_deterministic(tmp_path: Path) -> None:
    a = write_synthetic_labpics(tmp_path / "a", 2, 1, SIZE, seed=11)
    b = write_synthetic_labpics(tmp_path / "b", 2, 1, SIZE, seed=11)
    c = write_synthetic_labpics(tmp_path / "c", 2, 1, SIZE, seed=12)
    for rel in (
        "Simple/Train/Instance/synthetic_00001.png",
        "Simple/Test/Image/synthetic_00000.jpg",
    ):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    rel = "Simple/Train/Instance/synthetic_00000.png"
    assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_labpics_scene_structure() -> None:
    for seed in range(10):
        scene = make_labpics_scene(np.random.default_rng(seed), SIZE)
        vessel = (scene.vessels > 0) & (scene.vessels != 254)
        material = (scene.materials > 0) & (scene.materials != 254)
        # materials lie inside vessels
        assert not (material & ~(scene.vessels > 0)).any()
        assert vessel.any()
    with pytest.raises(ConfigError):
        make_labpics_scene(np.random.default_rng(0), (8, 8))


def test_make_scene_deterministic_and_valid() -> None:
    a = make_scene(np.random.default_rng(5), (64, 80))
    b = make_scene(np.random.default_rng(5), (64, 80))
    c = make_scene(np.random.default_rng(6), (64, 80))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (64, 80, 3) and a.image.dtype == np.uint8
    assert a.masks.dtype == np.bool_ and a.masks.shape[1:] == (64, 80)
    assert a.ignore is None
    assert (a.masks.sum(axis=(1, 2)) >= 24).all()


def test_make_scene_has_nested_and_occluded_objects() -> None:
    nested = occluded = 0
    for seed in range(12):
        s = make_scene(np.random.default_rng(seed), (64, 64), num_objects=(6, 10))
        m = s.masks
        n = m.shape[0]
        assert n >= 1
        for i in range(n):
            for j in range(n):
                if i != j and (m[i] & m[j]).any():
                    if not (m[i] & ~m[j]).any():
                        nested += 1  # i lies inside j
        # Occlusion leaves some masks that are not a single convex-like blob: check that
        # at least one mask covers less than its bounding box would suggest.
        for mask in m:
            ys, xs = np.nonzero(mask)
            box = (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
            occluded += int(mask.sum() < 0.5 * box)
    assert nested > 0
    assert occluded > 0


def test_synthetic_scene_dataset() -> None:
    ds = SyntheticSceneDataset(5, size=(48, 48), seed=1)
    assert len(ds) == 5
    first = ds[3]
    again = ds[-2]
    np.testing.assert_array_equal(first.image, again.image)
    assert first.name == "scene_000003"
    assert len(ds[1:4]) == 3
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(ConfigError):
        SyntheticSceneDataset(0)


# ------------------------------------------------------------------ textures


def test_textures_are_images_drawn_from_the_generator() -> None:
    for seed in range(6):  # several seeds reach every pattern kind
        a = scene_texture(np.random.default_rng(seed), 20, 30)
        assert a.shape == (20, 30, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 255
        np.testing.assert_array_equal(a, scene_texture(np.random.default_rng(seed), 20, 30))
    bg = clip_background(np.random.default_rng(1), 24, 40)
    assert bg.shape == (24, 40, 3) and bg.dtype == np.uint8 and bg.std() > 1
    np.testing.assert_array_equal(bg, clip_background(np.random.default_rng(1), 24, 40))
    assert not np.array_equal(bg, clip_background(np.random.default_rng(2), 24, 40))


def test_object_pattern_mixes_the_two_colours() -> None:
    colours = object_colours(np.random.default_rng(3))
    assert colours.shape == (2, 3) and (colours >= 0).all() and (colours <= 255).all()
    u, v = np.random.default_rng(0).uniform(-20, 20, size=(2, 500))
    lo, hi = colours.min(axis=0) - 1e-3, colours.max(axis=0) + 1e-3
    for pattern in (0, 1, 2):
        out = pattern_colours(colours, pattern, 7.0, 0.4, u, v)
        assert out.shape == (500, 3) and out.dtype == np.float32
        assert ((out >= lo) & (out <= hi)).all()  # every point is a mix of the two colours
        assert len(np.unique(out, axis=0)) > 1  # and the pattern is not flat


def test_photo_textures_and_photo_scenes() -> None:
    pytest.importorskip("skimage")
    photos = dependency_photos()
    assert photos and all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in photos)
    assert len(dependency_photos(exclude=())) == len(photos) + 2  # the demo's two photos are left out by default
    tex = photo_texture(np.random.default_rng(0), photos, 32, 48)
    assert tex.shape == (32, 48, 3) and tex.dtype == np.float32
    a = SyntheticSceneDataset(3, size=(48, 48), seed=2, photos=photos, photo_prob=1.0)
    b = SyntheticSceneDataset(3, size=(48, 48), seed=2, photos=photos, photo_prob=1.0)
    plain = SyntheticSceneDataset(3, size=(48, 48), seed=2)
    for i in range(3):
        assert a[i].image.shape == (48, 48, 3) and a[i].masks.shape[1:] == (48, 48)
        np.testing.assert_array_equal(a[i].image, b[i].image)
        assert not np.array_equal(a[i].image, plain[i].image)


def test_scenes_without_photos_ignore_photo_prob() -> None:
    a = make_scene(np.random.default_rng(4), (40, 40))
    b = make_scene(np.random.default_rng(4), (40, 40), photos=None, photo_prob=0.9)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
