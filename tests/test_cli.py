"""The command line: real runs on small inputs, and the errors a user sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.cli import main
from samkit.configs import ModelConfig
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig

SMALL = ModelConfig(name="cli_small", image_size=256,
                    hiera=HieraConfig(embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                      window_pos_embed_bkg_spatial_size=(4, 4)),
                    memory=MemoryConfig(num_layers=1, dim_feedforward=128))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return samkit.save_checkpoint(samkit.build_model(SMALL), tmp_path_factory.mktemp("c") / "small.pt")


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)).save(path)
    return path


def test_models_lists_every_variant(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in samkit.list_models():
        assert name in out


def test_segment_writes_mask_and_overlay(tmp_path, photo, ckpt, capsys):
    out, ov = tmp_path / "mask.png", tmp_path / "overlay.png"
    rc = main(["segment", str(photo), "--checkpoint", str(ckpt), "--point", "40,30", "--point", "100,60,0",
               "--box", "10,10,120,80", "--out", str(out), "--overlay", str(ov)])
    assert rc == 0
    mask = np.array(Image.open(out))
    assert mask.shape == (90, 140) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(ov).size == (140, 90)
    assert "cli_small" in capsys.readouterr().out


def test_segment_errors(tmp_path, photo, ckpt, capsys):
    assert main(["segment", str(tmp_path / "missing.jpg"), "--checkpoint", str(ckpt), "--point", "1,1",
                 "--out", str(tmp_path / "m.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["segment", str(photo), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.png")]) == 2
    assert "--point" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", str(photo), "--point", "1", "--out", "x.png"])
    assert "X,Y" in capsys.readouterr().err
    assert main(["segment", str(photo), "--checkpoint", str(tmp_path / "no.pt"), "--point", "1,1",
                 "--out", str(tmp_path / "m.png")]) == 2
    assert "not found" in capsys.readouterr().err
