"""Model configurations: one dataclass per model variant, and the registry of names.

A custom model is a few lines::

    from samkit.configs import ModelConfig, HieraConfig
    cfg = ModelConfig(name="my_small", image_size=512,
                      hiera=HieraConfig(embed_dim=64, num_heads=1, stages=(1, 1, 3, 1),
                                        global_att_blocks=(3, 5), window_pos_embed_bkg_spatial_size=(7, 7)))
    model = samkit.build_model(cfg)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from samkit.errors import ConfigError
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a SAM 2 network. Defaults are the SAM 2.1 tiny settings as
    the official image builder produces them (post-processing on)."""

    name: str
    hiera: HieraConfig = field(default_factory=HieraConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    image_size: int = 1024                  # side of the square model input
    backbone_stride: int = 16               # image size / side of the coarsest feature map
    mask_in_chans: int = 16                 # hidden width of the prompt encoder's mask path
    decoder_depth: int = 2                  # two-way transformer layers
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    # --- SAM heads
    use_high_res_features_in_sam: bool = True   # skip connections from the 4x and 8x maps
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True                # object-present score head
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    dynamic_multimask_via_stability: bool = True    # single-mask output falls back when unstable
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    multimask_output_in_sam: bool = True        # 3 masks on the first click of a conditioning frame
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    # --- memory (video)
    num_maskmem: int = 7                         # current frame + 6 past frames
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = False  # the video predictor turns this on
    use_mask_input_as_output_without_sam: bool = True
    max_cond_frames_in_attn: int = -1
    directly_add_no_mem_embed: bool = True
    non_overlap_masks_for_mem_enc: bool = False
    memory_temporal_stride_for_eval: int = 1
    fill_hole_area: int = 0                       # the video predictor uses 8
    # --- object pointers
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    no_obj_embed_spatial: bool = True

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for a 1024 input)."""
        return self.image_size // self.backbone_stride

    def with_(self, **changes) -> "ModelConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)


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
        decoder_mlp_dim=512)


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
