"""``samkit make-synthetic-labpics`` and ``samkit train``: real runs on tiny data, including a
run killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import samkit
from samkit.checkpoint import config_to_dict, read_checkpoint
from samkit.cli.main import main
from samkit.configs import ModelConfig
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig
from samkit.data import LabPicsDataset

ROOT = Path(__file__).resolve().parents[2]

TINY = ModelConfig(name="cli_train_tiny", image_size=64,
                   hiera=HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                     window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2)),
                   neck=NeckConfig(d_model=64), memory=MemoryConfig(d_model=64, num_layers=1, dim_feedforward=64),
                   decoder_mlp_dim=128)


@pytest.fixture(scope="module")
def labpics(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labpics")
    assert main(["make-synthetic-labpics", str(root), "--train", "4", "--test", "2", "--height", "48",
                 "--width", "64"]) == 0
    return root


@pytest.fixture(scope="module")
def config_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(config_to_dict(TINY)))
    return path


def _train_args(labpics: Path, config_json: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(labpics), "--format", "labpics", "--config", str(config_json), "--out", str(out),
            "--batch-size", "1", "--max-objects", "2", "--correction-rounds", "1", "--rounds-without-click", "1",
            "--log-every", "1", "--tensorboard", "off", "--no-progress", "--lr", "1e-3", "--warmup", "1", *extra]


def test_make_synthetic_labpics(labpics):
    assert len(LabPicsDataset(labpics, "Train")) == 4
    test = LabPicsDataset(labpics, "Test")
    assert len(test) == 2 and test[0].image.shape == (48, 64, 3)


def test_train_writes_a_run(labpics, config_json, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(labpics, config_json, out, "--steps", "2", "--ckpt-every", "1", "--val-split", "Test",
                            "--val-clicks", "2", "--train-parts", "mask_decoder,prompt_encoder",
                            "--part-lr", "prompt_encoder=0.5")) == 0
    text = capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["train"]["part_lr_scale"] == [["prompt_encoder", 0.5]]
    assert "random weights" in text and "validation: mIoU@1" in text
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000001.pt", "step_0000002.pt"]
    model = samkit.build_model(checkpoint=out / "final.pt")
    assert model.cfg == TINY
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss", "lr", "val_mIoU@1", "val_NoC@85"} <= set(header)
    # continue the same run from a checkpoint: LoRA fine-tuning of the trained model
    lora_out = tmp_path / "lora"
    args = _train_args(labpics, config_json, lora_out, "--steps", "1", "--lora-rank", "2")
    args[args.index("--config") : args.index("--config") + 2] = ["--checkpoint", str(out / "final.pt")]
    assert main(args) == 0
    sd, _ = read_checkpoint(lora_out / "final.pt")
    assert list(sd) == list(model.state_dict())  # adapters merged: plain keys


def test_train_reports_user_errors(labpics, config_json, tmp_path, capsys):
    assert main(_train_args(tmp_path / "nowhere", config_json, tmp_path / "r", "--steps", "1")) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_train_args(labpics, config_json, tmp_path / "r", "--train-parts", "decoder"))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(_train_args(labpics, config_json, tmp_path / "r", "--part-lr", "image_encoder=fast"))
    assert "--part-lr takes PART=FACTOR" in capsys.readouterr().err


def test_killed_cli_run_resumes_exactly(labpics, config_json, tmp_path):
    steps = ["--steps", "8", "--ckpt-every", "2", "--seed", "3"]
    whole = tmp_path / "whole"
    assert main(_train_args(labpics, config_json, whole, *steps)) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "samkit.cli", *_train_args(labpics, config_json, killed, *steps)]
    log = tmp_path / "killed.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        state = killed / "train_state.pt"
        deadline = time.time() + 600
        while not state.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up, no final save: as a crash would
        proc.wait()
    assert state.exists(), "the run wrote no training state before it was killed:\n" + log.read_text()[-2000:]
    at = torch.load(state, weights_only=True)["step"]
    if at >= 8:
        pytest.skip("the run finished before it could be killed")
    assert main(_train_args(labpics, config_json, killed, *steps, "--resume")) == 0
    a, _ = read_checkpoint(whole / "final.pt")
    b, _ = read_checkpoint(killed / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), f"resumed from step {at}"


# --- which weights a run starts from, and the fine-tuning recipe on the command line


def _parse(*argv: str):
    from samkit.cli.main import build_parser

    return build_parser().parse_args(list(argv))


def test_train_says_which_weights_it_starts_from(config_json, tmp_path):
    from samkit.cli.train import start_model
    from samkit.errors import ConfigError

    _, line = start_model(_parse("train", "--out", str(tmp_path)), "cpu", 0)
    assert line.startswith("samkit_nano (weights shipped with samkit: samkit_nano.safetensors, trained on generated")
    assert "--model sam2.1_hiera_tiny --pretrained" in line  # the hint names options samkit train has
    _, line = start_model(_parse("train", "--out", str(tmp_path), "--model", "sam2.1_hiera_t"), "cpu", 0)
    assert line.startswith("sam2.1_hiera_tiny with RANDOM weights (none ship for it)")
    _, line = start_model(_parse("train", "--out", str(tmp_path), "--config", str(config_json)), "cpu", 0)
    assert line == f"cli_train_tiny (config {config_json}) with random weights (a new model; --checkpoint FILE " \
                   "loads trained weights into it)"
    with pytest.raises(ConfigError, match="--pretrained names the weights of a registered --model"):
        start_model(_parse("train", "--out", str(tmp_path), "--config", str(config_json), "--pretrained"), "cpu", 0)


def test_finetune_recipe_settings_and_the_options_that_replace_them(tmp_path):
    from samkit.cli.train import train_config
    from samkit.train import TrainConfig
    from samkit.train.recipes import FINETUNE

    base = ["train", "--format", "labpics", "--data", "x", "--out", str(tmp_path)]
    args = _parse(*base, "--recipe", "finetune", "--steps", "7", "--lr", "1e-3", "--correction-rounds", "2")
    cfg = train_config(args, FINETUNE.train)
    assert (cfg.steps, cfg.lr, cfg.clicks.num_correction_rounds) == (7, 1e-3, 2)
    # everything not given is the recipe's
    assert cfg.loss_weights == FINETUNE.train.loss_weights and cfg.train_parts == FINETUNE.train.train_parts
    assert cfg.clicks.prob_center_point == FINETUNE.train.clicks.prob_center_point and cfg.val_at_start
    # without a recipe: TrainConfig's defaults (SAM's), which --help shows first
    plain = train_config(_parse(*base), TrainConfig())
    assert plain == TrainConfig(precision="auto", tensorboard=None)
    assert train_config(_parse(*base, "--lora-rank", "2"), TrainConfig()).train_parts == ()
    assert train_config(_parse(*base, "--no-val-at-start"), FINETUNE.train).val_at_start is False


def test_train_help_shows_both_defaults(capsys):
    from samkit.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "optimizer steps (default: 1000; --recipe finetune: 300)" in text
    assert "(default: 20,1,1,1; --recipe finetune: 1,1,1,1)" in text
    assert "(default: off; --recipe finetune: on)" in text


def test_whole_run_recipe_refuses_training_options(tmp_path, capsys):
    assert main(["train", "--recipe", "nano", "--out", str(tmp_path), "--steps", "3", "--format", "labpics"]) == 2
    err = capsys.readouterr().err
    assert "--recipe nano is a whole run" in err and "not --format, --steps" in err and "--recipe finetune" in err


def test_finetune_recipe_run_validates_the_starting_weights(labpics, config_json, tmp_path, capsys):
    """``--recipe finetune`` with a few options replaced: the recipe's settings in config.json, the
    starting weights validated as metrics.csv's row 0, before -> after printed, the curves drawn."""
    out = tmp_path / "run"
    assert main(["train", "--recipe", "finetune", "--data", str(labpics), "--format", "labpics", "--config",
                 str(config_json), "--out", str(out), "--val-split", "Test", "--val-clicks", "2", "--steps", "2",
                 "--batch-size", "1", "--max-objects", "2", "--log-every", "1", "--tensorboard", "off",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "settings: recipe finetune (" in text and "replaced from the command line: --steps, --batch-size" in text
    assert "validation (step 0 -> 2): mIoU@1 " in text and " -> " in text.split("validation (step 0 -> 2):")[1]
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["lr"] == 3e-4 and saved["steps"] == 2 and saved["val_at_start"] is True
    rows = (out / "metrics.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    assert first[0] == "0" and first[header.index("loss")] == "" and first[header.index("val_mIoU@1")] != ""
    pytest.importorskip("matplotlib")
    assert (out / "training_curves.png").stat().st_size > 1000


def test_eval_says_which_weights_each_model_has(labpics, config_json, tmp_path, capsys):
    ckpt = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    samkit.save_checkpoint(samkit.build_model(TINY), ckpt)
    assert main(["eval", "--data", str(labpics), "--format", "labpics", "--checkpoint", str(ckpt), "--model",
                 "samkit_nano", "--label", "tuned,shipped", "--max-clicks", "1", "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"model tuned: cli_train_tiny from {ckpt}" in text
    assert "model shipped: samkit_nano (weights shipped with samkit: samkit_nano.safetensors, trained" in text
