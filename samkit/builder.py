"""``build_model``: a model from a name, a config, a checkpoint, or all of them."""

from __future__ import annotations

import os

import torch

from samkit.checkpoint import check_matches, detect_variant, load_into, read_checkpoint
from samkit.configs import ModelConfig, canonical_name, get_config
from samkit.errors import CheckpointError, ConfigError
from samkit.model.sam2 import SAM2Model

DEFAULT_MODEL = "sam2.1_hiera_tiny"


def build_model(name: str | ModelConfig | None = None, checkpoint: str | os.PathLike | None = None,
                device: str | torch.device = "cpu", *, eval_mode: bool = True) -> SAM2Model:
    """Build a SAM 2 model.

    * ``build_model("sam2.1_hiera_t")``: random weights of a registered variant.
    * ``build_model(checkpoint="sam2.1_hiera_tiny.pt")``: variant detected from the file.
    * ``build_model("sam2.1_hiera_tiny", "file.pt")``: checked to match, then loaded strictly.
    * ``build_model(ModelConfig(...))``: a custom configuration.
    """
    cfg: ModelConfig | None = None
    if isinstance(name, ModelConfig):
        cfg = name
    elif name is not None:
        cfg = get_config(canonical_name(name))
    sd = None
    if checkpoint is not None:
        sd, saved_cfg = read_checkpoint(checkpoint)
        if cfg is None:
            if saved_cfg is not None:
                cfg = saved_cfg
            else:
                found = detect_variant(sd)
                if found is None:
                    raise CheckpointError(f"{checkpoint}: could not tell which SAM 2 variant this is from its "
                                          "keys and shapes; pass the model name or a ModelConfig")
                cfg = get_config(found)
        else:
            check_matches(sd, cfg, checkpoint)
    if cfg is None:
        cfg = get_config(DEFAULT_MODEL)
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"expected a model name or ModelConfig, got {type(cfg).__name__}")
    model = SAM2Model(cfg)
    if sd is not None:
        load_into(model, sd, checkpoint)
    model = model.to(device)
    return model.eval() if eval_mode else model
