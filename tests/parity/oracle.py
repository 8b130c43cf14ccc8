"""Build the official SAM 2 package (the oracle) with random weights, for parity tests."""

from __future__ import annotations

import torch

from tests.helpers import randomize_

HYDRA_CONFIGS = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def build_oracle(name: str, seed: int = 0, video: bool = False, **kwargs):
    """The official model for ``name`` on the CPU, random weights perturbed with ``seed``."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    torch.manual_seed(seed)
    builder = build_sam2_video_predictor if video else build_sam2
    model = builder(HYDRA_CONFIGS[name], ckpt_path=None, device="cpu", **kwargs)
    randomize_(model, seed)
    return model.eval()


def oracle_overrides(cfg) -> list[str]:
    """Hydra overrides that make the official sam2.1 tiny config describe ``cfg`` (a samkit
    ``ModelConfig`` with the SAM 2.1 flags): trunk, neck widths, image size and memory sizes."""
    h, m = cfg.hiera, cfg.memory
    lst = lambda v: "[" + ",".join(str(x) for x in v) + "]"
    trunk = "++model.image_encoder.trunk."
    ma = "++model.memory_attention."
    return [
        f"++model.image_size={cfg.image_size}",
        f"{trunk}embed_dim={h.embed_dim}", f"{trunk}num_heads={h.num_heads}", f"{trunk}stages={lst(h.stages)}",
        f"{trunk}global_att_blocks={lst(h.global_att_blocks)}", f"{trunk}window_spec={lst(h.window_spec)}",
        f"{trunk}window_pos_embed_bkg_spatial_size={lst(h.window_pos_embed_bkg_spatial_size)}",
        f"++model.image_encoder.neck.backbone_channel_list={lst(h.channel_list)}",
        f"++model.image_encoder.neck.d_model={cfg.neck.d_model}",
        f"++model.image_encoder.neck.position_encoding.num_pos_feats={cfg.neck.d_model}",
        f"{ma}d_model={m.d_model}", f"{ma}layer.d_model={m.d_model}",
        f"{ma}layer.self_attention.embedding_dim={m.d_model}", f"{ma}layer.cross_attention.embedding_dim={m.d_model}",
        f"{ma}layer.cross_attention.kv_in_dim={m.mem_dim}",
        f"++model.memory_encoder.out_dim={m.mem_dim}", f"++model.memory_encoder.in_dim={m.d_model}",
        f"++model.memory_encoder.mask_downsampler.embed_dim={m.d_model}",
        f"++model.memory_encoder.fuser.layer.dim={m.d_model}",
        f"++model.memory_encoder.position_encoding.num_pos_feats={m.mem_dim}",
        f"{ma}num_layers={m.num_layers}", f"{ma}layer.dim_feedforward={m.dim_feedforward}",
        f"{ma}layer.self_attention.feat_sizes={lst([cfg.embedding_size] * 2)}",
        f"{ma}layer.cross_attention.feat_sizes={lst([cfg.embedding_size] * 2)}",
    ]


def build_oracle_like(cfg, state_dict=None, video: bool = False, **kwargs):
    """The official model with the same architecture as samkit's ``cfg`` (a custom, usually
    smaller config), optionally loaded with ``state_dict`` (strictly)."""
    import sam2.modeling.sam2_base as base
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    builder = build_sam2_video_predictor if video else build_sam2
    # the official SAM2Base hard-codes the decoder's MLP width (2048): build it with cfg's
    official = base.TwoWayTransformer
    base.TwoWayTransformer = lambda **kw: official(**{**kw, "mlp_dim": cfg.decoder_mlp_dim})
    try:
        model = builder(HYDRA_CONFIGS["sam2.1_hiera_tiny"], ckpt_path=None, device="cpu",
                        hydra_overrides_extra=oracle_overrides(cfg), **kwargs)
    finally:
        base.TwoWayTransformer = official
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def official_image_predictor(model, **kwargs):
    """The official SAM2ImagePredictor around ``model``, told the feature sizes of models whose
    input is not 1024 px (it assumes 1024)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model, **kwargs)
    e = model.image_size // 16
    predictor._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]
    return predictor


def build_oracle_for(name: str, seed: int = 0):
    """:func:`build_oracle` for the official variants; for samkit's own registered models
    (no official config), the official code built like them, with random weights."""
    if name in HYDRA_CONFIGS:
        return build_oracle(name, seed)
    from samkit.configs import get_config

    torch.manual_seed(seed)
    model = build_oracle_like(get_config(name))
    randomize_(model, seed)
    return model
