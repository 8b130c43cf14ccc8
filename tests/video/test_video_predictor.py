"""VideoPredictor behaviour, state, memory bounds and export, on a small model (128 px input,
tiny trunk, perturbed random weights) and generated clips. Parity with the official predictor
is in tests/parity/test_video_parity.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit.cli.video as video_cli
from samkit.builder import build_model
from samkit.cli.main import build_parser
from samkit.configs import get_config
from samkit.errors import ImageError, PromptError, StateError, VideoError
from samkit.video.export import BoxSpec, PointSpec, track_video
from samkit.video.writers import OverlayVideoWriter, masks_to_labels, read_masks_png, write_clip_mp4, write_masks_png
from samkit.video.predictor import VideoPredictor
from samkit.video.state import (
    FrameHistory,
    FrameOutput,
    InferenceState,
    MaskPrompt,
    ObjectTrack,
    PointPrompt,
    pack_bits,
    unpack_bits,
)
from samkit.data.synthetic.clips import make_clip
from samkit.video.tracking import fill_holes, memory_window, plan_memory, select_conditioning_frames
from tests.helpers import randomize_

SIZE = 128


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    m = build_model(get_config("sam2.1_hiera_tiny").with_(image_size=SIZE))
    randomize_(m, seed=1)
    with torch.no_grad():  # random weights put the object score near 0: make objects present
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 2.0
    return m.eval()


@pytest.fixture(scope="module")
def clip():
    return make_clip(10, 72, 96, 2, seed=5)


def _center(clip, frame, obj):
    ys, xs = np.nonzero(clip.object_mask(frame, obj))
    return [[float(xs.mean()), float(ys.mean())]]


def _box(clip, frame, obj):
    ys, xs = np.nonzero(clip.object_mask(frame, obj))
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def _pred(model, **kw) -> VideoPredictor:
    return VideoPredictor(model, progress=False, **kw)


def _collect(it):
    return [(f, list(ids), m.clone()) for f, ids, m in it]


# ---------------------------------------------------------------------- defaults and state

def test_defaults_match_the_official_video_builder(model):
    p = VideoPredictor(model)
    assert p.fill_hole_area == 8
    assert p.tracker.binarize_mask_from_pts is True
    assert (p.non_overlap_masks, p.clear_non_cond_mem_around_input, p.add_all_frames_to_correct_as_cond) == (
        False, False, False)
    assert p.memory_dtype == torch.bfloat16
    assert p.keep_corrections and p.bounded_memory
    with pytest.raises(TypeError):
        VideoPredictor(object())  # type: ignore[arg-type]


def test_state_is_typed(model, clip):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    assert isinstance(state, InferenceState) and dataclasses.is_dataclass(state)
    assert (state.num_frames, state.video_height, state.video_width) == (10, 72, 96)
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    track = state.objects[1]
    assert isinstance(track, ObjectTrack)
    assert isinstance(track.prompts[0], PointPrompt) and track.prompts[0].coords.shape == (1, 1, 2)
    pending = track.pending[0]
    assert isinstance(pending, FrameOutput) and pending.is_cond and pending.memory is None
    list(p.propagate_in_video(state, max_frame_num_to_track=3))
    assert isinstance(track.history, FrameHistory) and track.history.frames() == [0, 1, 2, 3]
    assert 2 not in track.cond and track.cond_frames == [0]
    logits = track.logits(2)
    assert track.memory(2).dtype == torch.bfloat16 and logits.shape == (1, 1, SIZE // 4, SIZE // 4)
    assert torch.equal(track.history.mask(2), logits[0, 0] > 0)
    assert track.obj_ptr(2).shape == (1, 256) and track.object_score(2).shape == (1, 1)
    assert sorted(track.tracked) == [0, 1, 2, 3]

    p.add_new_mask(state, 5, "b", clip.object_mask(5, 2))
    assert isinstance(state.objects["b"].prompts[5], MaskPrompt)
    assert state.obj_ids == [1, "b"]


def test_memory_dtype_option(model, clip):
    p = _pred(model, memory_dtype=None)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    list(p.propagate_in_video(state, max_frame_num_to_track=1))
    assert state.objects[1].memory(1).dtype == torch.float32


def test_bfloat16_compute_and_offloaded_state(model, clip):
    runs = []
    for options in ({}, {"compute_dtype": torch.bfloat16}):
        p = _pred(model, **options)
        state = p.init_state(list(clip.frames), offload_state_to_cpu=True, offload_video_to_cpu=True)
        assert state.storage_device == torch.device("cpu")
        p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
        runs.append(_collect(p.propagate_in_video(state, max_frame_num_to_track=3)))
    for (f, _, a), (_, _, b) in zip(*runs):
        assert b.dtype == torch.float32 and b.shape == a.shape == (1, 1, 72, 96)
        assert ((a > 0) == (b > 0)).float().mean() > 0.9, f  # close to the float32 masks


def test_bit_packing_and_history_blocks():
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 5), (32, 32), (1, 1)]:
        m = torch.rand(shape, generator=g) > 0.5
        bits = pack_bits(m)
        assert bits.dtype == torch.uint8 and bits.numel() == -(-m.numel() // 8)
        assert torch.equal(unpack_bits(bits, *shape), m)
    hist = FrameHistory(block=4)
    logits = torch.randn(6, 1, 1, 7, 5, generator=g)
    for t in (0, 3, 4, 9, 10):
        hist.put(t, torch.full((1, 8), float(t)), torch.tensor([[t - 5.0]]), logits[t % 6])
    assert hist.frames() == [0, 3, 4, 9, 10] and 5 not in hist and len(hist._ptr) == 3  # blocks 0, 1, 2
    assert hist.obj_ptr(9).tolist() == [[9.0] * 8] and hist.object_score(3).item() == -2.0
    assert torch.equal(hist.mask(10), logits[4, 0, 0] > 0)
    assert torch.equal(hist.mask_logits(4)[0, 0] > 0, logits[4, 0, 0] > 0)
    hist.remove(3)
    with pytest.raises(KeyError):
        hist.obj_ptr(3)
    assert hist.nbytes == 3 * (4 * 8 * 4 + 4 * 4 + 4 * 5)


# ---------------------------------------------------------------------- prompts and propagation

def test_points_box_and_mask_outputs(model, clip):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    f, ids, masks = p.add_new_points_or_box(state, 0, 1, points=np.array(_center(clip, 0, 1)), labels=np.array([1]))
    assert (f, ids, masks.shape, masks.dtype) == (0, [1], (1, 1, 72, 96), torch.float32)
    f, ids, masks = p.add_new_points_or_box(state, 0, 2, box=_box(clip, 0, 2))
    assert ids == [1, 2] and masks.shape == (2, 1, 72, 96)
    # a second click on the same frame adds to the first
    p.add_new_points_or_box(state, 0, 1, points=[[2.0, 2.0]], labels=[0], clear_old_points=False)
    assert state.objects[1].prompts[0].num_points == 2
    f, ids, masks = p.add_new_mask(state, 0, 3, torch.from_numpy(clip.object_mask(0, 1)))
    assert ids == [1, 2, 3] and masks.shape == (3, 1, 72, 96)
    assert ((masks[2, 0] > 0).numpy() == clip.object_mask(0, 1)).mean() > 0.95  # a given mask comes back

    frames = _collect(p.propagate_in_video(state))
    assert [f for f, _, _ in frames] == list(range(10))
    assert all(ids == [1, 2, 3] and m.shape == (3, 1, 72, 96) for _, ids, m in frames)


def test_reverse_and_limits(model, clip):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 6, 1, points=_center(clip, 6, 1), labels=[1])
    assert [f for f, _, _ in p.propagate_in_video(state, reverse=True)] == [6, 5, 4, 3, 2, 1, 0]
    assert [f for f, _, _ in p.propagate_in_video(state)] == [6, 7, 8, 9]
    assert [f for f, _, _ in p.propagate_in_video(state, start_frame_idx=2, max_frame_num_to_track=2)] == [2, 3, 4]
    assert [f for f, _, _ in p.propagate_in_video(state, start_frame_idx=0, reverse=True)] == []
    assert state.objects[1].tracked[2] is False and state.objects[1].tracked[1] is True


def test_new_object_after_tracking_started(model, clip):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    first = _collect(p.propagate_in_video(state))
    _, ids, masks = p.add_new_points_or_box(state, 5, 2, box=_box(clip, 5, 2))
    assert ids == [1, 2]
    assert torch.allclose(masks[0], first[5][2][0], atol=1e-5)  # object 1 keeps its tracked mask
    second = _collect(p.propagate_in_video(state))
    assert all(m.shape[0] == 2 for _, _, m in second)
    for (f, _, a), (_, _, b) in zip(first, second):  # objects are tracked independently
        assert torch.equal(a[0], b[0]), f


def test_correction_is_kept_and_propagated(model, clip):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    before = _collect(p.propagate_in_video(state))
    _, _, corrected = p.add_new_points_or_box(state, 4, 1, points=_center(clip, 4, 2), labels=[1])
    assert not torch.equal(corrected, before[4][2])
    assert 4 in state.objects[1].pending and not state.objects[1].pending[4].is_cond
    after = _collect(p.propagate_in_video(state, start_frame_idx=4))
    assert [f for f, _, _ in after] == [4, 5, 6, 7, 8, 9]
    assert torch.equal(after[0][2], corrected)  # the correction is used, not re-tracked
    assert any(not torch.equal(a, before[f][2]) for f, _, a in after[1:])


def test_official_correction_semantics(model, clip):
    """keep_corrections=False: like sam2 1.1, a corrected non-conditioning frame is re-tracked
    without its clicks when propagating, giving back the earlier tracked mask."""
    p = _pred(model, keep_corrections=False)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    before = _collect(p.propagate_in_video(state))
    p.add_new_points_or_box(state, 4, 1, points=_center(clip, 4, 2), labels=[1])
    after = _collect(p.propagate_in_video(state, start_frame_idx=4))
    for (f, _, a), (_, _, b) in zip(after, before[4:]):
        assert torch.allclose(a, b, atol=1e-4), f


def test_clear_prompts_remove_object_and_reset(model, clip):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 1, 1, points=_center(clip, 1, 1), labels=[1])
    p.add_new_points_or_box(state, 3, 2, points=_center(clip, 3, 2), labels=[1])
    list(p.propagate_in_video(state))
    ids, updated = p.remove_object(state, 1)
    assert ids == [2] and [f for f, _ in updated] == [1] and updated[0][1].shape == (1, 1, 72, 96)
    assert all(m.shape[0] == 1 for _, _, m in p.propagate_in_video(state))
    assert p.remove_object(state, 99) == ([2], [])
    with pytest.raises(StateError, match="99"):
        p.remove_object(state, 99, strict=True)
    with pytest.raises(StateError, match="unknown object id 7"):
        p.clear_all_prompts_in_frame(state, 3, 7)
    frame, ids, masks = p.clear_all_prompts_in_frame(state, 3, 2)
    assert (frame, ids, masks.shape) == (3, [2], (1, 1, 72, 96))
    assert 3 not in state.objects[2].cond and state.objects[2].has(3) and 3 not in state.objects[2].tracked
    with pytest.raises(StateError, match="no conditioning frame"):
        list(p.propagate_in_video(state))
    with pytest.raises(StateError, match="no conditioning frame"):  # a correction needs one too
        p.add_new_points_or_box(state, 5, 2, points=_center(clip, 5, 2), labels=[1])
    assert 5 not in state.objects[2].prompts and not state.objects[2].pending  # nothing half-done
    p.reset_state(state)
    assert state.obj_ids == []
    with pytest.raises(StateError, match="no points, boxes or masks"):
        list(p.propagate_in_video(state))
    # removing the last object leaves a clean state that accepts new prompts
    p.add_new_points_or_box(state, 0, 5, points=_center(clip, 0, 1), labels=[1])
    assert p.remove_object(state, 5)[0] == []


def test_non_overlap_masks(model, clip):
    p = _pred(model, non_overlap_masks=True)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 0, 1, box=[0, 0, 95, 71])
    p.add_new_points_or_box(state, 0, 2, box=[10, 10, 80, 60])
    for _, _, masks in p.propagate_in_video(state, max_frame_num_to_track=2):
        assert int(((masks > 0).sum(0) > 1).sum()) == 0


# ---------------------------------------------------------------------- errors

def test_errors(model, clip, tmp_path):
    p = _pred(model)
    state = p.init_state(list(clip.frames))
    pt, lab = _center(clip, 0, 1), [1]
    for bad in (10, -1, 1.5, "0", None):
        with pytest.raises(VideoError):
            p.add_new_points_or_box(state, bad, 1, points=pt, labels=lab)
    bad_prompts = [
        dict(points=pt), dict(labels=lab), dict(),
        dict(points=[[1.0, 2.0, 3.0]], labels=[1]), dict(points=pt, labels=[1, 0]),
        dict(points=[[float("nan"), 1.0]], labels=[1]), dict(points=pt, labels=[5]),
        dict(points=pt, labels=[0.5]), dict(points="ab", labels=[1]),
        dict(box=[1, 2, 3]), dict(box=[10, 10, 5, 5]), dict(box=[0, 0, 5, 5], clear_old_points=False),
        dict(points=np.zeros((0, 2)), labels=np.zeros(0)),
    ]
    for kwargs in bad_prompts:
        with pytest.raises(PromptError):
            p.add_new_points_or_box(state, 0, 1, **kwargs)
    with pytest.raises(PromptError):
        p.add_new_points_or_box(state, 0, None, points=pt, labels=lab)
    for bad_mask in (np.zeros((2, 3, 4)), np.zeros((0, 5)), np.full((4, 4), np.nan), "x"):
        with pytest.raises(PromptError):
            p.add_new_mask(state, 0, 1, bad_mask)
    assert state.obj_ids == []  # failed calls leave no half-made object
    with pytest.raises(StateError, match="no points, boxes or masks"):
        list(p.propagate_in_video(state))
    p.add_new_points_or_box(state, 0, 1, points=pt, labels=lab)
    with pytest.raises(VideoError):
        list(p.propagate_in_video(state, start_frame_idx=10))
    with pytest.raises(VideoError):
        list(p.propagate_in_video(state, max_frame_num_to_track=-1))
    with pytest.raises(StateError):
        p.add_new_points_or_box({"images": None}, 0, 1, points=pt, labels=lab)
    with pytest.raises(VideoError):
        p.init_state(str(tmp_path / "missing.mp4"))


# ---------------------------------------------------------------------- sources

def test_sources_folder_list_and_mp4(model, clip, tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip.frames[:4]):  # names without zero padding: natural order
        Image.fromarray(frame).save(folder / f"shot_{i * 5}.png")
    runs = []
    for source in (str(folder), list(clip.frames[:4]), np.stack(clip.frames[:4])):
        p = _pred(model)
        state = p.init_state(source)
        p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
        runs.append(_collect(p.propagate_in_video(state)))
    for other in runs[1:]:
        for (fa, _, a), (fb, _, b) in zip(runs[0], other):
            assert fa == fb and torch.equal(a, b)

    pytest.importorskip("cv2")
    mp4 = write_clip_mp4(clip.frames, tmp_path / "clip.mp4")
    p = _pred(model)
    state = p.init_state(str(mp4), async_loading_frames=True)
    assert (state.num_frames, state.video_height, state.video_width) == (10, 72, 96)
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    assert len(list(p.propagate_in_video(state))) == 10


# ---------------------------------------------------------------------- bounded memory

def test_memory_stays_bounded_and_results_match_unbounded(model):
    long_clip = make_clip(40, 48, 64, 1, seed=2)
    frames = list(long_clip.frames)
    runs = {}
    for bounded in (True, False):
        p = _pred(model, bounded_memory=bounded)
        state = p.init_state(frames)
        p.add_new_points_or_box(state, 20, 1, points=_center(long_clip, 20, 1), labels=[1])
        fwd = _collect(p.propagate_in_video(state))
        rev = _collect(p.propagate_in_video(state, reverse=True))
        runs[bounded] = (p, state, fwd + rev)
    window = memory_window(model.cfg)
    p, state, results = runs[True]
    heavy = state.heavy_results()
    assert heavy <= 3 * window + 2, heavy  # prompt neighbourhood + recent window
    assert runs[False][1].heavy_results() == 40
    for (f, _, a), (_, _, b) in zip(results, runs[False][2]):  # same memories were used
        assert torch.equal(a, b), f

    # a correction far from any prompt re-encodes the compacted memories it needs
    track = state.objects[1]
    assert 35 not in track.heavy and 30 not in track.heavy and track.has(35)
    _, _, corrected = p.add_new_points_or_box(state, 36, 1, points=[[1.0, 1.0]], labels=[0])
    assert track.tracked[36] is False  # tracked forwards: its memory comes from the frames before it
    assert all(track.memory(t) is not None for t in range(30, 36))
    again = _collect(p.propagate_in_video(state, start_frame_idx=36))
    assert [f for f, _, _ in again] == [36, 37, 38, 39] and torch.equal(again[0][2], corrected)
    assert state.heavy_results() <= 4 * window + 2


def test_plan_memory_forward_reverse_and_stride(model):
    cfg = model.cfg  # num_maskmem 7, max 16 pointers, pointers only from the past
    everything = lambda t: True  # noqa: E731
    plan = plan_memory(cfg, 10, [0], everything, num_frames=30)
    assert plan.memories == ((0, 0), (4, 1), (5, 2), (6, 3), (7, 4), (8, 5), (9, 6))
    assert plan.pointers[0] == (0, 10) and [t for t, _ in plan.pointers[1:]] == list(range(9, 0, -1))
    assert plan.max_pointers == 16
    plan = plan_memory(cfg, 10, [20], everything, num_frames=30, reverse=True)
    assert plan.memories == ((20, 0), (16, 1), (15, 2), (14, 3), (13, 4), (12, 5), (11, 6))
    assert plan.pointers[0] == (20, 10) and plan.pointers[1] == (11, 1)
    # a future conditioning frame gives memory but no pointer
    plan = plan_memory(cfg, 2, [5], lambda t: t == 1, num_frames=30)
    assert plan.memories == ((5, 0), (1, 6)) and plan.pointers == ((1, 1),)
    strided = cfg.with_(memory_temporal_stride_for_eval=3)
    plan = plan_memory(strided, 20, [0], everything, num_frames=30)
    assert [t for t, _ in plan.memories] == [0, 6, 9, 12, 15, 18, 19]
    assert select_conditioning_frames(10, [0, 4, 12, 30], 2) == ([4, 12], [0, 30])
    assert select_conditioning_frames(10, [0, 4, 12, 30], 3) == ([0, 4, 12], [30])
    assert select_conditioning_frames(10, [0, 4], -1) == ([0, 4], [])


# ---------------------------------------------------------------------- hole filling

def test_fill_holes_matches_reference_labelling():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 40, 50, generator=g) + 0.8  # mostly foreground with small holes
    filled = fill_holes(logits, 8)
    for k in range(3):
        bg = (logits[k, 0] <= 0).numpy()
        lab, n = ndimage.label(bg, structure=np.ones((3, 3)))
        sizes = np.bincount(lab.ravel())
        hole = (lab > 0) & (sizes[lab] <= 8)
        expect = np.where(hole, 0.1, logits[k, 0].numpy())
        np.testing.assert_allclose(filled[k, 0].numpy(), expect, rtol=0, atol=0)
    assert fill_holes(logits, 0) is logits


def test_predictor_fills_holes(model, clip):
    p = _pred(model, fill_hole_area=8)
    state = p.init_state(list(clip.frames))
    p.add_new_points_or_box(state, 0, 1, points=_center(clip, 0, 1), labels=[1])
    list(p.propagate_in_video(state, max_frame_num_to_track=3))
    track = state.objects[1]
    for t in track.history.frames():
        assert torch.equal(fill_holes(track.logits(t), 8), track.logits(t))


# ---------------------------------------------------------------------- export

def test_masks_to_labels_and_png_round_trip(tmp_path):
    masks = torch.full((2, 1, 4, 5), -5.0)
    masks[0, 0, :2] = 3.0
    masks[1, 0, 1:3] = 4.0  # overlaps object 7 on row 1 with a higher score
    labels = masks_to_labels(masks, [7, 300])
    assert labels.dtype == np.uint16
    assert labels[0].tolist() == [7] * 5 and labels[1].tolist() == [300] * 5 and labels[3].tolist() == [0] * 5
    for lab in (labels, masks_to_labels(masks, [7, 9])):
        path = write_masks_png(tmp_path / f"{int(lab.max())}.png", lab)
        back = read_masks_png(path)
        assert np.array_equal(back, lab)
    assert masks_to_labels(masks, [1, 2]).dtype == np.uint8
    with pytest.raises(ImageError):
        masks_to_labels(masks, [1])
    with pytest.raises(ImageError):
        masks_to_labels(masks, [0, 1])


def test_prompt_specs():
    assert PointSpec.parse("3,10.5,20") == PointSpec(3, 10.5, 20.0, 1, 1)
    assert PointSpec.parse(" 0, 1, 2, 0, 4 ") == PointSpec(0, 1.0, 2.0, 0, 4)
    assert BoxSpec.parse("2,1,2,30,40,5") == BoxSpec(2, 1.0, 2.0, 30.0, 40.0, 5)
    for bad in ("1,2", "a,1,2", "1,2,3,2", "1,2,3,1,2,9", "1,x,3", "1,,3", "1,inf,2"):
        with pytest.raises(PromptError):
            PointSpec.parse(bad)
    for bad in ("1,2,3,4", "1,5,5,1,1", "1,0,0,1,1,x"):
        with pytest.raises(PromptError):
            BoxSpec.parse(bad)


def test_track_video_writes_pngs_and_overlay(model, clip, tmp_path):
    cv2 = pytest.importorskip("cv2")
    prompts = [PointSpec(3, *_center(clip, 3, 1)[0], obj_id=1), BoxSpec(3, *_box(clip, 3, 2), obj_id=2),
               PointSpec(3, 1.0, 1.0, label=0, obj_id=1)]
    res = track_video(model, list(clip.frames), prompts, tmp_path / "out", progress=False)
    assert res.obj_ids == [1, 2] and res.num_frames == 10
    pngs = sorted(res.mask_dir.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(10)]
    for path in pngs:
        lab = read_masks_png(path)
        assert lab.shape == (72, 96) and set(np.unique(lab)) <= {0, 1, 2}
    cap = cv2.VideoCapture(str(res.overlay_path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 10
    with pytest.raises(PromptError):
        track_video(model, list(clip.frames), [], tmp_path / "none")
    with pytest.raises(PromptError, match="frame 12"):
        track_video(model, list(clip.frames), [PointSpec(12, 1, 1)], tmp_path / "none", overlay_video=False)
    with pytest.raises(PromptError, match="two boxes"):
        track_video(model, list(clip.frames), [BoxSpec(0, 0, 0, 5, 5), BoxSpec(0, 1, 1, 5, 5)], tmp_path / "none",
                    overlay_video=False)


def test_overlay_writer_checks_size(tmp_path):
    pytest.importorskip("cv2")
    with OverlayVideoWriter(tmp_path / "o.mp4", 32, 24, obj_ids=[1]) as w:
        w.write(np.zeros((24, 32, 3), np.uint8), np.ones((24, 32), np.uint8))
        with pytest.raises(VideoError):
            w.write(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8))
    assert w.frames_written == 1


def test_track_command(model, clip, tmp_path, monkeypatch, capsys):
    write = tmp_path / "frames"
    write.mkdir()
    from PIL import Image

    for i, frame in enumerate(clip.frames[:3]):
        Image.fromarray(frame).save(write / f"{i:05d}.jpg")
    monkeypatch.setattr(video_cli, "model_from_args", lambda args: model)
    parser = build_parser()
    args = parser.parse_args(["track", str(write), "--point", "0,40,30", "--point", "0,5,5,0",
                              "--box", "1,10,10,50,40,2", "--out", str(tmp_path / "o"), "--no-overlay"])
    assert args.func(args) == 0
    assert "tracked 2 object(s) over 3 frames" in capsys.readouterr().out
    assert len(list((tmp_path / "o" / "masks").glob("*.png"))) == 3
    args = parser.parse_args(["track", str(write), "--out", str(tmp_path / "o")])
    with pytest.raises(PromptError):
        args.func(args)
    assert Path(tmp_path / "o").is_dir()


def test_track_video_frame_range_areas_and_overlay(model, clip, tmp_path):
    """frames=(A, B): only frames A..B-1 are tracked (masks keep the video's numbers); areas.csv has
    every object's area on every tracked frame; the overlay has the tracked frames only."""
    cv2 = pytest.importorskip("cv2")
    from samkit.video.writers import lost_frames, read_areas_csv

    prompts = [PointSpec(4, *_center(clip, 4, 1)[0], obj_id=1), BoxSpec(4, *_box(clip, 4, 2), obj_id=2)]
    res = track_video(model, list(clip.frames), prompts, tmp_path / "out", frames=(2, 7), progress=False)
    assert res.frames == range(2, 7) and res.num_frames == 5
    assert [p.name for p in sorted(res.mask_dir.glob("*.png"))] == [f"{i:05d}.png" for i in range(2, 7)]
    areas = read_areas_csv(res.areas_csv)
    assert sorted(areas) == [2, 3, 4, 5, 6] and all(sorted(areas[f]) == [1, 2] for f in areas)
    for f in areas:  # the areas are the label PNGs' pixel counts
        lab = read_masks_png(res.mask_dir / f"{f:05d}.png")
        assert areas[f] == {1: int((lab == 1).sum()), 2: int((lab == 2).sum())}
    assert res.areas_csv.read_text().splitlines()[0] == "frame,obj,area"
    assert res.lost == lost_frames(areas)
    if res.areas_plot is None:
        assert "matplotlib" in (res.plot_note or "")
    else:
        assert res.areas_plot.name == "areas.png" and res.areas_plot.stat().st_size > 0
    cap = cv2.VideoCapture(str(res.overlay_path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 5
    # the end past the video is the video's end; a prompt outside the range, a start outside the video
    res = track_video(model, list(clip.frames), prompts, tmp_path / "tail", frames=(4, 99), overlay_video=False,
                      progress=False)
    assert res.frames == range(4, 10)
    with pytest.raises(PromptError, match="only frames 5..9 are tracked"):
        track_video(model, list(clip.frames), prompts, tmp_path / "x", frames=(5, None), overlay_video=False)
    with pytest.raises(VideoError, match="frames 0..9"):
        track_video(model, list(clip.frames), prompts, tmp_path / "x", frames=(10, 12), overlay_video=False)


def test_lost_frames_and_areas_csv(tmp_path):
    from samkit.video.writers import label_areas, lost_frames, read_areas_csv, write_areas_csv

    lab = np.zeros((4, 5), np.uint8)
    lab[0, :3] = 2
    assert label_areas(lab, [1, 2]) == {1: 0, 2: 3}
    areas = {0: {1: 5, 2: 3}, 1: {1: 0, 2: 4}, 2: {1: 0, 2: 0}, 3: {1: 6, 2: 1}}
    assert lost_frames(areas) == {1: [1, 2], 2: [2]}
    assert read_areas_csv(write_areas_csv(tmp_path / "a.csv", areas)) == areas


def test_overlay_video_draws_legend_and_prompts(tmp_path):
    """Each object in its id's colour, a legend of the ids in the top-left corner, and the prompts
    given on a frame drawn on it in their object's colour."""
    pytest.importorskip("cv2")
    from samkit.video.writers import FramePrompts
    from samkit.visualize import object_color

    frame = np.full((120, 160, 3), 128, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[60:100, 20:60] = 1
    labels[60:100, 100:140] = 3
    with OverlayVideoWriter(tmp_path / "o.mp4", 160, 120, obj_ids=[1, 3]) as w:
        plain = np.asarray(w.picture(frame, labels)).astype(int)
        prompted = np.asarray(w.picture(frame, labels, [FramePrompts(3, box=[95, 55, 145, 105]),
                                                         FramePrompts(1, points=[[40, 80]], labels=[1])])).astype(int)
        w.write(frame, labels, [FramePrompts(1, points=[[40, 80]], labels=[1])])
    assert w.frames_written == 1

    def has(picture, region, rgb):
        return bool((np.abs(picture[region] - rgb.astype(int)).max(axis=-1) == 0).any())

    corner = (slice(0, 30), slice(0, 20))
    assert has(plain, corner, object_color(1)) and has(plain, corner, object_color(3))  # the legend's swatches
    assert not has(plain, (slice(0, 120), slice(80, 160)), object_color(1))  # object 1 is only on the left
    box_edge = (slice(54, 57), slice(95, 146))
    assert not has(plain, box_edge, object_color(3)) and has(prompted, box_edge, object_color(3))
    assert has(prompted, (slice(76, 85), slice(36, 45)), np.array([40, 220, 40]))  # the positive click
    w2 = OverlayVideoWriter(tmp_path / "n.mp4", 160, 120, obj_ids=[1], legend=False)
    assert not has(np.asarray(w2.picture(frame, labels)).astype(int), corner, object_color(1))
    w2.close()


def test_track_command_frames_and_max_frames(model, clip, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    monkeypatch.setattr(video_cli, "model_from_args", lambda args: model)
    parser = build_parser()
    x, y = _center(clip, 3, 1)[0]
    args = parser.parse_args(["track", str(folder), "--point", f"3,{x},{y}", "--frames", "2:5", "--out",
                              str(tmp_path / "a"), "--no-overlay"])
    assert args.frames == (2, 5) and args.func(args) == 0
    text = capsys.readouterr().out
    assert "over 3 frames (2..4)" in text and "areas.csv" in text
    assert sorted(p.name for p in (tmp_path / "a" / "masks").iterdir()) == ["00002.png", "00003.png", "00004.png"]
    args = parser.parse_args(["track", str(folder), "--point", f"0,{x},{y}", "--max-frames", "2", "--out",
                              str(tmp_path / "b"), "--no-overlay"])
    assert args.func(args) == 0 and "over 2 frames (0..1)" in capsys.readouterr().out
    assert video_cli._spans([3, 4, 5, 9]) == "3-5, 9"  # how the command lists the frames an object was lost on
    assert parser.parse_args(["track", "v", "--frames", "7:", "--out", "o"]).frames == (7, None)
    assert parser.parse_args(["track", "v", "--frames", ":4", "--out", "o"]).frames == (0, 4)
    for bad in ("5", "4:2", "a:b", "-1:3"):
        with pytest.raises(SystemExit):
            parser.parse_args(["track", "v", "--frames", bad, "--out", "o"])
    assert "START:STOP" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one or the other
        parser.parse_args(["track", "v", "--frames", "0:2", "--max-frames", "2", "--out", "o"])
