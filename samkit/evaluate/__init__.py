"""Evaluation: the interactive click protocol, its metrics (NoC, NoF, mIoU@k) and plots.

The plotting functions need matplotlib (the ``plots`` extra) and import it only when called.
"""

from samkit.evaluate.interactive import compare_interactive, evaluate_interactive, write_interactive_report
from samkit.evaluate.metrics import interactive_metrics, number_of_clicks
from samkit.evaluate.plots import plot_iou_curves, plot_training_curves

__all__ = [
    "evaluate_interactive",
    "compare_interactive",
    "write_interactive_report",
    "interactive_metrics",
    "number_of_clicks",
    "plot_iou_curves",
    "plot_training_curves",
]
