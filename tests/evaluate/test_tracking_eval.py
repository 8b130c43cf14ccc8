"""The tracking evaluation protocol: clicks, scoring, report, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import samkit.evaluate.tracking as tracking_mod
from samkit.errors import ConfigError
from samkit.data.synthetic.clips import make_clip
from samkit.evaluate.tracking import evaluate_tracking, first_frame_clicks, write_tracking_report


class TruthPredictor:
    """Stands in for VideoPredictor: returns the truth (or a corrupted version of it) and
    records the clicks it was given."""

    clips: list = []
    mode = "truth"
    clicks: list = []

    def __init__(self, model, **kwargs):
        pass

    def init_state(self, frames):
        self.frames = frames
        self.objects = []
        return object()

    def add_new_points_or_box(self, state, frame, obj, points, labels):
        TruthPredictor.clicks.append((frame, obj, tuple(points[0]), tuple(labels)))
        self.objects.append(obj)

    def propagate_in_video(self, state):
        clip = TruthPredictor.clips.pop(0)
        for f, lab in enumerate(clip.labels()):
            masks = []
            for k in self.objects:
                m = lab == k
                if TruthPredictor.mode == "empty":
                    m = np.zeros_like(m)
                elif TruthPredictor.mode == "half" and f % 2 == 1:
                    m = np.zeros_like(m)
                masks.append(torch.from_numpy(np.where(m, 5.0, -5.0)).float()[None])
            yield f, list(self.objects), torch.stack(masks)


@pytest.fixture()
def clips(monkeypatch):
    monkeypatch.setattr(tracking_mod, "VideoPredictor", TruthPredictor)
    made = [make_clip(6, 64, 80, 2, seed=s) for s in (1, 2)]
    TruthPredictor.clicks = []
    return made


@pytest.mark.parametrize("mode,expected", [("truth", 1.0), ("empty", 0.0)])
def test_scores_of_perfect_and_empty_tracks(clips, mode, expected):
    TruthPredictor.mode, TruthPredictor.clips = mode, list(clips)
    res = evaluate_tracking(None, clips, progress=False)
    assert res["mIoU"] == pytest.approx(expected)
    assert len(res["per_frame"]) == 5  # frames 1..5: frame 0 is prompted, not scored
    assert res["num_clips"] == 2 and res["num_objects"] == 4
    visible = sum(int(c.object_mask(f, k).any()) for c in clips for f in range(1, 6) for k in (1, 2))
    assert res["num_pairs"] == visible
    # one positive click per object, on frame 0, inside the object
    assert len(TruthPredictor.clicks) == 4
    for (frame, obj, (x, y), labels), clip in zip(TruthPredictor.clicks, [clips[0]] * 2 + [clips[1]] * 2):
        assert frame == 0 and labels == (1,) and clip.object_mask(0, obj)[y, x]


def test_per_frame_curve_and_report(clips, tmp_path):
    TruthPredictor.mode, TruthPredictor.clips = "half", list(clips)
    res = evaluate_tracking(None, clips, progress=False)
    assert res["per_frame"][0] == 0.0 and res["per_frame"][1] == 1.0  # frames 1 (emptied) and 2
    paths = write_tracking_report(res, tmp_path, "gen")
    names = {p.name for p in paths}
    assert {"gen_summary.json", "gen_per_frame.csv"} <= names
    assert json.loads((tmp_path / "gen_summary.json").read_text())["mIoU"] == pytest.approx(res["mIoU"])
    assert (tmp_path / "gen_per_frame.csv").read_text().splitlines()[:2] == ["frame,mean_iou", "1,0.000000"]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "gen_iou_per_frame.png").stat().st_size > 1000


def test_no_clips_is_an_error():
    with pytest.raises(ConfigError, match="at least one clip"):
        evaluate_tracking(None, [], progress=False)


def test_first_frame_clicks_skip_objects_absent_from_frame_0():
    clip = make_clip(3, 48, 64, 2, seed=3)
    clicks = first_frame_clicks(clip)
    assert list(clicks) == [1, 2]
    for k, (x, y) in clicks.items():
        assert clip.object_mask(0, k)[y, x]
    masks = clip.masks.copy()
    masks[0, 0] = False  # object 1 enters later
    hidden = type(clip)(frames=clip.frames, masks=masks)
    assert list(first_frame_clicks(hidden)) == [2]


def test_on_frame_sees_every_propagated_frame(clips):
    TruthPredictor.mode, TruthPredictor.clips = "truth", list(clips)
    seen = []
    evaluate_tracking(None, clips, progress=False,
                      on_frame=lambda c, f, ids, masks: seen.append((c, f, tuple(ids), tuple(masks.shape))))
    assert seen == [(c, f, (1, 2), (2, 1, 64, 80)) for c in (0, 1) for f in range(6)]
