"""Interactive segmentation evaluation: the click protocol of RITM / SimpleClick.

For every object of every image:

1. the first click goes to the centre of the object: its pixel farthest from the object's
   boundary (:func:`~samkit.prompts.sample_center_error_click` with no prediction yet);
2. every next click goes to the pixel farthest from the boundary of the larger error
   region, the false negatives (a positive click) or the false positives (a negative
   click), ignored pixels left out;
3. each prediction is decoded from all clicks so far plus the previous prediction's
   low-resolution logits as the mask prompt (clamped to ``+-FEEDBACK_CLAMP``, as the image
   predictor returns them; :class:`~samkit.session.ImageSession`);
4. the first click asks for three candidate masks and keeps the one with the highest
   predicted IoU (a single click is ambiguous); later clicks ask for one mask (with the
   decoder's fallback to the best candidate when that mask is unstable, as the image
   predictor does);
5. the IoU with the ground truth, at the image's own resolution over its non-ignored
   pixels, is recorded after every click, for ``max_clicks`` clicks (no early stop).

The image is encoded once per sample (:class:`~samkit.image_predictor.ImagePredictor`),
and all objects of an image are decoded together, ``object_batch`` at a time.

:func:`evaluate_interactive` returns the metrics of
:func:`~samkit.evaluate.metrics.interactive_metrics` (NoC@80/85/90, NoF@85/90,
mIoU@1/2/3/5/10/20) plus the per-object IoU curves; :func:`compare_interactive` runs
several models on the same data; :func:`write_interactive_report` writes CSV, JSON and a
PNG of mean IoU against clicks with one curve per model.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from samkit.errors import ConfigError, MissingDependencyError
from samkit.evaluate.metrics import interactive_metrics, number_of_clicks
from samkit.evaluate.plots import plot_iou_curves
from samkit.fileio import write_bytes, write_json
from samkit.image_predictor import ImagePredictor
from samkit.model.sam2 import SAM2Model
from samkit.data import Sample
from samkit.masks import mask_iou
from samkit.prompts import sample_center_error_click
from samkit.session import ImageSession

__all__ = [
    "ObjectResult",
    "evaluate_interactive",
    "compare_interactive",
    "write_interactive_report",
    "objects_as_dicts",
]

PathLike = Union[str, os.PathLike]

@dataclass
class ObjectResult:
    """One evaluated object."""

    sample: str  # the sample's name
    index: int  # the object's index among the sample's masks
    area: int  # its pixels (not ignored), at the image's resolution
    ious: list[float]  # IoU after clicks 1..max_clicks
    clicks: list[tuple[int, int, int]]  # (x, y, label) of every click, image pixels


@torch.inference_mode()
def _evaluate_objects(predictor: ImagePredictor, targets: torch.Tensor, ignore: Optional[torch.Tensor],
                      max_clicks: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Run the click protocol on ``K`` objects of the image set in ``predictor``, as one
    scripted :class:`~samkit.session.ImageSession`.

    ``targets``: ``K x H x W`` bool (CPU); ``ignore``: ``H x W`` bool or None. Returns
    ``(ious K x max_clicks, clicks K x max_clicks x 3)`` (x, y, label in image pixels).
    """
    k = targets.shape[0]
    ign = None if ignore is None else ignore[None].expand_as(targets)
    session = ImageSession(predictor, num_objects=k, threshold=threshold)
    pred: Optional[torch.Tensor] = None
    ious = np.zeros((k, max_clicks))
    clicks = np.zeros((k, max_clicks, 3), dtype=np.int64)
    for c in range(max_clicks):
        pts, labs = sample_center_error_click(targets, pred, ign)  # K x 1 x 2, K x 1
        clicks[:, c, :2] = pts[:, 0].numpy().astype(np.int64)
        clicks[:, c, 2] = labs[:, 0].numpy()
        session.add_points(pts, labs)
        pred = session.masks()  # K x H x W
        ious[:, c] = mask_iou(pred, targets, ignore=ignore, empty=1.0).numpy()
    return ious, clicks


def evaluate_interactive(model: SAM2Model, dataset: Sequence[Sample], max_clicks: int = 20,
                         threshold: float = 0.0, *, max_samples: Optional[int] = None,
                         max_objects: Optional[int] = None, min_area: int = 1, object_batch: int = 16,
                         out_dir: Optional[PathLike] = None, name: str = "dataset",
                         label: str = "model", progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` with the standard interactive click protocol (module docstring).

    Args:
        model: the network (put in eval mode for the run, its mode restored after).
        dataset: samples with instance masks (any samkit dataset).
        max_clicks: clicks per object (20 in the literature).
        threshold: logit threshold of the predicted masks.
        max_samples: evaluate only the first this many samples (None: all).
        max_objects: at most this many objects per sample, the first ones (None: all).
        min_area: objects with fewer non-ignored pixels are skipped.
        object_batch: objects decoded together.
        out_dir: when given, :func:`write_interactive_report` writes the results there.
        name: the dataset's name, used in file names.
        label: the model's name, used in file names and the plot.
        progress: show a tqdm progress bar.

    Returns:
        The :func:`~samkit.evaluate.metrics.interactive_metrics` keys (``NoC@80``,
        ``NoC@85``, ``NoC@90``, ``NoF@85``, ``NoF@90``, ``mIoU@1`` ... ``mIoU@20``; mIoU of a
        click count above ``max_clicks`` is NaN), plus ``"ious"`` (``N x max_clicks`` array,
        one row per object), ``"objects"`` (a list of :class:`ObjectResult`),
        ``"curve"`` (mean IoU after each click), ``"num_objects"``, ``"num_samples"`` and
        ``"seconds"``.

    Raises:
        ConfigError: bad arguments, or no object to evaluate in the data.
    """
    if max_clicks < 1:
        raise ConfigError(f"max_clicks must be >= 1, got {max_clicks}")
    if object_batch < 1:
        raise ConfigError(f"object_batch must be >= 1, got {object_batch}")
    n = len(dataset) if max_samples is None else min(len(dataset), int(max_samples))
    was_training = model.training
    model.eval()
    predictor = ImagePredictor(model, mask_threshold=threshold)
    objects: list[ObjectResult] = []
    used_samples = 0
    t0 = time.perf_counter()
    try:
        for i in tqdm(range(n), desc=f"eval {label}", unit="img", disable=not progress, leave=False):
            sample = dataset[i]
            masks = torch.from_numpy(np.ascontiguousarray(sample.masks))
            ignore = None if sample.ignore is None else torch.from_numpy(np.ascontiguousarray(sample.ignore))
            valid_area = (masks & ~ignore[None]) if ignore is not None else masks
            areas = valid_area.flatten(1).sum(1).tolist() if masks.shape[0] else []
            keep = [j for j, a in enumerate(areas) if a >= max(1, min_area)]
            if max_objects is not None:
                keep = keep[:max_objects]
            if not keep:
                continue
            used_samples += 1
            predictor.set_image(sample.image)
            for start in range(0, len(keep), object_batch):
                chunk = keep[start:start + object_batch]
                ious, clicks = _evaluate_objects(predictor, masks[chunk], ignore, max_clicks, threshold)
                for row, j in enumerate(chunk):
                    objects.append(ObjectResult(
                        sample=sample.name, index=j, area=int(areas[j]), ious=ious[row].tolist(),
                        clicks=[tuple(int(v) for v in cl) for cl in clicks[row]]))
            predictor.reset_predictor()
    finally:
        model.train(was_training)
    if not objects:
        raise ConfigError(f"no object to evaluate in the first {n} samples (min_area={min_area})")
    ious_arr = np.array([o.ious for o in objects], dtype=np.float64)
    result: dict[str, Any] = dict(interactive_metrics(ious_arr, max_clicks=max_clicks))
    result.update(ious=ious_arr, objects=objects, curve=ious_arr.mean(axis=0).tolist(),
                  num_objects=len(objects), num_samples=used_samples,
                  seconds=time.perf_counter() - t0)
    if out_dir is not None:
        write_interactive_report({label: result}, out_dir, name)
    return result


def compare_interactive(models: Mapping[str, SAM2Model], dataset: Sequence[Sample], max_clicks: int = 20,
                        *, out_dir: Optional[PathLike] = None, name: str = "dataset",
                        **kwargs: Any) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_interactive` for each named model on the same data; with ``out_dir``
    one report holds them all (one plot, one curve per model).

    Returns:
        ``{label: result dict}`` in the order given.
    """
    if not models:
        raise ConfigError("compare_interactive needs at least one model")
    results = {label: evaluate_interactive(m, dataset, max_clicks, label=label, **kwargs)
               for label, m in models.items()}
    if out_dir is not None:
        write_interactive_report(results, out_dir, name)
    return results


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _metric_names(result: Mapping[str, Any]) -> list[str]:
    return [k for k in result if k.startswith(("NoC@", "NoF@", "mIoU@"))]


def write_interactive_report(results: Mapping[str, Mapping[str, Any]], out_dir: PathLike,
                             name: str = "dataset") -> list[Path]:
    """Write the results of one or more models on one dataset.

    Files (``<name>`` and each model label made file-name safe):

    - ``<name>_summary.csv``: one row per model, the metrics and the object count;
    - ``<name>_summary.json``: the same plus each model's mean-IoU-per-click curve;
    - ``<name>_<label>_objects.csv``: one row per object: sample, object index, area,
      IoU after each click;
    - ``<name>_miou_vs_clicks.png``: mean IoU against clicks, one curve per model (needs
      matplotlib; skipped with a warning without it).

    Returns:
        The paths written.
    """
    if not results:
        raise ConfigError("write_interactive_report needs at least one result")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _slug(name)
    written: list[Path] = []
    metric_cols = _metric_names(next(iter(results.values())))

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "num_samples", "num_objects", *metric_cols])
    summary: dict[str, Any] = {}
    for label, res in results.items():
        w.writerow([label, res["num_samples"], res["num_objects"], *[_num(res[k]) for k in metric_cols]])
        summary[label] = {**{k: _json_num(res[k]) for k in metric_cols},
                          "num_samples": res["num_samples"], "num_objects": res["num_objects"],
                          "curve": [float(v) for v in res["curve"]], "seconds": float(res.get("seconds", 0.0))}
    written.append(write_bytes(out / f"{stem}_summary.csv", buf.getvalue().encode()))
    written.append(write_json(out / f"{stem}_summary.json", {"dataset": name, "models": summary}, indent=2))

    for label, res in results.items():
        ious = np.asarray(res["ious"])
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["sample", "object", "area", "NoC@85", "NoC@90",
                    *[f"iou@{c + 1}" for c in range(ious.shape[1])]])
        noc85 = number_of_clicks(ious, 0.85)
        noc90 = number_of_clicks(ious, 0.90)
        for o, a, b in zip(res["objects"], noc85, noc90):
            obj = o if isinstance(o, ObjectResult) else ObjectResult(**o)
            w.writerow([obj.sample, obj.index, obj.area, int(a), int(b), *[f"{v:.5f}" for v in obj.ious]])
        written.append(write_bytes(out / f"{stem}_{_slug(label)}_objects.csv", buf.getvalue().encode()))

    try:
        written.append(plot_iou_curves({label: np.asarray(res["ious"]) for label, res in results.items()},
                                       out / f"{stem}_miou_vs_clicks.png",
                                       title=f"{name}: mean IoU vs clicks"))
    except MissingDependencyError as exc:
        warnings.warn(f"{stem}_miou_vs_clicks.png not written: {exc}", stacklevel=2)
    return written


def _num(v: Any) -> str:
    v = float(v)
    return "" if np.isnan(v) else f"{v:.6g}"


def _json_num(v: Any) -> Optional[float]:
    v = float(v)
    return None if np.isnan(v) else v


def objects_as_dicts(objects: Sequence[ObjectResult]) -> list[dict[str, Any]]:
    """The per-object records as plain dicts (JSON-ready)."""
    return [asdict(o) for o in objects]
