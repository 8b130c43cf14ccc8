"""Interactive metrics: NoC, NoF, mIoU@k on hand-made IoU arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from samkit.evaluate.metrics import interactive_metrics, iou_matrix, number_of_clicks

KEYS = [
    "NoC@80",
    "NoC@85",
    "NoC@90",
    "NoF@85",
    "NoF@90",
    "mIoU@1",
    "mIoU@2",
    "mIoU@3",
    "mIoU@5",
    "mIoU@10",
    "mIoU@20",
]


def _ious() -> np.ndarray:
    """Three objects, 20 clicks each."""
    a = np.full(20, 0.95)
    a[:3] = [0.5, 0.82, 0.87]  # 80 at click 2, 85 at click 3, 90 at click 4
    b = np.full(20, 0.92)  # everything at click 1
    c = np.linspace(0.1, 0.88, 20)  # reaches 80 late, 85 at the end-ish, never 90
    return np.stack([a, b, c])


def test_hand_made_values() -> None:
    ious = _ious()
    c = ious[2]
    c80 = int(np.argmax(c >= 0.8)) + 1
    c85 = int(np.argmax(c >= 0.85)) + 1
    out = interactive_metrics(ious)
    assert list(out) == KEYS
    assert out["NoC@80"] == pytest.approx((2 + 1 + c80) / 3)
    assert out["NoC@85"] == pytest.approx((3 + 1 + c85) / 3)
    assert out["NoC@90"] == pytest.approx((4 + 1 + 20) / 3)
    assert out["NoF@85"] == 0 and out["NoF@90"] == 1
    assert out["mIoU@1"] == pytest.approx((0.5 + 0.92 + 0.1) / 3)
    assert out["mIoU@2"] == pytest.approx((0.82 + 0.92 + c[1]) / 3)
    assert out["mIoU@20"] == pytest.approx((0.95 + 0.92 + 0.88) / 3)


def test_reaching_at_the_last_click_is_not_a_failure() -> None:
    ious = np.array([[0.1, 0.2, 0.3, 0.95], [0.1, 0.2, 0.3, 0.4]])
    out = interactive_metrics(ious)
    assert out["NoC@90"] == 4.0
    assert out["NoF@90"] == 1  # only the second object failed
    assert math.isnan(out["mIoU@5"]) and math.isnan(out["mIoU@20"])
    assert out["mIoU@3"] == pytest.approx(0.3)


def test_max_clicks_budget() -> None:
    ious = np.array([[0.1, 0.2, 0.3, 0.95]])
    out = interactive_metrics(ious, max_clicks=3)
    assert out["NoC@90"] == 3.0 and out["NoF@90"] == 1
    np.testing.assert_array_equal(number_of_clicks(ious, 0.25, max_clicks=3), [3])
    np.testing.assert_array_equal(number_of_clicks(ious, 0.15), [2])


def test_ragged_rows_are_padded_with_their_last_value() -> None:
    rows = [[0.3, 0.91], [0.2, 0.5, 0.86]]
    arr = iou_matrix(rows)
    np.testing.assert_allclose(arr, [[0.3, 0.91, 0.91], [0.2, 0.5, 0.86]])
    out = interactive_metrics(rows)
    assert out["NoC@90"] == pytest.approx((2 + 3) / 2)
    assert out["NoF@90"] == 1


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        interactive_metrics(np.zeros(5))
    with pytest.raises(ValueError):
        interactive_metrics([])
    with pytest.raises(ValueError):
        interactive_metrics(np.array([[0.5, 1.5]]))
    with pytest.raises(ValueError):
        interactive_metrics([[0.5], []])
