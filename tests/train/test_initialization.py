"""Initialisation for training from random weights: the decoder's attention starts aligned."""

from __future__ import annotations

import torch

from samkit.configs import get_config
from samkit.model.sam2 import SAM2Model
from samkit.train.initialization import align_prompt_attention
from tests.train.test_trainer import tiny_config


def test_query_and_key_projections_are_tied_and_scaled():
    torch.manual_seed(0)
    model = SAM2Model(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changed = align_prompt_attention(model, gain=2.0)
    # two two-way blocks of three attentions each, plus the final token-to-image attention
    assert changed == 2 * 3 + 1
    after = model.state_dict()
    tied = 0
    for key, value in after.items():
        if key.startswith("sam_mask_decoder.transformer.") and key.endswith("q_proj.weight"):
            k_key = key.replace("q_proj", "k_proj")
            assert torch.equal(value, before[key] * 2.0)
            assert torch.equal(after[k_key], value)
            tied += 1
    assert tied == changed
    # nothing outside the decoder's attention projections moved
    for key, value in after.items():
        if not (key.endswith("q_proj.weight") or key.endswith("k_proj.weight")) or "sam_mask_decoder" not in key:
            assert torch.equal(value, before[key]), key


def test_aligned_attention_prefers_pixels_near_the_click():
    """With tied projections, the first cross-attention from a click's token to the pixels
    (position encodings only, no image content) peaks near the click; without, it does not."""
    torch.manual_seed(0)
    model = SAM2Model(get_config("samkit_nano"))  # a 16 x 16 embedding grid
    pe = model.sam_prompt_encoder
    h, w = pe.image_embedding_size
    dense_pe = pe.get_dense_pe().flatten(2).transpose(1, 2)  # 1 x hw x C
    size = model.image_size
    clicks = torch.tensor([[[size * 0.2, size * 0.3]], [[size * 0.8, size * 0.6]], [[size * 0.5, size * 0.9]]])
    point_pe = pe.pe_layer.points(clicks, pe.input_image_size)  # 3 x 1 x C
    cell = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 2)
    centres = (cell.flip(-1).float() + 0.5) * (size / w)  # pixel centres, x y
    attn = model.sam_mask_decoder.transformer.layers[0].cross_attn_token_to_image

    def near_share() -> float:
        with torch.no_grad():
            q = attn.q_proj(point_pe)  # 3 x 1 x D
            k = attn.k_proj(dense_pe)  # 1 x hw x D
            logits = (q @ k.transpose(1, 2))[:, 0] / q.shape[-1] ** 0.5  # 3 x hw
            weights = logits.softmax(-1)
        dist = (centres[None] - clicks[:, 0, None]).norm(dim=-1)  # 3 x hw
        near = dist < size / 4
        return float((weights * near).sum(-1).mean() / near.float().mean(-1).mean())

    plain = near_share()
    align_prompt_attention(model, gain=3.0)
    aligned = near_share()
    assert aligned > 2.0 and aligned > 1.5 * plain, (plain, aligned)
