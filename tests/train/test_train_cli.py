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
