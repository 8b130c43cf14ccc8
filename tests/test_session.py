"""ImageSession: prompts decoded with the previous logits fed back, candidates, undo, checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.builder import build_model
from samkit.errors import PromptError, StateError
from samkit.image_predictor import ImagePredictor
from samkit.prompts import FEEDBACK_CLAMP, NEGATIVE, POSITIVE
from samkit.session import ImageSession


@pytest.fixture(scope="module")
def predictor() -> ImagePredictor:
    torch.manual_seed(0)
    model = build_model("samkit_nano", pretrained=False).eval()
    p = ImagePredictor(model)
    rng = np.random.default_rng(0)
    p.set_image(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return p


def test_first_point_gives_candidates_and_later_prompts_feed_the_chosen_one_back(predictor) -> None:
    session = ImageSession(predictor)
    step = session.add_points(torch.tensor([[[40.0, 50.0]]]), torch.tensor([[POSITIVE]]))
    assert step.low_res.shape[:2] == (1, 3) and step.iou.shape == (1, 3)
    assert int(step.chosen) == int(step.iou.argmax())  # the best by predicted IoU
    # what the official loop does by hand: all points so far + the chosen logits, clamped
    masks, _, low = predictor.predict(point_coords=np.array([[40.0, 50.0]]), point_labels=np.array([1]),
                                      multimask_output=True, return_logits=True)
    assert np.allclose(step.low_res[0].numpy().clip(-FEEDBACK_CLAMP, FEEDBACK_CLAMP), low, atol=1e-5)
    session.choose(2)
    second = session.add_points(torch.tensor([[[100.0, 20.0]]]), torch.tensor([[NEGATIVE]]))
    assert second.low_res.shape[1] == 1  # no ambiguity after the first point
    expect, iou, _ = predictor.predict(point_coords=np.array([[40.0, 50.0], [100.0, 20.0]]),
                                       point_labels=np.array([1, 0]), mask_input=low[2:3],
                                       multimask_output=False, return_logits=True)
    assert torch.allclose(session.masks().float(), torch.from_numpy(expect[0:1] > 0).float())
    assert abs(float(second.chosen_iou[0]) - float(iou[0])) < 1e-5
    assert session.num_prompts == 2 and session.labels.tolist() == [[1, 0]]
    assert session.history() == [{"type": "point", "x": 40.0, "y": 50.0, "label": 1},
                                 {"type": "point", "x": 100.0, "y": 20.0, "label": 0}]


def test_undo_brings_back_the_previous_prediction_and_choice(predictor) -> None:
    session = ImageSession(predictor)
    first = session.add_points(torch.tensor([[[40.0, 50.0]]]), torch.tensor([[POSITIVE]]))
    session.choose(0)
    session.add_points(torch.tensor([[[60.0, 70.0]]]), torch.tensor([[POSITIVE]]))
    back = session.undo()
    assert back is first and int(back.chosen) == 0 and session.num_prompts == 1
    assert session.undo() is None and session.last is None
    with pytest.raises(StateError, match="no prompt to undo"):
        session.undo()


def test_box_then_points_and_one_box_only(predictor) -> None:
    session = ImageSession(predictor)
    step = session.set_box(torch.tensor([[20.0, 30.0, 90.0, 100.0]]))
    assert step.low_res.shape[1] == 1  # a box is not ambiguous
    expect, _, low = predictor.predict(box=np.array([20.0, 30.0, 90.0, 100.0]), multimask_output=False,
                                       return_logits=True)
    assert torch.equal(session.masks(), torch.from_numpy(expect > 0))
    session.add_points(torch.tensor([[[50.0, 60.0]]]), torch.tensor([[POSITIVE]]))
    expect2, _, _ = predictor.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]),
                                      box=np.array([20.0, 30.0, 90.0, 100.0]), mask_input=low,
                                      multimask_output=False)
    assert torch.equal(session.masks(), torch.from_numpy(expect2 > 0))
    assert session.history()[0] == {"type": "box", "box": [20.0, 30.0, 90.0, 100.0]}
    with pytest.raises(StateError, match="already has a box"):
        session.set_box(torch.tensor([[0.0, 0.0, 10.0, 10.0]]))


def test_batched_objects_and_all_candidates(predictor) -> None:
    session = ImageSession(predictor, num_objects=2)
    session.add_points(torch.tensor([[[10.0, 10.0]], [[150.0, 110.0]]]), torch.tensor([[1], [1]]))
    assert session.masks().shape == (2, 120, 160)
    assert session.masks(all_candidates=True).shape == (2, 3, 120, 160)


@pytest.mark.parametrize("points, labels, message", [
    (torch.tensor([[[10.0, 10.0]], [[1.0, 1.0]]]), torch.tensor([[1], [1]]), "K x 1 x 2"),
    (torch.tensor([[[10.0, 10.0]]]), torch.tensor([[5]]), "positive"),
    (torch.tensor([[[170.0, 10.0]]]), torch.tensor([[1]]), "outside the 160 x 120 image"),
    (torch.tensor([[[float("nan"), 10.0]]]), torch.tensor([[1]]), "finite"),
])
def test_bad_points_are_refused_and_leave_no_trace(predictor, points, labels, message) -> None:
    session = ImageSession(predictor)
    with pytest.raises(PromptError, match=message):
        session.add_points(points, labels)
    assert session.num_prompts == 0


def test_bad_boxes_and_choices(predictor) -> None:
    session = ImageSession(predictor)
    with pytest.raises(PromptError, match="x0 < x1"):
        session.set_box(torch.tensor([[50.0, 10.0, 20.0, 40.0]]))
    with pytest.raises(StateError, match="no choice"):
        session.choose(1)
    session.add_points(torch.tensor([[[10.0, 10.0]]]), torch.tensor([[1]]))
    with pytest.raises(PromptError, match="candidate is 0 to 2"):
        session.choose(3)
    with pytest.raises(StateError, match="no prediction yet"):
        ImageSession(predictor).masks()


def test_a_session_needs_an_image() -> None:
    model = build_model("samkit_nano", pretrained=False)
    with pytest.raises(StateError, match="set_image"):
        ImageSession(ImagePredictor(model))
