"""The model's compute dtype: the bf16 fast mode.

``set_compute_dtype(model, torch.bfloat16)`` stores the weights of the parts that do almost all of
the arithmetic in bfloat16 and runs them on bfloat16 activations end to end (no autocast, so no
cast per operation): the image encoder (Hiera trunk and FPN neck, with the decoder's two
high-resolution projections), the memory attention and the memory encoder. Their inputs are cast
to bfloat16 once on the way in and their outputs back to float32 on the way out, so everything
between them stays float32: the prompt encoder, the mask decoder (its exact fast path included),
the object pointers and the final mask logits. ``set_compute_dtype(model, torch.float32)`` (or
None) restores full float32 weights: a lossless round trip only if the weights were float32-exact
in bfloat16, so keep an fp32 copy (or reload the checkpoint) when exactness matters.

The boundaries are forward hooks, so the module tree and the state-dict keys do not change; a
state dict taken in bf16 mode holds bfloat16 tensors for those parts (loading it into a float32
model converts them back, with bfloat16's precision).

Attention inside those parts runs as bf16 GEMMs around a softmax
(:func:`samkit.model.attention.scaled_dot_product`): on a CPU without a bf16 fused-attention
kernel that is faster than PyTorch's fused one.
"""

from __future__ import annotations

import warnings
from dataclasses import fields, is_dataclass, replace
from typing import Any

import torch
from torch import nn

from samkit.errors import ConfigError

# Submodules of SAM2Model that run in the compute dtype (dotted paths; missing ones are skipped).
HEAVY_MODULES = ("image_encoder", "sam_mask_decoder.conv_s0", "sam_mask_decoder.conv_s1",
                 "memory_attention", "memory_encoder")

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def parse_dtype(value: str | torch.dtype | None) -> torch.dtype:
    """``"fp32"`` / ``"bf16"`` (or a torch dtype, or None for float32) -> the torch dtype."""
    if value is None:
        return torch.float32
    if isinstance(value, torch.dtype):
        dtype = value
    else:
        dtype = _DTYPES.get(str(value).lower())
        if dtype is None:
            raise ConfigError(f"unknown compute dtype {value!r}: use fp32 or bf16")
    if dtype not in (torch.float32, torch.bfloat16):
        raise ConfigError(f"compute dtype {dtype} is not supported: use torch.float32 or torch.bfloat16")
    return dtype


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating-point tensor in it (tuples, lists, dicts, dataclasses) cast."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, tuple):
        items = [_cast(v, dtype) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_cast(v, dtype) for v in value]
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _cast(getattr(value, f.name), dtype) for f in fields(value) if f.init})
    return value


class _Boundary:
    """The hooks of one module in the compute dtype: inputs in, outputs back to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.handles = [
            module.register_forward_pre_hook(self._inputs, with_kwargs=True),
            module.register_forward_hook(self._outputs),
        ]

    def _inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return _cast(args, self.dtype), _cast(kwargs, self.dtype)

    def _outputs(self, module: nn.Module, args: tuple, output: Any) -> Any:
        return _cast(output, torch.float32)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def compute_dtype(model: nn.Module) -> torch.dtype:
    """The compute dtype ``model`` runs its heavy parts in (float32 unless set)."""
    return getattr(model, "_samkit_compute_dtype", torch.float32)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs PyTorch's bfloat16 kernels natively: they need AVX-512 (or
    AVX-NE-CONVERT) on x86; without it bf16 matrix products fall back to slow paths."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN: assume the slow paths
        return False


def _warn_if_slow(model: nn.Module, dtype: torch.dtype) -> None:
    params = next(model.parameters(), None)
    if dtype == torch.bfloat16 and params is not None and params.device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn("compute_dtype=bf16 on a CPU without AVX-512 (or AVX-NE-CONVERT): PyTorch has no fast bf16 "
                      "kernels here, so the bf16 mode runs slower than float32 (on an AVX2-only CPU: 6x slower "
                      "linear layers, the default model's set_image 0.43 s instead of 0.058 s). Use fp32, the "
                      "default, on this machine", RuntimeWarning, stacklevel=3)


def set_compute_dtype(model: nn.Module, dtype: str | torch.dtype | None) -> nn.Module:
    """Run ``model``'s heavy parts (:data:`HEAVY_MODULES`) in ``dtype``; returns ``model``.

    ``torch.bfloat16``: their weights become bfloat16 and their inputs and outputs are cast at
    the boundary (see the module docstring); on a CPU without fast bf16 kernels
    (:func:`cpu_has_fast_bf16`) a ``RuntimeWarning`` says that the mode is slower there. ``torch.float32`` / None: back to float32 weights,
    no hooks. Calling it again with the same dtype does nothing.
    """
    dtype = parse_dtype(dtype)
    if compute_dtype(model) == dtype:
        return model
    _warn_if_slow(model, dtype)
    for boundary in getattr(model, "_samkit_boundaries", []):
        boundary.remove()
    boundaries = []
    for path in HEAVY_MODULES:
        module = _submodule(model, path)
        if module is None:
            continue
        module.to(dtype)
        if dtype != torch.float32:
            boundaries.append(_Boundary(module, dtype))
    model._samkit_boundaries = boundaries  # type: ignore[attr-defined]
    model._samkit_compute_dtype = dtype  # type: ignore[attr-defined]
    return model
