"""The interactive trainer: learning, exact resumption, checkpoints, what trains, logging."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

import samkit
from samkit.checkpoint import read_checkpoint
from samkit.configs import ModelConfig
from samkit.errors import ConfigError, MissingDependencyError
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig
from samkit.model.sam2 import SAM2Model
from samkit.train.losses import LossWeights, feature_scale_penalty
from samkit.train.lora import LoRAConfig
from samkit.prompts import ClickConfig
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.train import TRAIN_PARTS, Trainer, TrainConfig, parameter_part
from samkit.train.checkpointing import STATE_FILE

FEW_ROUNDS = ClickConfig(num_correction_rounds=2, num_rounds_without_click=1)


def tiny_config() -> ModelConfig:
    return ModelConfig(name="trainer_tiny", image_size=64,
                       hiera=HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                         window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2)),
                       neck=NeckConfig(d_model=64),
                       memory=MemoryConfig(d_model=64, num_layers=1, dim_feedforward=64), decoder_mlp_dim=128)


def _model(seed: int = 0) -> SAM2Model:
    torch.manual_seed(seed)
    return samkit.build_model(tiny_config())


@pytest.fixture(scope="module")
def data() -> SyntheticSceneDataset:
    return SyntheticSceneDataset(5, size=(64, 64), seed=0, num_objects=(2, 5))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- configuration


def test_config_round_trip_and_validation():
    cfg = TrainConfig(steps=7, train_parts=["mask_decoder"], lora=LoRAConfig(rank=3), clicks=FEW_ROUNDS)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="unknown train part"):
        TrainConfig(train_parts=("decoder",))
    with pytest.raises(ConfigError, match="nothing to train"):
        TrainConfig(train_parts=())
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"stepz": 3})


def test_every_parameter_belongs_to_one_part():
    model = SAM2Model(tiny_config())
    parts = {parameter_part(n) for n, _ in model.named_parameters()}
    assert parts == set(TRAIN_PARTS)
    assert parameter_part("sam_mask_decoder.conv_s0.weight") == "mask_decoder"
    assert parameter_part("image_encoder.neck.convs.0.conv.weight") == "image_encoder"
    assert parameter_part("memory_encoder.fuser.layers.0.gamma") == "memory"


# --------------------------------------------------------------------------- learning


def test_steps_reduce_the_loss(data):
    model = _model()
    cfg = TrainConfig(steps=30, batch_size=2, max_objects=4, lr=3e-3, warmup_steps=2, weight_decay=0.0,
                      grad_clip=1.0, hflip=0.0, clicks=FEW_ROUNDS,
                      train_parts=("image_encoder", "prompt_encoder", "mask_decoder"))
    trainer = Trainer(model, data, cfg, progress=False)
    probe = trainer._prepare([data[0], data[1]])

    def probe_loss() -> float:
        # the same prompts each time: reseed the trainer's generators around the probe
        saved = trainer.data_generator.get_state(), trainer.prompt_generator.get_state()
        trainer.data_generator.manual_seed(123)
        trainer.prompt_generator.manual_seed(456)
        with torch.no_grad():
            loss = trainer._image_terms(probe).loss
        trainer.data_generator.set_state(saved[0])
        trainer.prompt_generator.set_state(saved[1])
        return float(loss)

    before = probe_loss()
    losses = [trainer.train_step()["loss"] for _ in range(cfg.steps)]
    after = probe_loss()
    assert after < 0.75 * before, (before, after, losses)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert trainer.step == cfg.steps


def test_feature_scale_penalty_enters_the_loss_once_per_image_batch(data):
    model = _model()
    with torch.no_grad():  # blow the features up so that the penalty is far from 0
        for p in model.image_encoder.neck.parameters():
            p.mul_(20.0)
    parts = ("image_encoder", "prompt_encoder", "mask_decoder")
    losses = []
    for weight in (0.0, 0.5):
        cfg = TrainConfig(steps=1, batch_size=2, clicks=FEW_ROUNDS, train_parts=parts,
                          loss_weights=LossWeights(focal=1.0, feature_scale=weight))
        trainer = Trainer(model, data, cfg, progress=False)
        batch = trainer._prepare([data[0], data[1]])
        trainer.data_generator.manual_seed(1)
        trainer.prompt_generator.manual_seed(2)
        with torch.no_grad():
            losses.append(float(trainer._image_terms(batch).loss))
    with torch.no_grad():
        penalty = float(feature_scale_penalty(model.forward_image(batch.images).features))
    assert penalty > 1.0
    assert losses[1] - losses[0] == pytest.approx(0.5 * penalty, rel=1e-4)


def test_only_the_chosen_parts_change(data):
    model = _model()
    start = _state(model)
    cfg = TrainConfig(steps=2, batch_size=2, max_objects=3, lr=1e-2, warmup_steps=0, clicks=FEW_ROUNDS,
                      train_parts=("mask_decoder",))
    Trainer(model, data, cfg, progress=False).train()
    end = model.state_dict()
    changed = {parameter_part(k) for k in start if not torch.equal(start[k], end[k])}
    assert changed == {"mask_decoder"}


def test_part_lr_scale_gives_that_part_a_larger_step(data):
    # AdamW's first step moves every weight by about lr (the update is m / sqrt(v) = sign(grad));
    # with weight decay off, the scaled part moves about 4x as far as the other.
    model = _model()
    start = _state(model)
    cfg = TrainConfig(steps=1, batch_size=2, max_objects=3, lr=1e-3, warmup_steps=0, weight_decay=0.0,
                      clicks=FEW_ROUNDS, train_parts=("prompt_encoder", "mask_decoder"),
                      part_lr_scale=(("mask_decoder", 4.0),))
    Trainer(model, data, cfg, progress=False).train()
    end = model.state_dict()
    moved: dict[str, list[float]] = {"prompt_encoder": [], "mask_decoder": []}
    for k in start:
        d = (end[k].float() - start[k].float()).abs()
        if parameter_part(k) in moved and d.max() > 0:
            moved[parameter_part(k)].append(float(d[d > 0].median()))
    dec, prm = float(torch.tensor(moved["mask_decoder"]).median()), float(torch.tensor(moved["prompt_encoder"]).median())
    assert dec == pytest.approx(4e-3, rel=0.05) and prm == pytest.approx(1e-3, rel=0.05)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match="part_lr_scale"):
        TrainConfig(part_lr_scale=(("decoder", 2.0),))
    with pytest.raises(ConfigError, match="factor > 0"):
        TrainConfig(part_lr_scale=(("memory", 0.0),))


def test_bf16_autocast_on_cpu_runs(data):
    model = _model()
    cfg = TrainConfig(steps=1, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, precision="bf16")
    stats = Trainer(model, data, cfg, progress=False).train_step()
    assert torch.isfinite(torch.tensor(stats["loss"])) and stats["objects"] > 0


# --------------------------------------------------------------------------- exact resumption


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("variant", ["full", "lora_accum"])
def test_resume_after_a_kill_is_bitwise_exact(tmp_path, data, variant):
    steps = 6
    common = dict(steps=steps, batch_size=2, max_objects=3, lr=3e-3, warmup_steps=2, clicks=FEW_ROUNDS,
                  ckpt_every=2, log_every=1, tensorboard=False)
    if variant == "full":
        cfg = TrainConfig(train_parts=("image_encoder", "prompt_encoder", "mask_decoder"), val_every=3,
                          val_max_clicks=2, **common)
        val = SyntheticSceneDataset(1, size=(64, 64), seed=5, num_objects=(2, 3))
    else:
        cfg = TrainConfig(train_parts=("mask_decoder",), lora=LoRAConfig(rank=2, dropout=0.1), accum_steps=2,
                          **common)
        val = None

    whole = _model()
    Trainer(whole, data, cfg, out_dir=tmp_path / "whole", val_data=val, progress=False).train()

    kill_at = random.randint(1, steps - 1)  # any step: the result must not depend on it
    killed = _model()
    result = Trainer(killed, data, cfg, out_dir=tmp_path / "killed", val_data=val, progress=False).train(
        stop_at=kill_at)
    assert result["stopped"]
    resumed = _model()  # a fresh process would rebuild the starting model, then load the state
    trainer = Trainer(resumed, data, cfg, out_dir=tmp_path / "killed", val_data=val, resume=True, progress=False)
    assert trainer.step == ((kill_at - 1) // 2) * 2  # the last checkpoint written before the kill
    trainer.train()

    a, b = whole.state_dict(), resumed.state_dict()
    assert list(a) == list(b)
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"killed at step {kill_at}: {len(diff)} tensors differ, e.g. {diff[:3]}"
    fa, _ = read_checkpoint(tmp_path / "whole" / "final.pt")
    fb, _ = read_checkpoint(tmp_path / "killed" / "final.pt")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    # the log of the resumed run has each step once, with the same losses
    rows_a = _read_csv(tmp_path / "whole" / "metrics.csv")
    rows_b = _read_csv(tmp_path / "killed" / "metrics.csv")
    assert [r["step"] for r in rows_b] == [str(s) for s in range(1, steps + 1)]
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_resume_refuses_other_settings(tmp_path, data):
    cfg = TrainConfig(steps=3, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, ckpt_every=1, tensorboard=False)
    Trainer(_model(), data, cfg, out_dir=tmp_path, progress=False).train(stop_at=2)
    other = TrainConfig(steps=3, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, lr=5e-4, tensorboard=False)
    with pytest.raises(ConfigError, match="lr"):
        Trainer(_model(), data, other, out_dir=tmp_path, resume=True, progress=False)


# --------------------------------------------------------------------------- files


def test_run_folder_checkpoints_are_official_and_atomic(tmp_path, data, monkeypatch):
    cfg = TrainConfig(steps=3, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, ckpt_every=1, keep_checkpoints=2,
                      log_every=1, tensorboard=False)
    model = _model()
    run = tmp_path / "run"
    trainer = Trainer(model, data, cfg, out_dir=run, progress=False)
    trainer.train()
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step_0000002.pt", "step_0000003.pt"]  # older ones pruned
    plain_keys = list(SAM2Model(tiny_config()).state_dict())
    for path in [run / "final.pt", *(run / "checkpoints").iterdir()]:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert set(payload) == {"model", "samkit_config"}  # the official {"model": ...} plus our config
        assert list(payload["model"]) == plain_keys
        loaded = samkit.build_model(checkpoint=path)  # strict load
        assert loaded.cfg == tiny_config()
    final = samkit.build_model(checkpoint=run / "final.pt")
    assert all(torch.equal(final.state_dict()[k], v) for k, v in model.state_dict().items())
    rows = _read_csv(run / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3"] and float(rows[-1]["loss"]) > 0
    info = json.loads((run / "config.json").read_text())
    assert info["train"]["steps"] == 3 and info["model"]["name"] == "trainer_tiny"
    if importlib.util.find_spec("matplotlib") is not None:
        assert (run / "training_curves.png").stat().st_size > 1000

    # a write that fails half way leaves the previous files whole and no temporary file
    state_before = (run / STATE_FILE).read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    monkeypatch.setattr(torch, "save", real_save)
    assert (run / STATE_FILE).read_bytes() == state_before
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    samkit.build_model(checkpoint=run / "checkpoints" / "step_0000003.pt")


def test_tensorboard_optional(tmp_path, data):
    cfg = TrainConfig(steps=1, batch_size=1, max_objects=2, clicks=FEW_ROUNDS, tensorboard=True)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(MissingDependencyError, match="tensorboard"):
            Trainer(_model(), data, cfg, out_dir=tmp_path / "a", progress=False)
        auto = TrainConfig(steps=1, batch_size=1, max_objects=2, clicks=FEW_ROUNDS)
        Trainer(_model(), data, auto, out_dir=tmp_path / "b", progress=False).train()
        assert (tmp_path / "b" / "metrics.csv").is_file()
        assert not (tmp_path / "b" / "tensorboard").exists()
    else:
        Trainer(_model(), data, cfg, out_dir=tmp_path / "a", progress=False).train()
        assert list((tmp_path / "a" / "tensorboard").glob("events.*"))


def test_tensorboard_scalars_are_written(tmp_path, data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainConfig(steps=2, batch_size=1, max_objects=2, lr=1e-3, warmup_steps=0, clicks=FEW_ROUNDS,
                      log_every=1, tensorboard=True)
    Trainer(_model(), data, cfg, out_dir=tmp_path / "run", progress=False).train()
    logdir = tmp_path / "run" / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert tags, "no scalar was logged"
    assert any(len(acc.Scalars(t)) >= 1 for t in tags)
