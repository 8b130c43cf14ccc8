"""``samkit export``: SA-1B JSON folders as COCO (checked with pycocotools), label PNGs, and the
annotation figures (against numbers worked out by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli.main import main
from samkit.data import SyntheticSceneDataset
from samkit.engine import annotate_folder
from samkit.engine.exports import annotation_stats, label_map, read_annotations, to_coco, write_label_pngs
from samkit.errors import DatasetError
from samkit.masks.rle import mask_to_rle, rle_area, rle_to_coco

COCO = pytest.importorskip("pycocotools.coco").COCO
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 40, 56
NAMES = ("sub/one.png", "two.png", "three.png")


class SceneGenerator:
    """A stand-in mask generator: the known masks of each image, as the engine's records."""

    def __init__(self, scenes: dict[bytes, np.ndarray]) -> None:
        self.scenes = scenes  # image bytes -> N x H x W bool

    def generate(self, image: np.ndarray) -> list[dict]:
        masks = self.scenes[image.tobytes()]
        out = []
        for k, rle in enumerate(mask_to_rle(torch.from_numpy(masks))):
            ys, xs = np.nonzero(masks[k])
            out.append({"segmentation": rle_to_coco(rle), "area": rle_area(rle),
                        "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)],
                        "predicted_iou": 0.5 + 0.01 * k, "point_coords": [[float(xs[0]), float(ys[0])]],
                        "stability_score": 0.9, "crop_box": [0, 0, image.shape[1], image.shape[0]]})
        return out


@pytest.fixture()
def annotated(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """``samkit annotate``'s output (summary.json, histogram PNG included) of three generated
    scenes, then edited as the studio does: in two.png the first mask drawn by hand ("manual",
    category "cup", 3 prompts in 6.5 s), the second an accepted proposal ("auto", category "bottle",
    1 prompt, 2.5 s); three.png has no annotation. Returns (folder, JSON name -> masks)."""
    images, out = tmp_path / "images", tmp_path / "annotations"
    scenes, truth = {}, {}
    for i, sample in enumerate(SyntheticSceneDataset(len(NAMES), size=(H, W), seed=3, num_objects=(2, 3))):
        path = images / NAMES[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample.image).save(path)
        masks = sample.masks if i < 2 else sample.masks[:0]
        scenes[sample.image.tobytes()] = masks
        truth[Path(NAMES[i]).with_suffix(".json").as_posix()] = masks
    annotate_folder(SceneGenerator(scenes), images, out, progress=False)
    record = json.loads((out / "two.json").read_text())
    record["annotations"][0].update(source="manual", category="cup", num_prompts=3, seconds=6.5)
    record["annotations"][1].update(source="auto", category="bottle", num_prompts=1, seconds=2.5)
    (out / "two.json").write_text(json.dumps(record))
    (out / ".studio").mkdir()
    (out / ".studio" / "two.json").write_text(json.dumps(record))  # hidden: never read
    return out, truth


def test_read_annotations_skips_the_engines_other_files(annotated):
    out, truth = annotated
    assert (out / "summary.json").is_file() and (out / "masks_per_image.png").is_file()
    assert [rel.as_posix() for rel, _ in read_annotations(out)] == sorted(truth)


def test_coco_export_loads_in_pycocotools_with_the_same_masks(annotated, tmp_path):
    out, truth = annotated
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(to_coco(out)))
    coco = COCO(str(path))
    images = {img["file_name"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert sorted(images) == sorted(NAMES) and all((img["height"], img["width"]) == (H, W) for img in images.values())
    anns = coco.loadAnns(coco.getAnnIds())
    assert len({a["id"] for a in anns}) == len(anns) == sum(len(m) for m in truth.values())
    for rel, masks in truth.items():
        image = images[next(n for n in NAMES if Path(n).with_suffix(".json").as_posix() == rel)]
        mine = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])), key=lambda a: a["id"])
        assert len(mine) == len(masks)
        for k, (ann, mask) in enumerate(zip(mine, masks)):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["area"] == int(mask.sum()) and ann["iscrowd"] == 0
            assert ann["score"] == pytest.approx(0.5 + 0.01 * k)
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    assert cats == {"bottle": 1, "cup": 2, "object": 3}  # sorted names, ids from 1; none -> "object"
    two = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[images["two.png"]["id"]])), key=lambda a: a["id"])
    assert [(a["category_id"], a["source"]) for a in two[:2]] == [(2, "manual"), (1, "auto")]
    assert all(a["category_id"] == 3 and a["source"] == "auto" for a in two[2:])


def test_coco_export_of_uncompressed_counts(annotated):
    out, truth = annotated
    record = json.loads((out / "two.json").read_text())
    record["annotations"][0]["segmentation"] = mask_to_rle(torch.from_numpy(truth["two.json"][:1]))[0]
    del record["annotations"][0]["area"], record["annotations"][0]["bbox"]  # computed from the mask then
    (out / "two.json").write_text(json.dumps(record))
    ann = next(a for a in to_coco(out)["annotations"] if a["category_id"] == 2)
    assert isinstance(ann["segmentation"]["counts"], str)
    mask = truth["two.json"][0]
    ys, xs = np.nonzero(mask)
    assert ann["area"] == int(mask.sum())
    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    from pycocotools import mask as mask_api
    assert np.array_equal(mask_api.decode(dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())),
                          mask)


def _record(masks: np.ndarray, file_name: str = "x.png") -> dict:
    """A hand-made SA-1B record of ``N x H x W`` masks (areas recorded, as the writers do)."""
    anns = [{"segmentation": rle_to_coco(rle), "area": rle_area(rle)}
            for rle in mask_to_rle(torch.from_numpy(masks))]
    return {"image": {"image_id": 0, "file_name": file_name, "height": masks.shape[1], "width": masks.shape[2]},
            "annotations": anns}


def test_label_map_draws_the_largest_first():
    masks = np.zeros((3, 6, 8), bool)
    masks[0, 1:3, 1:3] = True        # small, first in the file
    masks[1, 0:5, 0:6] = True        # large, covers mask 0
    masks[2, 4:6, 5:8] = True        # overlaps mask 1's corner; smaller than it
    labels = label_map(_record(masks))
    expected = np.zeros((6, 8), np.uint8)
    expected[0:5, 0:6] = 2
    expected[1:3, 1:3] = 1
    expected[4:6, 5:8] = 3
    assert labels.dtype == np.uint8 and np.array_equal(labels, expected)


def test_label_map_uses_16_bits_past_255_objects():
    masks = np.zeros((300, 20, 15), bool)
    for k in range(300):
        masks[k].flat[k] = True  # one pixel each, column-major or not: every pixel different
    labels = label_map(_record(masks))
    assert labels.dtype == np.uint16 and labels.max() == 300
    assert np.array_equal(labels.reshape(-1)[:300], np.arange(1, 301))


def test_write_label_pngs(annotated, tmp_path):
    out, truth = annotated
    written = write_label_pngs(out, tmp_path / "labels")
    assert [p.relative_to(tmp_path / "labels").as_posix() for p in written] == ["sub/one.png", "three.png", "two.png"]
    for rel, masks in truth.items():
        png = np.asarray(Image.open(tmp_path / "labels" / Path(rel).with_suffix(".png")))
        assert png.dtype == np.uint8 and png.shape == (H, W)
        assert set(np.unique(png)) <= set(range(len(masks) + 1))
        order = sorted(range(len(masks)), key=lambda k: (-int(masks[k].sum()), k))
        expected = np.zeros((H, W), np.uint8)
        for k in order:
            expected[masks[k]] = k + 1
        assert np.array_equal(png, expected)
    assert not np.asarray(Image.open(tmp_path / "labels" / "three.png")).any()
    big = tmp_path / "big"
    big.mkdir()
    masks = np.zeros((260, 20, 15), bool)
    for k in range(260):
        masks[k].flat[k] = True
    (big / "many.json").write_text(json.dumps(_record(masks, "many.png")))
    (path,) = write_label_pngs(big, tmp_path / "big_labels")
    png = Image.open(path)
    assert png.mode.startswith("I") and np.asarray(png).max() == 260


def test_stats_on_hand_made_records():
    records = [
        {"image": {"file_name": "a.png"}, "annotations": [
            {"source": "manual", "num_prompts": 2, "seconds": 4.0},
            {"source": "manual", "num_prompts": 4, "seconds": None},
            {"predicted_iou": 0.9},  # samkit annotate: no source (auto), no prompts or time
        ]},
        {"image": {"file_name": "b.png"}, "annotations": []},
        {"image": {"file_name": "c.png"}, "annotations": [{"source": "auto", "num_prompts": 1, "seconds": 2.0}]},
    ]
    stats = annotation_stats(records)
    # by hand: 3 images, 2 with masks, 4 masks; prompts recorded by 3 masks (2 + 4 + 1) / 3, seconds by 2 (4 + 2) / 2
    assert stats["images"] == 3 and stats["annotated_images"] == 2 and stats["masks"] == 4
    assert stats["prompts_per_mask"] == pytest.approx(7 / 3) and stats["seconds_per_mask"] == pytest.approx(3.0)
    assert stats["by_source"] == {"manual": {"masks": 2, "prompts_per_mask": 3.0, "seconds_per_mask": 4.0},
                                  "auto": {"masks": 2, "prompts_per_mask": 1.0, "seconds_per_mask": 2.0}}
    assert annotation_stats([]) == {"images": 0, "annotated_images": 0, "masks": 0, "prompts_per_mask": None,
                                    "seconds_per_mask": None,
                                    "by_source": {"manual": {"masks": 0, "prompts_per_mask": None,
                                                             "seconds_per_mask": None},
                                                  "auto": {"masks": 0, "prompts_per_mask": None,
                                                           "seconds_per_mask": None}}}
    other = annotation_stats(iter([{"annotations": [{"source": "review", "num_prompts": 5}]}]))
    assert list(other["by_source"]) == ["manual", "auto", "review"] and other["by_source"]["review"]["masks"] == 1


# --------------------------------------------------------------------------- the command line


def test_cli_export_each_option(annotated, tmp_path, capsys):
    out, truth = annotated
    coco_path = tmp_path / "exports" / "coco.json"
    assert main(["export", str(out), "--coco", str(coco_path)]) == 0
    total = sum(len(m) for m in truth.values())
    assert f"3 images, {total} annotations, 3 categories" in capsys.readouterr().out
    assert len(COCO(str(coco_path)).getAnnIds()) == total

    assert main(["export", str(out), "--png", str(tmp_path / "labels")]) == 0
    assert "wrote 3 label PNGs" in capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path / "labels").as_posix() for p in (tmp_path / "labels").rglob("*.png")) == \
        ["sub/one.png", "three.png", "two.png"]

    assert main(["export", str(out), "--stats"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in table[1:4]}
    assert table[0].split() == ["source", "masks", "prompts/mask", "seconds/mask"]
    assert rows["manual"] == ["1", "3.00", "6.5"]                 # two.png's hand-drawn mask
    assert rows["auto"] == [str(total - 1), "1.00", "2.5"]        # only the accepted proposal recorded them
    assert rows["all"] == [str(total), "2.00", "4.5"]             # (3 + 1) / 2 prompts, (6.5 + 2.5) / 2 s
    assert table[4] == "images: 3, annotated: 2"


def test_cli_export_errors(annotated, tmp_path, capsys):
    out, _ = annotated
    assert main(["export", str(out)]) == 2
    assert "needs at least one of --coco FILE.json, --coco-video FILE.json, --png DIR, --stats" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--stats"]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "summary.json").write_text("{}")
    assert main(["export", str(empty), "--stats"]) == 2
    assert "no SA-1B JSON found below" in capsys.readouterr().err
    assert main(["export", str(out), "--coco", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["export", str(out), "--png", str(tmp_path / "file")]) == 2
    assert "--png" in capsys.readouterr().err
    record = json.loads((out / "two.json").read_text())
    record["annotations"][0]["segmentation"]["size"] = [H + 1, W]
    (out / "two.json").write_text(json.dumps(record))
    assert main(["export", str(out), "--stats"]) == 2
    assert "annotations[0] has a mask of size" in capsys.readouterr().err


def test_read_annotations_refuses_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_annotations(tmp_path / "nowhere")
