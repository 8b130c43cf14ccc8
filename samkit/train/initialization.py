"""Initialisation for training a model from random weights.

SAM's mask decoder finds the prompted object through attention between prompt tokens and
image pixels, whose keys and queries both carry position encodings (the same random-Fourier
encoding for a click and for a pixel). With independently initialised query and key
projections that match is invisible at the start, and from random weights the decoder can
fail to learn to use the prompt at all. :func:`align_prompt_attention` starts every decoder attention
with equal query and key projections, so that the attention logits contain the
position-encoding similarity from the first step; it is used together with
:func:`~samkit.train.losses.feature_scale_penalty`, which keeps the growing image features
from drowning the encodings again (measurements: ``docs/nano/NOTES.md``).
"""

from __future__ import annotations

import torch

from samkit.model.sam2 import SAM2Model

__all__ = ["align_prompt_attention"]


@torch.no_grad()
def align_prompt_attention(model: SAM2Model, gain: float = 3.0) -> int:
    """Tie the key projection of every attention in the mask decoder's two-way transformer to
    its query projection (both scaled by ``gain``), in place. Only for a model about to be
    trained from random weights; it would destroy trained weights. Returns the number of
    attention layers changed."""
    changed = 0
    for module in model.sam_mask_decoder.transformer.modules():
        q, k = getattr(module, "q_proj", None), getattr(module, "k_proj", None)
        if isinstance(q, torch.nn.Linear) and isinstance(k, torch.nn.Linear) and q.weight.shape == k.weight.shape:
            q.weight.mul_(gain)
            k.weight.copy_(q.weight)
            changed += 1
    return changed
