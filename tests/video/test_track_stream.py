"""``samkit track --stream``: a generated clip written as an .mp4 and read back through OpenCV as a
stream; its label PNGs equal StreamingTracker's masks on the same decoded frames; the stops
(end, --max-frames, Ctrl+C) and the errors (a source that cannot be opened, no prompt, a prompt
outside the first frame)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit.builder import load_model
from samkit.cli.main import main
from samkit.errors import ConfigError, PromptError, VideoError
from samkit.video.export import BoxSpec, PointSpec
from samkit.video.frames import require_cv2
from samkit.video.live import FrameStream, open_stream, track_stream
from samkit.video.streaming import StreamingTracker
from samkit.video.synthetic import SyntheticVideo
from samkit.video.writers import masks_to_labels, read_masks_png, write_clip_mp4

FRAMES, H, W = 8, 96, 128


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_model()[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, SyntheticVideo]:
    video = SyntheticVideo(FRAMES, H, W, num_objects=2, seed=3, image_size=256)
    path = write_clip_mp4(video.iter_frames(), tmp_path_factory.mktemp("clip") / "clip.mp4", fps=12)
    return path, video


def _centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _prompts(video: SyntheticVideo) -> list[PointSpec | BoxSpec]:
    """A click on object 1, a box around object 2 (first frame)."""
    masks = video.object_masks(0)
    x, y = _centre(masks[0])
    ys, xs = np.nonzero(masks[1])
    return [PointSpec(0, x, y, 1, 1), BoxSpec(0, float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()), 2)]


def _decoded(path: Path) -> list[np.ndarray]:
    """The clip's frames as OpenCV decodes them (RGB): what the stream reads."""
    cv2 = require_cv2()
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def _labels(folder: Path) -> list[np.ndarray]:
    return [read_masks_png(p) for p in sorted(folder.glob("*.png"))]


def _overlay_frames(path: Path) -> int:
    cv2 = require_cv2()
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def test_a_file_read_as_a_stream_gives_the_streaming_trackers_masks(model, clip, tmp_path) -> None:
    path, video = clip
    prompts = _prompts(video)
    res = track_stream(model, str(path), prompts, tmp_path / "out", overlay=True, progress=False)
    assert res.stopped == "end" and res.num_frames == FRAMES and res.obj_ids == [1, 2]
    assert res.source == str(path) and res.fps > 0
    written = _labels(res.label_dir)
    assert [p.name for p in sorted(res.label_dir.iterdir())] == [f"{t:05d}.png" for t in range(FRAMES)]

    frames = _decoded(path)
    assert len(frames) == FRAMES
    tracker = StreamingTracker(model, fill_hole_area=8)
    tracker.add_new_points_or_box(frames[0], 1, points=[[prompts[0].x, prompts[0].y]], labels=[1])
    b = prompts[1]
    ids, masks = tracker.add_new_points_or_box(frames[0], 2, box=[b.x0, b.y0, b.x1, b.y1])
    expected = [masks_to_labels(masks, ids)]
    for frame in frames[1:]:
        ids, masks = tracker.track(frame)
        expected.append(masks_to_labels(masks, ids))
    for t, (got, want) in enumerate(zip(written, expected)):
        assert got.shape == (H, W) and np.array_equal(got, want), t
    assert all((lab == 1).any() and (lab == 2).any() for lab in written)  # both objects followed
    assert res.overlay_path == tmp_path / "out" / "overlay.mp4" and _overlay_frames(res.overlay_path) == FRAMES


def test_max_frames_and_a_list_of_frames(model, clip, tmp_path) -> None:
    path, video = clip
    res = track_stream(model, path, _prompts(video), tmp_path / "file", max_frames=3, progress=False)
    assert res.stopped == "max_frames" and res.num_frames == 3 and res.overlay_path is None
    assert len(list(res.label_dir.glob("*.png"))) == 3 and not (tmp_path / "file" / "overlay.mp4").exists()

    frames = _decoded(path)
    listed = track_stream(model, frames, _prompts(video), tmp_path / "list", progress=False)
    assert listed.num_frames == FRAMES and listed.source == "the frames given"
    for a, b in zip(_labels(res.label_dir), _labels(listed.label_dir)):  # the same frames, the same masks
        assert np.array_equal(a, b)


def test_ctrl_c_stops_cleanly_and_keeps_what_was_written(model, clip, tmp_path) -> None:
    path, video = clip
    frames = _decoded(path)

    def interrupted():
        yield from frames[:5]
        raise KeyboardInterrupt

    res = track_stream(model, interrupted(), _prompts(video), tmp_path / "out", overlay=True, progress=False)
    assert res.stopped == "interrupted" and res.num_frames == 5
    assert len(list(res.label_dir.glob("*.png"))) == 5 and _overlay_frames(res.overlay_path) == 5
    assert not list(res.label_dir.glob(".*"))  # no temp file left behind
    with pytest.raises(KeyboardInterrupt):
        track_stream(model, interrupted(), _prompts(video), tmp_path / "raise", progress=False,
                     stop_on_interrupt=False)


def test_sources_that_cannot_be_opened_fail_fast(tmp_path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        open_stream(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="no such file"):
        open_stream(str(tmp_path / "missing.mp4"))
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(VideoError, match="cannot open .* as a video"):
        open_stream(tmp_path / "notes.mp4")
    with pytest.raises(VideoError, match="is a folder"):
        open_stream(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(VideoError, match="cannot open camera 63 .*tried its camera backends"):
        open_stream("63")
    with pytest.raises(VideoError, match="negative"):
        open_stream(-1)
    with pytest.raises(VideoError, match=r"cannot open the stream 'rtsp://me:\*\*\*@127.0.0.1:9/live'"):
        open_stream("rtsp://me:secret@127.0.0.1:9/live", timeout_s=2)  # a closed local port: refused at once
    assert time.perf_counter() - t0 < 30
    with pytest.raises(VideoError, match="T x H x W x 3"):
        open_stream(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(VideoError, match="gave no frame"):
        track_stream(None, [], [PointSpec(0, 1, 1)], tmp_path / "x")  # type: ignore[arg-type]


def test_prompt_errors(model, clip, tmp_path) -> None:
    path, _ = clip
    with pytest.raises(PromptError, match="at least one prompt"):
        track_stream(model, path, [], tmp_path / "a")
    with pytest.raises(PromptError, match=r"outside the stream's first frame, which is 128 x 96"):
        track_stream(model, path, [PointSpec(0, 200.0, 10.0)], tmp_path / "b", progress=False)
    with pytest.raises(PromptError, match="outside"):
        track_stream(model, path, [BoxSpec(0, 10.0, 10.0, 40.0, 120.0, 2)], tmp_path / "c", progress=False)
    with pytest.raises(PromptError, match="first frame .*frame 3"):
        track_stream(model, path, [PointSpec(3, 10.0, 10.0)], tmp_path / "d")
    with pytest.raises(PromptError, match="ids are 1..65535"):
        track_stream(model, path, [PointSpec(0, 10.0, 10.0, 1, 0)], tmp_path / "e")
    with pytest.raises(ConfigError, match="max_frames"):
        track_stream(model, path, [PointSpec(0, 10.0, 10.0)], tmp_path / "f", max_frames=0)
    assert not (tmp_path / "b" / "labels").exists()  # nothing written before the prompts were checked
    with pytest.raises(PromptError, match=r"expected X,Y\[,LABEL\[,OBJ\]\]"):
        PointSpec.parse("0,1,2,1,1", frame=0)
    assert PointSpec.parse("3.5,4,0,2", frame=0) == PointSpec(0, 3.5, 4.0, 0, 2)
    assert BoxSpec.parse("1,2,3,4,5", frame=0) == BoxSpec(0, 1.0, 2.0, 3.0, 4.0, 5)
    assert PointSpec.parse("2,3.5,4") == PointSpec(2, 3.5, 4.0)  # the VIDEO form is unchanged


def test_cli_stream(clip, tmp_path, capsys, monkeypatch) -> None:
    path, video = clip
    x, y = _centre(video.object_masks(0)[0])
    out = tmp_path / "out"
    rc = main(["track", "--stream", str(path), "--point", f"{x},{y}", "--out", str(out), "--max-frames", "4",
               "--overlay"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"stream: {path} (12 fps)" in printed and "over 4 frames" in printed and "--max-frames 4" in printed
    assert len(list((out / "labels").glob("*.png"))) == 4 and _overlay_frames(out / "overlay.mp4") == 4

    assert main(["track", "--stream", str(path), "--out", str(tmp_path / "none")]) == 2
    assert "give at least one --point X,Y[,LABEL[,OBJ]]" in capsys.readouterr().err
    assert main(["track", "--stream", str(tmp_path / "missing.mp4"), "--point", "1,1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samkit track: error: stream source") and "no such file" in err and err.count("\n") == 1
    assert main(["track", "--stream", str(path), "--point", "500,1", "--out", str(out)]) == 2
    assert "outside the stream's first frame" in capsys.readouterr().err
    # --max-frames N on a VIDEO tracks its first N frames; --frames A:B needs a VIDEO
    assert main(["track", str(path), "--point", "0,1,1", "--out", str(tmp_path / "first2"), "--max-frames", "2",
                 "--no-overlay"]) == 0
    assert "over 2 frames (0..1)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "first2" / "masks").iterdir()) == ["00000.png", "00001.png"]
    assert main(["track", "--stream", str(path), "--point", "1,1", "--out", str(out), "--frames", "0:2"]) == 2
    assert "--frames START:STOP needs a VIDEO" in capsys.readouterr().err
    assert main(["track", "--point", "0,1,1", "--out", str(out)]) == 2
    assert "give a VIDEO" in capsys.readouterr().err

    frames = _decoded(path)

    def interrupted():
        yield from frames[:3]
        raise KeyboardInterrupt

    import samkit.cli.video as cli_video

    monkeypatch.setattr(cli_video, "open_stream", lambda source: FrameStream(interrupted(), "camera 0", "camera"))
    rc = main(["track", "--stream", "0", "--point", f"{x},{y}", "--out", str(tmp_path / "cam")])
    printed = capsys.readouterr().out
    assert rc == 0 and "over 3 frames" in printed and "stopped by Ctrl+C" in printed
    assert len(list((tmp_path / "cam" / "labels").glob("*.png"))) == 3
