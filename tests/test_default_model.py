"""The default model: which weights `build_model()` and the commands use, with and without
weights shipped in the package (both cases are simulated by replacing the lookup)."""

from __future__ import annotations

import warnings

import pytest
import torch

import samkit
import samkit.builder as builder
from samkit.builder import DEFAULT_MODEL
from samkit.configs import get_config
from samkit.errors import CheckpointNotFoundError, ConfigError
from samkit.weights import BUNDLED, bundled_checkpoint


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    """Pretend trained weights ship for samkit_nano: a file written here, found by the lookup."""
    torch.manual_seed(123)
    trained = samkit.build_model("samkit_nano", pretrained=False)
    path = samkit.save_checkpoint(trained, tmp_path / "samkit_nano.safetensors")
    monkeypatch.setattr(builder, "bundled_checkpoint", lambda name: path if name == "samkit_nano" else None)
    monkeypatch.setattr("samkit.weights.bundled_checkpoint", builder.bundled_checkpoint)
    return trained


def test_default_is_samkit_nano_and_fits_the_package_limit():
    assert DEFAULT_MODEL == "samkit_nano" and BUNDLED["samkit_nano"] == "samkit_nano.safetensors"
    model = samkit.build_model("samkit_nano", pretrained=False)
    size = sum(t.numel() * 4 for t in list(model.parameters()) + list(model.buffers()))
    assert size <= 25 * 1024 * 1024  # a float32 safetensors file of it stays under 25 MB


def test_shipped_weights_are_loaded_by_default(shipped):
    model = samkit.build_model()
    assert model.cfg == get_config("samkit_nano") and not model.training
    want = shipped.state_dict()
    assert all(torch.equal(model.state_dict()[k], want[k]) for k in want)
    named = samkit.build_model("samkit_nano")
    assert all(torch.equal(named.state_dict()[k], want[k]) for k in want)
    torch.manual_seed(0)
    fresh = samkit.build_model("samkit_nano", pretrained=False)
    key = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    assert not torch.equal(fresh.state_dict()[key], want[key])


def test_cli_says_which_weights_it_uses(shipped, capsys):
    import argparse

    from samkit.cli import load_model

    load_model(argparse.Namespace(checkpoint=None, model=None, device="cpu"))
    assert "samkit_nano (weights shipped with samkit" in capsys.readouterr().out
    load_model(argparse.Namespace(checkpoint=None, model="sam2.1_hiera_t", device="cpu"))
    assert "sam2.1_hiera_tiny with RANDOM weights" in capsys.readouterr().out


def test_without_shipped_weights_the_default_warns_and_is_random(monkeypatch):
    # a build of the package without the weights file (the lookup finds nothing)
    monkeypatch.setattr(builder, "bundled_checkpoint", lambda name: None)
    with pytest.warns(UserWarning, match="no trained weights ship with samkit for the default model"):
        samkit.build_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samkit.build_model("samkit_nano")  # a named model: random weights without a warning, as for every variant
    with pytest.raises(CheckpointNotFoundError, match="no weights ship with samkit for 'samkit_nano'"):
        samkit.build_model("samkit_nano", pretrained=True)


def test_errors_and_explicit_checkpoints(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no weights ship with samkit for 'sam2.1_hiera_tiny'"):
        samkit.build_model("sam2.1_hiera_t", pretrained=True)
    with pytest.raises(ConfigError, match="registered model name"):
        samkit.build_model(get_config("samkit_nano"), pretrained=True)
    torch.manual_seed(1)
    tiny = samkit.build_model("sam2.1_hiera_tiny")
    path = samkit.save_checkpoint(tiny, tmp_path / "t.pt")
    assert samkit.build_model(checkpoint=path).cfg.name == "sam2.1_hiera_tiny"  # still detected from the file
