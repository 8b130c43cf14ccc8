"""The data engine's loop in small: a simulated annotator clicks objects in the studio, and what the
studio wrote trains (``samkit train --format sa1b``). ``benchmarks/engine_loop.py`` measures the loop
at size; this test keeps its own annotator so that tests never import benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from samkit.builder import load_model  # noqa: E402
from samkit.cli.main import main as samkit_cli  # noqa: E402
from samkit.data.synthetic.scenes import SyntheticSceneDataset  # noqa: E402
from samkit.prompts import sample_center_error_click  # noqa: E402
from samkit.studio import StudioConfig, create_app  # noqa: E402
from tests.studio.helpers import default_model, iou, mask_of  # noqa: E402

H = {"X-Studio-Client": "annotator"}
IOU_TARGET, MAX_CLICKS = 0.85, 4


def _scenes(folder: Path, count: int = 3, per_image: int = 2) -> dict[str, list[np.ndarray]]:
    """``count`` generated scenes as PNGs; image name -> its ``per_image`` largest objects."""
    from PIL import Image

    folder.mkdir(parents=True)
    data = SyntheticSceneDataset(count, size=(256, 256), seed=77, num_objects=(2, 4))
    targets = {}
    for i in range(count):
        sample = data[i]
        Image.fromarray(sample.image).save(folder / f"scene_{i}.png")
        largest = np.argsort(-sample.masks.reshape(len(sample.masks), -1).sum(1))[:per_image]
        targets[f"scene_{i}.png"] = [sample.masks[j] for j in largest]
    return targets


def _annotate(client: TestClient, targets: dict[str, list[np.ndarray]]) -> dict[str, list[int]]:
    """The interactive protocol's annotator through the API: centre-of-error clicks on the mask the
    studio returns until IoU >= IOU_TARGET or MAX_CLICKS clicks, then accept. Returns the clicks
    sent per object, per image."""
    ids = {row["name"]: row["id"] for row in client.get("/api/images").json()["images"]}
    clicks_sent: dict[str, list[int]] = {}
    for name, masks in targets.items():
        image_id = ids[name]
        assert client.get(f"/api/images/{image_id}", headers=H).status_code == 200
        clicks_sent[name] = []
        for target in masks:
            pred, clicks, score = None, 0, 0.0
            while clicks < MAX_CLICKS and score < IOU_TARGET:
                points, labels = sample_center_error_click(torch.from_numpy(target)[None], pred)
                answer = client.post(f"/api/images/{image_id}/prompt", headers=H, json={
                    "type": "point", "x": float(points[0, 0, 0]), "y": float(points[0, 0, 1]),
                    "label": int(labels[0, 0])})
                assert answer.status_code == 200, answer.text
                clicks += 1
                mask = mask_of(answer.json()["mask"])
                pred, score = torch.from_numpy(mask)[None], iou(mask, target)
            accepted = client.post(f"/api/images/{image_id}/accept", headers=H, json={})
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["annotation"]["num_prompts"] == clicks
            clicks_sent[name].append(clicks)
    return clicks_sent


def test_studio_annotations_record_the_clicks_and_train(tmp_path: Path) -> None:
    images, out, run = tmp_path / "images", tmp_path / "out", tmp_path / "run"
    targets = _scenes(images)
    model, description = default_model()
    with TestClient(create_app(StudioConfig(images, out), model=model, model_description=description)) as client:
        clicks = _annotate(client, targets)
        stats = client.get("/api/stats").json()
    sent = [c for per_image in clicks.values() for c in per_image]
    assert stats["masks"] == len(sent) == 6 and stats["by_source"]["manual"]["masks"] == 6
    assert stats["prompts_per_mask"] == pytest.approx(np.mean(sent))

    # the SA-1B JSON on disk records every click of every object, in the order they were sent
    for name, per_object in clicks.items():
        record = json.loads((out / Path(name).with_suffix(".json")).read_text())
        assert record["image"]["file_name"] == name
        assert [a["num_prompts"] for a in record["annotations"]] == per_object
        assert [len(a["prompts"]["points"]) for a in record["annotations"]] == per_object
        assert all(a["source"] == "manual" and a["prompts"]["box"] is None for a in record["annotations"])

    rc = samkit_cli(["train", "--format", "sa1b", "--data", str(out), "--images", str(images), "--out", str(run),
                     "--steps", "2", "--batch-size", "2", "--max-objects", "2", "--warmup", "1",
                     "--correction-rounds", "1", "--rounds-without-click", "0", "--log-every", "1",
                     "--tensorboard", "off", "--no-progress"])
    assert rc == 0
    assert (run / "final.pt").is_file() and (run / "metrics.csv").is_file()
    assert json.loads((run / "config.json").read_text())["train_samples"] == 3
    tuned, _ = load_model(checkpoint=run / "final.pt")
    assert tuned.cfg.name == model.cfg.name
