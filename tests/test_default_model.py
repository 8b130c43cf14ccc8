"""The default model: which weights `build_model()` and the commands use, with and without
weights shipped in the package (both cases are simulated by replacing the lookup)."""

from __future__ import annotations

import socket
import warnings

import pytest
import torch

import samkit
import samkit.builder as builder
from samkit.builder import DEFAULT_MODEL
from samkit.configs import get_config
from samkit.errors import CheckpointNotFoundError, ConfigError, DownloadError
from samkit.weights import BUNDLED, bundled_checkpoint

HELD_OUT_SEED = 1_000_003  # `samkit eval --format synthetic` (Test split, seed 0): scenes the recipe never trains on


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


def test_load_model_says_which_weights_it_uses(shipped):
    model, description = builder.load_model()
    assert "samkit_nano (weights shipped with samkit" in description
    want = shipped.state_dict()
    assert all(torch.equal(model.state_dict()[k], want[k]) for k in want)
    _, description = builder.load_model("sam2.1_hiera_t")
    assert "sam2.1_hiera_tiny with RANDOM weights" in description


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


def test_errors_and_explicit_checkpoints(tmp_path, monkeypatch):
    # pretrained=True for an official variant downloads it (tests/test_weights.py): here from a closed
    # loopback port, so it fails at once without touching the network
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SAMKIT_WEIGHTS_URL", f"http://127.0.0.1:{port}")
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DownloadError, match="could not download sam2.1_hiera_tiny from http://127.0.0.1:"):
        samkit.build_model("sam2.1_hiera_t", pretrained=True)
    with pytest.raises(ConfigError, match="registered model name"):
        samkit.build_model(get_config("samkit_nano"), pretrained=True)
    torch.manual_seed(1)
    tiny = samkit.build_model("sam2.1_hiera_tiny")
    path = samkit.save_checkpoint(tiny, tmp_path / "t.pt")
    assert samkit.build_model(checkpoint=path).cfg.name == "sam2.1_hiera_tiny"  # still detected from the file


def test_the_package_ships_trained_weights_that_segment_held_out_scenes():
    """The weights in the package are the trained default model: on generated scenes it never
    saw (the first 12 of the README's 100 held-out scenes), one click gives masks far better
    than random weights of the same model do."""
    from samkit.evaluate.interactive import evaluate_interactive
    from samkit.data.synthetic.scenes import SyntheticSceneDataset
    from samkit.data.synthetic.textures import dependency_photos

    assert bundled_checkpoint("samkit_nano") is not None, "samkit/weights/samkit_nano.safetensors is missing"
    scenes = SyntheticSceneDataset(12, seed=HELD_OUT_SEED, photos=dependency_photos(), num_objects=(1, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shipped weights: no random-weights warning
        trained = samkit.build_model()
    torch.manual_seed(0)
    untrained = samkit.build_model("samkit_nano", pretrained=False)
    kw = dict(max_clicks=3, min_area=400, progress=False)
    ours, rand = evaluate_interactive(trained, scenes, **kw), evaluate_interactive(untrained, scenes, **kw)
    assert ours["num_objects"] >= 25
    # measured: 0.70 / 0.83 on these 39 objects (README: 0.72 / 0.81 on all 100 scenes); random weights 0.06
    assert ours["mIoU@1"] >= 0.6 and ours["mIoU@3"] >= 0.65, ours
    assert rand["mIoU@1"] < 0.2, rand


def test_the_shipped_weights_track_held_out_clips():
    """The memory modules in the shipped file work: objects clicked once on frame 0 of
    generated clips it never saw (the first 3 of the README's 10 held-out clips, 24 frames)
    are followed, far better than by random weights of the same model."""
    from samkit.evaluate.tracking import evaluate_tracking
    from samkit.data.synthetic.clips import make_clip

    clips = [make_clip(24, 256, 256, 3, seed=10_000 + i) for i in range(3)]
    trained = samkit.build_model()
    torch.manual_seed(0)
    untrained = samkit.build_model("samkit_nano", pretrained=False)
    ours, rand = evaluate_tracking(trained, clips, progress=False), evaluate_tracking(untrained, clips, progress=False)
    assert ours["num_objects"] == 9
    # measured: 0.77 over these 207 object-frames (README: 0.70 over 10 clips x 50 frames); random weights 0.0
    assert ours["mIoU"] >= 0.6, ours["mIoU"]
    assert rand["mIoU"] < 0.2, rand["mIoU"]
