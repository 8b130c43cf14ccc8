"""Parity of samkit's memory attention and memory encoder with the official sam2 modules.

The oracle's modules are built directly with the settings of the official configs, every
parameter is perturbed with a fixed seed (the default inits leave norms at one, biases at zero
and the ConvNeXt layer scale at 1e-6, which would hide mistakes), the weights are loaded
strictly into samkit's modules, and the outputs are compared in eval mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("sam2")
pytestmark = pytest.mark.parity

from sam2.modeling import memory_attention as o_attn  # noqa: E402
from sam2.modeling import memory_encoder as o_enc  # noqa: E402
from sam2.modeling.position_encoding import PositionEmbeddingSine  # noqa: E402
from sam2.modeling.sam.transformer import RoPEAttention as OracleRoPEAttention  # noqa: E402

from samkit.model.memory import (  # noqa: E402
    MemoryConfig,
    build_memory_attention,
    build_memory_encoder,
)

TOL = 1e-4
OFFICIAL_CONFIGS = [f"configs/{v}/{v}_hiera_{s}.yaml" for v in ("sam2", "sam2.1")
                    for s in ("t", "s", "b+", "l")]


# --- oracle construction ---------------------------------------------------------------------


def oracle_memory_attention(cfg: MemoryConfig) -> nn.Module:
    def rope(cross: bool) -> nn.Module:
        return OracleRoPEAttention(
            embedding_dim=cfg.d_model, num_heads=cfg.num_heads, downsample_rate=1,
            dropout=cfg.dropout, kv_in_dim=cfg.mem_dim if cross else None,
            rope_theta=cfg.rope_theta, rope_k_repeat=cross, feat_sizes=list(cfg.feat_sizes))

    layer = o_attn.MemoryAttentionLayer(
        activation=cfg.activation, cross_attention=rope(True), d_model=cfg.d_model,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout,
        pos_enc_at_attn=cfg.pos_enc_at_attn,
        pos_enc_at_cross_attn_keys=cfg.pos_enc_at_cross_attn_keys,
        pos_enc_at_cross_attn_queries=cfg.pos_enc_at_cross_attn_queries,
        self_attention=rope(False))
    return o_attn.MemoryAttention(d_model=cfg.d_model, pos_enc_at_input=cfg.pos_enc_at_input,
                                  layer=layer, num_layers=cfg.num_layers)


def oracle_memory_encoder(cfg: MemoryConfig) -> nn.Module:
    block = o_enc.CXBlock(dim=cfg.d_model, kernel_size=cfg.cx_kernel_size, padding=cfg.cx_padding,
                          layer_scale_init_value=cfg.layer_scale_init, use_dwconv=cfg.use_dwconv)
    return o_enc.MemoryEncoder(
        out_dim=cfg.mem_dim,
        mask_downsampler=o_enc.MaskDownSampler(
            embed_dim=cfg.d_model, kernel_size=cfg.mask_kernel_size, stride=cfg.mask_stride,
            padding=cfg.mask_padding, total_stride=cfg.mask_total_stride),
        fuser=o_enc.Fuser(block, num_layers=cfg.fuser_layers),
        position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.mem_dim, normalize=True,
                                                scale=None, temperature=cfg.pos_temperature),
        in_dim=cfg.d_model)


@torch.no_grad()
def perturb(module: nn.Module, seed: int) -> nn.Module:
    """Move every parameter away from its init: 1-D ones (norms, biases, layer scale) by
    additive noise, matrices and kernels by multiplicative noise."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        noise = torch.randn(p.shape, generator=gen)
        if p.ndim <= 1:
            p.add_(0.2 * noise)
        else:
            p.mul_(1 + 0.2 * noise)
    return module.eval()


def paired(build_ours, build_oracle, cfg: MemoryConfig, seed: int = 0):
    """(ours, oracle) with identical, perturbed weights loaded strictly oracle -> ours."""
    torch.manual_seed(seed)
    oracle = perturb(build_oracle(cfg), seed + 1)
    ours = build_ours(cfg).eval()
    ours.load_state_dict(oracle.state_dict(), strict=True)
    return ours, oracle


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def attention_inputs(cfg: MemoryConfig, side: int, frames: int, ptrs: int, batch: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    hw, m = side * side, frames * side * side + ptrs
    return dict(
        curr=torch.randn(hw, batch, cfg.d_model, generator=gen),
        memory=torch.randn(m, batch, cfg.mem_dim, generator=gen),
        curr_pos=torch.randn(hw, batch, cfg.d_model, generator=gen),
        memory_pos=torch.randn(m, batch, cfg.mem_dim, generator=gen),
        num_obj_ptr_tokens=ptrs,
    )


# --- state dict names -------------------------------------------------------------------------


@pytest.mark.parametrize("config_file", OFFICIAL_CONFIGS)
def test_state_dict_matches_official_config(config_file: str) -> None:
    """Keys and shapes equal those the official yaml builds, for every released model."""
    from hydra import compose
    from hydra.utils import instantiate

    model_cfg = compose(config_name=config_file).model
    cfg = MemoryConfig()
    for name, ours in (("memory_attention", build_memory_attention(cfg)),
                       ("memory_encoder", build_memory_encoder(cfg))):
        theirs = instantiate(model_cfg[name], _recursive_=True)
        want = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert got == want, name


def test_state_dict_loads_both_ways_and_agrees() -> None:
    """samkit weights load strictly into the oracle and give the same output."""
    cfg = MemoryConfig()
    torch.manual_seed(0)
    ours = perturb(build_memory_attention(cfg), 5)
    theirs = oracle_memory_attention(cfg).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = attention_inputs(cfg, side=8, frames=2, ptrs=4, batch=2, seed=3)
    with torch.no_grad():
        assert max_diff(ours(**x), theirs(**x)) <= TOL

    ours_enc = perturb(build_memory_encoder(cfg), 6)
    theirs_enc = oracle_memory_encoder(cfg).eval()
    theirs_enc.load_state_dict(ours_enc.state_dict(), strict=True)
    pix, mask = torch.randn(1, 256, 8, 8), torch.randn(1, 1, 128, 128)
    with torch.no_grad():
        feat, pos = ours_enc(pix, mask)
        out = theirs_enc(pix, mask)
    assert max_diff(feat, out["vision_features"]) <= TOL
    assert max_diff(pos, out["vision_pos_enc"][0]) <= TOL


# --- memory attention -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "side, frames, ptrs, batch",
    [
        pytest.param(32, 3, 16, 2, id="32x32-3frames-16ptrs"),
        pytest.param(32, 2, 0, 2, id="32x32-2frames-0ptrs"),
        pytest.param(32, 1, 4, 1, id="32x32-1frame-4ptrs-b1"),
        pytest.param(32, 0, 8, 2, id="32x32-ptrs-only"),
        pytest.param(64, 2, 16, 2, id="64x64-2frames-16ptrs"),  # the real grid, ~4 s
    ],
)
def test_memory_attention_parity(side: int, frames: int, ptrs: int, batch: int) -> None:
    cfg = MemoryConfig()
    ours, oracle = paired(build_memory_attention, oracle_memory_attention, cfg)
    x = attention_inputs(cfg, side, frames, ptrs, batch, seed=side + frames + ptrs)
    with torch.no_grad():
        got, want = ours(**x), oracle(**x)
    assert got.shape == (side * side, batch, cfg.d_model)
    assert max_diff(got, want) <= TOL


def test_memory_attention_parity_other_flags() -> None:
    """Position encodings at self-attention and cross-attention queries, no input pos, two heads."""
    cfg = MemoryConfig(num_heads=2, pos_enc_at_input=False, pos_enc_at_attn=True,
                       pos_enc_at_cross_attn_queries=True, pos_enc_at_cross_attn_keys=False,
                       activation="gelu", num_layers=2)
    ours, oracle = paired(build_memory_attention, oracle_memory_attention, cfg, seed=7)
    x = attention_inputs(cfg, side=16, frames=3, ptrs=5, batch=2, seed=11)
    with torch.no_grad():
        assert max_diff(ours(**x), oracle(**x)) <= TOL


# --- memory encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", [64, 32])
@pytest.mark.parametrize("skip_mask_sigmoid", [False, True])
def test_memory_encoder_parity(side: int, skip_mask_sigmoid: bool) -> None:
    cfg = MemoryConfig()
    ours, oracle = paired(build_memory_encoder, oracle_memory_encoder, cfg, seed=2)
    gen = torch.Generator().manual_seed(side)
    pix = torch.randn(2, cfg.d_model, side, side, generator=gen)
    size = side * cfg.mask_total_stride
    masks = (torch.rand(2, 1, size, size, generator=gen) if skip_mask_sigmoid
             else 8 * torch.randn(2, 1, size, size, generator=gen))
    with torch.no_grad():
        feat, pos = ours(pix, masks, skip_mask_sigmoid=skip_mask_sigmoid)
        out = oracle(pix, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    assert feat.shape == pos.shape == (2, cfg.mem_dim, side, side)
    assert max_diff(feat, out["vision_features"]) <= TOL
    assert max_diff(pos, out["vision_pos_enc"][0]) <= TOL


# --- behaviour beyond parity ------------------------------------------------------------------


def test_training_mode_backward_small() -> None:
    """Dropout active, gradients reach every parameter (a narrow config keeps it fast)."""
    cfg = MemoryConfig(d_model=32, mem_dim=16, dim_feedforward=64, num_layers=2, num_heads=2)
    attn, enc = build_memory_attention(cfg).train(), build_memory_encoder(cfg).train()
    feat, pos = enc(torch.randn(2, 32, 8, 8), torch.randn(2, 1, 128, 128))
    mem = feat.flatten(2).permute(2, 0, 1)  # HW x B x C_mem
    mem_pos = pos.flatten(2).permute(2, 0, 1)
    ptrs = torch.randn(4, 2, 16)
    out = attn(torch.randn(64, 2, 32), torch.cat([mem, ptrs]), torch.randn(64, 2, 32),
               torch.cat([mem_pos, torch.zeros_like(ptrs)]), num_obj_ptr_tokens=4)
    out.square().mean().backward()
    for name, p in [*attn.named_parameters(), *enc.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_positions_optional() -> None:
    cfg = MemoryConfig(d_model=32, mem_dim=16, dim_feedforward=64, num_layers=1)
    attn = build_memory_attention(cfg).eval()
    out = attn(torch.randn(16, 1, 32), torch.randn(32, 1, 16))
    assert out.shape == (16, 1, 32)


@pytest.mark.parametrize(
    "curr_shape, memory_shape, ptrs, match",
    [
        ((15, 1, 32), (30, 1, 16), 0, "square grid"),
        ((16, 1, 32), (20, 1, 16), 0, "not a multiple"),
        ((16, 1, 32), (36, 1, 16), 2, "not a multiple"),
        ((16, 1, 32), (32, 1, 16), 40, "outside"),
        ((16, 2, 32), (32, 1, 16), 0, "batch size"),
        ((16, 1, 31), (32, 1, 16), 0, "HW x B x 32"),
        ((1, 16, 32), (32, 1, 16), 0, "batch size"),  # batch-first by mistake
    ],
)
def test_memory_attention_rejects_bad_shapes(curr_shape, memory_shape, ptrs, match) -> None:
    cfg = MemoryConfig(d_model=32, mem_dim=16, dim_feedforward=64, num_layers=1)
    attn = build_memory_attention(cfg)
    with pytest.raises(ValueError, match=match):
        attn(torch.randn(*curr_shape), torch.randn(*memory_shape), num_obj_ptr_tokens=ptrs)


def test_memory_encoder_rejects_bad_shapes() -> None:
    cfg = MemoryConfig(d_model=32, mem_dim=16)
    enc = build_memory_encoder(cfg)
    with pytest.raises(ValueError, match="feature size"):
        enc(torch.randn(1, 32, 8, 8), torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="B x 32 x h x w"):
        enc(torch.randn(1, 16, 8, 8), torch.randn(1, 1, 128, 128))
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        enc(torch.randn(1, 32, 8, 8), torch.randn(1, 128, 128))


def test_bad_mask_stride_is_a_config_error() -> None:
    from samkit.errors import ConfigError

    with pytest.raises(ConfigError, match="power of stride"):
        build_memory_encoder(MemoryConfig(mask_stride=3))
