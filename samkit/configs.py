"""The registry of model variants: one function per name returning its :class:`ModelConfig`.

A custom model is a few lines::

    from samkit.configs import ModelConfig, HieraConfig
    cfg = ModelConfig(name="my_small", image_size=512,
                      hiera=HieraConfig(embed_dim=64, num_heads=1, stages=(1, 1, 3, 1),
                                        global_att_blocks=(3, 5), window_pos_embed_bkg_spatial_size=(7, 7)))
    model = samkit.build_model(cfg)
"""

from __future__ import annotations

from typing import Callable

from samkit.errors import ConfigError
from samkit.model.config import HieraConfig, MemoryConfig, ModelConfig, NeckConfig

__all__ = ["ModelConfig", "HieraConfig", "MemoryConfig", "NeckConfig", "REGISTRY", "list_models", "canonical_name",
           "get_config", "samkit_nano"]


# The four trunks of the official releases.
_TRUNKS = {
    "tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
                        window_pos_embed_bkg_spatial_size=(7, 7)),
    "small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
                         window_pos_embed_bkg_spatial_size=(7, 7)),
    "base_plus": HieraConfig(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20)),
    "large": HieraConfig(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
                         window_spec=(8, 4, 16, 8), window_pos_embed_bkg_spatial_size=(7, 7)),
}

# SAM 2.0 differs from 2.1 only in how object pointers get temporal encodings and in the
# spatial no-object embedding.
_SAM2_0 = dict(no_obj_embed_spatial=False, add_tpos_enc_to_obj_ptrs=False,
               proj_tpos_enc_in_obj_ptrs=False, use_signed_tpos_enc_to_obj_ptrs=False)


def _official(version: str, size: str) -> Callable[[], ModelConfig]:
    def make() -> ModelConfig:
        extra = _SAM2_0 if version == "sam2" else {}
        return ModelConfig(name=f"{version}_hiera_{size}", hiera=_TRUNKS[size], **extra)
    return make


REGISTRY: dict[str, Callable[[], ModelConfig]] = {
    f"{v}_hiera_{s}": _official(v, s) for v in ("sam2", "sam2.1") for s in _TRUNKS
}


def samkit_nano() -> ModelConfig:
    """samkit's own small default model: the SAM 2.1 architecture at 256 px with a narrow
    4-stage Hiera (32 channels, 8 blocks), 128-wide decoder and a 2-layer memory attention;
    3.6 M parameters, about 15 ms per image embedding on a laptop CPU. Its weights ship with
    the package (see :mod:`samkit.weights`), trained by ``samkit train --recipe nano``."""
    return ModelConfig(
        name="samkit_nano", image_size=256,
        hiera=HieraConfig(embed_dim=32, num_heads=1, stages=(1, 2, 4, 1), global_att_blocks=(4, 6),
                          window_spec=(8, 8, 8, 8), window_pos_embed_bkg_spatial_size=(8, 8)),
        neck=NeckConfig(d_model=128),
        memory=MemoryConfig(d_model=128, num_layers=2, dim_feedforward=512, feat_sizes=(16, 16)),
        decoder_mlp_dim=512,
        # its masks rarely reach the official 0.8 / 0.95 (none survive them on the bundled photo;
        # 25 survive these with the demo's 24 x 24 points)
        automask_pred_iou_thresh=0.6, automask_stability_score_thresh=0.8)


REGISTRY["samkit_nano"] = samkit_nano

_SHORT = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}


def list_models() -> list[str]:
    """Names of every registered model variant."""
    return sorted(REGISTRY)


def canonical_name(name: str) -> str:
    """Resolve aliases: ``sam2.1_hiera_t`` / ``sam2.1_hiera_b+`` / ``sam2.1-hiera-tiny`` -> the
    registered name. Raises :class:`ConfigError` for an unknown name."""
    key = name.strip().replace("-", "_")
    if key.endswith(".pt") or key.endswith(".yaml"):
        key = key.rsplit(".", 1)[0]
    if key in REGISTRY:
        return key
    head, _, tail = key.rpartition("_")
    if tail in _SHORT and f"{head}_{_SHORT[tail]}" in REGISTRY:
        return f"{head}_{_SHORT[tail]}"
    if head == "sam2.1_hiera_b" and tail == "plus":
        return "sam2.1_hiera_base_plus"
    raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())} "
                      "(aliases t, s, b+, l accepted, e.g. 'sam2.1_hiera_t')")


def get_config(name: str) -> ModelConfig:
    """The configuration registered under ``name`` (aliases accepted)."""
    return REGISTRY[canonical_name(name)]()
