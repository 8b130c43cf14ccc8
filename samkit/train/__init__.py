"""Training: datasets, synthetic data, simulated clicks, the SAM losses, LoRA and the interactive trainer."""

from samkit.train.datasets import (
    CocoDataset,
    LabPicsDataset,
    MaskFolderDataset,
    Sample,
    decode_coco_segmentation,
)
from samkit.train.lora import LoRAConfig, apply_lora, merge_lora, merged_copy
from samkit.train.initialization import align_prompt_attention
from samkit.train.losses import LossTerms, LossWeights, feature_scale_penalty, sam_loss
from samkit.train.prompts import (
    ClickConfig,
    Prompt,
    evaluation_click,
    round_schedule,
    sample_center_error_click,
    sample_correction_click,
    sample_error_click,
    sample_first_prompt,
)
from samkit.train.synthetic import (
    SyntheticSceneDataset,
    make_labpics_scene,
    make_scene,
    write_synthetic_labpics,
)
from samkit.train.trainer import TRAIN_PARTS, Trainer, TrainConfig

__all__ = [
    "Sample",
    "LabPicsDataset",
    "CocoDataset",
    "MaskFolderDataset",
    "decode_coco_segmentation",
    "SyntheticSceneDataset",
    "make_scene",
    "make_labpics_scene",
    "write_synthetic_labpics",
    "ClickConfig",
    "Prompt",
    "sample_first_prompt",
    "sample_error_click",
    "sample_center_error_click",
    "sample_correction_click",
    "evaluation_click",
    "round_schedule",
    "LossWeights",
    "LossTerms",
    "sam_loss",
    "feature_scale_penalty",
    "align_prompt_attention",
    "LoRAConfig",
    "apply_lora",
    "merge_lora",
    "merged_copy",
    "TRAIN_PARTS",
    "TrainConfig",
    "Trainer",
]
