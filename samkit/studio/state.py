"""The studio's server-side state: the model's threads, the embedding LRU, objects in progress,
proposals.

Every interactive model call and every change of an object in progress runs on one thread
(:class:`ModelWorker`, most urgent first), so sessions never race and the event loop never waits on
torch. The automatic mask generator's proposals run on a second, low-priority thread, so clicks stay
answered while an image's proposals are computed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from samkit.automask import AutoMaskGenerator
from samkit.errors import StateError
from samkit.fileio import write_json
from samkit.image_predictor import ImagePredictor
from samkit.lru import LRUCache
from samkit.masks import coco_to_rle, mask_to_rle, rle_to_coco
from samkit.masks.rle import decode_rle_counts
from samkit.model.mask_decoder import stability_scores
from samkit.model.sam2 import SAM2Model
from samkit.session import ImageSession
from samkit.studio.catalog import Catalog
from samkit.studio.store import AnnotationStore, make_annotation
from samkit.studio.video import VideoAnnotation

__all__ = ["StudioConfig", "StudioState", "ModelWorker", "INTERACTIVE", "PREFETCH"]

INTERACTIVE, PREFETCH = 0, 1  # ModelWorker priorities (lower runs first)
STABILITY_OFFSET = 1.0  # the automatic generator's default offset, for the stability of manual masks


@dataclass
class StudioConfig:
    """What ``samkit studio`` was asked to serve."""

    images_dir: Path  # the images (and videos) to annotate (listed once, at start)
    out_dir: Path  # the SA-1B JSON, one per image; a folder per video
    only: Optional[list[Path]] = None  # serve just these entries of images_dir (one video, or a frames folder)
    propose: bool = False  # start the automatic proposals when an image is opened
    token: Optional[str] = None  # required on every API call when set
    max_body_bytes: int = 64 << 10  # request bodies above this get 413
    cache_embeddings: int = 8  # image embeddings kept (LRU), by count ...
    cache_bytes: int = 1 << 30  # ... and by bytes
    max_objects_in_progress: int = 256  # (client, image) objects in progress kept (LRU)
    prefetch: bool = True  # compute the embeddings of the opened image and the next one ahead
    automask: dict[str, Any] = field(default_factory=dict)  # AutoMaskGenerator arguments of the proposals
    open_videos: int = 4  # video sessions kept open (idle ones beyond this are closed; their files stay)

    def __post_init__(self) -> None:
        self.images_dir = Path(self.images_dir)
        self.out_dir = Path(self.out_dir)


class ModelWorker:
    """One thread that runs the submitted calls one at a time, lowest priority value first
    (submission order among equals). Started by the first call; :meth:`close` stops it."""

    def __init__(self, name: str = "samkit-studio-model") -> None:
        self._name = name
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._start = threading.Lock()

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any) -> Future:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        future: Future = Future()
        self._queue.put((priority, next(self._order), fn, args, future))
        return future

    async def run(self, priority: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the worker thread, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(priority, fn, *args))

    def _loop(self) -> None:
        while True:
            _, _, fn, args, future = self._queue.get()
            if fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the awaiting request
                future.set_exception(exc)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put((-1, -1, None, (), None))
            self._thread.join(timeout=30)
            self._thread = None


def _predictor_bytes(predictor: ImagePredictor) -> int:
    feats = predictor._features or {}
    tensors = [feats.get("image_embed")] + list(feats.get("high_res_feats") or [])
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass
class ObjectInProgress:
    """One client's object being prompted on one image."""

    session: ImageSession
    started: float  # time.monotonic() of its first prompt


def rle_view(mask: torch.Tensor) -> dict[str, Any]:
    """An ``H x W`` bool mask as the page reads it: uncompressed column-major RLE."""
    return mask_to_rle(mask[None].cpu())[0]


def annotation_view(ann: dict[str, Any]) -> dict[str, Any]:
    """A stored annotation as the API returns it (its mask as uncompressed RLE)."""
    return {"id": ann.get("id"), "source": ann.get("source", "auto"), "category": ann.get("category"),
            "predicted_iou": ann.get("predicted_iou"), "area": ann.get("area"), "bbox": ann.get("bbox"),
            "num_prompts": ann.get("num_prompts"), "seconds": ann.get("seconds"),
            "mask": coco_to_rle(ann["segmentation"])}


class StudioState:
    """Catalog, store, model threads and per-client objects of one studio server."""

    def __init__(self, config: StudioConfig, model: SAM2Model, model_description: str) -> None:
        self.config = config
        self.model = model.eval()
        self.model_description = model_description
        self.catalog = Catalog(config.images_dir, skip=config.out_dir, only=config.only)
        self.store = AnnotationStore(config.out_dir, self.catalog)
        self.worker = ModelWorker()
        self.proposal_worker = ModelWorker("samkit-studio-proposals")
        self.video_worker = ModelWorker("samkit-studio-video")  # tracking jobs
        self._videos: dict[int, VideoAnnotation] = {}  # open video sessions, least recently used first
        self._embeddings: LRUCache[int, ImagePredictor] = LRUCache(
            config.cache_embeddings, max_bytes=config.cache_bytes, sizeof=_predictor_bytes)
        self._objects: LRUCache[tuple[str, int], ObjectInProgress] = LRUCache(config.max_objects_in_progress)
        self._accepted: LRUCache[tuple[str, int], list[tuple[int, ObjectInProgress]]] = \
            LRUCache(config.max_objects_in_progress)
        self._lock = threading.Lock()  # the LRUs above are read from request threads too
        self.proposals = Proposals(self)

    def close(self) -> None:
        for video in self._videos.values():
            video.job.cancel.set()
        self.worker.close()
        self.proposal_worker.close()
        self.video_worker.close()

    # ------------------------------------------------------------------ videos
    def video(self, video_id: int) -> VideoAnnotation:
        """The video's session, opened (and its saved annotations restored) on first use."""
        with self._lock:
            found = self._videos.pop(video_id, None)
            if found is not None:
                self._videos[video_id] = found
                return found
        opened = VideoAnnotation(self.model, self.catalog.path(video_id), self.catalog.name(video_id),
                                 self.store.video_dir(video_id))
        with self._lock:
            found = self._videos.setdefault(video_id, opened)
            idle = [k for k, v in self._videos.items() if v.job.state != "running" and k != video_id]
            while len(self._videos) > self.config.open_videos and idle:
                self._videos.pop(idle.pop(0)).session.close()
            return found

    # ------------------------------------------------------------------ embeddings
    def cached(self, image_id: int) -> bool:
        with self._lock:
            return image_id in self._embeddings

    def embedding_bytes(self) -> int:
        with self._lock:
            return self._embeddings.nbytes

    def predictor(self, image_id: int) -> ImagePredictor:
        """The image's predictor with its embedding (computed now when not cached). Worker thread."""
        with self._lock:
            found = self._embeddings.get(image_id)
        if found is not None:
            return found
        image = self.catalog.load(image_id)
        predictor = ImagePredictor(self.model)
        predictor.set_image(image.rgb)
        with self._lock:
            self._embeddings.put(image_id, predictor)
        return predictor

    def prefetch(self, image_id: int) -> None:
        """Queue the embeddings of ``image_id`` and the next image behind any interactive call."""
        if not self.config.prefetch:
            return
        for i in (image_id, image_id + 1):
            if self.catalog.has(i) and not self.cached(i):
                self.worker.submit(PREFETCH, self._prefetch_one, i)

    def _prefetch_one(self, image_id: int) -> None:
        try:
            self.predictor(image_id)
        except Exception:  # an unreadable image says so when it is opened
            pass

    # ------------------------------------------------------------------ objects in progress (worker thread)
    def current(self, client: str, image_id: int) -> Optional[dict[str, Any]]:
        """The client's object in progress on the image, as the API returns it, or None."""
        with self._lock:
            obj = self._objects.get((client, image_id))
        if obj is None or obj.session.last is None:
            return None
        session = obj.session
        step = session.last
        view: dict[str, Any] = {"prompts": session.history(), "chosen": int(step.chosen[0]),
                                "iou": float(step.chosen_iou[0]), "candidates": []}
        if step.num_candidates > 1:
            masks = session.masks(all_candidates=True)[0]  # M x H x W
            view["candidates"] = [{"mask": rle_view(m), "iou": float(step.iou[0, j])} for j, m in enumerate(masks)]
            view["mask"] = view["candidates"][view["chosen"]]["mask"]
        else:
            view["mask"] = rle_view(session.masks()[0])
        return view

    def prompt(self, client: str, image_id: int, prompt: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Add a validated prompt (``{"type": "point", "x", "y", "label"}`` or ``{"type": "box",
        "box"}``) to the client's object, decode, and return the object's view."""
        predictor = self.predictor(image_id)
        key = (client, image_id)
        with self._lock:
            obj = self._objects.get(key)
        if obj is None:
            obj = ObjectInProgress(ImageSession(predictor), time.monotonic())
        obj.session.predictor = predictor  # the cached one (the object may outlive an eviction)
        if prompt["type"] == "point":
            obj.session.add_points(torch.tensor([[[prompt["x"], prompt["y"]]]], dtype=torch.float32),
                                   torch.tensor([[prompt["label"]]]))
        else:
            obj.session.set_box(torch.tensor([prompt["box"]], dtype=torch.float32))
        with self._lock:
            self._objects.put(key, obj)
        return self.current(client, image_id)

    def choose(self, client: str, image_id: int, candidate: int) -> Optional[dict[str, Any]]:
        obj = self._object(client, image_id)
        if obj is None:
            raise StateError("there is no object in progress on this image: click in the image first")
        obj.session.choose(candidate)
        return self.current(client, image_id)

    def clear(self, client: str, image_id: int) -> None:
        with self._lock:
            self._objects.pop((client, image_id))

    def _object(self, client: str, image_id: int) -> Optional[ObjectInProgress]:
        with self._lock:
            return self._objects.get((client, image_id))

    def accept(self, client: str, image_id: int, category: Optional[str]) -> dict[str, Any]:
        """Save the object in progress as a ``manual`` annotation; returns its view."""
        obj = self._object(client, image_id)
        if obj is None or obj.session.last is None:
            raise StateError("there is no mask to accept: click in the image (or drag a box) first")
        session, step = obj.session, obj.session.last
        stability = stability_scores(step.chosen_logits[0, 0], STABILITY_OFFSET)
        ann = make_annotation(session.masks()[0], predicted_iou=float(step.chosen_iou[0]), source="manual",
                              prompts=session.history(), seconds=time.monotonic() - obj.started,
                              category=category, stability_score=float(stability))
        stored = self.store.add(image_id, session.image_hw, ann)
        with self._lock:
            self._objects.pop((client, image_id))
            stack = self._accepted.get((client, image_id)) or []
            self._accepted.put((client, image_id), (stack + [(stored["id"], obj)])[-20:])
        return annotation_view(stored)

    def undo(self, client: str, image_id: int) -> str | None:
        """Drop the last prompt of the object in progress, or take back the client's last accept
        on the image (removed from disk, back in progress). Returns what was undone."""
        obj = self._object(client, image_id)
        if obj is not None and obj.session.num_prompts:
            obj.session.undo()
            if not obj.session.num_prompts:
                self.clear(client, image_id)
            return "prompt"
        with self._lock:
            stack = list(self._accepted.get((client, image_id)) or [])
        while stack:
            annotation_id, accepted = stack.pop()
            with self._lock:
                self._accepted.put((client, image_id), stack)
            try:
                self.store.remove(image_id, accepted.session.image_hw, annotation_id)
            except KeyError:  # deleted meanwhile (another tab): take back the one before
                continue
            with self._lock:
                self._objects.put((client, image_id), accepted)
            return "accept"
        return None

    def image_view(self, client: str, image_id: int) -> dict[str, Any]:
        """The ``image`` view of the API (422-worthy errors raise)."""
        loaded = self.catalog.load(image_id)
        record = self.store.read(image_id)
        status, _ = self.store.summary(image_id)
        h, w = loaded.hw
        anns = record["annotations"] if record else []
        return {"id": image_id, "name": self.catalog.name(image_id), "width": w, "height": h,
                "status": status, "done": status == "done",
                "annotations": [annotation_view(a) for a in anns], "current": self.current(client, image_id)}

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        record = self.store.read(image_id)
        return [annotation_view(a) for a in record["annotations"]] if record else []


class Proposals:
    """The automatic mask generator's proposals per image, with each one's decision, kept in
    ``OUT/.studio/proposals/<image>.json`` so a restart shows them again."""

    def __init__(self, state: StudioState) -> None:
        self.state = state
        self.folder = state.config.out_dir / ".studio" / "proposals"
        self._jobs: dict[int, dict[str, Any]] = {}
        self._shown: dict[tuple[str, int], float] = {}  # (client, image) -> when proposals were first shown
        self._lock = threading.Lock()
        self._generator: Optional[AutoMaskGenerator] = None

    def _path(self, image_id: int) -> Path:
        return self.folder / f"{self.state.catalog.name(image_id)}.json"

    def _load(self, image_id: int) -> Optional[dict[str, Any]]:
        path = self._path(image_id)
        if not path.exists():
            return None
        try:
            with open(path) as f:
                saved = json.load(f)
            if saved.get("file_name") == self.state.catalog.name(image_id) and isinstance(saved.get("proposals"), list):
                return {"state": "ready", "error": None, "proposals": saved["proposals"]}
        except (OSError, ValueError, AttributeError):
            pass
        return None  # unreadable: computed again

    def job(self, image_id: int) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(image_id)
            if job is None:
                job = self._load(image_id) or {"state": "none", "error": None, "proposals": []}
                self._jobs[image_id] = job
            return job

    def start(self, image_id: int) -> dict[str, Any]:
        """Queue the image's proposals unless they exist or are on their way (idempotent)."""
        job = self.job(image_id)
        with self._lock:
            if job["state"] in ("none", "error"):
                job.update(state="queued", error=None)
                self.state.proposal_worker.submit(PREFETCH, self._run, image_id)
        return job

    def _run(self, image_id: int) -> None:
        job = self._jobs[image_id]
        job["state"] = "running"
        try:
            rgb = self.state.catalog.load(image_id).rgb
            if self._generator is None:
                self._generator = AutoMaskGenerator(self.state.model, **self.state.config.automask)
            records = self._generator.generate(rgb)
            proposals = []
            for k, r in enumerate(sorted(records, key=lambda r: -r["predicted_iou"])):
                mask = torch.from_numpy(np.asarray(r["segmentation"], dtype=bool))
                proposals.append({"id": k, "segmentation": rle_to_coco(mask_to_rle(mask[None])[0]),
                                  "predicted_iou": float(r["predicted_iou"]),
                                  "stability_score": float(r["stability_score"]), "area": int(r["area"]),
                                  "bbox": [float(v) for v in r["bbox"]],
                                  "point_coords": [[float(x), float(y)] for x, y in r["point_coords"]],
                                  "status": "pending"})
            job["proposals"] = proposals
            self._save(image_id)
            job["state"] = "ready"
        except Exception as exc:  # shown on the page; the rest of the studio keeps working
            job.update(state="error", error=str(exc) or type(exc).__name__)

    def _save(self, image_id: int) -> None:
        job = self._jobs[image_id]
        write_json(self._path(image_id), {"file_name": self.state.catalog.name(image_id),
                                          "proposals": job["proposals"]})

    def view(self, client: str, image_id: int) -> dict[str, Any]:
        job = self.job(image_id)
        if job["state"] == "ready":
            self._shown.setdefault((client, image_id), time.monotonic())
        return {"state": job["state"], "error": job["error"],
                "proposals": [{k: v for k, v in p.items() if k not in ("segmentation", "point_coords")}
                              | {"mask": coco_to_rle(p["segmentation"])} for p in job["proposals"]]}

    def _find(self, image_id: int, proposal_id: int) -> dict[str, Any]:
        job = self.job(image_id)
        for p in job["proposals"]:
            if p["id"] == proposal_id:
                return p
        raise KeyError(proposal_id)

    def accept(self, client: str, image_id: int, proposal_id: int, category: Optional[str]) -> dict[str, Any]:
        """Save proposal ``proposal_id`` as an ``auto`` annotation (worker thread)."""
        p = self._find(image_id, proposal_id)
        if p["status"] == "accepted":
            raise StateError(f"proposal {proposal_id} is already accepted")
        h, w = p["segmentation"]["size"]
        mask = torch.from_numpy(decode_rle_counts(p["segmentation"]["counts"], h, w))
        shown = self._shown.get((client, image_id))
        ann = make_annotation(mask, predicted_iou=p["predicted_iou"], source="auto", prompts=[],
                              seconds=None if shown is None else time.monotonic() - shown, category=category,
                              stability_score=p["stability_score"])
        ann["point_coords"] = p["point_coords"]
        stored = self.state.store.add(image_id, (h, w), ann)
        p["status"] = "accepted"
        self._save(image_id)
        return annotation_view(stored)

    def reject(self, image_id: int, proposal_id: int) -> None:
        p = self._find(image_id, proposal_id)
        p["status"] = "rejected"
        self._save(image_id)

