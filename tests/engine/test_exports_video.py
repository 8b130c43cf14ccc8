"""``samkit export`` of the studio's videos: a hand-written ``video.json`` (SA-V layout) whose masks are
known, exported as YouTube-VIS annotations in the COCO file and as per-object mask PNGs; the image
part unchanged."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli.main import main
from samkit.data.sav import find_video_files, read_video_folder
from samkit.engine.exports import (
    read_annotations,
    read_video_annotations,
    to_coco,
    video_coco_annotations,
    write_label_pngs,
    write_video_mask_pngs,
)
from samkit.errors import DatasetError
from samkit.masks.rle import mask_to_rle, rle_to_coco

coco_mask = pytest.importorskip("pycocotools.mask")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W, N = 6, 8, 5  # the video: 8 x 6 pixels, 5 frames


def _mask(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[rows, cols] = True
    return m


# object -> frame -> mask: what the hand-written video.json holds (frames 2 and 4 were never tracked)
DOG = {0: _mask(slice(1, 3), slice(2, 5)), 1: _mask(slice(1, 4), slice(3, 6))}  # areas 6, 9
BLOB = {0: _mask(slice(5, 6), slice(7, 8)), 3: _mask(slice(0, 6), slice(0, 1))}  # areas 1, 6
EMPTY = np.zeros((H, W), bool)


def _runs(mask: np.ndarray) -> dict:
    return mask_to_rle(torch.from_numpy(mask)[None])[0]  # uncompressed: {"size", "counts": [...]}


def _compressed(mask: np.ndarray) -> dict:
    return rle_to_coco(_runs(mask))


def _video_record() -> dict:
    """Objects 1 "dog", 2 without a name (masks on frames 0 and 3; an empty mask on frame 1), 3
    "ghost" without any mask; rows in the order 3, 0, 1; the dog's frame-0 mask as a list of runs."""
    rows = {3: [None, _compressed(BLOB[3]), None],
            0: [_runs(DOG[0]), _compressed(BLOB[0]), None],
            1: [_compressed(DOG[1]), _compressed(EMPTY), None]}
    return {"video": {"file_name": "clips/walk.mp4", "height": H, "width": W, "num_frames": N, "fps": 24.0},
            "objects": [{"id": 1, "name": "dog"}, {"id": 2, "name": None}, {"id": 3, "name": "ghost"}],
            "prompts": [{"frame": 0, "obj": 1, "type": "point", "x": 3, "y": 1, "label": 1}],
            "masklet_id": [1, 2, 3], "masklet_frames": list(rows), "masklet": list(rows.values())}


def _image_record() -> dict:
    cup = _mask(slice(0, 2), slice(0, 3))
    return {"image": {"image_id": 1, "file_name": "photo.jpg", "height": H, "width": W},
            "annotations": [{"id": 0, "segmentation": _compressed(cup), "area": 6, "bbox": [0, 0, 3, 2],
                             "source": "manual", "category": "cup"}]}


def _write(folder: Path, videos: bool = True, images: bool = True) -> Path:
    folder.mkdir(parents=True)
    if videos:
        (folder / "clips" / "walk").mkdir(parents=True)
        (folder / "clips" / "walk" / "video.json").write_text(json.dumps(_video_record()))
        (folder / ".studio").mkdir()
        (folder / ".studio" / "video.json").write_text(json.dumps(_video_record()))  # hidden: never read
        (folder / "other").mkdir()
        (folder / "other" / "video.json").write_text(json.dumps({"something": "else"}))  # not a video record
    if images:
        (folder / "photo.json").write_text(json.dumps(_image_record()))
    (folder / "summary.json").write_text("{}")
    return folder


def _decode(rle: dict) -> np.ndarray:
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_the_reader_finds_video_json_and_skips_the_rest(tmp_path) -> None:
    root = _write(tmp_path / "ann")
    assert [p.as_posix() for p in find_video_files(root)] == ["clips/walk/video.json", "other/video.json"]
    found = list(read_video_folder(root))
    assert [rel.as_posix() for rel, _ in found] == ["clips/walk"]
    assert [rel.as_posix() for rel, _ in read_annotations(root)] == ["photo.json"]  # video.json is no SA-1B JSON


def test_coco_export_of_a_video(tmp_path) -> None:
    root = _write(tmp_path / "ann", images=False)
    data = json.loads(json.dumps(to_coco(root)))  # through JSON, as the file is read
    assert data["images"] == []
    assert data["videos"] == [{"id": 1, "file_name": "clips/walk.mp4", "height": H, "width": W, "length": N}]
    assert data["categories"] == [{"id": 1, "name": "dog"}, {"id": 2, "name": "object"}]  # no "ghost": no mask
    dog, blob = data["annotations"]
    assert (dog["id"], dog["video_id"], dog["obj_id"], dog["category_id"]) == (1, 1, 1, 1)
    assert (blob["id"], blob["video_id"], blob["obj_id"], blob["category_id"]) == (2, 1, 2, 2)
    for ann, truth in ((dog, DOG), (blob, BLOB)):
        assert ann["iscrowd"] == 0 and (ann["height"], ann["width"], ann["length"]) == (H, W, N)
        assert len(ann["segmentations"]) == len(ann["areas"]) == len(ann["bboxes"]) == N
        for t in range(N):
            seg = ann["segmentations"][t]
            if t not in truth:
                assert seg is None and ann["areas"][t] is None and ann["bboxes"][t] is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [H, W]
            assert np.array_equal(_decode(seg), truth[t])
            assert ann["areas"][t] == int(truth[t].sum())
            assert ann["bboxes"][t] == [float(v) for v in coco_mask.toBbox(coco_mask.encode(
                np.asfortranarray(truth[t].astype(np.uint8))))]
    assert dog["areas"] == [6, 9, None, None, None] and blob["areas"] == [1, None, None, 6, None]
    assert dog["bboxes"][:2] == [[2.0, 1.0, 3.0, 2.0], [3.0, 1.0, 3.0, 3.0]]
    assert blob["bboxes"][0] == [7.0, 5.0, 1.0, 1.0] and blob["bboxes"][3] == [0.0, 0.0, 1.0, 6.0]

    # indexed as a YouTube-VIS loader does (ytvos.createIndex)
    vid_to_anns = defaultdict(list)
    for ann in data["annotations"]:
        vid_to_anns[ann["video_id"]].append(ann)
    assert [a["obj_id"] for a in vid_to_anns[1]] == [1, 2]
    videos = read_video_annotations(root)
    assert video_coco_annotations(videos[0][1], 7, {"dog": 1, "object": 2}, first_id=10)[1]["id"] == 11


def test_images_and_videos_together_keep_the_image_part(tmp_path) -> None:
    both = to_coco(_write(tmp_path / "both"))
    images_only = to_coco(_write(tmp_path / "images", videos=False))
    assert "videos" not in images_only
    assert images_only == to_coco(read_annotations(tmp_path / "both"))  # a list of records: no videos
    assert both["images"] == images_only["images"]
    assert both["annotations"][:1] == images_only["annotations"]  # "cup" keeps id 1 among cup, dog, object
    assert [c["name"] for c in both["categories"]] == ["cup", "dog", "object"]
    assert [a["id"] for a in both["annotations"]] == [1, 2, 3]
    assert [a.get("image_id") for a in both["annotations"]] == [1, None, None]
    assert [a.get("video_id") for a in both["annotations"]] == [None, 1, 1]
    assert [a["category_id"] for a in both["annotations"][1:]] == [2, 3]


def test_png_export_of_a_video(tmp_path) -> None:
    root = _write(tmp_path / "ann")
    out = tmp_path / "png"
    written = write_video_mask_pngs(root, out)
    assert [p.relative_to(out).as_posix() for p in written] == [
        "clips/walk/1/00000.png", "clips/walk/1/00001.png", "clips/walk/2/00000.png", "clips/walk/2/00003.png"]
    for obj, truth in ((1, DOG), (2, BLOB)):
        for t, mask in truth.items():
            with Image.open(out / "clips" / "walk" / str(obj) / f"{t:05d}.png") as img:
                assert img.mode == "L"
                assert np.array_equal(np.array(img), mask.astype(np.uint8) * 255)
    assert not (out / "clips" / "walk" / "3").exists()  # no mask on any frame
    assert [p.name for p in write_label_pngs(root, out)] == ["photo.png"]  # images as before


def test_cli_export_with_videos(tmp_path, capsys) -> None:
    root = _write(tmp_path / "ann")
    coco, vis, png = tmp_path / "out" / "coco.json", tmp_path / "out" / "vis.json", tmp_path / "out" / "png"
    assert main(["export", str(root), "--coco", str(coco), "--coco-video", str(vis), "--png", str(png)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {coco}: 1 images, 1 annotations" in printed and f"wrote {vis}: 1 videos, 2 object tracks" in printed
    assert "wrote 1 label PNGs" in printed and "wrote 4 mask PNGs of 1 videos" in printed
    assert json.loads(coco.read_text()) == to_coco(root, ()) and "videos" not in json.loads(coco.read_text())
    assert json.loads(vis.read_text()) == to_coco([], root)
    from pycocotools.coco import COCO
    COCO(str(coco))  # the image file loads as COCO instances
    assert (png / "photo.png").is_file() and (png / "clips" / "walk" / "2" / "00003.png").is_file()

    only = _write(tmp_path / "only", images=False)  # a folder of videos alone is enough
    assert main(["export", str(only), "--coco-video", str(tmp_path / "v.json"), "--png", str(tmp_path / "vpng")]) == 0
    printed = capsys.readouterr().out
    assert "1 videos, 2 object tracks" in printed and "label PNGs" not in printed
    assert main(["export", str(only), "--coco", str(tmp_path / "c.json")]) == 2
    assert "--coco-video" in capsys.readouterr().err

    images = _write(tmp_path / "images", videos=False)  # the image-only line as before
    assert main(["export", str(images), "--coco", str(tmp_path / "i.json")]) == 0
    assert f"wrote {tmp_path / 'i.json'}: 1 images, 1 annotations, 1 categories" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (lambda r: r["masklet"].pop(), "masklet has 2 rows but masklet_frames names 3 frames"),
    (lambda r: r["masklet"][0].pop(), r"masklet\[0\] \(frame 3\) must be a list of 3 entries"),
    (lambda r: r["masklet_frames"].__setitem__(0, 5), "masklet_frames must be a list of distinct frame numbers in "
                                                      "0..4"),
    (lambda r: r["masklet"][1][1].__setitem__("size", [3, 4]), "object 2 on frame 0 has a mask of size 3 x 4 but the "
                                                               "video is 6 x 8"),
    (lambda r: r["video"].pop("height"), "video.height, video.width and video.num_frames must be positive integers"),
    (lambda r: r["masklet"][1][1].__setitem__("counts", "zz"), "object 2, frame 0: the mask cannot be decoded"),
])
def test_bad_video_json_is_a_clear_error(tmp_path, capsys, change, message) -> None:
    root = _write(tmp_path / "ann", images=False)
    path = root / "clips" / "walk" / "video.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    with pytest.raises(DatasetError, match=message):
        to_coco(root)
    assert main(["export", str(root), "--coco-video", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samkit export: error: ") and err.count("\n") == 1 and re.search(message, err)
