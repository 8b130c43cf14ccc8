"""Training recipes: the nano recipe's definition, and a whole (tiny) recipe run end to end."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import samkit
from samkit.configs import get_config
from samkit.errors import ConfigError
from samkit.model.sam2 import SAM2Model
from samkit.train.losses import LossWeights
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.train.recipes import FINETUNE, NANO, FineTuning, Recipe, Stage, _scene_data, get_recipe, run_recipe
from samkit.train import TrainConfig, Trainer
from tests.train.test_trainer import FEW_ROUNDS, tiny_config


def test_nano_recipe_definition():
    assert get_recipe("nano") is NANO
    assert NANO.model == "samkit_nano"
    assert [s.name for s in NANO.stages] == ["decoder", "shapes", "images", "corrections", "clips", "tracking"]
    # the first stage trains the decoder on the frozen random image encoder, the others everything
    assert "image_encoder" not in NANO.stages[0].train.train_parts
    assert all("image_encoder" in s.train.train_parts for s in NANO.stages[1:])
    # the last two stages train on clips too (the memory modules learn only there)
    assert all("memory" in s.train.train_parts and s.clips > 0 and s.train.clip_every for s in NANO.stages[-2:])
    assert all("memory" not in s.train.train_parts and s.clips == 0 for s in NANO.stages[:-2])
    # training from random weights needs the aligned decoder attention and bounded features
    assert NANO.attention_init_gain > 0
    assert all(s.train.loss_weights.feature_scale > 0 for s in NANO.stages)
    # the shipped file must stay under 25 MB: parameters and buffers in float32
    model = SAM2Model(get_config("samkit_nano"))
    size = sum(t.numel() * 4 for t in list(model.parameters()) + list(model.buffers()))
    assert size <= 25 * 1024 * 1024
    # validation during training: held-out scenes (another seed) of the stage's kind
    for stage in NANO.stages:
        train, val = _scene_data(NANO, stage, [])
        assert val.num_objects == train.num_objects == stage.num_objects and val.seed != train.seed
    with pytest.raises(ConfigError, match="known recipes: finetune, nano"):
        get_recipe("huge")


def test_finetune_recipe_definition():
    """The fine-tuning recipe is settings for the user's data: the whole image path trains, SAM's
    20:1 focal:dice gives way to 1:1, and the starting weights are validated (step 0)."""
    assert get_recipe("finetune") is FINETUNE and isinstance(FINETUNE, FineTuning)
    cfg = FINETUNE.train
    assert set(cfg.train_parts) == {"image_encoder", "prompt_encoder", "mask_decoder"}
    assert (cfg.loss_weights.focal, cfg.loss_weights.dice) == (1.0, 1.0) and cfg.loss_resolution == "low"
    assert cfg.val_at_start and cfg.val_every and cfg.steps == 300
    with pytest.raises(ConfigError, match="--recipe finetune --format FORMAT --data DIR"):
        run_recipe("finetune", "unused")


def test_validation_at_start_is_step_0_and_survives_a_resume(tmp_path):
    """val_at_start: the starting weights' validation is metrics.csv's row 0 and the result's
    start_validation; a resumed run keeps that row and does not validate step 0 again."""
    train = SyntheticSceneDataset(4, size=(64, 64), seed=1, num_objects=(2, 3))
    val = SyntheticSceneDataset(1, size=(64, 64), seed=2, num_objects=(2, 3))
    cfg = TrainConfig(steps=3, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, log_every=1, val_every=0,
                      val_max_clicks=2, val_at_start=True, ckpt_every=1, tensorboard=False)

    def trainer() -> Trainer:
        torch.manual_seed(0)
        return Trainer(samkit.build_model(tiny_config()), train, cfg, out_dir=tmp_path, val_data=val, resume=True,
                       progress=False)

    first = trainer()
    untouched = {k: v.clone() for k, v in first.model.state_dict().items()}
    start = first.validate()
    assert all(torch.equal(untouched[k], v) for k, v in first.model.state_dict().items())
    assert first.train(stop_at=2) == {"step": 2, "stopped": True}
    result = trainer().train()
    assert result["start_validation"] == {}  # resumed at step 2: step 0 is not measured again
    with (tmp_path / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["loss"] == "" and float(rows[0]["val_mIoU@1"]) == pytest.approx(start["mIoU@1"], abs=1e-6)
    assert rows[3]["val_mIoU@1"] != "" and rows[1]["val_mIoU@1"] == ""


def _tiny_recipe() -> Recipe:
    common = dict(batch_size=2, max_objects=2, lr=2e-3, warmup_steps=1, clicks=FEW_ROUNDS, log_every=1,
                  loss_weights=LossWeights(1, 1, 1, 1), ckpt_every=1, tensorboard=False, val_every=2,
                  val_samples=1, val_max_clicks=2)
    return Recipe(name="tiny", model=tiny_config(), stages=(
        Stage("images", TrainConfig(steps=2, **common), scenes=6, scene_size=64, num_objects=(2, 4),
              val_scenes=1),
        Stage("clips", TrainConfig(steps=2, clip_every=2, train_parts=("image_encoder", "prompt_encoder",
                                                                       "mask_decoder", "memory"), **common),
              scenes=6, scene_size=64, clips=2, clip_frames=3, val_scenes=1),
    ))


def test_run_recipe_end_to_end_and_rerun_skips_finished_stages(tmp_path, monkeypatch):
    import samkit.train.initialization as initialization

    recipe = _tiny_recipe()
    aligned = []
    real_align = initialization.align_prompt_attention
    monkeypatch.setattr(initialization, "align_prompt_attention",
                        lambda model, gain: aligned.append(gain) or real_align(model, gain))
    torch.manual_seed(0)
    result = run_recipe(recipe, tmp_path, progress=False, log=lambda s: None)
    assert aligned == [recipe.attention_init_gain]  # once, on the random start
    path = result["checkpoint"]
    assert path == tmp_path / "trainer_tiny.safetensors" and path.is_file()
    model = samkit.build_model(checkpoint=path)
    assert model.cfg == tiny_config()
    # the clip stage started from the image stage's result and trained the memory modules
    first = samkit.build_model(checkpoint=tmp_path / "1_images" / "final.pt").state_dict()
    final = model.state_dict()
    key = "memory_attention.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(first[key], final[key])
    # one log for the whole recipe: steps counted across stages, the stage of each row
    with (tmp_path / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["step"], r["stage"]) for r in rows] == [("1", "1"), ("2", "1"), ("3", "2"), ("4", "2")]
    assert rows[3]["clip_iou"] not in ("", "nan")
    summary = json.loads((tmp_path / "recipe_summary.json").read_text())
    assert set(summary["seconds"]) == {"images", "clips"}
    pytest.importorskip("matplotlib")
    assert (tmp_path / "training_curves.png").stat().st_size > 1000

    before = path.read_bytes()
    messages: list[str] = []
    again = run_recipe(recipe, tmp_path, progress=False, log=messages.append)
    assert sum("already done" in m for m in messages) == 2
    assert again["checkpoint"].read_bytes() == before


def test_train_cli_needs_a_format_or_a_recipe(tmp_path, capsys):
    from samkit.cli.main import main

    assert main(["train", "--out", str(tmp_path)]) != 0
    assert "--format" in capsys.readouterr().err
    assert main(["train", "--recipe", "huge", "--out", str(tmp_path)]) != 0
    assert "known recipes" in capsys.readouterr().err
