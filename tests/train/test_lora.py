"""LoRA adapters: base keys untouched, only adapters train, merged export equals the adapted model."""

from __future__ import annotations

import pytest
import torch

import samkit
from samkit.checkpoint import read_checkpoint
from samkit.errors import ConfigError
from samkit.model.sam2 import SAM2Model
from samkit.train.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    merged_copy,
    merged_state_dict,
)
from samkit.prompts import ClickConfig
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.train import Trainer, TrainConfig
from tests.train.test_trainer import _model, tiny_config  # the same tiny model as the trainer tests


def test_wrapping_keeps_base_keys_and_output():
    model = _model()
    base_keys = list(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model.forward_image(x).vision
    names = apply_lora(model, LoRAConfig(rank=2))
    n_blocks = len(model.image_encoder.trunk.blocks)
    assert len(names) == 2 * n_blocks
    assert all(n.startswith("image_encoder.trunk.blocks.") and n.endswith((".attn.qkv", ".attn.proj")) for n in names)
    sd = model.state_dict()
    lora_keys = [k for k in sd if k not in base_keys]
    assert [k for k in sd if k in base_keys] == base_keys  # same names, same order
    assert sorted(lora_keys) == sorted(f"{n}.{p}" for n in names for p in ("lora_a", "lora_b"))
    assert set(lora_state_dict(model)) == set(lora_keys)
    with torch.no_grad():
        after = model.forward_image(x).vision
    assert torch.equal(before, after)  # B starts at zero: the wrapped model computes the same
    with pytest.raises(ConfigError):
        apply_lora(model, LoRAConfig(rank=2, targets=("nothing",)))
    with pytest.raises(ConfigError):
        LoRAConfig(rank=0)


def test_merged_export_equals_adapted_forward(tmp_path):
    model = _model()
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        adapted = [f.clone() for f in model.forward_image(x).features]
    merged = merged_copy(model)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert any(isinstance(m, LoRALinear) for m in model.modules())  # the original keeps its adapters
    plain_keys = list(SAM2Model(tiny_config()).state_dict())
    assert list(merged.state_dict()) == plain_keys
    assert list(merged_state_dict(model)) == plain_keys
    with torch.no_grad():
        exported = merged.forward_image(x).features
    for a, b in zip(adapted, exported):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the exported file is a plain checkpoint: same keys as the base model, loads strictly
    path = samkit.save_checkpoint(merged, tmp_path / "merged.pt")
    sd, _ = read_checkpoint(path)
    assert list(sd) == plain_keys
    again = samkit.build_model(checkpoint=path)
    with torch.no_grad():
        torch.testing.assert_close(again.forward_image(x).vision, adapted[-1], rtol=1e-4, atol=1e-5)
    merge_lora(model)  # in place
    assert list(model.state_dict()) == plain_keys


def test_only_adapters_train(tmp_path):
    model = _model()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    data = SyntheticSceneDataset(2, size=(64, 64), seed=0, num_objects=(2, 4))
    cfg = TrainConfig(steps=2, batch_size=1, max_objects=2, lr=1e-2, warmup_steps=0, train_parts=(),
                      lora=LoRAConfig(rank=2), clicks=ClickConfig(num_correction_rounds=1, num_rounds_without_click=1),
                      tensorboard=False)
    trainer = Trainer(model, data, cfg, out_dir=tmp_path / "run", progress=False)
    assert {n.rsplit(".", 1)[-1] for n, _ in trainer.trainable} == {"lora_a", "lora_b"}
    trainer.train()
    sd = model.state_dict()
    for k, v in base.items():
        assert torch.equal(sd[k], v), k  # every base weight untouched
    assert any(float(m.lora_b.detach().abs().sum()) > 0 for m in model.modules() if isinstance(m, LoRALinear))
    # the final checkpoint is plain and carries the adapters merged in
    final_sd, _ = read_checkpoint(tmp_path / "run" / "final.pt")
    assert list(final_sd) == list(base)
    expected = merged_state_dict(model)
    assert all(torch.equal(final_sd[k], expected[k]) for k in final_sd)
    assert any(not torch.equal(final_sd[k], base[k]) for k in final_sd)
    adapters = torch.load(tmp_path / "run" / "lora_adapters.pt", weights_only=True)
    assert set(adapters["lora"]) == set(lora_state_dict(model)) and adapters["config"]["rank"] == 2
