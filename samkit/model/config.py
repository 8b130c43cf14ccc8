"""The configuration of a whole SAM 2 network (the parts' own configs live beside the parts)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig

__all__ = ["ModelConfig", "HieraConfig", "MemoryConfig", "NeckConfig"]


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
    # --- segment everything: the thresholds AutoMaskGenerator and `samkit auto` use unless given
    automask_pred_iou_thresh: float = 0.8         # the official generator's default
    automask_stability_score_thresh: float = 0.95  # the official generator's default

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for a 1024 input)."""
        return self.image_size // self.backbone_stride

    def with_(self, **changes) -> "ModelConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)
