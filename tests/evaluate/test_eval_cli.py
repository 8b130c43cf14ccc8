"""``samkit eval``: two checkpoints compared on a tiny LabPics-layout set."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch

import samkit
from samkit.cli.main import main
from samkit.configs import ModelConfig
from samkit.data import write_synthetic_labpics
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig

TINY = ModelConfig(name="cli_eval_tiny", image_size=64,
                   hiera=HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                     window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2)),
                   neck=NeckConfig(d_model=64), memory=MemoryConfig(d_model=64, num_layers=1, dim_feedforward=64),
                   decoder_mlp_dim=128)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_synthetic_labpics(root / "lab", 1, 2, size=(40, 56), seed=1)
    ckpts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ckpts.append(samkit.save_checkpoint(samkit.build_model(TINY), root / f"model{seed}.pt"))
    return root, ckpts


def test_eval_two_checkpoints(setup, tmp_path, capsys):
    root, (a, b) = setup
    out = tmp_path / "report"
    code = main(["eval", "--data", str(root / "lab"), "--format", "labpics", "--checkpoint", str(a),
                 "--checkpoint", str(b), "--label", "first", "--label", "second", "--out", str(out),
                 "--max-clicks", "3", "--no-progress", "--name", "synth"])
    assert code == 0
    text = capsys.readouterr().out
    assert "first" in text and "second" in text and "NoC@85" in text
    with (out / "synth_summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["first", "second"]
    assert float(rows[0]["mIoU@1"]) >= 0 and rows[0]["mIoU@5"] == ""  # beyond 3 clicks: no value
    summary = json.loads((out / "synth_summary.json").read_text())
    assert len(summary["models"]["first"]["curve"]) == 3
    assert (out / "synth_first_objects.csv").is_file() and (out / "synth_second_objects.csv").is_file()
    if importlib.util.find_spec("matplotlib"):
        assert (out / "synth_miou_vs_clicks.png").is_file()


def test_eval_user_errors(setup, tmp_path, capsys):
    root, (a, _) = setup
    assert main(["eval", "--data", str(root / "lab"), "--format", "labpics", "--checkpoint", str(a),
                 "--label", "x", "--label", "y", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--label" in capsys.readouterr().err
    assert main(["eval", "--data", str(root / "nothing"), "--format", "labpics", "--checkpoint", str(a),
                 "--out", str(tmp_path), "--no-progress"]) == 2


def test_label_repeated_or_comma_separated(setup, tmp_path, capsys):
    """--label names the models, repeated per model or comma-separated (or both), in order."""
    import argparse

    from samkit.cli.evaluate import _labels, label_names
    from samkit.errors import ConfigError

    assert label_names(["a,b", "c"]) == ["a", "b", "c"] and label_names(["x , y"]) == ["x", "y"]
    assert label_names(None) == []
    with pytest.raises(ConfigError, match="empty name"):
        label_names(["a,,b"])
    ns = argparse.Namespace(checkpoint=["one.pt", "two.pt"], model=["samkit_nano"], label=["p,q", "r"])
    assert [label for _, _, label in _labels(ns)] == ["p", "q", "r"]
    ns.label = ["p,q"]
    with pytest.raises(ConfigError, match="names 2 models .* but 3 are evaluated"):
        _labels(ns)

    root, (a, b) = setup
    out = tmp_path / "report"
    assert main(["eval", "--data", str(root / "lab"), "--format", "labpics", "--checkpoint", str(a),
                 "--checkpoint", str(b), "--label", "base,tuned", "--out", str(out), "--max-clicks", "1",
                 "--max-samples", "1", "--no-progress", "--name", "synth"]) == 0
    with (out / "synth_summary.csv").open() as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == ["base", "tuned"]
