"""``build_model``: a model from a name, a config, a checkpoint, or all of them."""

from __future__ import annotations

import os
import warnings

import torch

from samkit.checkpoint import check_matches, detect_variant, load_into, read_checkpoint
from samkit.configs import ModelConfig, canonical_name, get_config
from samkit.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from samkit.model.sam2 import SAM2Model
from samkit.weights import BUNDLED, bundled_checkpoint

# The model used when none is named: samkit's own small model. Its trained weights are meant to ship
# with the package (samkit/weights/); until they do, it is built with random weights and a warning.
DEFAULT_MODEL = "samkit_nano"


def build_model(name: str | ModelConfig | None = None, checkpoint: str | os.PathLike | None = None,
                device: str | torch.device = "cpu", *, eval_mode: bool = True,
                pretrained: bool | None = None) -> SAM2Model:
    """Build a SAM 2 model.

    * ``build_model()``: the default model (``samkit_nano``) with the weights that ship with samkit
      (random weights and a warning while none ship).
    * ``build_model(checkpoint="sam2.1_hiera_tiny.pt")``: variant detected from the file (the
      official SAM 2 / 2.1 checkpoints, ``.pt`` or ``.safetensors``).
    * ``build_model("sam2.1_hiera_tiny", "file.pt")``: checked to match, then loaded strictly.
    * ``build_model("sam2.1_hiera_t")``: random weights of a registered variant (no SAM 2
      weights ship with samkit).
    * ``build_model(ModelConfig(...))``: a custom configuration, random weights.

    Args:
        pretrained: for a registered name (or none) without ``checkpoint``: load the weights
            that ship with samkit for it. ``None``: when there are some; ``True``: required
            (an error if none ship); ``False``: random weights.
    """
    cfg: ModelConfig | None = None
    if isinstance(name, ModelConfig):
        cfg = name
        if pretrained:
            raise ConfigError("pretrained=True needs a registered model name, not a ModelConfig")
    elif name is not None or checkpoint is None:
        key = canonical_name(name if name is not None else DEFAULT_MODEL)
        cfg = get_config(key)
        if checkpoint is None and pretrained is not False:
            checkpoint = bundled_checkpoint(key)
            if checkpoint is None and name is None and pretrained is None:
                warnings.warn(f"no trained weights ship with samkit for the default model {key!r} yet: it has "
                              "random weights. Pass checkpoint=PATH (e.g. an official SAM 2.1 checkpoint) for "
                              "real masks", stacklevel=2)
            if checkpoint is None and pretrained:
                ships = ", ".join(sorted(BUNDLED)) or "none"
                raise CheckpointNotFoundError(
                    f"no weights ship with samkit for {key!r} (models with shipped weights: {ships}); pass "
                    "checkpoint=PATH to load a file, e.g. an official SAM 2.1 checkpoint")
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
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"expected a model name or ModelConfig, got {type(cfg).__name__}")
    model = SAM2Model(cfg)
    if sd is not None:
        load_into(model, sd, checkpoint)
    model = model.to(device)
    return model.eval() if eval_mode else model
