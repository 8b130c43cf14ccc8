"""PNG plots of evaluation and training runs (needs the ``plots`` extra: matplotlib).

Figures are drawn on a ``matplotlib.figure.Figure`` with an Agg canvas of their own, so
nothing touches pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from samkit.errors import ConfigError
from samkit.visualize import new_figure  # re-exported: evaluate.tracking draws with it too

__all__ = ["plot_iou_curves", "plot_training_curves", "read_metrics_csv"]

PathLike = Union[str, os.PathLike]


def _integer_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def save_figure(fig: Any, path: PathLike, dpi: int) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def plot_iou_curves(
    runs: Mapping[str, Union[np.ndarray, Sequence[float]]],
    path: PathLike,
    *,
    title: str = "Interactive segmentation",
    thresholds: Sequence[float] = (0.85, 0.9),
    dpi: int = 100,
) -> Path:
    """Mean IoU against the number of clicks, one line per named run.

    Args:
        runs: name -> ``N x K`` IoUs after clicks 1..K (averaged over the N objects), or an
            already averaged length-``K`` curve.
        path: where the PNG goes (parent folders are created).
        title: figure title.
        thresholds: IoU levels drawn as dotted horizontal lines.
        dpi: resolution (the figure is 7 x 4.5 inches).

    Returns:
        The path written.
    """
    if not runs:
        raise ConfigError("plot_iou_curves needs at least one run")
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    max_k = 1
    for name, values in runs.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2:
            curve = arr.mean(axis=0)
        elif arr.ndim == 1:
            curve = arr
        else:
            raise ConfigError(f"run {name!r}: expected N x K or K values, got shape {arr.shape}")
        clicks = np.arange(1, curve.size + 1)
        max_k = max(max_k, curve.size)
        ax.plot(clicks, curve, marker="o", markersize=3, linewidth=1.5, label=str(name))
    for thr in thresholds:
        ax.axhline(thr, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("number of clicks")
    ax.set_ylabel("mean IoU")
    ax.set_xlim(0.5, max_k + 0.5)
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def read_metrics_csv(csv_path: PathLike) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV (header row, one row per logged step) as float arrays.

    Empty or non-numeric cells become ``NaN``; columns with no number at all are dropped.
    """
    p = Path(csv_path)
    if not p.is_file():
        raise ConfigError(f"metrics file {str(p)!r} does not exist")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise ConfigError(f"metrics file {str(p)!r} has no header row")
        names = [n for n in reader.fieldnames if n]
        columns: dict[str, list[float]] = {n: [] for n in names}
        for row in reader:
            for n in names:
                cell = (row.get(n) or "").strip()
                try:
                    columns[n].append(float(cell))
                except ValueError:
                    columns[n].append(math.nan)
    out = {n: np.asarray(v, dtype=np.float64) for n, v in columns.items()}
    return {n: v for n, v in out.items() if v.size and not np.isnan(v).all()}


def plot_training_curves(
    csv_path: PathLike,
    path: PathLike,
    *,
    x: Optional[str] = None,
    columns: Optional[Sequence[str]] = None,
    title: str = "Training",
    dpi: int = 100,
) -> Path:
    """One small panel per metric of a training log CSV.

    Args:
        csv_path: CSV with a header row; one row per logged step.
        path: where the PNG goes.
        x: the column on the x axis (default: ``step``, else ``iteration``, ``iter``,
            ``epoch`` if present, else the row number).
        columns: the metrics to draw (default: every numeric column but ``x``).
        title: figure title.
        dpi: resolution.

    Returns:
        The path written.
    """
    data = read_metrics_csv(csv_path)
    if not data:
        raise ConfigError(f"metrics file {str(csv_path)!r} has no numeric column")
    n_rows = len(next(iter(data.values())))
    if x is None:
        x = next((c for c in ("step", "iteration", "iter", "epoch") if c in data), None)
    if x is not None and x not in data:
        raise ConfigError(f"column {x!r} is not in {str(csv_path)!r}; columns: {sorted(data)}")
    xs = data[x] if x is not None else np.arange(n_rows, dtype=np.float64)
    names = [c for c in (columns if columns is not None else data) if c != x]
    missing = [c for c in names if c not in data]
    if missing:
        raise ConfigError(
            f"columns {missing} are not in {str(csv_path)!r}; columns: {sorted(data)}"
        )
    if not names:
        raise ConfigError(f"nothing to plot in {str(csv_path)!r}")

    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = new_figure(4.0 * ncols, 3.0 * nrows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ys = data[name]
        keep = ~np.isnan(ys) & ~np.isnan(xs)
        ax.plot(xs[keep], ys[keep], linewidth=1.2, marker="." if keep.sum() < 30 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(x if x is not None else "row")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
