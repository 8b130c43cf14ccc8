"""A video in the studio: objects prompted on any frame and tracked through the clip.

One :class:`VideoAnnotation` per opened video holds a :class:`~samkit.video.VideoPredictor` session
(frames decoded lazily, memory bounded), the objects and their prompts, and every frame's masks as
COCO RLE. Tracking runs as a :class:`TrackJob` on the studio's video thread, reporting progress per
frame and stopping when cancelled; masks go to disk as they come: one label PNG per frame
(``OUT/<video>/labels/00000.png``, pixel = object id) and ``OUT/<video>/video.json`` (the SA-V
layout, docs/studio/API.md), rewritten every :data:`SAVE_EVERY` frames and at the end of each job.
Opening the video again (after a restart) restores objects, prompts and masks from those files; the
predictor's memory is rebuilt by replaying the prompts when tracking or prompting next.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from samkit.errors import DatasetError, PromptError, StateError
from samkit.fileio import write_json
from samkit.lru import LRUCache
from samkit.masks import coco_to_rle, mask_to_rle, rle_to_coco
from samkit.masks.rle import decode_rle_counts
from samkit.model.sam2 import SAM2Model
from samkit.video.predictor import VideoPredictor
from samkit.video.writers import OverlayVideoWriter, masks_to_labels, write_masks_png

__all__ = ["VideoAnnotation", "TrackJob", "SAVE_EVERY"]

SAVE_EVERY = 50  # tracked frames between two rewrites of video.json
DIRECTIONS = ("both", "forward", "backward")


@dataclass
class TrackJob:
    """One tracking run: its progress, and the events the page listens to."""

    state: str = "idle"  # idle | running | done | cancelled | error
    direction: Optional[str] = None
    done: int = 0
    total: int = 0
    error: Optional[str] = None
    runs: list[tuple[int, bool]] = field(default_factory=list)  # (start frame, reverse) in order
    events: list[dict[str, int]] = field(default_factory=list)  # {"frame", "done", "total"} per frame
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        return {"state": self.state, "direction": self.direction, "done": self.done, "total": self.total,
                "error": self.error}


class VideoAnnotation:
    """The studio's state of one video (thread-safe: a lock guards objects, prompts and masks).

    Args:
        model: the network.
        source: the video file or folder of frames.
        name: its path relative to the images folder (``video.json`` records it).
        out_dir: ``OUT/<video without suffix>``: where its labels and JSON go.
    """

    def __init__(self, model: SAM2Model, source: Path, name: str, out_dir: Path) -> None:
        self.name = name
        self.out_dir = out_dir
        self.predictor = VideoPredictor(model, progress=False)
        self.session = self.predictor.init_state(str(source))
        video = self.session.video
        self.num_frames = self.session.num_frames
        self.height, self.width = self.session.video_height, self.session.video_width
        self.fps = float(getattr(video, "fps", 0.0) or 24.0)
        self.objects: dict[int, Optional[str]] = {}
        self.prompts: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (frame, obj) -> prompts in order
        self.masks: dict[int, dict[int, dict[str, Any]]] = {}  # frame -> obj -> COCO RLE
        self.job = TrackJob()
        self._lock = threading.RLock()
        self._jpegs: LRUCache[int, bytes] = LRUCache(16)
        self._replay_needed = False
        self._restore()

    # ------------------------------------------------------------------ views
    def view(self) -> dict[str, Any]:
        with self._lock:
            return {"width": self.width, "height": self.height, "num_frames": self.num_frames, "fps": self.fps,
                    "objects": [{"id": k, "name": v} for k, v in self.objects.items()],
                    "prompted_frames": sorted({t for t, _ in self.prompts}), "tracked_frames": len(self.masks),
                    "job": self.job.view()}

    def frame_jpeg(self, t: int) -> bytes:
        self._check_frame(t)
        with self._lock:
            cached = self._jpegs.get(t)
        if cached is None:
            buf = io.BytesIO()
            Image.fromarray(np.asarray(self.session.video.frame(t))).save(buf, format="JPEG", quality=90)
            cached = buf.getvalue()
            with self._lock:
                self._jpegs.put(t, cached)
        return cached

    def frame_masks(self, t: int) -> dict[str, Any]:
        self._check_frame(t)
        with self._lock:
            masks = [{"obj": obj, "mask": coco_to_rle(rle)} for obj, rle in sorted(self.masks.get(t, {}).items())]
            prompts = [dict(p, frame=t, obj=obj) for (f, obj), ps in sorted(self.prompts.items()) if f == t
                       for p in ps]
        return {"frame": t, "masks": masks, "prompts": prompts}

    # ------------------------------------------------------------------ objects
    def add_object(self, name: Optional[str]) -> dict[str, Any]:
        with self._lock:
            obj = max(self.objects, default=0) + 1
            self.objects[obj] = name
            self._save_json()
            return {"id": obj, "name": name}

    def rename_object(self, obj: int, name: Optional[str]) -> dict[str, Any]:
        with self._lock:
            self._check_object(obj)
            self.objects[obj] = name
            self._save_json()
            return {"id": obj, "name": name}

    def delete_object(self, obj: int) -> None:
        with self._lock:
            self._require_idle()
            self._check_object(obj)
            del self.objects[obj]
            for key in [k for k in self.prompts if k[1] == obj]:
                del self.prompts[key]
            touched = [t for t, per in self.masks.items() if obj in per]
            for t in touched:
                del self.masks[t][obj]
                self._write_labels(t)
                if not self.masks[t]:
                    del self.masks[t]
            self.predictor.remove_object(self.session, obj, need_output=False)
            self._save_json()

    # ------------------------------------------------------------------ prompts (model thread)
    def prompt(self, t: int, obj: int, prompt: dict[str, Any]) -> dict[str, Any]:
        """Add a validated point or box prompt of ``obj`` on frame ``t``; returns the frame's masks."""
        with self._lock:
            self._check_frame(t)
            self._check_object(obj)
            self._require_idle()
            self._replay()
            prompts = list(self.prompts.get((t, obj), []))
            h, w = self.height, self.width
            corners = [prompt["box"][:2], prompt["box"][2:]] if prompt["type"] == "box" else [[prompt["x"], prompt["y"]]]
            for x, y in corners:
                if not (0 <= x <= w and 0 <= y <= h):
                    raise PromptError(f"point ({x}, {y}) is outside the {w} x {h} frame (x in 0..{w}, y in 0..{h})")
            if prompt["type"] == "box":
                prompts = [prompt]
            else:
                prompts.append(prompt)
            self._apply(t, obj, prompts)
            self.prompts[(t, obj)] = prompts
            self._save_json()
            return self.frame_masks(t)

    def clear(self, t: int, obj: int) -> dict[str, Any]:
        with self._lock:
            self._check_frame(t)
            self._check_object(obj)
            self._require_idle()
            self._replay()
            self.prompts.pop((t, obj), None)
            if obj in self.predictor_objects():
                self.predictor.clear_all_prompts_in_frame(self.session, t, obj, need_output=False)
            self.masks.get(t, {}).pop(obj, None)
            if not self.masks.get(t):
                self.masks.pop(t, None)
            self._write_labels(t)
            self._save_json()
            return self.frame_masks(t)

    def predictor_objects(self) -> list[int]:
        return list(self.session.obj_ids)

    def _apply(self, t: int, obj: int, prompts: list[dict[str, Any]]) -> None:
        """Decode ``obj``'s prompts on frame ``t`` into the session and store the frame's masks."""
        box = next((p["box"] for p in prompts if p["type"] == "box"), None)
        points = [[p["x"], p["y"]] for p in prompts if p["type"] == "point"]
        labels = [p["label"] for p in prompts if p["type"] == "point"]
        if box is not None:
            x0, y0, x1, y1 = box
            if not (x1 > x0 and y1 > y0):
                raise PromptError(f"a box is x0 < x1 and y0 < y1, got {box}")
        _, ids, logits = self.predictor.add_new_points_or_box(
            self.session, t, obj, points=points or None, labels=labels or None, box=box, clear_old_points=True)
        self._store(t, ids, logits)

    def _store(self, t: int, ids: list, logits: torch.Tensor) -> None:
        masks = logits[:, 0] > 0
        per = {int(obj): rle_to_coco(rle) for obj, rle, m in zip(ids, mask_to_rle(masks.cpu()), masks) if m.any()}
        if per:
            self.masks[t] = per
        else:
            self.masks.pop(t, None)
        self._write_labels(t)

    def _replay(self) -> None:
        """Give the predictor the saved prompts (after a restart), in frame order."""
        if not self._replay_needed:
            return
        self._replay_needed = False
        for (t, obj), prompts in sorted(self.prompts.items()):
            box = next((p["box"] for p in prompts if p["type"] == "box"), None)
            points = [[p["x"], p["y"]] for p in prompts if p["type"] == "point"]
            labels = [p["label"] for p in prompts if p["type"] == "point"]
            self.predictor.add_new_points_or_box(self.session, t, obj, points=points or None,
                                                 labels=labels or None, box=box, clear_old_points=True)

    # ------------------------------------------------------------------ tracking (video thread)
    def start_track(self, direction: str) -> TrackJob:
        """A new job for :meth:`run_track`, its runs planned (409-worthy errors raise)."""
        if direction not in DIRECTIONS:
            raise PromptError(f"'direction' is one of {', '.join(DIRECTIONS)}, got {direction!r}")
        with self._lock:
            self._require_idle()
            if not self.prompts:
                raise StateError("no object has a prompt yet: click an object on a frame, then track")
            frames = sorted({t for t, _ in self.prompts})
            runs = []  # (start, reverse): both = forward and backward from the earliest prompted frame
            if direction in ("both", "forward"):
                runs.append((frames[0], False))
            if direction == "both" and frames[0] > 0:
                runs.append((frames[0], True))
            if direction == "backward":
                runs.append((frames[-1], True))
            total = sum(s + 1 if reverse else self.num_frames - s for s, reverse in runs)
            self.job = TrackJob(state="running", direction=direction, total=total, runs=runs)
            return self.job

    def run_track(self, job: TrackJob) -> None:
        """Propagate every object from its prompted frames (forward from the earliest, backward
        from the latest), saving masks as they come; stops when ``job.cancel`` is set."""
        try:
            with self._lock:
                self._replay()
            for start, reverse in job.runs:
                stream = self.predictor.propagate_in_video(self.session, start_frame_idx=start, reverse=reverse)
                for t, ids, logits in stream:
                    with self._lock:
                        self._store(t, ids, logits)
                        job.done += 1
                        job.events.append({"frame": t, "done": job.done, "total": job.total})
                        if job.done % SAVE_EVERY == 0:
                            self._save_json()
                    if job.cancel.is_set():
                        stream.close()
                        job.state = "cancelled"
                        return
            job.state = "done"
        except Exception as exc:  # shown on the page; the session stays usable
            job.state, job.error = "error", str(exc) or type(exc).__name__
        finally:
            with self._lock:
                self._save_json()

    def write_overlay(self) -> Path:
        """``OUT/<video>/overlay.mp4``: every frame with its masks (untracked frames plain)."""
        with self._lock:
            self._require_idle()
            ids = sorted(self.objects)
        path = self.out_dir / "overlay.mp4"
        with OverlayVideoWriter(path, self.width, self.height, fps=self.fps, obj_ids=ids) as writer:
            for t in range(self.num_frames):
                writer.write(np.asarray(self.session.video.frame(t)), self._labels(t))
        return path

    # ------------------------------------------------------------------ disk
    def _labels(self, t: int) -> np.ndarray:
        per = self.masks.get(t, {})
        if not per:
            return np.zeros((self.height, self.width), dtype=np.uint8)
        ids = sorted(per)
        masks = np.stack([decode_rle_counts(per[i]["counts"], self.height, self.width) for i in ids])
        return masks_to_labels(masks, ids)

    def _write_labels(self, t: int) -> None:
        path = self.out_dir / "labels" / f"{t:05d}.png"
        if t in self.masks or path.exists():
            write_masks_png(path, self._labels(t))

    def _save_json(self) -> None:
        obj_ids = sorted(self.objects)
        frames = sorted(self.masks)
        write_json(self.out_dir / "video.json", {
            "video": {"file_name": self.name, "height": self.height, "width": self.width,
                      "num_frames": self.num_frames, "fps": self.fps},
            "objects": [{"id": k, "name": self.objects[k]} for k in obj_ids],
            "prompts": [dict(p, frame=t, obj=obj) for (t, obj), ps in sorted(self.prompts.items()) for p in ps],
            "masklet_id": obj_ids,
            "masklet_frames": frames,
            "masklet": [[self.masks[t].get(obj) for obj in obj_ids] for t in frames],
        })

    def _restore(self) -> None:
        path = self.out_dir / "video.json"
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            if saved["video"]["file_name"] != self.name or saved["video"]["num_frames"] != self.num_frames:
                raise ValueError("it belongs to another video")
            self.objects = {int(o["id"]): o.get("name") for o in saved["objects"]}
            for p in saved["prompts"]:
                p = dict(p)
                key = (int(p.pop("frame")), int(p.pop("obj")))
                self.prompts.setdefault(key, []).append(p)
            ids = [int(i) for i in saved["masklet_id"]]
            for t, row in zip(saved["masklet_frames"], saved["masklet"]):
                per = {obj: rle for obj, rle in zip(ids, row) if rle is not None}
                if per:
                    self.masks[int(t)] = per
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path} is not this video's annotation file ({exc}); move it away to annotate "
                               f"{self.name!r} again") from None
        self._replay_needed = bool(self.prompts)

    # ------------------------------------------------------------------ checks
    def _check_frame(self, t: int) -> None:
        if not 0 <= t < self.num_frames:
            raise PromptError(f"frame {t} is not in the video (frames 0 to {self.num_frames - 1})")

    def _check_object(self, obj: int) -> None:
        if obj not in self.objects:
            raise KeyError(obj)

    def _require_idle(self) -> None:
        if self.job.state == "running":
            raise StateError("the video is being tracked: wait for it to finish, or cancel it")
