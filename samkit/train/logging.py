"""The logs of a run folder: ``metrics.csv`` (always) and TensorBoard scalars (when installed).

``metrics.csv`` has a header and one row per logged step. Its columns are, in this order:
``step``; one per :class:`~samkit.train.step.StepTerms` field (:data:`~samkit.train.step.TERM_COLUMNS`:
loss, focal, dice, iou_loss, object_loss, iou_first, iou_last, objects); :data:`STEP_COLUMNS`
(grad_norm, lr, sec_per_step); ``clip_iou`` when the run trains on clips; then ``val_<metric>``
for every :func:`validation_keys` metric when the run validates. Empty cells are steps where a
value does not exist (no validation at that step, NaN).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Optional

from samkit.errors import MissingDependencyError
from samkit.evaluate.metrics import MIOU_CLICKS, NOC_THRESHOLDS, NOF_THRESHOLDS
from samkit.fileio import atomic_write
from samkit.train.step import TERM_COLUMNS

__all__ = ["STEP_COLUMNS", "validation_keys", "metric_columns", "RunLog"]

# Columns of the optimizer step itself (not of a micro-batch's loss), after the StepTerms columns.
STEP_COLUMNS: tuple[str, ...] = ("grad_norm", "lr", "sec_per_step")


def validation_keys() -> list[str]:
    """The :func:`~samkit.evaluate.interactive.evaluate_interactive` metrics that are logged
    (``NoC@80``, ..., ``NoF@85``, ..., ``mIoU@1``, ...)."""
    return ([f"NoC@{round(t * 100)}" for t in NOC_THRESHOLDS] + [f"NoF@{round(t * 100)}" for t in NOF_THRESHOLDS]
            + [f"mIoU@{k}" for k in MIOU_CLICKS])


def metric_columns(*, clips: bool, validation: bool) -> list[str]:
    """The ``metrics.csv`` header of a run (see the module docstring for the order)."""
    cols = ["step", *TERM_COLUMNS, *STEP_COLUMNS]
    if clips:
        cols.append("clip_iou")
    if validation:
        cols += [f"val_{k}" for k in validation_keys()]
    return cols


class RunLog:
    """``metrics.csv`` and TensorBoard of one run folder (the first process writes them).

    Args:
        run_dir: the run folder.
        columns: the CSV header (:func:`metric_columns`).
        resume_step: when resuming, the step of the training state: rows of later steps (logged
            by the run that was killed) are dropped; None starts a new file.
        tensorboard: None: when installed; True: required (else
            :class:`~samkit.errors.MissingDependencyError`); False: off.
    """

    def __init__(self, run_dir: Path, columns: list[str], *, resume_step: Optional[int],
                 tensorboard: Optional[bool]) -> None:
        self.csv_path = run_dir / "metrics.csv"
        self.columns = columns
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.csv_path.is_file():
            with self.csv_path.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        if int(float(row.get("step") or "nan")) <= resume_step:
                            rows.append(row)
                    except ValueError:
                        continue
        # (Re)write the file whole: the rows of steps after the resumed state are dropped.
        text = _csv_text(columns, rows).encode()
        atomic_write(self.csv_path, lambda fh: fh.write(text))
        self._tb = _open_tensorboard(run_dir / "tensorboard", tensorboard, purge_step=resume_step)

    def write(self, step: int, row: dict[str, Any]) -> None:
        """Append one row (keys outside the columns are left out; missing ones are empty) and
        add its finite numbers to TensorBoard (``@`` written ``_at_`` in tags)."""
        row = {"step": step, **row}
        with self.csv_path.open("a", newline="") as fh:
            fh.write(_csv_text(self.columns, [row], header=False))
            fh.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not math.isnan(float(v)):
                    self._tb.add_scalar(k.replace("@", "_at_"), float(v), step)
            self._tb.flush()

    def close(self) -> None:
        """Close TensorBoard's writer (the CSV file is closed after every row)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _open_tensorboard(log_dir: Path, wanted: Optional[bool], purge_step: Optional[int]) -> Any:
    """A ``SummaryWriter`` on ``log_dir``, or None when off or (``wanted=None``) not installed."""
    if wanted is False:
        return None
    try:
        # optional dependency: imported only when TensorBoard logging is on
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        if wanted:
            raise MissingDependencyError(
                "TensorBoard logging needs the tensorboard package: pip install 'samkit[tensorboard]' "
                "(or pip install tensorboard); metrics.csv is written either way") from exc
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _csv_text(columns: list[str], rows: list[dict[str, Any]], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        w.writeheader()
    for row in rows:
        w.writerow({k: _fmt(v) for k, v in row.items()})
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)
