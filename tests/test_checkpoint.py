"""Checkpoint loading/saving: formats, variant detection, and the errors users see."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import samkit
from samkit.checkpoint import detect_variant, read_checkpoint
from samkit.configs import ModelConfig
from samkit.errors import CheckpointError, CheckpointNotFoundError, ConfigError, UnsafeCheckpointError
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig

TINY = "sam2.1_hiera_tiny"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return samkit.build_model(TINY)


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory, tiny):
    """An official-layout file: {"model": state_dict} only."""
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny.state_dict()}, path)
    return path


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_layout_loads_and_variant_is_detected(tiny, tiny_pt):
    model = samkit.build_model(checkpoint=tiny_pt)
    assert model.cfg.name == TINY
    assert _same_weights(model, tiny)


def test_names_and_aliases():
    names = samkit.list_models()
    for v in ("sam2", "sam2.1"):
        for s in ("tiny", "small", "base_plus", "large"):
            assert f"{v}_hiera_{s}" in names
    from samkit.configs import canonical_name

    assert canonical_name("sam2.1_hiera_t") == "sam2.1_hiera_tiny"
    assert canonical_name("sam2_hiera_b+") == "sam2_hiera_base_plus"
    assert canonical_name("sam2.1_hiera_l") == "sam2.1_hiera_large"
    with pytest.raises(ConfigError, match="known models"):
        samkit.build_model("sam3_hiera_huge")


@pytest.mark.parametrize("name", ["sam2_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2_hiera_large"])
def test_detect_variant_from_keys_and_shapes(name):
    model = samkit.build_model(name)
    assert detect_variant(model.state_dict()) == name


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_load_round_trip(tmp_path, tiny, suffix):
    path = samkit.save_checkpoint(tiny, tmp_path / f"m{suffix}")
    assert _same_weights(samkit.build_model(checkpoint=path), tiny)
    assert _same_weights(samkit.build_model(TINY, checkpoint=path), tiny)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp file left


def test_safetensors_interoperates_with_the_library(tmp_path, tiny):
    st = pytest.importorskip("safetensors.torch")
    ours = samkit.save_checkpoint(tiny, tmp_path / "ours.safetensors")
    loaded = st.load_file(str(ours))
    assert all(torch.equal(loaded[k], v) for k, v in tiny.state_dict().items())
    theirs = tmp_path / "theirs.safetensors"
    st.save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(theirs))
    assert _same_weights(samkit.build_model(checkpoint=theirs), tiny)


def test_custom_config_round_trip(tmp_path):
    cfg = ModelConfig(name="custom_small", image_size=256,
                      hiera=HieraConfig(embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                        window_pos_embed_bkg_spatial_size=(4, 4)),
                      memory=MemoryConfig(num_layers=1, dim_feedforward=256))
    model = samkit.build_model(cfg)
    path = samkit.save_checkpoint(model, tmp_path / "custom.pt")
    again = samkit.build_model(checkpoint=path)
    assert again.cfg == cfg and _same_weights(again, model)
    path2 = samkit.save_checkpoint(model, tmp_path / "custom.safetensors")
    assert samkit.build_model(checkpoint=path2).cfg == cfg


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        samkit.build_model(checkpoint=tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("these are my notes, not weights\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        samkit.build_model(checkpoint=p)
    p2 = tmp_path / "list.pt"
    torch.save([1, 2, 3], p2)
    with pytest.raises(CheckpointError, match="no model weights"):
        samkit.build_model(checkpoint=p2)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file(tmp_path, tiny, suffix):
    full = samkit.save_checkpoint(tiny, tmp_path / f"full{suffix}")
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        samkit.build_model(checkpoint=cut)


def test_wrong_variant_names_the_variant(tmp_path):
    small = samkit.build_model("sam2.1_hiera_small")
    path = tmp_path / "small.pt"
    torch.save({"model": small.state_dict()}, path)
    with pytest.raises(CheckpointError, match="sam2.1_hiera_small"):
        samkit.build_model(TINY, checkpoint=path)
    v20 = tmp_path / "v20.pt"
    torch.save({"model": samkit.build_model("sam2_hiera_tiny").state_dict()}, v20)
    with pytest.raises(CheckpointError, match="sam2_hiera_tiny"):
        samkit.build_model(TINY, checkpoint=v20)


def test_sam1_checkpoint_is_recognised(tmp_path):
    sd = {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
          "image_encoder.blocks.0.attn.rel_pos_h": torch.zeros(27, 64),
          "prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 256),
          "mask_decoder.iou_token.weight": torch.zeros(1, 256)}
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="SAM 1"):
        samkit.build_model(checkpoint=path)
    with pytest.raises(CheckpointError, match="SAM 1"):
        samkit.build_model(TINY, checkpoint=path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="nothing was run"):
        samkit.build_model(checkpoint=path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    legacy = tmp_path / "evil_legacy.pt"
    with open(legacy, "wb") as f:
        pickle.dump({"model": _Evil()}, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(legacy)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_partial_state_dict_lists_missing_keys(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    sd.pop("no_mem_embed")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match="missing.*no_mem_embed.*unexpected.*extra.weight"):
        samkit.build_model(TINY, checkpoint=path)
