"""Every registered variant, built at a reduced image size, returns the documented shapes from
each part of the network (image encoder, prompt encoder + mask decoder, SAM heads, memory
encoder, memory attention)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import samkit
from samkit.configs import get_config, list_models
from samkit.model.sam2 import SAM2Model

SIDE = 256  # model input side for the test: a 16 x 16 token grid at stride 16


def _reduced(name: str) -> SAM2Model:
    cfg = get_config(name)
    grid = SIDE // cfg.backbone_stride
    cfg = replace(cfg, image_size=SIDE, memory=replace(cfg.memory, feat_sizes=(grid, grid)))
    torch.manual_seed(0)
    return SAM2Model(cfg).eval()


@pytest.mark.parametrize("name", list_models())
@torch.no_grad()
def test_documented_shapes(name: str) -> None:
    model = _reduced(name)
    cfg = model.cfg
    b, c, h = 2, cfg.neck.d_model, SIDE // cfg.backbone_stride
    bb = model.forward_image(torch.randn(b, 3, SIDE, SIDE))
    if cfg.use_high_res_features_in_sam:
        assert [tuple(f.shape) for f in bb.features] == [(b, c // 8, 4 * h, 4 * h), (b, c // 4, 2 * h, 2 * h),
                                                         (b, c, h, h)]
    else:
        assert [tuple(f.shape) for f in bb.features] == [(b, c, h, h)]
    assert all(tuple(p.shape[-2:]) == tuple(f.shape[-2:]) and p.shape[1] == c for p, f in zip(bb.positions,
                                                                                                bb.features))
    embed, high_res = model.image_embeddings(bb)
    assert tuple(embed.shape) == (b, c, h, h)

    points = (torch.rand(b, 2, 2) * SIDE, torch.tensor([[1, 0], [1, 1]], dtype=torch.int32))
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0]]).expand(b, 4)
    for multimask, m in ((True, 3), (False, 1)):
        out = model.decode(embed, high_res, points=points, boxes=boxes, multimask_output=multimask)
        assert tuple(out.masks.shape) == (b, m, 4 * h, 4 * h)
        assert tuple(out.iou.shape) == (b, m)
        assert tuple(out.object_score.shape) == (b, 1)
        tokens = m if multimask and cfg.use_multimask_token_for_obj_ptr else 1
        assert tuple(out.tokens.shape) == (b, tokens, c)
    mask_prompt = torch.randn(b, 1, 4 * h, 4 * h)
    out = model.decode(embed, high_res, points=points, mask_input=mask_prompt, multimask_output=False)
    assert tuple(out.masks.shape) == (b, 1, 4 * h, 4 * h)

    heads = model.forward_sam_heads(embed, points=points, high_res=high_res, multimask_output=True)
    assert tuple(heads.multi_logits.shape) == (b, 3, 4 * h, 4 * h)
    assert tuple(heads.ious.shape) == (b, 3)
    assert tuple(heads.low_res.shape) == (b, 1, 4 * h, 4 * h)
    assert tuple(heads.high_res.shape) == (b, 1, SIDE, SIDE)
    assert tuple(heads.obj_ptr.shape) == (b, c)
    assert tuple(heads.object_score.shape) == (b, 1)

    mem = cfg.memory
    feats, pos = model.memory_encoder(bb.vision, heads.high_res)
    assert tuple(feats.shape) == (b, mem.mem_dim, h, h) and tuple(pos.shape) == (b, mem.mem_dim, h, h)
    k = 2  # two memories of this frame plus four pointer tokens, sequence first
    memory = torch.cat([feats.flatten(2).permute(2, 0, 1)] * k)
    memory_pos = torch.cat([pos.flatten(2).permute(2, 0, 1)] * k)
    n_ptr = 4
    memory = torch.cat([memory, torch.randn(n_ptr, b, mem.mem_dim)])
    memory_pos = torch.cat([memory_pos, torch.randn(n_ptr, b, mem.mem_dim)])
    curr = bb.vision.flatten(2).permute(2, 0, 1)  # HW x B x C
    curr_pos = bb.positions[-1].flatten(2).permute(2, 0, 1)
    conditioned = model.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=n_ptr)
    assert tuple(conditioned.shape) == (h * h, b, mem.d_model)


def test_every_official_variant_and_the_default_are_registered() -> None:
    names = set(samkit.list_models())
    expected = {f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("tiny", "small", "base_plus", "large")}
    assert expected | {"samkit_nano"} <= names
