"""The step losses (samkit.train.step): the clip loss, and StepTerms as the metrics.csv columns."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest
import torch

import samkit
import samkit.train.step as step_mod
from samkit.data.synthetic.clips import SceneConfig, make_clip
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.imageio import preprocess
from samkit.prompts import ClickConfig, Prompt
from samkit.train import StepTerms, Trainer, TrainConfig, parameter_part
from samkit.train.logging import metric_columns
from samkit.train.losses import LossWeights, feature_scale_penalty
from samkit.train.step import TERM_COLUMNS, clip_loss
from samkit.video.predictor import VideoPredictor
from tests.train.test_trainer import FEW_ROUNDS, tiny_config


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return samkit.build_model(tiny_config(), eval_mode=False)


def _clip_tensors(num_frames: int = 4, size: int = 64):
    clip = make_clip(num_frames, size, size, 2, seed=3, scene=SceneConfig(min_size=0.2, max_size=0.3))
    frames = torch.cat([preprocess(np.asarray(f), size, "cpu") for f in clip.frames])
    labels = torch.from_numpy(clip.labels())
    targets = torch.stack([labels == 1, labels == 2])  # 2 x T x S x S
    assert bool(targets[:, 0].flatten(1).any(dim=1).all())
    return frames, targets


def test_clip_loss_trains_the_memory_modules_through_tracked_frames():
    model = _model()
    frames, targets = _clip_tensors()
    gen = torch.Generator().manual_seed(0)
    res = clip_loss(model, frames, targets, clicks=ClickConfig(prob_box=0.0), weights=LossWeights(1, 1, 1, 1),
                    generator=gen)
    assert torch.isfinite(res.loss) and res.loss.requires_grad
    assert 0.0 <= res.iou_first <= 1.0 and 0.0 <= res.iou_last <= 1.0
    res.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("memory_attention.layers.0.cross_attn_image.q_proj.weight", "memory_encoder.fuser.layers.0.dwconv.weight",
                 "maskmem_tpos_enc", "sam_mask_decoder.iou_prediction_head.layers.0.weight",
                 "image_encoder.trunk.patch_embed.proj.weight"):
        assert grads[name] is not None and float(grads[name].abs().sum()) > 0, name
        assert parameter_part(name) in ("memory", "mask_decoder", "image_encoder")

    # a single frame has nothing to track: the memory modules get no gradient
    model.zero_grad(set_to_none=True)
    res1 = clip_loss(model, frames[:1], targets[:, :1], clicks=ClickConfig(prob_box=0.0),
                     weights=LossWeights(1, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    res1.loss.backward()
    assert model.memory_attention.layers[0].cross_attn_image.q_proj.weight.grad is None
    assert math.isnan(res1.iou_last)


def test_clip_loss_adds_the_feature_scale_penalty_when_the_encoder_trains():
    model = _model()
    with torch.no_grad():
        for p in model.image_encoder.neck.parameters():
            p.mul_(20.0)
    frames, targets = _clip_tensors(num_frames=2)

    def total(weight: float, encoder_trains: bool = True) -> float:
        with torch.no_grad():
            return float(clip_loss(model, frames, targets, clicks=ClickConfig(prob_box=0.0),
                                   weights=LossWeights(1, 1, 1, 1, feature_scale=weight),
                                   generator=torch.Generator().manual_seed(0), encoder_trains=encoder_trains).loss)

    with torch.no_grad():
        penalty = float(feature_scale_penalty(model.forward_image(frames).features))
    assert penalty > 1.0
    assert total(2.0) - total(0.0) == pytest.approx(2.0 * penalty, rel=1e-4)
    assert total(2.0, encoder_trains=False) == pytest.approx(total(0.0), rel=1e-6)  # a frozen encoder: no term


def test_clip_loss_equals_the_video_predictor_on_the_tracked_frames():
    """With the same first prompt, the masks the loss supervises on tracked frames are the ones
    the VideoPredictor produces (the same tracking computation, without hole filling)."""
    model = _model().eval()
    size = model.image_size
    clip = make_clip(4, size, size, 1, seed=5, scene=SceneConfig(min_size=0.25, max_size=0.3))
    labels = torch.from_numpy(clip.labels())
    targets = (labels == 1)[None]
    ys, xs = np.nonzero(clip.labels()[0] == 1)
    point = torch.tensor([[[float(xs[0]), float(ys[0])]]])

    original = step_mod.sample_first_prompt
    step_mod.sample_first_prompt = lambda m, c, g: Prompt(points=point, labels=torch.ones(1, 1, dtype=torch.int32),
                                                          boxes=None)
    seen: list[torch.Tensor] = []
    orig_heads = model.forward_sam_heads

    def spy(*a, **k):
        out = orig_heads(*a, **k)
        seen.append(out.low_res.detach())
        return out

    model.forward_sam_heads = spy
    try:
        frames = torch.cat([preprocess(np.asarray(f), size, "cpu") for f in clip.frames])
        with torch.no_grad():
            clip_loss(model, frames, targets, clicks=ClickConfig(prob_box=0.0), weights=LossWeights(1, 1, 1, 1))
    finally:
        step_mod.sample_first_prompt = original
        model.forward_sam_heads = orig_heads
    predictor = VideoPredictor(model, fill_hole_area=0, progress=False)
    state = predictor.init_state([np.asarray(f) for f in clip.frames])
    predictor.add_new_points_or_box(state, 0, 1, points=point[0].numpy(), labels=np.array([1]))
    video = {f: m[0, 0] for f, _, m in predictor.propagate_in_video(state)}
    for t in range(4):
        ours = torch.nn.functional.interpolate(seen[t], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        agree = float(((ours > 0) == (video[t] > 0)).float().mean())
        assert agree > 0.999, (t, agree)



def test_step_terms_fields_are_the_metrics_csv_columns(tmp_path):
    """Every StepTerms field is a metrics.csv column, in field order, right after ``step``; the
    header is the one the logs and docs/nano/training_metrics.csv have always had."""
    data = SyntheticSceneDataset(3, size=(64, 64), seed=0, num_objects=(2, 3))
    cfg = TrainConfig(steps=2, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, log_every=1, tensorboard=False)
    Trainer(_model(), data, cfg, out_dir=tmp_path / "run", progress=False).train()
    with (tmp_path / "run" / "metrics.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    fields = [f.name for f in dataclasses.fields(StepTerms)]
    assert tuple(fields) == TERM_COLUMNS
    assert header[1:1 + len(fields)] == fields
    assert header == ["step", "loss", "focal", "dice", "iou_loss", "object_loss", "iou_first", "iou_last", "objects",
                      "grad_norm", "lr", "sec_per_step"]
    assert header == metric_columns(clips=False, validation=False)
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(r[name] != "" for r in rows for name in fields)
    assert metric_columns(clips=True, validation=False) == header + ["clip_iou"]
