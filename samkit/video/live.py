"""Live tracking behind ``samkit track --stream``: frames of a camera, a network stream or a video
file, read one at a time and tracked as they arrive (:class:`~samkit.video.streaming.StreamingTracker`).

* :func:`open_stream`: a :class:`FrameStream` (an iterator of ``H x W x 3`` uint8 RGB frames) over
  ``cv2.VideoCapture`` (a camera index, an ``rtsp://`` / ``http://`` URL, a file path), or over any
  iterable of frames (a list of arrays, a generator);
* :func:`track_stream`: prompts on the first frame, then each frame tracked and written at once:
  ``OUT/labels/00000.png ...`` (label PNGs, pixel = object id, :mod:`samkit.video.writers`) and,
  when asked, ``OUT/overlay.mp4`` (grown frame by frame). Ctrl+C stops it cleanly: what was written
  stays, and the summary says how many frames that is.

A stream has no length and no way back: every frame is tracked once, forwards. A camera keeps
producing frames while one is tracked; OpenCV's capture keeps a few and the driver drops the rest,
so on a camera the tracked frames are the ones that were current when the tracker was ready.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from tqdm import tqdm

from samkit.errors import ConfigError, ImageError, PromptError, VideoError
from samkit.imageio import describe_access_error, to_rgb_uint8
from samkit.model.sam2 import SAM2Model
from samkit.video.export import BoxSpec, PointSpec, group_prompts
from samkit.video.frames import require_cv2
from samkit.video.streaming import StreamingTracker
from samkit.video.writers import FramePrompts, OverlayVideoWriter, masks_to_labels, write_masks_png

__all__ = ["FrameStream", "StreamLike", "StreamSummary", "open_stream", "track_stream", "STREAM_TIMEOUT_S"]

StreamLike = Union[int, str, os.PathLike, Iterable[Any], "FrameStream"]
"""What :func:`open_stream` accepts: a camera index, a URL or file path, frames, a FrameStream."""

# how long a network stream may take to open, and to deliver its next frame, before it counts as
# unreachable (opening) or ended (reading); OpenCV's FFmpeg backend waits 30 s by default
STREAM_TIMEOUT_S = 10.0

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PASSWORD = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):[^@/]*@")
_MAX_FPS = 1000.0  # a container or camera reporting more than this reports nonsense (some RTSP servers: 90000)


def _shown(url: str) -> str:
    """A URL for messages, its password replaced by ``***``."""
    return _PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


class FrameStream:
    """Frames read one at a time: iterate once, each item ``H x W x 3`` uint8 RGB (C-contiguous).

    Made by :func:`open_stream`; a context manager (closing releases the camera or file).

    Attributes:
        name: what was opened, for messages (``"camera 0"``, a URL without its password, a path).
        kind: ``"camera"``, ``"url"``, ``"file"`` or ``"frames"`` (an iterable given in memory).
        fps: the frame rate the source reports; 0.0 when it reports none.
    """

    def __init__(self, frames: Iterator[np.ndarray], name: str, kind: str, fps: float = 0.0,
                 release: Callable[[], None] | None = None) -> None:
        self.name = name
        self.kind = kind
        self.fps = float(fps) if 0.0 < float(fps) <= _MAX_FPS else 0.0
        self.frames_read = 0
        self._frames = frames
        self._release = release

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> np.ndarray:
        if self._frames is None:
            raise StopIteration
        frame = next(self._frames)
        try:
            rgb = to_rgb_uint8(frame)
        except ImageError as exc:
            raise VideoError(f"frame {self.frames_read} of {self.name} is not an H x W x 3 RGB image: {exc}") from None
        self.frames_read += 1
        return rgb

    def close(self) -> None:
        """Release the camera, stream or file; idempotent. Iterating afterwards ends at once."""
        release, self._release, self._frames = self._release, None, None
        if release is not None:
            release()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameStream({self.name!r}, kind={self.kind!r}, fps={self.fps:g})"


def _capture_frames(cap: Any, cv2: Any) -> Iterator[np.ndarray]:
    """BGR frames of an opened ``cv2.VideoCapture`` as RGB, until a read fails (end, or a stall
    longer than the read timeout)."""
    while True:
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)


def _backends(cv2: Any, which: str) -> str:
    """The names of OpenCV's camera or stream backends in this build, for messages."""
    registry = getattr(cv2, "videoio_registry", None)
    getter = getattr(registry, f"get{which}Backends", None)
    try:
        names = [registry.getBackendName(b) for b in getter()] if getter is not None else []
    except Exception:  # an OpenCV build without the registry's names: the message does without them
        names = []
    return ", ".join(names) or "its default"


def _video_devices() -> str:
    """The camera devices Linux lists (``/dev/video*``), for messages; empty elsewhere."""
    if not sys.platform.startswith("linux"):
        return ""
    found = sorted(Path("/dev").glob("video*"), key=lambda p: (len(p.name), p.name))
    if not found:
        return ("; this machine has no /dev/video* device (no camera is connected, or it is not passed to this "
                "container)")
    return f"; video devices on this machine: {', '.join(str(p) for p in found)}"


def _from_capture(cap: Any, cv2: Any, name: str, kind: str) -> FrameStream:
    return FrameStream(_capture_frames(cap, cv2), name, kind, fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                       release=cap.release)


def _open_camera(index: int) -> FrameStream:
    cv2 = require_cv2()
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"OpenCV cannot open camera {index} (tried its camera backends: {_backends(cv2, 'Camera')})"
                         f"{_video_devices()}; check that the camera is connected and not in use by another program, "
                         "or give a stream URL (rtsp://, http://) or a video file")
    return _from_capture(cap, cv2, f"camera {index}", "camera")


def _open_url(url: str, timeout_s: float) -> FrameStream:
    cv2 = require_cv2()
    name = _shown(url)
    params = []
    for prop in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
        if hasattr(cv2, prop):  # OpenCV >= 4.5.2 (FFmpeg and GStreamer backends)
            params += [getattr(cv2, prop), int(timeout_s * 1000)]
    cap = cv2.VideoCapture(url, cv2.CAP_ANY, params) if params else cv2.VideoCapture(url)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"OpenCV cannot open the stream {name!r} (tried its stream backends: "
                         f"{_backends(cv2, 'Stream')}; waited at most {timeout_s:g} s): check the address, that the "
                         "stream is live and reachable from this machine, and its user name and password")
    return _from_capture(cap, cv2, name, "url")


def _open_file(path: Path) -> FrameStream:
    if not path.exists():
        raise VideoError(f"stream source {str(path)!r} is not a camera index (0, 1, ...), a URL (rtsp://, http://, "
                         "...) or an existing file: no such file; check the path")
    if path.is_dir():
        raise VideoError(f"stream source {str(path)!r} is a folder; --stream reads a camera, a URL or a video file "
                         "(track a folder of frames with `samkit track FOLDER`)")
    if not os.access(path, os.R_OK):
        raise VideoError(f"cannot open {str(path)!r}: {describe_access_error(path)}")
    cv2 = require_cv2()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"OpenCV cannot open {str(path)!r} as a video: it is not a video file, or its codec is not "
                         "supported by this OpenCV build")
    return _from_capture(cap, cv2, str(path), "file")


def open_stream(source: StreamLike, *, timeout_s: float = STREAM_TIMEOUT_S) -> FrameStream:
    """Frames of ``source``, read one at a time (nothing is read until the first ``next``).

    Args:
        source: a camera index (``0``, or the string ``"0"``); a URL OpenCV opens (``rtsp://``,
            ``http://``, ... anything with a ``scheme://``); a video file path; any iterable of
            ``H x W x 3`` frames (a list of arrays, a generator, a ``T x H x W x 3`` array), read
            lazily; or a :class:`FrameStream` (returned as it is).
        timeout_s: a URL must open, and then give each frame, within this many seconds (a stall
            longer than that ends the stream).

    Returns:
        A :class:`FrameStream` of ``H x W x 3`` uint8 RGB frames (OpenCV's BGR converted).

    Raises:
        VideoError: a source that cannot be opened (the message says what was tried: the camera
            backends and devices, the stream backends, the file), or of a type that is no source;
            OpenCV missing (``pip install samkit[video]``).
    """
    if isinstance(source, FrameStream):
        return source
    if isinstance(source, bool):
        raise VideoError(f"a stream source is a camera index, a URL, a file or frames, got {source!r}")
    if isinstance(source, (int, np.integer)):
        if source < 0:
            raise VideoError(f"camera index {int(source)} is negative; cameras are numbered 0, 1, ...")
        return _open_camera(int(source))
    if isinstance(source, str):
        text = source.strip()
        if not text:
            raise VideoError("the stream source is empty; give a camera index (0), a URL (rtsp://...) or a video file")
        if text.isdigit():
            return _open_camera(int(text))
        if _URL.match(text) and not text.lower().startswith("file://"):
            return _open_url(text, timeout_s)
        return _open_file(Path(text[len("file://"):] if text.lower().startswith("file://") else text))
    if isinstance(source, os.PathLike):
        return _open_file(Path(source))
    if isinstance(source, np.ndarray) and source.ndim != 4:
        raise VideoError(f"an array of frames is T x H x W x 3, got shape {source.shape}; give one frame as [frame]")
    if isinstance(source, Iterable):
        return FrameStream(iter(source), "the frames given", "frames")
    raise VideoError(f"a stream source is a camera index, a URL, a file or an iterable of frames, got "
                     f"{type(source).__name__}")


# ---------------------------------------------------------------------- the whole run

@dataclass
class StreamSummary:
    """What :func:`track_stream` wrote.

    ``num_frames`` label PNGs ``label_dir/00000.png .. {num_frames - 1:05d}.png``, one per frame
    read, the first frame (the prompted one) included; ``stopped`` says why it ended: ``"end"``
    (the stream ended, or a URL stalled past its timeout), ``"max_frames"``, or ``"interrupted"``
    (Ctrl+C). ``fps`` is ``num_frames / seconds``, timed from the first frame read to the last
    written (opening the stream and loading the model are not in it).
    """

    source: str
    out_dir: Path
    label_dir: Path
    overlay_path: Path | None
    num_frames: int
    obj_ids: list[int]
    seconds: float
    fps: float
    stopped: str


def _check_inside(groups: dict[tuple[int, int], dict[str, Any]], width: int, height: int) -> None:
    """Every point and box corner within the first frame (``0 <= x <= W``, ``0 <= y <= H``)."""
    for (_, obj), g in sorted(groups.items()):
        corners = [("point", p) for p in g["points"]]
        if g["box"] is not None:
            corners += [("box", g["box"][:2]), ("box", g["box"][2:])]
        for what, (x, y) in corners:
            if not (0 <= x <= width and 0 <= y <= height):
                shown = g["box"] if what == "box" else [x, y]
                raise PromptError(f"the {what} {shown} of object {obj} is outside the stream's first frame, which is "
                                  f"{width} x {height} (x in 0..{width}, y in 0..{height}); give prompts in its pixels")


def track_stream(model: SAM2Model, source: StreamLike, prompts: Sequence[PointSpec | BoxSpec],
                 out_dir: str | os.PathLike, *, max_frames: int | None = None, overlay: bool = False,
                 fps: float | None = None, fill_hole_area: int = 8, progress: bool = True,
                 stop_on_interrupt: bool = True, **predictor_options: Any) -> StreamSummary:
    """Track objects through a stream, writing each frame's masks as it arrives.

    The prompts are on the first frame read (frame 0); each object's clicks and box go in
    together. Then every frame read is tracked once (:class:`StreamingTracker`, the
    predictor's memory; memory stays flat) and written before the next is read.

    Args:
        model: the SAM 2 network.
        source: see :func:`open_stream` (camera index, URL, file, iterable of frames, FrameStream).
        prompts: :class:`PointSpec` / :class:`BoxSpec` on frame 0, in the first frame's pixels.
        out_dir: ``labels/00000.png ...`` (``H x W`` label PNGs, pixel = object id; where two
            objects claim a pixel, the one prompted first (the lower id) has it) and, with
            ``overlay``, ``overlay.mp4``.
        max_frames: stop after this many frames (the first included); None: until the stream ends.
        overlay: also write ``overlay.mp4`` (OpenCV ``mp4v``), opened at the first frame and
            grown frame by frame.
        fps: frame rate of the overlay (default: the source's, else 24).
        fill_hole_area: passed to :class:`~samkit.video.predictor.VideoPredictor`.
        progress: show a progress line (frames and frames per second).
        stop_on_interrupt: Ctrl+C (KeyboardInterrupt) while frames are tracked ends the run
            cleanly with ``stopped="interrupted"``; False: it is raised after the files are closed.
        predictor_options: more :class:`~samkit.video.predictor.VideoPredictor` options.

    Returns:
        A :class:`StreamSummary`.

    Raises:
        PromptError: no prompts, a prompt on another frame than 0, a prompt outside the first
            frame, an object id outside 1..65535, two boxes for one object.
        ConfigError: ``max_frames`` below 1.
        VideoError: the source cannot be opened or gives no frame; frames of different sizes;
            OpenCV missing.
    """
    if not prompts:
        raise PromptError("give at least one prompt (a point or a box) on the stream's first frame")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be at least 1 (the first frame), got {max_frames}")
    groups = group_prompts(prompts)
    later = sorted({frame for frame, _ in groups if frame != 0})
    if later:
        raise PromptError(f"a stream's prompts are on its first frame (frame 0), got a prompt on frame {later[0]}")
    out = Path(out_dir)
    label_dir = out / "labels"
    stream = open_stream(source)
    writer: OverlayVideoWriter | None = None
    bar: tqdm | None = None
    count, stopped = 0, "end"
    t0 = time.perf_counter()
    try:
        first = next(stream, None)
        if first is None:
            raise VideoError(f"{stream.name} gave no frame; check that the camera or stream is sending video")
        t0 = time.perf_counter()
        height, width = first.shape[:2]
        _check_inside(groups, width, height)
        tracker = StreamingTracker(model, fill_hole_area=fill_hole_area, **predictor_options)
        ids: list[Any] = []
        for (_, obj), g in sorted(groups.items()):
            ids, masks = tracker.add_new_points_or_box(first, obj, points=g["points"] or None,
                                                       labels=g["labels"] or None, box=g["box"], return_logits=True)
        obj_ids = [int(i) for i in ids]
        first_prompts = [FramePrompts(obj, g["points"], g["labels"], g["box"])
                         for (_, obj), g in sorted(groups.items())]
        label_dir.mkdir(parents=True, exist_ok=True)
        if overlay:
            writer = OverlayVideoWriter(out / "overlay.mp4", width, height, fps or stream.fps or 24.0, obj_ids)
        bar = tqdm(total=max_frames, desc="tracking", unit="frame", disable=not progress)
        frame: np.ndarray | None = first
        try:
            while frame is not None:
                labels = masks_to_labels(masks, obj_ids)  # H x W, pixel = the object with the highest logit
                write_masks_png(label_dir / f"{count:05d}.png", labels)
                count += 1  # counts the label PNGs written
                if writer is not None:  # the first frame with its prompts drawn
                    writer.write(frame, labels, first_prompts if count == 1 else ())
                bar.update(1)
                if max_frames is not None and count >= max_frames:
                    stopped = "max_frames"
                    break
                frame = next(stream, None)
                if frame is not None:
                    _, masks = tracker.track(frame, return_logits=True)  # num_objects x H x W logits
        except KeyboardInterrupt:
            if not stop_on_interrupt:
                raise
            stopped = "interrupted"
        tracker.reset()
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        stream.close()
    seconds = time.perf_counter() - t0
    return StreamSummary(source=stream.name, out_dir=out, label_dir=label_dir,
                         overlay_path=writer.path if writer is not None else None, num_frames=count,
                         obj_ids=obj_ids, seconds=seconds, fps=count / seconds if seconds > 0 else 0.0,
                         stopped=stopped)
