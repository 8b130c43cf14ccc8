"""Interactive evaluation: the click protocol step by step (with a scripted predictor), and
real runs of a tiny model with their reports."""

from __future__ import annotations

from types import SimpleNamespace

import csv
import importlib.util
import json

import numpy as np
import pytest
import torch

import samkit
from samkit.configs import ModelConfig
from samkit.errors import ConfigError
from samkit.evaluate.interactive import (
    ObjectResult,
    _evaluate_objects,
    compare_interactive,
    evaluate_interactive,
)
from samkit.evaluate.metrics import MIOU_CLICKS
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig
from samkit.data import Sample
from samkit.data.synthetic.scenes import SyntheticSceneDataset

METRIC_KEYS = {"NoC@80", "NoC@85", "NoC@90", "NoF@85", "NoF@90", *(f"mIoU@{k}" for k in MIOU_CLICKS)}


class ScriptedPredictor:
    """Stands in for ImagePredictor on a ``size x size`` image whose model input is the same size:
    returns prepared low-res logits and records its inputs."""

    device = torch.device("cpu")

    def __init__(self, outputs: list[tuple[torch.Tensor, torch.Tensor]], size: int) -> None:
        self.outputs = outputs
        self.calls: list[dict] = []
        self.model = SimpleNamespace(image_size=size)
        self._orig_hw = [(size, size)]

    def _require_image(self, what: str) -> None:
        pass

    def predict_low_res(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                        img_idx=-1):
        self.calls.append(dict(coords=point_coords.clone(), labels=point_labels.clone(),
                               mask_input=None if mask_input is None else mask_input.clone(),
                               multimask=multimask_output))
        return self.outputs[len(self.calls) - 1]


def test_protocol_clicks_feedback_and_multimask_choice():
    target = torch.zeros(1, 16, 16, dtype=torch.bool)
    target[0, 4:12, 4:12] = True
    logits_of = lambda m: m.float() * 100.0 - 50.0  # noqa: E731  confident logits beyond the +-32 clamp
    empty = torch.full((1, 1, 16, 16), -50.0)
    half = target.clone()
    half[0, :, 8:] = False
    # click 1: three candidates; the highest *predicted* IoU (the empty one) must be kept
    first = (torch.cat([empty, logits_of(half)[:, None], logits_of(target)[:, None]], dim=1),
             torch.tensor([[0.9, 0.2, 0.5]]))
    perfect = (logits_of(target)[:, None], torch.tensor([[0.99]]))
    pred = ScriptedPredictor([first, perfect, perfect], 16)
    ious, clicks = _evaluate_objects(pred, target, None, max_clicks=3, threshold=0.0)
    np.testing.assert_allclose(ious[0], [0.0, 1.0, 1.0])
    # centre click (deepest pixel, first in raster order), then again in the missed object, then a
    # negative click at (0, 0) once nothing is wrong
    assert clicks[0].tolist() == [[7, 7, 1], [7, 7, 1], [0, 0, 0]]
    assert [c["multimask"] for c in pred.calls] == [True, False, False]
    assert pred.calls[0]["mask_input"] is None
    torch.testing.assert_close(pred.calls[1]["mask_input"], empty.clamp(-32, 32))  # the kept candidate
    assert float(pred.calls[2]["mask_input"].max()) == 32.0  # fed back clamped
    assert pred.calls[2]["coords"].shape == (1, 3, 2) and pred.calls[2]["labels"].tolist() == [[1, 1, 0]]


def test_protocol_ignores_ignored_pixels():
    target = torch.zeros(1, 10, 10, dtype=torch.bool)
    target[0, 2:8, 2:8] = True
    ignore = torch.zeros(10, 10, dtype=torch.bool)
    ignore[:, 5:] = True  # the right half does not count and is never clicked
    left_only = target.clone()
    left_only[0, :, 5:] = False
    out = (left_only.float()[:, None] * 20 - 10, torch.tensor([[0.5]]))
    pred = ScriptedPredictor([(torch.cat([out[0]] * 3, 1), torch.tensor([[0.5, 0.4, 0.3]])), out], 10)
    ious, clicks = _evaluate_objects(pred, target, ignore, max_clicks=2, threshold=0.0)
    np.testing.assert_allclose(ious[0], [1.0, 1.0])
    assert all(x < 5 for x, _, _ in clicks[0])


SMALL = ModelConfig(name="eval_tiny", image_size=64,
                    hiera=HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                      window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2)),
                    neck=NeckConfig(d_model=64), memory=MemoryConfig(d_model=64, num_layers=1, dim_feedforward=64),
                    decoder_mlp_dim=128)


@pytest.fixture(scope="module")
def scenes():
    return SyntheticSceneDataset(2, size=(40, 56), seed=3, num_objects=(2, 4))


def _model(seed: int) -> samkit.model.sam2.SAM2Model:
    torch.manual_seed(seed)
    return samkit.build_model(SMALL)


def test_tiny_model_returns_every_metric(scenes, tmp_path):
    model = _model(0).train()
    res = evaluate_interactive(model, scenes, max_clicks=4, progress=False, out_dir=tmp_path, name="scenes",
                               label="tiny")
    assert model.training  # mode restored
    assert METRIC_KEYS <= set(res)
    n = res["num_objects"]
    assert n == sum(int((s.masks.reshape(len(s.masks), -1).sum(1) > 0).sum()) for s in scenes)
    assert res["num_samples"] == 2 and res["ious"].shape == (n, 4) and len(res["objects"]) == n
    assert ((res["ious"] >= 0) & (res["ious"] <= 1)).all()
    for k in ("NoC@80", "NoC@85", "NoC@90"):
        assert 1 <= res[k] <= 4
    assert 0 <= res["NoF@85"] <= res["NoF@90"] <= n and isinstance(res["NoF@90"], int)
    assert res["mIoU@1"] == pytest.approx(res["ious"][:, 0].mean())
    assert res["mIoU@3"] == pytest.approx(res["curve"][2]) and np.isnan(res["mIoU@5"])
    for obj in res["objects"]:
        assert isinstance(obj, ObjectResult)
        mask = scenes[int(obj.sample.rsplit("_", 1)[1])].masks[obj.index]
        x, y, label = obj.clicks[0]
        assert label == 1 and mask[y, x]  # the first click is inside the object
    # the report
    summary = json.loads((tmp_path / "scenes_summary.json").read_text())
    assert summary["models"]["tiny"]["num_objects"] == n
    with (tmp_path / "scenes_tiny_objects.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n and {"sample", "object", "area", "NoC@85", "iou@1", "iou@4"} <= set(rows[0])
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "scenes_miou_vs_clicks.png").stat().st_size > 1000


def test_two_models_side_by_side(scenes, tmp_path):
    models = {"seed0": _model(0), "seed1": _model(1)}
    res = compare_interactive(models, scenes, max_clicks=2, out_dir=tmp_path, name="cmp", progress=False,
                              max_objects=2)
    assert list(res) == ["seed0", "seed1"]
    assert all(r["num_objects"] == 4 for r in res.values())  # two objects from each of the two images
    assert not np.array_equal(res["seed0"]["ious"], res["seed1"]["ious"])
    with (tmp_path / "cmp_summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["seed0", "seed1"]
    assert (tmp_path / "cmp_seed0_objects.csv").is_file() and (tmp_path / "cmp_seed1_objects.csv").is_file()


def test_no_object_is_an_error():
    empty = [Sample(image=np.zeros((8, 8, 3), np.uint8), masks=np.zeros((0, 8, 8), bool), ignore=None, name="e")]
    with pytest.raises(ConfigError, match="no object"):
        evaluate_interactive(_model(0), empty, progress=False)
    with pytest.raises(ConfigError):
        evaluate_interactive(_model(0), empty, max_clicks=0, progress=False)
