"""Low-rank adapters (LoRA) for the attention layers of the image encoder.

A :class:`LoRALinear` replaces an ``nn.Linear`` in place and keeps that layer's own
``weight`` and ``bias`` parameters under their original names, so the state-dict keys of
the base model do not change; it only adds ``lora_a`` (``r x in``) and ``lora_b``
(``out x r``). Its output is

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T

with ``B`` initialised to zero, so a freshly wrapped model computes exactly what the base
model did. :func:`merge_lora` folds ``(alpha / r) * B A`` into ``W`` and puts plain
``nn.Linear`` layers back, so that a merged model saves as an ordinary (official-layout)
checkpoint; :func:`merged_copy` does the same on a copy and leaves the model being trained
alone.

By default the adapters go on the ``qkv`` and ``proj`` linears of every Hiera block's
attention (``image_encoder.trunk.blocks.*.attn``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import ConfigError

__all__ = [
    "LoRAConfig",
    "LoRALinear",
    "apply_lora",
    "lora_modules",
    "lora_parameters",
    "lora_state_dict",
    "merge_lora",
    "merged_copy",
    "merged_state_dict",
]


@dataclass(frozen=True)
class LoRAConfig:
    """Where and how large the adapters are."""

    rank: int = 8  # inner width r of each adapter
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the adapter's input (training only)
    targets: tuple[str, ...] = ("qkv", "proj")  # names of the attention linears to adapt
    scope: str = "image_encoder.trunk"  # module whose attention layers get adapters

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRAConfig.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRAConfig.dropout must lie in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ConfigError("LoRAConfig.targets must name at least one linear layer")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A linear layer plus a trainable low-rank update.

    ``forward(x ... x in_features) -> ... x out_features``. ``weight`` (``out x in``) and
    ``bias`` (``out``) are the wrapped layer's own parameters (shared, not copied).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.rank = int(rank)
        self.scaling = float(alpha) / self.rank
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_a = nn.Parameter(torch.empty(self.rank, self.in_features, **kw))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, self.rank, **kw))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises weights
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) * B A``: ``out x in``."""
        return (self.lora_b @ self.lora_a) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        low = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)  # ... x out
        return out + low * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (without dropout)."""
        # skip_init: no random initialisation, so merging never draws from the global RNG
        lin = torch.nn.utils.skip_init(nn.Linear, self.in_features, self.out_features, bias=self.bias is not None,
                                       device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight + self.delta_weight().to(self.weight.dtype))
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        lin.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            lin.bias.requires_grad_(self.bias.requires_grad)
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, scaling={self.scaling:g}")


def _scope(model: nn.Module, scope: str) -> nn.Module:
    try:
        return model.get_submodule(scope) if scope else model
    except AttributeError:
        raise ConfigError(f"the model has no module {scope!r} to put LoRA adapters in") from None


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Wrap the target linears of every attention layer under ``config.scope``, in place.

    An attention layer is a module with a ``qkv`` child (Hiera's multi-scale attention);
    among its children, the ``nn.Linear`` ones named in ``config.targets`` are wrapped.
    Layers already wrapped are left as they are.

    Returns:
        The qualified names of the wrapped layers (e.g.
        ``image_encoder.trunk.blocks.0.attn.qkv``).
    """
    root = _scope(model, config.scope)
    prefix = f"{config.scope}." if config.scope else ""
    wrapped: list[str] = []
    for name, module in list(root.named_modules()):
        if not hasattr(module, "qkv"):
            continue
        for target in config.targets:
            child = getattr(module, target, None)
            if isinstance(child, nn.Linear):
                setattr(module, target, LoRALinear(child, config.rank, config.alpha, config.dropout))
                wrapped.append(f"{prefix}{name}.{target}" if name else f"{prefix}{target}")
    if not wrapped:
        raise ConfigError(f"no linear layer named {list(config.targets)} in the attention layers "
                          f"of {config.scope!r}")
    return wrapped


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """``(qualified name, module)`` of every :class:`LoRALinear` in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters (``lora_a``, ``lora_b``) of every wrapped layer."""
    return [p for _, m in lora_modules(model) for p in (m.lora_a, m.lora_b)]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors, under their full state-dict keys."""
    return {k: v for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in ("lora_a", "lora_b")}


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict the model would have after :func:`merge_lora`: base keys only, each
    adapted ``weight`` replaced by ``W + (alpha / r) B A``. The model is not changed."""
    sd = {k: v.detach() for k, v in model.state_dict().items()
          if k.rsplit(".", 1)[-1] not in ("lora_a", "lora_b")}
    with torch.no_grad():
        for name, module in lora_modules(model):
            key = f"{name}.weight"
            sd[key] = (module.weight + module.delta_weight().to(module.weight.dtype)).detach()
    return sd


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and restore plain ``nn.Linear`` layers, in
    place. Returns ``model`` (its state-dict keys are then those of the base model)."""
    for name, module in list(lora_modules(model)):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, module.merged())
    return model


def merged_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with the adapters merged; ``model`` itself is unchanged."""
    return merge_lora(copy.deepcopy(model))
