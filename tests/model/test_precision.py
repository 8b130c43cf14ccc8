"""The bf16 fast mode (samkit.model.precision): which parts change dtype, the boundaries, the
round trip, the chunked attention, and masks close to float32 on the trained default model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import samkit.model.attention as attention
from samkit.builder import build_model, load_model
from samkit.cli.main import main
from samkit.errors import ConfigError
from samkit.image_predictor import ImagePredictor
from samkit.model.precision import HEAVY_MODULES, compute_dtype, parse_dtype, set_compute_dtype
from samkit.video.predictor import VideoPredictor
from tests.studio.helpers import interior_point, iou


@pytest.fixture(scope="module")
def nano():
    return build_model()


def _dtypes(model: torch.nn.Module, prefix: str) -> set[torch.dtype]:
    return {p.dtype for n, p in model.named_parameters() if n.startswith(prefix + ".")}


def test_parse_dtype_names_and_errors():
    assert parse_dtype(None) is torch.float32 and parse_dtype("fp32") is torch.float32
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(ConfigError, match="unknown compute dtype 'fp8'.*fp32 or bf16"):
        parse_dtype("fp8")
    with pytest.raises(ConfigError, match="not supported"):
        parse_dtype(torch.float16)
    with pytest.raises(ConfigError, match="unknown compute dtype"):
        build_model(compute_dtype="half")


def test_heavy_parts_in_bf16_the_rest_float32_and_same_keys(nano):
    fast = build_model(compute_dtype=torch.bfloat16)
    assert compute_dtype(fast) is torch.bfloat16 and compute_dtype(nano) is torch.float32
    for path in HEAVY_MODULES:
        assert _dtypes(fast, path) == {torch.bfloat16}, path
    for path in ("sam_prompt_encoder", "sam_mask_decoder.transformer", "sam_mask_decoder.output_upscaling",
                 "obj_ptr_proj"):
        assert _dtypes(fast, path) == {torch.float32}, path
    assert fast.state_dict().keys() == nano.state_dict().keys()
    # the weights are the float32 ones rounded to bfloat16
    w32, w16 = nano.image_encoder.neck.convs[0].conv.weight, fast.image_encoder.neck.convs[0].conv.weight
    assert torch.equal(w32.bfloat16(), w16)


def test_boundaries_give_float32_features_close_to_float32(nano):
    fast = set_compute_dtype(copy.deepcopy(nano), "bf16")
    x = torch.randn(1, 3, nano.image_size, nano.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = nano.forward_image(x), fast.forward_image(x)
    for a, b in zip(ref.features + ref.positions, out.features + out.positions):
        assert b.dtype == torch.float32 and b.shape == a.shape
        assert (a - b).norm() / a.norm() < 0.05


def test_round_trip_to_float32_removes_the_hooks(nano):
    model = set_compute_dtype(copy.deepcopy(nano), torch.bfloat16)
    assert len(model.image_encoder._forward_pre_hooks) == 1
    set_compute_dtype(model, torch.bfloat16)  # again: nothing added
    assert len(model.image_encoder._forward_pre_hooks) == 1
    set_compute_dtype(model, None)
    assert compute_dtype(model) is torch.float32
    assert not model.image_encoder._forward_pre_hooks and not model.memory_attention._forward_hooks
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("shape_q,shape_k", [((2, 3, 37, 16), (2, 3, 50, 16)), ((1, 1, 64, 32), (1, 1, 300, 32))])
def test_chunked_attention_equals_sdpa(monkeypatch, shape_q, shape_k):
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(shape_q, generator=g), torch.randn(shape_k, generator=g), torch.randn(shape_k, generator=g)
    monkeypatch.setattr(attention, "BF16_LOGITS_CHUNK", 4 * shape_q[0] * shape_q[1] * shape_k[2] * 10)  # 10 rows
    out = attention._chunked_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)
    # the bf16 route of scaled_dot_product, against float32 SDPA on the same rounded inputs
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    with torch.no_grad():
        fast = attention.scaled_dot_product(qb, kb, vb)
    assert fast.dtype == torch.bfloat16
    ref = F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float())
    assert (fast.float() - ref).abs().max() < 0.03


def test_pos_embed_cache_follows_the_weights(nano):
    trunk = copy.deepcopy(nano.image_encoder.trunk)
    with torch.no_grad():
        first = trunk._pos_embed(16, 16)
        assert trunk._pos_embed(16, 16) is first  # cached
        trunk.load_state_dict({k: v + 1 if k == "pos_embed" else v for k, v in trunk.state_dict().items()})
        again = trunk._pos_embed(16, 16)
    torch.testing.assert_close(again, first + 1, atol=1e-4, rtol=1e-4)  # bicubic of a constant shift
    assert torch.equal(again, trunk._pos_embed_uncached(16, 16))
    with torch.enable_grad():
        assert trunk._pos_embed(16, 16).requires_grad  # training never sees the cache


def test_masks_close_to_float32_on_generated_scenes(nano):
    """Trained default model, a point inside each object of generated scenes: mean IoU >= 0.97
    between the bf16 and the float32 masks (benchmarks/bf16.py measures more)."""
    from samkit.data.synthetic.scenes import SyntheticSceneDataset

    fast = set_compute_dtype(copy.deepcopy(nano), torch.bfloat16)
    p32, p16 = ImagePredictor(nano), ImagePredictor(fast)
    ious = []
    for sample in SyntheticSceneDataset(6, size=(256, 256), seed=77, num_objects=(2, 4)):
        p32.set_image(sample.image)
        p16.set_image(sample.image)
        for mask in sample.masks:
            if mask.sum() < 150:
                continue
            x, y = interior_point(mask)
            kw = dict(point_coords=np.array([[x, y]]), point_labels=np.array([1]))
            a, sa, _ = p32.predict(**kw)
            b, sb, _ = p16.predict(**kw)
            ious.append(iou(a[sa.argmax()].astype(bool), b[sb.argmax()].astype(bool)))
    assert len(ious) >= 8
    assert np.mean(ious) >= 0.97, ious


def test_video_predictor_copies_instead_of_changing_the_model(nano):
    pred = VideoPredictor(nano, compute_dtype=torch.bfloat16, progress=False)
    assert compute_dtype(pred.model) is torch.bfloat16 and pred.compute_dtype is torch.bfloat16
    assert compute_dtype(nano) is torch.float32 and _dtypes(nano, "image_encoder") == {torch.float32}
    same = VideoPredictor(pred.model, compute_dtype=torch.bfloat16, progress=False)
    assert same.model is pred.model  # already in that mode: no copy


def test_load_model_and_cli_say_bf16(tmp_path, capsys):
    _, description = load_model(compute_dtype="bf16")
    assert "bf16 fast mode" in description
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "m.png"
    assert main(["segment", str(photo), "--point", "60,40", "--dtype", "bf16", "--out", str(out)]) == 0
    assert "bf16 fast mode" in capsys.readouterr().out and out.is_file()


@pytest.mark.parametrize("fast", [True, False])
def test_warns_on_a_cpu_without_fast_bf16(monkeypatch, fast):
    """Without AVX-512 PyTorch's bf16 kernels are slow: asking for bf16 there warns and says to
    use fp32; with them (or for float32) nothing is said."""
    import warnings

    import samkit.model.precision as precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = set_compute_dtype(build_model(), torch.bfloat16)
        set_compute_dtype(model, torch.float32)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if fast:
        assert not said
    else:
        assert len(said) == 1 and "AVX-512" in said[0] and "Use fp32" in said[0]
    assert compute_dtype(model) == torch.float32


def test_fast_bf16_probe_matches_the_cpu():
    """The probe agrees with the CPU's flags on Linux (AVX-512 BW/VL/DQ, or AVX-NE-CONVERT)."""
    import platform
    from pathlib import Path

    from samkit.model.precision import cpu_has_fast_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or platform.machine() != "x86_64":
        pytest.skip("needs Linux on x86 (/proc/cpuinfo)")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
    expected = {"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags
    assert cpu_has_fast_bf16() == expected
