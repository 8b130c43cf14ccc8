"""Video training: clip steps in the trainer (the clip loss itself: test_step.py; generated clips:
tests/data/test_synthetic_clips.py)."""

from __future__ import annotations

import csv

import pytest
import torch

import samkit
from samkit.errors import ConfigError
from samkit.data import SyntheticClipDataset
from samkit.train.losses import LossWeights
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.train import Trainer, TrainConfig
from tests.train.test_trainer import FEW_ROUNDS, tiny_config


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return samkit.build_model(tiny_config(), eval_mode=False)


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
