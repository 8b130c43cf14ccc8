"""Dataset readers: LabPics (Simple, Complex), COCO JSON, mask folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.errors import ConfigError, DatasetError, MissingDependencyError
from samkit.masks.rle import decode_rle_counts
from samkit.data import (
    CocoDataset,
    LabPicsDataset,
    MaskFolderDataset,
    Sample,
    decode_coco_segmentation,
    labpics_simple_masks,
    rasterize_polygons,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 24, 32


def _image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode is not None:
        img = img.convert(mode)
    img.save(path)


# --------------------------------------------------------------------------- Sample


def test_sample_validates_shapes() -> None:
    img = _image()
    Sample(image=img, masks=np.zeros((0, H, W), bool), ignore=None, name="ok")
    with pytest.raises(DatasetError):
        Sample(image=img, masks=np.zeros((1, H, W + 1), bool), ignore=None, name="bad")
    with pytest.raises(DatasetError):
        Sample(image=img[..., 0], masks=np.zeros((0, H, W), bool), ignore=None, name="bad")
    with pytest.raises(DatasetError):
        Sample(image=img, masks=np.zeros((0, H, W), bool), ignore=np.zeros((H, 1)), name="bad")
    s = Sample(image=img, masks=np.ones((2, H, W), np.uint8), ignore=np.zeros((H, W)), name="x")
    assert s.masks.dtype == np.bool_ and s.ignore is not None and s.ignore.dtype == np.bool_


# --------------------------------------------------------------------------- LabPics Simple


def _labpics_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vessels = np.zeros((H, W), np.uint8)
    parts = np.zeros((H, W), np.uint8)
    materials = np.zeros((H, W), np.uint8)
    vessels[2:20, 2:14] = 1
    vessels[4:22, 16:30] = 2
    materials[10:20, 3:13] = 1  # in vessel 1
    materials[12:22, 17:29] = 3  # in vessel 2 (ids need not be consecutive)
    materials[8:12, 17:29] = 2
    parts[2:4, 5:11] = 1  # cork
    vessels[0:2, 0:3] = 254  # unannotated
    materials[21:23, 0:2] = 254
    return vessels, parts, materials


def _write_simple(root: Path, split: str = "Train", stem: str = "a") -> tuple[np.ndarray, ...]:
    vessels, parts, materials = _labpics_maps()
    image = _image(1)
    _save_png(root / "Simple" / split / "Image" / f"{stem}.png", image)  # lossless for the test
    _save_png(
        root / "Simple" / split / "Instance" / f"{stem}.png",
        np.stack([vessels, parts, materials], -1),
    )
    return image, vessels, parts, materials


def test_labpics_simple_masks_and_ignore(tmp_path: Path) -> None:
    image, vessels, parts, materials = _write_simple(tmp_path)
    ds = LabPicsDataset(tmp_path, split="train")
    assert len(ds) == 1 and ds.names == ["a"]
    s = ds[0]
    assert s.name == "a"
    np.testing.assert_array_equal(s.image, image)
    expected = [
        materials == 1,
        materials == 2,
        materials == 3,
        parts == 1,
        vessels == 1,
        vessels == 2,
    ]
    assert s.masks.shape == (6, H, W)
    for got, want in zip(s.masks, expected):
        np.testing.assert_array_equal(got, want)
    want_ignore = (vessels == 254) | (materials == 254)
    assert s.ignore is not None
    np.testing.assert_array_equal(s.ignore, want_ignore)
    assert ds[-1].name == "a" and len(ds[0:1]) == 1
    with pytest.raises(IndexError):
        ds[1]


def test_labpics_channel_order_matches_opencv(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    _, vessels, parts, materials = _write_simple(tmp_path)
    bgr = cv2.imread(str(tmp_path / "Simple" / "Train" / "Instance" / "a.png"))
    np.testing.assert_array_equal(bgr[..., 0], materials)
    np.testing.assert_array_equal(bgr[..., 1], parts)
    np.testing.assert_array_equal(bgr[..., 2], vessels)
    masks, ignore = labpics_simple_masks(bgr[..., ::-1])
    np.testing.assert_array_equal(masks, LabPicsDataset(tmp_path)[0].masks)


def test_labpics_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        LabPicsDataset(tmp_path / "nope")
    with pytest.raises(DatasetError):
        LabPicsDataset(tmp_path)  # no Simple/
    _write_simple(tmp_path)
    with pytest.raises(DatasetError):
        LabPicsDataset(tmp_path, split="Test")
    with pytest.raises(ConfigError):
        LabPicsDataset(tmp_path, split="Val")
    _save_png(tmp_path / "Simple" / "Train" / "Image" / "orphan.jpg", _image(3))
    with pytest.raises(DatasetError, match="orphan"):
        LabPicsDataset(tmp_path)
    empty = tmp_path / "empty"
    (empty / "Simple" / "Test" / "Image").mkdir(parents=True)
    (empty / "Simple" / "Test" / "Instance").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no LabPics sample"):
        LabPicsDataset(empty, split="Test")


def test_labpics_size_mismatch(tmp_path: Path) -> None:
    _write_simple(tmp_path)
    _save_png(tmp_path / "Simple" / "Train" / "Image" / "a.png", _image(1, H + 2, W))
    with pytest.raises(DatasetError, match="annotation"):
        LabPicsDataset(tmp_path)[0]


# --------------------------------------------------------------------------- LabPics Complex


def test_labpics_complex(tmp_path: Path) -> None:
    sample = tmp_path / "Complex" / "Test" / "Flask one"
    image = _image(2)
    _save_png(sample / "Image.png", image)
    vessel = np.zeros((H, W, 3), np.uint8)
    vessel[2:20, 4:20, 2] = 255  # blue (OpenCV channel 0) marks the instance
    vessel[0:5, 0:5, 0] = 255  # red (OpenCV channel 2) alone does not
    liquid = np.zeros((H, W, 3), np.uint8)
    liquid[10:20, 5:19, 2] = 7
    liquid[10:20, 5:19, 1] = 100
    grey_part = np.zeros((H, W), np.uint8)
    grey_part[1:3, 8:14] = 1
    _save_png(sample / "Vessel" / "1.png", vessel)
    _save_png(sample / "Material" / "1.png", liquid)
    _save_png(sample / "Parts" / "1.png", grey_part)
    ignore = np.zeros((H, W, 3), np.uint8)
    ignore[20:24, 0:4] = 255
    _save_png(sample / "Ignore.png", ignore)
    ds = LabPicsDataset(tmp_path, split="Test", layout="complex")
    assert ds.names == ["Flask one"]
    s = ds[0]
    np.testing.assert_array_equal(s.image, image)
    assert s.masks.shape == (3, H, W)
    np.testing.assert_array_equal(s.masks[0], vessel[..., 2] > 0)
    np.testing.assert_array_equal(s.masks[1], liquid[..., 2] > 0)
    np.testing.assert_array_equal(s.masks[2], grey_part > 0)
    assert s.ignore is not None
    np.testing.assert_array_equal(s.ignore, ignore[..., 0] > 0)

    (tmp_path / "Complex" / "Test" / "no image").mkdir()
    with pytest.raises(DatasetError, match="Image"):
        LabPicsDataset(tmp_path, split="Test", layout="Complex")


# --------------------------------------------------------------------------- COCO


def _encode_rle_string(runs: list[int]) -> str:
    """COCO's compressed RLE string of ``runs`` (the inverse of the reader's decoder)."""
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def _coco_fixture(tmp_path: Path) -> tuple[Path, Path, dict]:
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    _save_png(images_dir / "one.png", _image(4))
    _save_png(images_dir / "two.png", _image(5))
    _save_png(images_dir / "empty.png", _image(6))
    rle_mask = np.zeros((H, W), bool)
    rle_mask[3:9, 20:30] = True
    rle_mask[15, 1:6] = True
    crowd = np.zeros((H, W), bool)
    crowd[18:24, 20:32] = True
    data = {
        "images": [
            {"id": 1, "file_name": "one.png", "height": H, "width": W},
            {"id": 2, "file_name": "two.png", "height": H, "width": W},
            {"id": 3, "file_name": "empty.png", "height": H, "width": W},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10], [14, 14, 18, 14, 16, 20]],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 0,
                "segmentation": {"size": [H, W], "counts": _runs(rle_mask)},
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 1,
                "segmentation": {"size": [H, W], "counts": _runs(crowd)},
            },
            {
                "id": 13,
                "image_id": 2,
                "category_id": 2,
                "iscrowd": 0,
                "segmentation": {"size": [H, W], "counts": _encode_rle_string(_runs(rle_mask))},
            },
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images_dir, {"rle": rle_mask, "crowd": crowd}


@pytest.mark.parametrize("use_pycocotools", [False, None])
def test_coco_polygons_rle_and_crowd(tmp_path: Path, use_pycocotools: bool | None) -> None:
    path, images_dir, masks = _coco_fixture(tmp_path)
    ds = CocoDataset(path, images_dir, use_pycocotools=use_pycocotools)
    assert ds.names == ["one", "two"]  # the image without annotations is skipped
    one, two = ds[0], ds[1]
    np.testing.assert_array_equal(one.image, _image(4))
    assert one.masks.shape == (2, H, W)
    square = np.zeros((H, W), bool)
    square[2:10, 2:12] = True  # COCO fills pixels whose centre is inside: x 2..11, y 2..9
    np.testing.assert_array_equal(one.masks[0] & ~_triangle_area(), square)
    assert (one.masks[0] & _triangle_area()).sum() > 0
    np.testing.assert_array_equal(one.masks[1], masks["rle"])
    assert one.ignore is not None
    np.testing.assert_array_equal(one.ignore, masks["crowd"])
    assert two.ignore is None
    np.testing.assert_array_equal(two.masks[0], masks["rle"])

    assert len(CocoDataset(path, images_dir, skip_empty=False)) == 3
    only_b = CocoDataset(path, images_dir, category_ids=[2])
    assert only_b[0].masks.shape[0] == 1
    no_crowd = CocoDataset(path, images_dir, crowd_as_ignore=False)
    assert no_crowd[0].ignore is None


def _triangle_area() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[13:21, 13:19] = True
    return m


def test_coco_matches_pycocotools(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    path, images_dir, _ = _coco_fixture(tmp_path)
    a = CocoDataset(path, images_dir, use_pycocotools=True)
    b = CocoDataset(path, images_dir, use_pycocotools=False)
    for sa, sb in zip(a, b):
        np.testing.assert_array_equal(sa.masks, sb.masks)


def test_polygon_rasteriser_matches_pycocotools() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.integers(3, 10))
            pts = rng.uniform(-5, [w + 5, h + 5], (n, 2))
            if trial % 3 == 0:
                pts = np.round(pts)
            polys.append(pts.reshape(-1).tolist())
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
        np.testing.assert_array_equal(rasterize_polygons(polys, h, w), ref)


def test_rle_decoders() -> None:
    m = np.zeros((5, 4), bool)
    m[1:3, 1] = True
    m[4, 3] = True
    runs = _runs(m)
    np.testing.assert_array_equal(decode_rle_counts(runs, 5, 4), m)
    np.testing.assert_array_equal(decode_rle_counts(_encode_rle_string(runs), 5, 4), m)
    np.testing.assert_array_equal(decode_rle_counts(_encode_rle_string(runs).encode(), 5, 4), m)
    with pytest.raises(DatasetError):
        decode_rle_counts([3, 2], 5, 4)
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.random((17, 23)) < 0.4
        rle = mask_utils.encode(np.asfortranarray(x.astype(np.uint8)))
        np.testing.assert_array_equal(decode_rle_counts(rle["counts"], 17, 23), x)
        np.testing.assert_array_equal(
            decode_coco_segmentation(
                {"size": [17, 23], "counts": rle["counts"].decode()}, 17, 23, use_pycocotools=False
            ),
            x,
        )


def test_coco_errors(tmp_path: Path) -> None:
    path, images_dir, _ = _coco_fixture(tmp_path)
    with pytest.raises(DatasetError):
        CocoDataset(tmp_path / "missing.json", images_dir)
    with pytest.raises(DatasetError):
        CocoDataset(path, tmp_path / "no_dir")
    (images_dir / "two.png").unlink()
    with pytest.raises(DatasetError, match="two.png"):
        CocoDataset(path, images_dir)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError):
        CocoDataset(bad, images_dir)
    with pytest.raises(DatasetError, match="no usable image"):
        CocoDataset(path, images_dir, category_ids=[99])
    with pytest.raises(DatasetError):
        decode_coco_segmentation({"foo": 1}, 3, 3)


# --------------------------------------------------------------------------- mask folders


def test_mask_folder_instance_maps(tmp_path: Path) -> None:
    ids = np.zeros((H, W), np.uint8)
    ids[2:8, 2:8] = 3
    ids[10:20, 10:20] = 1
    ids[0:2, 20:30] = 255
    _save_png(tmp_path / "images" / "grey.jpg", _image(7))
    _save_png(tmp_path / "masks" / "grey.png", ids)
    # Palette PNG: the indices are the ids, whatever the palette colours.
    pal = Image.frombytes("P", (W, H), ids.tobytes())
    pal.putpalette([0, 0, 0] + list(np.random.default_rng(0).integers(0, 256, 765)))
    _save_png(tmp_path / "images" / "pal.png", _image(8))
    (tmp_path / "masks").mkdir(exist_ok=True)
    pal.save(tmp_path / "masks" / "pal.png")
    # RGB colours: one instance per colour, white ignored.
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[2:8, 2:8] = (255, 0, 0)
    rgb[10:20, 10:20] = (0, 0, 255)
    rgb[0:2, 20:30] = 255
    _save_png(tmp_path / "images" / "rgb.png", _image(9))
    _save_png(tmp_path / "masks" / "rgb.png", rgb)

    ds = MaskFolderDataset(tmp_path)
    assert ds.names == ["grey", "pal", "rgb"]
    for s in ds:
        assert s.masks.shape == (2, H, W)
        assert {int(m.sum()) for m in s.masks} == {36, 100}
        assert s.ignore is not None and int(s.ignore.sum()) == 20
    grey = ds[0]
    np.testing.assert_array_equal(grey.masks[0], ids == 1)
    np.testing.assert_array_equal(grey.masks[1], ids == 3)
    no_ignore = MaskFolderDataset(tmp_path, ignore_value=None)[0]
    assert no_ignore.masks.shape[0] == 3 and no_ignore.ignore is None


def test_mask_folder_per_instance_pngs(tmp_path: Path) -> None:
    _save_png(tmp_path / "images" / "cat.png", _image(10))
    a = np.zeros((H, W), np.uint8)
    a[1:5, 1:5] = 255
    b = np.zeros((H, W, 3), np.uint8)
    b[6:9, 6:9, 1] = 1
    ig = np.zeros((H, W), np.uint8)
    ig[20:, :] = 1
    _save_png(tmp_path / "masks" / "cat" / "00.png", a)
    _save_png(tmp_path / "masks" / "cat" / "01.png", b)
    _save_png(tmp_path / "masks" / "cat" / "ignore.png", ig)
    s = MaskFolderDataset(tmp_path)[0]
    assert s.masks.shape == (2, H, W)
    np.testing.assert_array_equal(s.masks[0], a > 0)
    np.testing.assert_array_equal(s.masks[1], b[..., 1] > 0)
    assert s.ignore is not None
    np.testing.assert_array_equal(s.ignore, ig > 0)


def test_mask_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        MaskFolderDataset(tmp_path)  # no images/ nor masks/
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="no image"):
        MaskFolderDataset(tmp_path)
    _save_png(tmp_path / "images" / "lonely.png", _image(11))
    with pytest.raises(DatasetError, match="lonely"):
        MaskFolderDataset(tmp_path)


def test_coco_without_pycocotools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    path, images_dir, masks = _coco_fixture(tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    with pytest.raises(MissingDependencyError, match=r"samkit\[coco\]"):
        CocoDataset(path, images_dir, use_pycocotools=True)
    ds = CocoDataset(path, images_dir)  # auto: falls back to samkit's decoders
    np.testing.assert_array_equal(ds[0].masks[1], masks["rle"])


def test_import_has_no_optional_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, samkit.train, samkit.evaluate\n"
        "bad = [m for m in ('cv2', 'matplotlib', 'scipy', 'pycocotools') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
