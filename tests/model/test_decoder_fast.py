"""The mask decoder's fast inference path (samkit/model/two_way.py, MaskDecoder._masks_fast)
against the reference path (the official layer structure, what training differentiates) for
every prompt kind, on sam2.1_hiera_tiny (random weights, seeded) and samkit_nano (shipped
weights); and the opt-in compiled path (slow: compiling takes about a minute here).

Tolerances (float32; the fast path sums in another order): mask logits within 1e-3 absolute
(measured <= 2e-4 on both models), predicted IoU and object score within 1e-4, output tokens
within 1e-4.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

import samkit
from samkit.builder import compile_decoder
from samkit.model.mask_decoder import DecoderOutput
from samkit.model.sam2 import SAM2Model
from samkit.model.two_way import TwoWayTransformer
from samkit.weights import bundled_checkpoint
from tests.helpers import randomize_

LOGIT_TOL, SCORE_TOL = 1e-3, 1e-4


def _image(side: int, seed: int = 0) -> torch.Tensor:
    """A smooth normalised test image ``1 x 3 x side x side`` (blobs, not white noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return (img - 0.45) / 0.25


class Setup:
    """A model and the features of one image, for decoding prompts on it."""

    def __init__(self, model: SAM2Model) -> None:
        self.model = model
        with torch.inference_mode():
            embed, high = model.image_embeddings(model.forward_image(_image(model.image_size)))
        self.embed, self.high = embed, high
        self.side = model.image_size


def _build(name: str) -> SAM2Model:
    if name == "samkit_nano":
        return samkit.build_model(name, bundled_checkpoint(name))
    torch.manual_seed(0)
    model = samkit.build_model(name, pretrained=False)
    randomize_(model, 0)
    return model.eval()


_SETUPS: dict[str, Setup] = {}


def _setup(name: str) -> Setup:
    """One Setup per model for the whole module (the tiny image embedding takes seconds)."""
    if name not in _SETUPS:
        _SETUPS[name] = Setup(_build(name))
    return _SETUPS[name]


@pytest.fixture(scope="module", params=["sam2.1_hiera_tiny", "samkit_nano"])
def setup(request: pytest.FixtureRequest) -> Setup:
    return _setup(request.param)


# 64 prompts through the reference path take a while on tiny
BOTH_64 = pytest.mark.parametrize("name", [pytest.param("sam2.1_hiera_tiny", marks=pytest.mark.slow), "samkit_nano"])


def _prompts(kind: str, b: int, side: int, seed: int = 1) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, 2, 2, generator=g) * side
    lo = torch.rand(b, 2, generator=g) * side / 2
    box = torch.cat([lo, lo + torch.rand(b, 2, generator=g) * side / 2 + 4], 1)
    one = torch.ones(b, 1, dtype=torch.int32)
    out: dict[str, torch.Tensor | None] = {"points": None, "boxes": None, "mask_input": None}
    if kind == "points":
        out["points"] = (pts[:, :1], one)
    elif kind == "negative points":
        out["points"] = (pts, torch.cat([one, 0 * one], 1))
    elif kind == "box":
        out["boxes"] = box
    elif kind == "box+points":
        out["boxes"], out["points"] = box, (pts, torch.cat([one, 0 * one], 1))
    elif kind == "mask input":
        e = side // 4
        out["points"] = (pts[:, :1], one)
        out["mask_input"] = torch.randn(b, 1, e, e, generator=g) * 8
    return out


def _decode(s: Setup, fast: bool, monkeypatch: pytest.MonkeyPatch, prompts: dict, multimask: bool,
            repeat_image: bool, b: int, select: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DecoderOutput:
    dec = s.model.sam_mask_decoder
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(dec.transformer, "fast_path_applies", lambda *a: False)
            m.setattr(dec, "fast_upscaling_applies", lambda: False)
        embed, high = s.embed, s.high
        if not repeat_image:
            embed = embed.expand(b, -1, -1, -1).contiguous()
            high = [f.expand(b, -1, -1, -1).contiguous() for f in high]
        with torch.inference_mode():
            return s.model.decode(embed, high, prompts["points"], prompts["boxes"], prompts["mask_input"],
                                  multimask_output=multimask, repeat_image=repeat_image, select=select)


def _assert_close(a: DecoderOutput, b: DecoderOutput) -> None:
    assert a.masks.shape == b.masks.shape and a.iou.shape == b.iou.shape
    assert (a.masks - b.masks).abs().max().item() <= LOGIT_TOL
    assert (a.iou - b.iou).abs().max().item() <= SCORE_TOL
    assert (a.object_score - b.object_score).abs().max().item() <= SCORE_TOL
    assert (a.tokens - b.tokens).abs().max().item() <= SCORE_TOL
    if a.rows is None:
        assert b.rows is None
    else:
        assert torch.equal(a.rows, b.rows)


KINDS = ["points", "negative points", "box", "box+points", "mask input"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("repeat_image", [True, False])
def test_fast_path_equals_reference(setup: Setup, kind: str, multimask: bool, repeat_image: bool,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    b = 1 if not repeat_image else 6  # several prompts on one image, and one prompt
    for n in ((b,) if b == 1 else (1, b)):
        prompts = _prompts(kind, n, setup.side)
        ref = _decode(setup, False, monkeypatch, prompts, multimask, repeat_image, n)
        fast = _decode(setup, True, monkeypatch, prompts, multimask, repeat_image, n)
        _assert_close(fast, ref)


@BOTH_64
@pytest.mark.parametrize("kind", ["points", "box"])
def test_64_prompts(name: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The automatic mask generator's batch (points, multimask, one image) and 64 boxes, also
    with one image per prompt (repeat_image off), in several groups of prompts."""
    setup = _setup(name)
    prompts = _prompts(kind, 64, setup.side)
    for repeat_image in (True, False) if kind == "points" else (True,):
        ref = _decode(setup, False, monkeypatch, prompts, kind == "points", repeat_image, 64)
        fast = _decode(setup, True, monkeypatch, prompts, kind == "points", repeat_image, 64)
        _assert_close(fast, ref)


@BOTH_64
def test_select_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Masks made only for the selected prompts (the IoU-first automask path) are those of a
    full run, selected the same way."""
    setup = _setup(name)
    prompts = _prompts("points", 64, setup.side)
    full = _decode(setup, False, monkeypatch, prompts, True, True, 64)
    cut = full.iou.max(1).values.median()
    select = lambda iou: iou.max(1).values > cut  # noqa: E731
    ref = _decode(setup, False, monkeypatch, prompts, True, True, 64, select)
    fast = _decode(setup, True, monkeypatch, prompts, True, True, 64, select)
    assert 0 < len(fast.rows) < 64
    _assert_close(fast, ref)
    assert (fast.masks - full.masks[fast.rows]).abs().max().item() <= LOGIT_TOL
    assert fast.tokens.shape[0] == len(fast.rows)  # the others' mask tokens never got the final attention
    assert (fast.tokens - full.tokens[fast.rows]).abs().max().item() <= SCORE_TOL
    none = _decode(setup, True, monkeypatch, prompts, True, True, 64, lambda iou: torch.zeros(64, dtype=torch.bool))
    assert none.masks.shape[0] == 0 and none.iou.shape == (64, 3)


def test_groups_of_every_size_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """However the prompts are grouped (scratch tensors reused across groups and layers),
    the results are the same."""
    s = _setup("samkit_nano")
    tr = s.model.sam_mask_decoder.transformer
    tokens = torch.randn(10, 8, 128)
    image = s.embed.expand(10, -1, -1, -1).contiguous() + torch.randn(10, 128, 1, 1)
    pe = s.model.sam_prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        ref = tr.forward_reference(image, pe, tokens)
        for group_bytes in (1, 3 * 8 * 8 * 256 * 4, 1 << 30):  # groups of 1, 3 (and a short last one), all
            out = tr.forward_fast(image, pe, tokens, group_bytes=group_bytes)
            assert (out[0] - ref[0]).abs().max() <= SCORE_TOL and (out[1] - ref[1]).abs().max() <= SCORE_TOL


@pytest.mark.parametrize("fast", [True, False])
def test_split_final_attention_equals_forward(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """forward_split (the final attention for the first tokens) and finish (for any subset of
    the rest, any prompts) give what forward gives, on the fast path and the reference one; with
    keep, only the kept prompts' image tokens come back, each prompt asked about once, in order."""
    s = _setup("samkit_nano")
    tr = s.model.sam_mask_decoder.transformer
    if not fast:
        monkeypatch.setattr(tr, "fast_path_applies", lambda *a: False)
    tokens = torch.randn(10, 8, 128)
    pe = s.model.sam_prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        ref_tokens, ref_keys = tr.forward_reference(s.embed, pe, tokens)
        head, queries, keys, none = tr.forward_split(s.embed, pe, tokens, 2)
        rows = torch.tensor([1, 4, 9])
        rest = tr.finish(queries[rows][:, 2:6], tokens[rows][:, 2:6], keys[rows], pe)
        # keeping the image tokens of some prompts only (decided on their finished first tokens)
        wanted = torch.zeros(10, dtype=torch.bool)
        wanted[rows] = True
        seen: list[int] = []  # the prompts keep was asked about, in order

        def keep(done: torch.Tensor) -> torch.Tensor:
            n = len(seen)
            seen.extend(range(n, n + done.shape[0]))
            return wanted[n:n + done.shape[0]]

        head2, _, kept, picked = tr.forward_split(s.embed, pe, tokens, 2, keep)
    assert none is None and torch.equal(picked, rows) and seen == list(range(10))
    assert (kept - keys[rows]).abs().max() <= SCORE_TOL and torch.equal(head2, head)
    assert head.shape == (10, 2, 128) and rest.shape == (3, 4, 128)
    assert (head - ref_tokens[:, :2]).abs().max() <= SCORE_TOL
    assert (rest - ref_tokens[rows][:, 2:6]).abs().max() <= SCORE_TOL
    assert (keys - ref_keys).abs().max() <= SCORE_TOL
    assert (head - rest[:1, :2]).abs().max() > 0.01  # the tokens differ: a mix-up would show


def test_reference_path_runs_with_gradients() -> None:
    """Training differentiates the reference path: with gradients on, the fast path never runs
    and the gradients flow to the decoder's parameters."""
    model = _build("samkit_nano").train()
    dec = model.sam_mask_decoder
    calls = []
    dec.transformer.forward_fast = lambda *a, **k: calls.append("fast")  # would break the output
    embed, high = model.image_embeddings(model.forward_image(_image(model.image_size)))
    out = model.decode(embed, high, (torch.rand(2, 1, 2) * 256, torch.ones(2, 1, dtype=torch.int32)), repeat_image=True)
    out.masks.sum().backward()
    assert not calls
    assert dec.transformer.layers[1].cross_attn_image_to_token.q_proj.weight.grad is not None
    assert TwoWayTransformer.fast_path_applies(dec.transformer, embed, torch.zeros(1, 1)) is False


def test_fast_path_needs_plain_linear_layers() -> None:
    """A projection wrapped by something else (an adapter) sends inference to the reference path."""
    model = _build("samkit_nano")
    tr = model.sam_mask_decoder.transformer
    pe = torch.zeros(1, 128, 16, 16)
    with torch.inference_mode():
        assert tr.fast_path_applies(pe, pe)
        proj = tr.layers[0].cross_attn_image_to_token.q_proj
        tr.layers[0].cross_attn_image_to_token.q_proj = torch.nn.Sequential(proj)
        assert not tr.fast_path_applies(pe, pe)


# ---------------------------------------------------------------------------- compiled path
def test_compile_without_a_compiler_warns_and_stays_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _build("samkit_nano")
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ compiler"):
        assert compile_decoder(model) is False
    assert model.sam_mask_decoder.transformer.compiled_group is None
    assert model.sam_mask_decoder.compiled_upscale is None


def test_a_failing_compilation_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error raised by the compiled function (as a C++ compile error would be) warns once
    and gives the eager results."""
    s = Setup(_build("samkit_nano"))
    dec = s.model.sam_mask_decoder
    prompts = _prompts("points", 8, s.side)
    eager = _decode(s, True, monkeypatch, prompts, True, True, 8)

    def broken(*args: object) -> None:
        raise RuntimeError("CppCompileError: no such compiler")

    dec.transformer.compiled_group, dec.compiled_upscale = broken, broken
    with pytest.warns(RuntimeWarning, match="compile of the mask decoder failed") as record:
        out = _decode(s, True, monkeypatch, prompts, True, True, 8)
    assert len({str(w.message) for w in record}) == 1
    assert dec.transformer.compiled_group is None and dec.compiled_upscale is None
    _assert_close(out, eager)


@pytest.mark.slow
def test_compiled_path_gives_the_same_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """samkit_nano compiled: the decoder's outputs equal the eager ones, and the automatic mask
    generator returns the same masks (count, IoU >= 0.99 each, scores within 1e-3)."""
    from samkit.automask.generator import AutoMaskGenerator

    eager_model = _build("samkit_nano")
    model = _build("samkit_nano")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would fail the test
        assert compile_decoder(model)
        s, e = Setup(model), Setup(eager_model)
        for kind, n in (("points", 64), ("box", 5)):
            prompts = _prompts(kind, n, s.side)
            _assert_close(_decode(s, True, monkeypatch, prompts, True, True, n),
                          _decode(e, True, monkeypatch, prompts, True, True, n))
        rng = np.random.default_rng(0)
        image = (rng.random((8, 8, 3)) * 255).astype(np.uint8).repeat(40, 0).repeat(48, 1)
        kw = dict(points_per_side=16, pred_iou_thresh=0.5, stability_score_thresh=0.7)
        got = AutoMaskGenerator(model, **kw).generate(image)
    want = AutoMaskGenerator(eager_model, **kw).generate(image)
    assert model.sam_mask_decoder.transformer.compiled_group is not None
    assert len(got) == len(want) > 0
    for a, b in zip(sorted(got, key=lambda r: -r["area"]), sorted(want, key=lambda r: -r["area"])):
        inter = np.logical_and(a["segmentation"], b["segmentation"]).sum()
        union = np.logical_or(a["segmentation"], b["segmentation"]).sum()
        assert inter / union >= 0.99
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-3
        assert abs(a["stability_score"] - b["stability_score"]) <= 1e-3
