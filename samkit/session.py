"""``ImageSession``: the prompts given so far to objects of one image, decoded after each one.

One interactive session is a person in the studio (one object at a time) or the scripted clicks
of interactive evaluation (``K`` objects at once). Each prompt (a point, or one box) is decoded
together with every earlier prompt of its object, with the previous prediction's low-resolution
logits fed back as the mask prompt (clamped to ``+-FEEDBACK_CLAMP``), as SAM's interactive loop
does. A lone first point asks for the three multimask candidates (one click is ambiguous); the
candidate fed back is the best by predicted IoU unless :meth:`ImageSession.choose` picks another.
:meth:`ImageSession.undo` drops the last prompt and brings back the prediction before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from samkit.errors import PromptError, StateError
from samkit.image_predictor import CoordTransforms, ImagePredictor
from samkit.prompts import FEEDBACK_CLAMP, NEGATIVE, POSITIVE, best_candidate

__all__ = ["ImageSession", "SessionStep"]


@dataclass
class SessionStep:
    """The decoder's answer after one prompt, for ``K`` objects with ``M`` candidates each."""

    low_res: torch.Tensor  # K x M x h x w float32 logits (unclamped)
    iou: torch.Tensor  # K x M predicted IoUs
    chosen: torch.Tensor  # K int64: the candidate fed back to the next prompt

    @property
    def num_candidates(self) -> int:
        return int(self.low_res.shape[1])

    @property
    def chosen_logits(self) -> torch.Tensor:
        """``K x 1 x h x w`` logits of each object's chosen candidate."""
        rows = torch.arange(self.low_res.shape[0], device=self.low_res.device)
        return self.low_res[rows, self.chosen][:, None]

    @property
    def chosen_iou(self) -> torch.Tensor:
        """``K`` predicted IoUs of the chosen candidates."""
        return self.iou[torch.arange(self.iou.shape[0], device=self.iou.device), self.chosen]


@dataclass
class _Prompt:
    kind: str  # "point" or "box"
    points: Optional[torch.Tensor] = None  # K x 1 x 2 (x, y) image pixels
    labels: Optional[torch.Tensor] = None  # K x 1 int32
    box: Optional[torch.Tensor] = None  # K x 4 XYXY image pixels


@dataclass
class ImageSession:
    """Prompts for ``num_objects`` objects of the image set in ``predictor``.

    ``session.add_points(points K x 1 x 2, labels K x 1)`` or ``session.set_box(boxes K x 4)``
    (image pixels) decode at once and return a :class:`SessionStep`; :meth:`masks` gives the
    chosen candidates at the image's resolution. The predictor must keep its image for the
    session's lifetime.
    """

    predictor: ImagePredictor
    num_objects: int = 1
    threshold: float = 0.0  # logit threshold of :meth:`masks`
    _prompts: list[_Prompt] = field(default_factory=list)
    _steps: list[SessionStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.num_objects < 1:
            raise PromptError(f"an image session needs at least one object, got {self.num_objects}")
        self.predictor._require_image("ImageSession")
        self._hw: tuple[int, int] = tuple(self.predictor._orig_hw[-1])
        self._transforms = CoordTransforms(self.predictor.model.image_size)

    # ------------------------------------------------------------------ state
    @property
    def image_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the session's image."""
        return self._hw

    @property
    def num_prompts(self) -> int:
        """Points and boxes given so far (a box counts once)."""
        return len(self._prompts)

    @property
    def num_points(self) -> int:
        return sum(p.kind == "point" for p in self._prompts)

    @property
    def has_box(self) -> bool:
        return any(p.kind == "box" for p in self._prompts)

    @property
    def last(self) -> Optional[SessionStep]:
        """The prediction after the last prompt, or None before the first."""
        return self._steps[-1] if self._steps else None

    @property
    def coords(self) -> torch.Tensor:
        """``K x N x 2`` float32 (x, y) of the points so far, image pixels."""
        pts = [p.points for p in self._prompts if p.kind == "point"]
        return torch.cat(pts, dim=1) if pts else torch.zeros(self.num_objects, 0, 2)

    @property
    def labels(self) -> torch.Tensor:
        """``K x N`` int32 labels of the points so far."""
        labs = [p.labels for p in self._prompts if p.kind == "point"]
        return torch.cat(labs, dim=1) if labs else torch.zeros(self.num_objects, 0, dtype=torch.int32)

    @property
    def box(self) -> Optional[torch.Tensor]:
        """``K x 4`` XYXY of the box, or None."""
        return next((p.box for p in self._prompts if p.kind == "box"), None)

    def history(self, index: int = 0) -> list[dict]:
        """Object ``index``'s prompts in order: ``{"type": "point", "x", "y", "label"}`` or
        ``{"type": "box", "box": [x0, y0, x1, y1]}``."""
        out: list[dict] = []
        for p in self._prompts:
            if p.kind == "point":
                x, y = (float(v) for v in p.points[index, 0])
                out.append({"type": "point", "x": x, "y": y, "label": int(p.labels[index, 0])})
            else:
                out.append({"type": "box", "box": [float(v) for v in p.box[index]]})
        return out

    # ------------------------------------------------------------------ prompts
    def add_points(self, points: torch.Tensor, labels: torch.Tensor) -> SessionStep:
        """One point per object: ``points`` ``K x 1 x 2`` (x, y) image pixels, ``labels`` ``K x 1``
        (1 positive, 0 negative). Decodes all prompts so far and returns the new step."""
        points = torch.as_tensor(points, dtype=torch.float32).cpu()
        labels = torch.as_tensor(labels).cpu()
        k = self.num_objects
        if points.shape != (k, 1, 2) or labels.shape != (k, 1):
            raise PromptError(f"a point for {k} object(s) is points K x 1 x 2 and labels K x 1, "
                              f"got {tuple(points.shape)} and {tuple(labels.shape)}")
        if not bool(torch.isin(labels, torch.tensor([POSITIVE, NEGATIVE])).all()):
            raise PromptError(f"point labels are {POSITIVE} (positive) or {NEGATIVE} (negative), got {labels.tolist()}")
        self._check_inside(points.reshape(-1, 2), "point")
        return self._push(_Prompt("point", points=points, labels=labels.to(torch.int32)))

    def set_box(self, boxes: torch.Tensor) -> SessionStep:
        """One box per object, ``K x 4`` XYXY image pixels (at most one box per session)."""
        boxes = torch.as_tensor(boxes, dtype=torch.float32).cpu()
        if boxes.shape != (self.num_objects, 4):
            raise PromptError(f"a box for {self.num_objects} object(s) is K x 4 (x0, y0, x1, y1), "
                              f"got {tuple(boxes.shape)}")
        if self.has_box:
            raise StateError("this object already has a box; undo it or start a new object for another box")
        if not bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()):
            raise PromptError(f"a box is x0 < x1 and y0 < y1 (x0, y0, x1, y1), got {boxes.tolist()}")
        self._check_inside(boxes.reshape(-1, 2), "box corner")
        return self._push(_Prompt("box", box=boxes))

    def choose(self, candidate: int) -> SessionStep:
        """Feed back candidate ``candidate`` of the last step (for every object) instead of the
        best; only after a lone first point, which has several candidates."""
        step = self.last
        if step is None or step.num_candidates == 1:
            raise StateError("there is no choice to make: candidates come after a single first point")
        if not 0 <= int(candidate) < step.num_candidates:
            raise PromptError(f"candidate is 0 to {step.num_candidates - 1}, got {candidate}")
        step.chosen = torch.full_like(step.chosen, int(candidate))
        return step

    def undo(self) -> Optional[SessionStep]:
        """Drop the last prompt; returns the step before it (None when no prompt is left)."""
        if not self._prompts:
            raise StateError("no prompt to undo")
        self._prompts.pop()
        self._steps.pop()
        return self.last

    # ------------------------------------------------------------------ outputs
    def masks(self, step: Optional[SessionStep] = None, all_candidates: bool = False) -> torch.Tensor:
        """Masks of ``step`` (default: the last) at the image's size: ``K x H x W`` bool of the
        chosen candidates, or ``K x M x H x W`` with ``all_candidates``."""
        step = step or self.last
        if step is None:
            raise StateError("no prediction yet: add a point or a box first")
        low = step.low_res if all_candidates else step.chosen_logits
        full = self._transforms.postprocess_masks(low, self._hw) > self.threshold
        return full if all_candidates else full[:, 0]

    # ------------------------------------------------------------------ internals
    def _check_inside(self, xy: torch.Tensor, what: str) -> None:
        h, w = self._hw
        if not bool(torch.isfinite(xy).all()):
            raise PromptError(f"{what} coordinates must be finite numbers, got {xy.tolist()}")
        outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
        if bool(outside.any()):
            raise PromptError(f"{what} {xy[outside][0].tolist()} is outside the {w} x {h} image "
                              f"(x in 0..{w}, y in 0..{h}, image pixels)")

    @torch.inference_mode()
    def _push(self, prompt: _Prompt) -> SessionStep:
        self._prompts.append(prompt)
        try:
            step = self._decode()
        except BaseException:
            self._prompts.pop()
            raise
        self._steps.append(step)
        return step

    def _decode(self) -> SessionStep:
        device = self.predictor.device
        coords, labels, box = self.coords, self.labels, self.box
        model_coords = model_labels = model_box = None
        if coords.shape[1]:
            model_coords = self._transforms.transform_coords(coords.to(device), normalize=True, orig_hw=self._hw)
            model_labels = labels.to(device)
        if box is not None:
            model_box = self._transforms.transform_boxes(box.to(device), normalize=True, orig_hw=self._hw)
        prev = self.last
        mask_input = None if prev is None else \
            prev.chosen_logits.clamp(-FEEDBACK_CLAMP, FEEDBACK_CLAMP).to(device)
        multimask = self.num_prompts == 1 and self._prompts[0].kind == "point"
        low, iou = self.predictor.predict_low_res(model_coords, model_labels, model_box, mask_input,
                                                  multimask_output=multimask)
        low, iou = low.float().cpu(), iou.float().cpu()
        return SessionStep(low_res=low, iou=iou, chosen=best_candidate(iou))
