"""SA-1B JSON folders as a dataset: the engine's own output read back, sources, the errors a user
sees, and ``samkit train/eval --format sa1b``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.checkpoint import config_to_dict
from samkit.cli.main import main
from samkit.configs import ModelConfig
from samkit.data import SA1BDataset, SyntheticSceneDataset, open_dataset, read_sa1b_folder
from samkit.engine import annotate_folder
from samkit.errors import ConfigError, DatasetError
from samkit.masks.rle import mask_to_rle, rle_area, rle_to_coco
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig

pytest.importorskip("pycocotools")  # the engine writes COCO compressed RLE

H, W = 48, 64
NAMES = ("a/scene_0.png", "scene_1.png", "scene_2.png")  # relative image paths (one in a subfolder)


class SceneGenerator:
    """A stand-in mask generator: the known masks of each generated scene, as the engine's records
    (COCO compressed RLE)."""

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


def make_annotated(root: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Generated scenes as PNGs in ``root/images`` and ``samkit annotate``'s output of them (with
    its summary.json and histogram) in ``root/annotations``; also a hidden ``.studio/`` JSON.
    Returns (annotations, images, relative image path -> its masks)."""
    images, annotations = root / "images", root / "annotations"
    scenes, truth = {}, {}
    for i, sample in enumerate(SyntheticSceneDataset(len(NAMES), size=(H, W), seed=5, num_objects=(2, 4))):
        path = images / NAMES[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample.image).save(path)
        scenes[sample.image.tobytes()] = sample.masks
        truth[NAMES[i]] = sample.masks
    annotate_folder(SceneGenerator(scenes), images, annotations, progress=False)
    hidden = annotations / ".studio"
    hidden.mkdir()
    (hidden / "rejected.json").write_text(json.dumps(json.loads((annotations / "scene_1.json").read_text())))
    return annotations, images, truth


def edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


@pytest.fixture()
def annotated(tmp_path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    return make_annotated(tmp_path)


def test_round_trip_of_the_engines_output(annotated):
    annotations, images, truth = annotated
    assert (annotations / "summary.json").is_file() and (annotations / "masks_per_image.png").is_file()
    for ds in (SA1BDataset(annotations, images), open_dataset("sa1b", str(annotations), images=str(images))):
        assert ds.names == ["a/scene_0", "scene_1", "scene_2"]  # summary.json and .studio/ skipped
        for name, sample in zip(NAMES, ds):
            assert sample.masks.dtype == np.bool_ and sample.masks.shape == truth[name].shape
            assert np.array_equal(sample.masks, truth[name]) and sample.ignore is None
            assert np.array_equal(sample.image, np.asarray(Image.open(images / name).convert("RGB")))
    assert [rel.as_posix() for rel, _ in read_sa1b_folder(annotations)] == ["a/scene_0.json", "scene_1.json",
                                                                            "scene_2.json"]


def test_uncompressed_counts_are_read(annotated):
    annotations, images, truth = annotated
    first = mask_to_rle(torch.from_numpy(truth["scene_1.png"][:1]))[0]
    edit(annotations / "scene_1.json", lambda r: r["annotations"][0]["segmentation"].update(counts=first["counts"]))
    assert np.array_equal(SA1BDataset(annotations, images)[1].masks, truth["scene_1.png"])


def test_sources_select_annotations(annotated):
    annotations, images, truth = annotated

    def studio(record):  # as the studio writes: scene_1's first two masks drawn by hand, one accepted proposal
        for k, ann in enumerate(record["annotations"]):
            ann["source"] = "manual" if k < 2 else "auto"

    edit(annotations / "scene_1.json", studio)
    manual = SA1BDataset(annotations, images, sources={"manual"})
    assert manual.names == ["scene_1"]  # images without a manual annotation are left out
    assert np.array_equal(manual[0].masks, truth["scene_1.png"][:2])
    auto = SA1BDataset(annotations, images, sources="auto")  # no source (samkit annotate) counts as auto
    assert auto.names == ["a/scene_0", "scene_1", "scene_2"]
    assert np.array_equal(auto[1].masks, truth["scene_1.png"][2:])
    assert np.array_equal(auto[0].masks, truth[NAMES[0]])
    both = open_dataset("sa1b", str(annotations), images=str(images), sources=("manual", "auto"))
    assert np.array_equal(both[1].masks, truth["scene_1.png"])
    auto_count = sum(len(m) for m in truth.values()) - 2
    with pytest.raises(DatasetError, match=rf"no annotation from sources \['corrected'\].*auto {auto_count}, manual 2"):
        SA1BDataset(annotations, images, sources={"corrected"})
    with pytest.raises(ConfigError, match="at least one source"):
        SA1BDataset(annotations, images, sources=set())


def test_images_without_annotations_are_left_out(annotated):
    annotations, images, _ = annotated
    edit(annotations / "scene_2.json", lambda r: r.update(annotations=[]))
    assert SA1BDataset(annotations, images).names == ["a/scene_0", "scene_1"]


@pytest.mark.parametrize("file_name", ["../outside.png", "a/../../outside.png", "/etc/outside.png",
                                       "C:/outside.png", "..\\outside.png"])
def test_file_names_leaving_the_images_folder_are_refused(annotated, file_name):
    annotations, images, _ = annotated
    edit(annotations / "scene_1.json", lambda r: r["image"].update(file_name=file_name))
    with pytest.raises(DatasetError, match="outside the images folder") as info:
        SA1BDataset(annotations, images)
    assert "scene_1.json" in str(info.value)


def test_missing_image_names_both_paths(annotated):
    annotations, images, _ = annotated
    (images / "scene_2.png").unlink()
    with pytest.raises(DatasetError, match="1 annotated images are missing") as info:
        SA1BDataset(annotations, images)
    text = str(info.value)
    assert str(annotations / "scene_2.json") in text and str(images / "scene_2.png") in text and "--images" in text


def test_other_json_is_skipped_and_none_is_an_error(tmp_path, annotated):
    annotations, images, _ = annotated
    (annotations / "notes.json").write_text(json.dumps({"image": "not a dict", "annotations": []}))
    (annotations / "list.json").write_text("[1, 2]")
    assert len(SA1BDataset(annotations, images)) == 3
    only_summary = tmp_path / "only_summary"
    only_summary.mkdir()
    (only_summary / "summary.json").write_text((annotations / "summary.json").read_text())
    with pytest.raises(DatasetError, match="no SA-1B JSON found below"):
        SA1BDataset(only_summary, images)
    (annotations / "broken.json").write_text("{\"image\": ")
    with pytest.raises(DatasetError, match="cannot read annotation file .*broken.json.*fix or remove it"):
        SA1BDataset(annotations, images)


def test_missing_folders_and_bad_masks(annotated, tmp_path):
    annotations, images, _ = annotated
    with pytest.raises(DatasetError, match="SA-1B annotations folder .* does not exist"):
        SA1BDataset(tmp_path / "nowhere", images)
    with pytest.raises(DatasetError, match="SA-1B images folder .* does not exist"):
        SA1BDataset(annotations, tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="--images is needed for the 'sa1b' format"):
        open_dataset("sa1b", str(annotations))
    with pytest.raises(ConfigError, match="--data is needed"):
        open_dataset("sa1b", None, images=str(images))
    edit(annotations / "scene_1.json", lambda r: r["annotations"][1]["segmentation"].update(size=[H, W + 1]))
    with pytest.raises(DatasetError, match=rf"annotations\[1\] has a mask of size {H} x {W + 1} but the image is "
                                           rf"{H} x {W}"):
        SA1BDataset(annotations, images)
    edit(annotations / "scene_1.json", lambda r: r["annotations"][1]["segmentation"].update(size=[H, W]))
    edit(annotations / "scene_1.json", lambda r: r["image"].update(height=H + 2))  # the JSON, not the image
    with pytest.raises(DatasetError, match="mask of size"):
        SA1BDataset(annotations, images)
    edit(annotations / "scene_1.json", lambda r: r["image"].update(height=H))
    Image.fromarray(np.zeros((H, W + 3, 3), np.uint8)).save(images / "scene_1.png")  # the image changed
    with pytest.raises(DatasetError, match=f"is {H} x {W + 3} but its annotation is {H} x {W}"):
        SA1BDataset(annotations, images)[1]


# --------------------------------------------------------------------------- the command line

TINY = ModelConfig(name="sa1b_tiny", image_size=64,
                   hiera=HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                     window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2)),
                   neck=NeckConfig(d_model=64), memory=MemoryConfig(d_model=64, num_layers=1, dim_feedforward=64),
                   decoder_mlp_dim=128)


def test_train_and_eval_on_sa1b(annotated, tmp_path, capsys):
    annotations, images, _ = annotated
    edit(annotations / "scene_1.json", lambda r: r["annotations"][0].update(source="manual"))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(config_to_dict(TINY)))
    run = tmp_path / "run"
    data = ["--format", "sa1b", "--data", str(annotations), "--images", str(images)]
    assert main(["train", *data, "--sources", "manual", "--config", str(config), "--out", str(run), "--steps", "2",
                 "--batch-size", "1", "--max-objects", "2", "--correction-rounds", "1", "--rounds-without-click",
                 "1", "--log-every", "1", "--warmup", "1", "--tensorboard", "off", "--no-progress"]) == 0
    assert "data: 1 training images" in capsys.readouterr().out
    assert samkit.build_model(checkpoint=run / "final.pt").cfg == TINY
    report = tmp_path / "report"
    assert main(["eval", *data, "--checkpoint", str(run / "final.pt"), "--out", str(report), "--max-clicks", "2",
                 "--max-objects", "2", "--no-progress", "--name", "engine"]) == 0
    assert "data: 3 images (sa1b)" in capsys.readouterr().out
    summary = json.loads((report / "engine_summary.json").read_text())
    assert len(summary["models"]["final"]["curve"]) == 2


def test_cli_dataset_errors(annotated, tmp_path, capsys):
    annotations, images, _ = annotated
    assert main(["eval", "--format", "sa1b", "--data", str(annotations), "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "--images is needed for the 'sa1b' format" in capsys.readouterr().err
    assert main(["eval", "--format", "synthetic", "--sources", "manual", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "--sources selects annotations of --format sa1b" in capsys.readouterr().err
    assert main(["train", "--format", "sa1b", "--data", str(images), "--images", str(images), "--out",
                 str(tmp_path / "run"), "--steps", "1", "--no-progress"]) == 2
    assert "no SA-1B JSON found below" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--format", "sa1b", "--sources", ",", "--out", str(tmp_path / "run")])
    assert "--sources takes source names" in capsys.readouterr().err


def test_a_folder_that_cannot_be_listed_is_an_error(annotated, monkeypatch):
    annotations, images, _ = annotated
    real = os.scandir

    def scandir(path="."):
        if Path(path) == annotations / "a":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # os.walk lists folders with it (root may read any folder)
    with pytest.raises(DatasetError, match=r"cannot list the annotations folder .*a' \(Permission denied\)"):
        SA1BDataset(annotations, images)


def test_a_mask_that_cannot_be_decoded_names_its_file(annotated):
    annotations, images, _ = annotated
    edit(annotations / "scene_1.json", lambda r: r["annotations"][0]["segmentation"].update(counts="0"))
    ds = SA1BDataset(annotations, images)  # counts are decoded when the sample is read
    with pytest.raises(DatasetError, match=r"scene_1.json: annotation 0: the mask cannot be decoded"):
        ds[1]
