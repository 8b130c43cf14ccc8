"""Video training: generated clips, the tracking loss, and clip steps in the trainer."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

import samkit
from samkit.errors import ConfigError, DatasetError
from samkit.train.clips import ClipSample, SyntheticClipDataset, clip_loss
from samkit.train.losses import LossWeights, feature_scale_penalty
from samkit.train.prompts import ClickConfig
from samkit.train.synthetic import SyntheticSceneDataset
from samkit.train.trainer import Trainer, TrainConfig, parameter_part
from samkit.video.synthetic import SceneConfig, make_clip
from tests.train.test_trainer import FEW_ROUNDS, tiny_config


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return samkit.build_model(tiny_config(), eval_mode=False)


def test_synthetic_clips_are_deterministic_and_match_label_maps():
    ds = SyntheticClipDataset(3, num_frames=5, size=64, seed=4, num_objects=(2, 3))
    a, b = ds[1], ds[1]
    assert a.frames.shape == (5, 64, 64, 3) and a.frames.dtype == np.uint8
    k = a.masks.shape[0]
    assert 2 <= k <= 3 and a.masks.shape == (k, 5, 64, 64) and a.masks.dtype == bool
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


def test_clip_sample_checks_shapes():
    with pytest.raises(DatasetError, match="T x H x W x 3"):
        ClipSample(frames=np.zeros((4, 8, 8), np.uint8), masks=np.zeros((1, 4, 8, 8), bool))
    with pytest.raises(DatasetError, match="K x T x H x W"):
        ClipSample(frames=np.zeros((4, 8, 8, 3), np.uint8), masks=np.zeros((1, 3, 8, 8), bool))


def _clip_tensors(num_frames: int = 4, size: int = 64):
    from samkit.imageio import preprocess

    clip = make_clip(num_frames, size, size, 2, seed=3, scene=SceneConfig(min_size=0.2, max_size=0.3))
    frames = torch.cat([preprocess(np.asarray(f), size, "cpu") for f in clip.frames])
    labels = torch.from_numpy(np.stack(clip.masks))
    targets = torch.stack([labels == 1, labels == 2])  # 2 x T x S x S
    assert bool(targets[:, 0].flatten(1).any(dim=1).all())
    return frames, targets


def test_clip_loss_trains_the_memory_modules_through_tracked_frames():
    model = _model()
    frames, targets = _clip_tensors()
    gen = torch.Generator().manual_seed(0)
    res = clip_loss(model, frames, targets, clicks=ClickConfig(prob_box=0.0), weights=LossWeights(1, 1, 1, 1),
                    generator=gen)
    assert torch.isfinite(res.total) and res.total.requires_grad
    assert 0.0 <= res.iou_first <= 1.0 and 0.0 <= res.iou_tracked <= 1.0
    res.total.backward()
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
    res1.total.backward()
    assert model.memory_attention.layers[0].cross_attn_image.q_proj.weight.grad is None
    assert math.isnan(res1.iou_tracked)


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
                                   generator=torch.Generator().manual_seed(0), encoder_trains=encoder_trains).total)

    with torch.no_grad():
        penalty = float(feature_scale_penalty(model.forward_image(frames).features))
    assert penalty > 1.0
    assert total(2.0) - total(0.0) == pytest.approx(2.0 * penalty, rel=1e-4)
    assert total(2.0, encoder_trains=False) == pytest.approx(total(0.0), rel=1e-6)  # a frozen encoder: no term


def test_clip_loss_equals_the_video_predictor_on_the_tracked_frames():
    """With the same first prompt, the masks the loss supervises on tracked frames are the ones
    the VideoPredictor produces (the same tracking computation, without hole filling)."""
    from samkit.video.predictor import VideoPredictor

    model = _model().eval()
    size = model.image_size
    clip = make_clip(4, size, size, 1, seed=5, scene=SceneConfig(min_size=0.25, max_size=0.3))
    labels = torch.from_numpy(np.stack(clip.masks))
    targets = (labels == 1)[None]
    ys, xs = np.nonzero(np.asarray(clip.masks[0]) == 1)
    point = torch.tensor([[[float(xs[0]), float(ys[0])]]])

    import samkit.train.clips as clips_mod

    original = clips_mod.sample_first_prompt
    from samkit.train.prompts import Prompt

    clips_mod.sample_first_prompt = lambda m, c, g: Prompt(points=point, labels=torch.ones(1, 1, dtype=torch.int32),
                                                           boxes=None)
    seen: list[torch.Tensor] = []
    orig_heads = model.forward_sam_heads

    def spy(*a, **k):
        out = orig_heads(*a, **k)
        seen.append(out.low_res.detach())
        return out

    model.forward_sam_heads = spy
    try:
        from samkit.imageio import preprocess

        frames = torch.cat([preprocess(np.asarray(f), size, "cpu") for f in clip.frames])
        with torch.no_grad():
            clip_loss(model, frames, targets, clicks=ClickConfig(prob_box=0.0), weights=LossWeights(1, 1, 1, 1))
    finally:
        clips_mod.sample_first_prompt = original
        model.forward_sam_heads = orig_heads
    predictor = VideoPredictor(model, fill_hole_area=0, progress=False)
    state = predictor.init_state([np.asarray(f) for f in clip.frames])
    predictor.add_new_points_or_box(state, 0, 1, points=point[0].numpy(), labels=np.array([1]))
    video = {f: m[0, 0] for f, _, m in predictor.propagate_in_video(state)}
    for t in range(4):
        ours = torch.nn.functional.interpolate(seen[t], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        agree = float(((ours > 0) == (video[t] > 0)).float().mean())
        assert agree > 0.999, (t, agree)


def _tiny_run_config(**kw) -> TrainConfig:
    base = dict(steps=4, batch_size=2, max_objects=2, lr=3e-3, warmup_steps=1, clicks=FEW_ROUNDS, clip_every=2,
                train_parts=("image_encoder", "prompt_encoder", "mask_decoder", "memory"),
                loss_weights=LossWeights(1, 1, 1, 1), ckpt_every=1, log_every=1, tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_clip_steps_alternate_and_resume_exactly(tmp_path):
    scenes = SyntheticSceneDataset(4, size=(64, 64), seed=0, num_objects=(2, 4))
    clips = SyntheticClipDataset(3, num_frames=3, size=64, seed=1, num_objects=(2, 3))
    cfg = _tiny_run_config()
    whole = _model()
    Trainer(whole, scenes, cfg, out_dir=tmp_path / "whole", clip_data=clips, progress=False).train()
    with (tmp_path / "whole" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    clip_iou = [r["clip_iou"] for r in rows]
    # steps 2 and 4 are clip steps (every 2nd); the others are image steps (NaN)
    assert [v.lower() == "nan" or v == "" for v in clip_iou] == [True, False, True, False]

    killed = _model()
    Trainer(killed, scenes, cfg, out_dir=tmp_path / "killed", clip_data=clips, progress=False).train(stop_at=3)
    resumed = _model()
    Trainer(resumed, scenes, cfg, out_dir=tmp_path / "killed", clip_data=clips, resume=True,
            progress=False).train()
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trainer_clip_settings_are_checked():
    scenes = SyntheticSceneDataset(2, size=(64, 64), seed=0)
    clips = SyntheticClipDataset(1, num_frames=2, size=64)
    with pytest.raises(ConfigError, match="no clip_data"):
        Trainer(_model(), scenes, _tiny_run_config(), progress=False)
    with pytest.raises(ConfigError, match="clip_every >= 1"):
        Trainer(_model(), scenes, _tiny_run_config(clip_every=0), clip_data=clips, progress=False)
