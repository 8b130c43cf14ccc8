"""Training: the SAM losses, LoRA, the step losses and the interactive trainer (datasets are in
:mod:`samkit.data`, simulated clicks in :mod:`samkit.prompts`).

``config`` (TrainConfig), ``step`` (the image and clip losses, StepTerms), ``trainer`` (the loop),
``checkpointing`` (train_state.pt, RunState), ``logging`` (metrics.csv, TensorBoard), ``lora``,
``losses``, ``initialization``, ``recipes``.
"""

from samkit.train.checkpointing import RunState
from samkit.train.config import TRAIN_PARTS, TrainConfig, parameter_part
from samkit.train.initialization import align_prompt_attention
from samkit.train.lora import LoRAConfig, apply_lora, merge_lora, merged_copy
from samkit.train.losses import LossTerms, LossWeights, feature_scale_penalty, sam_loss
from samkit.train.step import StepTerms
from samkit.train.trainer import Trainer, init_distributed

__all__ = [
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
    "parameter_part",
    "StepTerms",
    "RunState",
    "Trainer",
    "init_distributed",
]
