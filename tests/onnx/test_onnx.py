"""ONNX export and the ONNX Runtime predictors against samkit's PyTorch model on the same inputs.

Tolerances: image embeddings and memory graphs within 1e-3 (max abs), IoU scores within 1e-3,
masks at the image size at least 99.5% equal pixels, video tracks at least 0.99 IoU per frame
and object. The default model (shipped weights) is exported once through ``samkit export onnx``;
``sam2.1_hiera_tiny`` (random weights, seed 0, 1024 px) once in the slow tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit.automask.config import AutoMaskConfig
from samkit.builder import build_model
from samkit.cli.main import main
from samkit.data.synthetic.clips import make_clip
from samkit.errors import CheckpointNotFoundError, ConfigError, PromptError, StateError
from samkit.image_predictor import ImagePredictor
from samkit.imageio import load_image
from samkit.masks import mask_iou
from samkit.masks import numpy_ops
from samkit.masks.boxes import batched_nms as samkit_batched_nms
from samkit.masks.rle import coco_to_rle, mask_to_rle, rle_area, rle_to_coco, rle_to_mask
from samkit.video.predictor import VideoPredictor
from samkit.video.tracking import MemoryPlan, Tracker, plan_memory

from tests.onnx.everything_cases import CASES, summary

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from samkit.automask.generator import AutoMaskGenerator  # noqa: E402
from samkit.onnx import OnnxAutoMaskGenerator, OnnxImagePredictor, OnnxModel, OnnxVideoTracker  # noqa: E402
from samkit.onnx.export import export_onnx  # noqa: E402
from samkit.onnx.runtime import GRAPHS  # noqa: E402
from samkit.onnx.video import ObjectPrompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "samkit" / "assets" / "astronaut.jpg"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nano():
    return build_model()


@pytest.fixture(scope="module")
def nano_dir(tmp_path_factory) -> Path:
    """The default model exported by the command line, with the int8 decoder."""
    out = tmp_path_factory.mktemp("nano_onnx")
    assert main(["export", "onnx", "--out", str(out), "--quantize-decoder"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny")


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_onnx")
    export_onnx(tiny, out)
    return out


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(PHOTO)


def _prompt_cases(h: int, w: int) -> dict[str, dict]:
    click, neg = [w * 0.5, h * 0.35], [w * 0.25, h * 0.8]
    box = [w * 0.2, h * 0.1, w * 0.8, h * 0.9]
    return {
        "point": dict(point_coords=np.array([click]), point_labels=np.array([1])),
        "negative point": dict(point_coords=np.array([click, neg]), point_labels=np.array([1, 0])),
        "box": dict(box=np.array(box)),
        "box and points": dict(box=np.array(box), point_coords=np.array([click, neg]), point_labels=np.array([1, 0])),
        "boxes (batched)": dict(box=np.array([box, [10, 20, w * 0.4, h * 0.5]])),
        "points (batched)": dict(point_coords=np.array([[click], [neg]]), point_labels=np.array([[1], [1]])),
    }


def _assert_same_prediction(a, b, what: str) -> None:
    (ma, sa, la), (mb, sb, lb) = a, b
    assert ma.shape == mb.shape and sa.shape == sb.shape and la.shape == lb.shape, what
    assert ma.dtype == mb.dtype == np.float32, what
    equal = (ma == mb).mean()
    assert equal >= 0.995, f"{what}: {equal:.4%} equal pixels"
    assert np.abs(sa - sb).max() <= 1e-3, what
    assert np.abs(la - lb).max() <= 1e-2, what  # logits of magnitude ~10-30


def _check_image_parity(model, folder: Path, image: np.ndarray, cases: dict[str, dict]) -> None:
    ours, theirs = ImagePredictor(model), OnnxImagePredictor(folder, num_threads=1)
    ours.set_image(image)
    theirs.set_image(image)
    assert np.abs(ours.get_image_embedding().numpy() - theirs.get_image_embedding()).max() <= 1e-3
    for what, kw in cases.items():
        for multimask in (True, False):
            _assert_same_prediction(ours.predict(**kw, multimask_output=multimask),
                                    theirs.predict(**kw, multimask_output=multimask), f"{what}, multimask={multimask}")
    # a mask prompt: the previous best logits fed back with the click, and alone
    first = ours.predict(**cases["point"])
    mask = first[2][np.argmax(first[1])][None]
    with_click = dict(cases["point"], mask_input=mask, multimask_output=False)
    _assert_same_prediction(ours.predict(**with_click), theirs.predict(**with_click), "mask input with the click")
    _assert_same_prediction(ours.predict(mask_input=mask), theirs.predict(mask_input=mask), "mask input alone")


# ---------------------------------------------------------------------- import and errors

def test_the_predictor_and_the_generator_import_without_torch():
    code = ("import sys\nfrom samkit.onnx import OnnxAutoMaskGenerator, OnnxImagePredictor\n"
            "import samkit.onnx.predictor, samkit.onnx.transforms, samkit.onnx.prompts, samkit.onnx.runtime\n"
            "import samkit.onnx.automask\n"
            "import samkit.automask.config, samkit.automask.grid, samkit.masks.rle, samkit.masks.numpy_ops\n"
            "from samkit.automask import AutoMaskConfig, GenerateStats\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


MISSING_ORT = """
import sys
from importlib.abc import MetaPathFinder

class NoOnnxRuntime(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")

sys.meta_path.insert(0, NoOnnxRuntime())
from samkit.errors import MissingDependencyError
from samkit.onnx import OnnxImagePredictor
try:
    OnnxImagePredictor("any_folder")
except MissingDependencyError as exc:
    print(exc)
"""


def test_missing_onnxruntime_says_which_extra_to_install():
    r = subprocess.run([sys.executable, "-c", MISSING_ORT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'pip install "samkit[onnx]"' in r.stdout


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        OnnxImagePredictor(tmp_path / "missing")
    with pytest.raises(CheckpointNotFoundError, match="samkit export onnx"):
        OnnxImagePredictor(tmp_path)


def test_export_refuses_an_old_opset(nano, tmp_path):
    with pytest.raises(ConfigError, match="at least 17"):
        export_onnx(nano, tmp_path, opset=16)


# ---------------------------------------------------------------------- the export

def test_export_writes_checked_graphs_and_config(nano_dir, nano):
    config = json.loads((nano_dir / "config.json").read_text())
    assert config["format"] == "samkit-onnx" and config["opset"] >= 17
    assert config["model"]["name"] == "samkit_nano" and config["embedding_size"] == nano.cfg.embedding_size
    assert set(config["graphs"]) == set(GRAPHS) | {"mask_decoder_int8"}
    for file in config["graphs"].values():
        proto = onnx.load(nano_dir / file)
        onnx.checker.check_model(proto, full_check=True)
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    decoder = onnx.load(nano_dir / "mask_decoder.onnx")
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in decoder.graph.input}
    e = nano.cfg.embedding_size
    assert dims["point_coords"] == ["B", "N", 2] and dims["point_labels"] == ["B", "N"]
    assert dims["mask_input"] == ["B", 1, 4 * e, 4 * e] and dims["image_embed"] == [1, nano.hidden_dim, e, e]
    # only float32 and int64 tensors cross the graphs' boundaries (no complex numbers anywhere)
    for file in GRAPHS.values():
        graph = onnx.load(nano_dir / file).graph
        types = {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
        assert types <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.BOOL}, file


def test_the_command_line_keeps_the_annotation_export(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--stats"]) == 2  # an empty folder: the annotations path answers
    assert "no SA-1B JSON found" in capsys.readouterr().err
    assert main(["export", "onnx"]) == 2
    assert "needs --out DIR" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "belong to samkit export onnx" in capsys.readouterr().err


# ---------------------------------------------------------------------- the image predictor

def test_image_predictor_matches_pytorch_on_the_default_model(nano, nano_dir, photo):
    h, w = photo.shape[:2]
    _check_image_parity(nano, nano_dir, photo, _prompt_cases(h, w))


def test_hole_and_speck_removal_matches_pytorch(nano, nano_dir, photo):
    """max_hole_area / max_sprinkle_area in numpy (scipy) equal the torch predictor's, and change
    the masks (so that the comparison can fail)."""
    h, w = photo.shape[:2]
    clicks = dict(point_coords=np.array([[w * 0.5, h * 0.35], [w * 0.3, h * 0.6]]), point_labels=np.array([1, 1]))
    plain = OnnxImagePredictor(nano_dir, num_threads=1)
    plain.set_image(photo)
    base = plain.predict(**clicks)[0]
    changed = 0
    for hole, speck in ((200, 0), (0, 200), (300, 300)):
        ours = ImagePredictor(nano, max_hole_area=hole, max_sprinkle_area=speck)
        theirs = OnnxImagePredictor(nano_dir, max_hole_area=hole, max_sprinkle_area=speck, num_threads=1)
        ours.set_image(photo)
        theirs.set_image(photo)
        want, got = ours.predict(**clicks), theirs.predict(**clicks)
        _assert_same_prediction(want, got, f"holes {hole}, specks {speck}")
        changed += int((got[0] != base).any())
    assert changed > 0


@pytest.mark.slow
def test_image_predictor_matches_pytorch_on_tiny(tiny, tiny_dir, photo):
    h, w = photo.shape[:2]
    _check_image_parity(tiny, tiny_dir, photo, _prompt_cases(h, w))


def test_batched_images_and_prompt_errors(nano, nano_dir, photo):
    ours, theirs = ImagePredictor(nano), OnnxImagePredictor(nano_dir, num_threads=1)
    with pytest.raises(StateError, match="set_image"):
        theirs.predict(point_coords=[[1, 1]], point_labels=[1])
    small = photo[::3, ::2].copy()
    for p in (ours, theirs):
        p.set_image_batch([photo, small])
    kw = dict(point_coords_batch=[np.array([[200, 150]]), np.array([[50, 60]])],
              point_labels_batch=[np.array([1]), np.array([1])])
    a, b = ours.predict_batch(**kw), theirs.predict_batch(**kw)
    for i in range(2):
        _assert_same_prediction((a[0][i], a[1][i], a[2][i]), (b[0][i], b[1][i], b[2][i]), f"image {i}")
    theirs.set_image(photo)
    for bad, message in ((dict(point_coords=[[1, 1]], point_labels=[5]), "must be in"),
                         (dict(point_coords=[[1, 1]]), "together"),
                         (dict(box=[10, 10, 5, 20]), "x1 \\(5\\) < x0 \\(10\\)"),
                         (dict(point_coords=[[1e5, 1]], point_labels=[1]), "far outside the image"),
                         (dict(mask_input=np.zeros((1, 8, 8))), "mask_input must have shape"),
                         (dict(), "no prompt")):
        with pytest.raises(PromptError, match=message):
            theirs.predict(**bad)


def test_int8_decoder_stays_close_to_float32(nano_dir, photo, tmp_path):
    fp32 = OnnxImagePredictor(nano_dir, num_threads=1)
    int8 = OnnxImagePredictor(nano_dir, num_threads=1, quantized_decoder=True)
    h, w = photo.shape[:2]
    grid = np.stack(np.meshgrid(np.linspace(0.1, 0.9, 4) * w, np.linspace(0.1, 0.9, 4) * h), -1).reshape(-1, 1, 2)
    for p in (fp32, int8):
        p.set_image(photo)
    a, sa, _ = fp32.predict(point_coords=grid, point_labels=np.ones((16, 1)))
    b, sb, _ = int8.predict(point_coords=grid, point_labels=np.ones((16, 1)))
    iou = mask_iou(a.reshape(-1, h, w) > 0, b.reshape(-1, h, w) > 0, empty=1.0)
    assert float(iou.mean()) >= 0.9 and np.abs(sa - sb).max() <= 0.1
    assert not np.array_equal(a, b) or not np.array_equal(sa, sb)  # it is another graph
    plain = tmp_path / "no_int8"
    shutil.copytree(nano_dir, plain, ignore=shutil.ignore_patterns("*int8*"))
    config = json.loads((plain / "config.json").read_text())
    del config["graphs"]["mask_decoder_int8"]
    (plain / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="--quantize-decoder"):
        OnnxModel(plain, quantized_decoder=True)


# ---------------------------------------------------------------------- segment everything

def _mask_of(segmentation) -> np.ndarray:
    """A record's ``segmentation`` (bool array, uncompressed or COCO RLE) as an ``H x W`` bool array."""
    if isinstance(segmentation, np.ndarray):
        return segmentation
    return rle_to_mask(coco_to_rle(segmentation))


EVERYTHING_CASES = {
    "8 x 8 points": (2, dict(points_per_side=8)),
    "m2m": (2, dict(points_per_side=4, use_m2m=True)),
    "one crop layer": (4, dict(points_per_side=8, crop_n_layers=1)),
    "uncompressed RLE, holes and specks": (2, dict(points_per_side=8, output_mode="uncompressed_rle",
                                                   min_mask_region_area=50)),
    "COCO RLE, one mask per point": (2, dict(points_per_side=8, output_mode="coco_rle", multimask_output=False)),
    "no thresholds": (2, dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)),
}


@pytest.mark.parametrize("step,kw", EVERYTHING_CASES.values(), ids=EVERYTHING_CASES.keys())
def test_automatic_masks_through_onnx_equal_pytorch(nano, nano_dir, photo, step, kw):
    image = photo[::step, ::step].copy()
    ours = AutoMaskGenerator(nano, **kw).generate(image)
    gen = OnnxAutoMaskGenerator(OnnxImagePredictor(nano_dir, num_threads=1), **kw)
    theirs = gen.generate(image)
    assert gen.threshold_sources["pred_iou_thresh"] == ("given" if "pred_iou_thresh" in kw else "samkit_nano's config")
    assert len(ours) == len(theirs) > 0
    assert gen.last_stats.kept == len(theirs) and gen.last_stats.candidates > 0
    for x, y in zip(ours, theirs):
        assert set(x) == set(y)
        if kw.get("output_mode", "binary_mask") == "binary_mask":
            assert y["segmentation"].dtype == bool and y["segmentation"].shape == image.shape[:2]
        else:
            assert y["segmentation"]["size"] == list(image.shape[:2])
            assert type(x["segmentation"]["counts"]) is type(y["segmentation"]["counts"])
        a, b = _mask_of(x["segmentation"]), _mask_of(y["segmentation"])
        assert (a == b).mean() >= 0.995
        assert float(mask_iou(a, b, empty=1.0)) >= 0.99
        assert y["area"] == int(b.sum()) and abs(x["area"] - y["area"]) <= max(2, 0.01 * x["area"])
        assert abs(x["predicted_iou"] - y["predicted_iou"]) <= 1e-3
        assert abs(x["stability_score"] - y["stability_score"]) <= 1e-3
        assert np.abs(np.subtract(x["bbox"], y["bbox"])).max() <= 1
        assert x["crop_box"] == y["crop_box"] and x["point_coords"] == y["point_coords"]
        assert all(isinstance(v, float) for v in y["bbox"] + y["crop_box"] + y["point_coords"][0])


def test_only_candidates_above_the_iou_threshold_are_upsampled(nano_dir, photo, monkeypatch):
    import samkit.onnx.automask as automask

    rows = []
    real = automask.upsample_logits

    def counting(logits, out_hw):
        rows.append(logits.shape[0])
        return real(logits, out_hw)

    monkeypatch.setattr(automask, "upsample_logits", counting)
    gen = OnnxAutoMaskGenerator(OnnxImagePredictor(nano_dir, num_threads=1), points_per_side=8)
    out = gen.generate(photo[::2, ::2].copy())
    stats = gen.last_stats
    assert 0 < stats.passed_iou < stats.candidates
    assert sum(rows) == stats.passed_iou + len(out)  # the stability pass, then the kept records' masks


def test_onnx_generator_settings_are_the_torch_generators(nano_dir):
    gen = OnnxAutoMaskGenerator(nano_dir, points_per_side=4, stability_score_thresh=0.9, device="cpu")
    assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (0.6, 0.9)
    assert gen.describe_thresholds() == "pred_iou_thresh=0.6 (samkit_nano's config), stability_score_thresh=0.9 (given)"
    assert len(gen.point_grids) == 1 and gen.point_grids[0].shape == (16, 2)
    gen.pred_iou_thresh = 0.5
    assert gen.config.pred_iou_thresh == 0.5 and gen.threshold_sources["pred_iou_thresh"] == "given"
    assert isinstance(OnnxAutoMaskGenerator.from_pretrained(nano_dir).predictor, OnnxImagePredictor)
    assert OnnxAutoMaskGenerator(OnnxModel(nano_dir)).pred_iou_thresh == 0.6
    with pytest.raises(ConfigError, match=r"OnnxAutoMaskGenerator got unexpected keyword argument\(s\) \['points'\]"):
        OnnxAutoMaskGenerator(nano_dir, points=4)
    for bad in (dict(points_per_side=None), dict(crop_n_layers=9), dict(output_mode="png"), dict(box_nms_thresh=2)):
        with pytest.raises(ConfigError) as ours:
            AutoMaskConfig(**{**dict(pred_iou_thresh=0.6, stability_score_thresh=0.8), **bad}).validate()
        with pytest.raises(ConfigError) as theirs:
            OnnxAutoMaskGenerator(nano_dir, **bad)
        assert str(ours.value) == str(theirs.value)
    gen.pred_iou_thresh = 1.0
    assert gen.generate(np.zeros((40, 60, 3), np.uint8)) == []
    assert "lower pred_iou_thresh" in gen.last_stats.explain()


WITHOUT_TORCH = """
import json, sys
from importlib.abc import MetaPathFinder

class Refuse(MetaPathFinder):
    def __init__(self, *names):
        self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ImportError(f"No module named {name!r}")

sys.meta_path.insert(0, Refuse("torch"))
import numpy as np
from samkit.errors import MissingDependencyError
from samkit.imageio import load_image
from samkit.onnx import OnnxAutoMaskGenerator, OnnxImagePredictor

folder, photo = sys.argv[1], sys.argv[2]
image = load_image(photo)[::2, ::2].copy()
predictor = OnnxImagePredictor(folder, num_threads=1)
no_scipy = Refuse("scipy")
sys.meta_path.insert(0, no_scipy)
try:
    OnnxAutoMaskGenerator(predictor, points_per_side=2, min_mask_region_area=10).generate(image)
except MissingDependencyError as exc:
    print("error:", exc)
sys.meta_path.remove(no_scipy)
from tests.onnx.everything_cases import CASES, summary
print(json.dumps({name: summary(OnnxAutoMaskGenerator(predictor, **kw).generate(image)) for name, kw in CASES.items()}))
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_segment_everything_runs_where_torch_cannot_be_imported(nano, nano_dir, photo):
    r = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(nano_dir), str(PHOTO)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    error, counts, modules = r.stdout.strip().splitlines()
    assert error.startswith("error:") and "pip install scipy" in error and "min_mask_region_area" in error
    assert modules == "[]"
    got = json.loads(counts)
    image = photo[::2, ::2].copy()  # the same image, in this process (torch imported)
    predictor = OnnxImagePredictor(nano_dir, num_threads=1)
    for name, kw in CASES.items():
        assert got[name] == summary(OnnxAutoMaskGenerator(predictor, **kw).generate(image)), name
        assert got[name][0] == len(AutoMaskGenerator(nano, **kw).generate(image)) > 0


# the numpy mask library against torchvision and samkit's torch functions

@pytest.mark.parametrize("n", [0, 1, 7, 300, 1500])
def test_numpy_nms_equals_torchvision(n):
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(n)
    for trial in range(6):
        xy = rng.integers(0, 300, (n, 2))
        wh = rng.integers(0, 120, (n, 2))  # some boxes empty
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        tied = trial % 2 == 1
        scores = (rng.choice([0.25, 0.5, 0.75], n) if tied else rng.random(n)).astype(np.float32)
        for threshold in (0.0, 0.5, 0.7, 1.0):
            want = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                               torch.zeros(n, dtype=torch.int64), threshold).numpy()
            got = numpy_ops.nms(boxes, scores, threshold)
            assert got.dtype == np.int64
            assert np.array_equal(got, samkit_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                                          torch.zeros(n), threshold).numpy()) or (tied and n > 1000)
            if tied and n > 1000:  # torchvision re-sorts the kept boxes without a stable sort: the same set
                assert set(got.tolist()) == set(want.tolist()) and np.array_equal(scores[got], scores[want])
            else:
                assert np.array_equal(got, want), (trial, threshold)


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    coarse = rng.standard_normal((n, h // 8 + 1, w // 8 + 1))
    return np.repeat(np.repeat(coarse, 8, 1), 8, 2)[:, :h, :w] + 0.8 * rng.standard_normal((n, h, w)) > 0.3


def test_numpy_rle_round_trips_and_equals_pycocotools():
    coco_mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    masks = _random_masks(rng, 6, 37, 53)
    masks[0] = False
    masks[1] = True
    masks[2, 0, 0], masks[3, 0, 0] = True, False  # a mask that starts with a 1-run, and one with a 0-run
    rles = mask_to_rle(masks)
    assert rles == mask_to_rle(torch.from_numpy(masks))  # tensors take the same path
    assert rles[0]["counts"] == [37 * 53] and rles[1]["counts"] == [0, 37 * 53]
    for mask, rle in zip(masks, rles):
        assert rle["size"] == [37, 53] and all(isinstance(c, int) for c in rle["counts"])
        assert sum(rle["counts"]) == 37 * 53 and rle_area(rle) == int(mask.sum())
        assert np.array_equal(rle_to_mask(rle), mask)
        coco = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_to_coco(rle)["counts"] == coco["counts"].decode()
    assert mask_to_rle(np.zeros((0, 4, 5), bool)) == []


def test_numpy_boxes_holes_and_edges_equal_the_torch_ones():
    from samkit.automask.grid import is_box_near_crop_edge
    from samkit.masks.boxes import masks_to_boxes
    from samkit.masks.components import fill_holes_and_sprinkles

    rng = np.random.default_rng(1)
    masks = _random_masks(rng, 8, 40, 30)
    masks[0] = False
    assert np.array_equal(numpy_ops.masks_to_boxes(masks), masks_to_boxes(torch.from_numpy(masks)).numpy())
    logits = (rng.standard_normal((5, 48, 48)) * 3).astype(np.float32)
    for hole, sprinkle, threshold in ((10, 10, 0.0), (25, 0, 0.5), (0, 4, -1.0)):
        want = fill_holes_and_sprinkles(torch.from_numpy(logits), hole, sprinkle, threshold).numpy()
        assert np.array_equal(numpy_ops.fill_holes_and_sprinkles(logits, hole, sprinkle, threshold), want)
    boxes = rng.integers(0, 200, (50, 4))
    crop, image = [100, 50, 300, 250], [0, 0, 300, 400]
    near = is_box_near_crop_edge(boxes, crop, image)
    assert near.dtype == bool and near.any() and not near.all()
    assert np.array_equal(near, is_box_near_crop_edge(torch.from_numpy(boxes), crop, image).numpy())


# ---------------------------------------------------------------------- video

def _memory_graphs_match(model, folder: Path) -> None:
    """The memory graphs against samkit's Tracker on the same random features and memories."""
    onnx_model = OnnxModel(folder, num_threads=1)
    tracker = Tracker(model)
    cfg, e = model.cfg, model.cfg.embedding_size
    g = torch.Generator().manual_seed(3)
    vision = torch.randn(1, model.hidden_dim, e, e, generator=g)
    vision_pos = model.image_encoder.neck.position_encoding(vision)[:1]
    memory_pos = model.memory_encoder.position_encoding(torch.zeros(1, model.mem_dim, e, e))
    plan = plan_memory(cfg, 5, [0], lambda t: 0 <= t < 5, num_frames=10)  # frames 0-4 tracked, 0 prompted
    assert len(plan.memories) == 5 and len(plan.pointers) == 5
    memories = [torch.randn(1, model.mem_dim, e, e, generator=g) for _ in plan.memories]
    pointers = [torch.randn(1, model.hidden_dim, generator=g) for _ in plan.pointers]
    scale = max(plan.max_pointers - 1, 1)
    for ptrs in (pointers, []):  # with object pointers, and without
        with torch.no_grad():
            used = plan if ptrs else MemoryPlan(plan.memories, (), plan.max_pointers)
            want = tracker.condition(vision, vision_pos, used, memories, ptrs, memory_pos)
        got = onnx_model.run("memory_attention", {
            "vision_features": vision.numpy(), "memory": torch.stack(memories).numpy(),
            "memory_tpos": np.array([t for _, t in plan.memories]),
            "obj_ptrs": torch.stack(ptrs).numpy() if ptrs else np.zeros((0, 1, model.hidden_dim), np.float32),
            "obj_ptr_offsets": np.array([d / scale for _, d in plan.pointers][:len(ptrs)], np.float32)})[0]
        assert np.abs(want.numpy() - got).max() <= 1e-3
    low = torch.randn(2, 1, 4 * e, 4 * e, generator=g) * 5
    score = torch.tensor([[1.0], [-1.0]])
    for from_points in (True, False):
        with torch.no_grad():
            want, _ = tracker.encode_memory(vision.expand(2, -1, -1, -1), tracker.upsample(low), score, from_points)
        got = onnx_model.run("memory_encoder", {
            "vision_features": vision.expand(2, -1, -1, -1).numpy().copy(), "mask_logits": low.numpy(),
            "object_score": score.numpy(), "binarize": np.array([float(from_points)], np.float32)})[0]
        assert np.abs(want.numpy() - got).max() <= 1e-3


def test_memory_graphs_match_pytorch_on_the_default_model(nano, nano_dir):
    _memory_graphs_match(nano, nano_dir)


@pytest.mark.slow
def test_memory_graphs_match_pytorch_on_tiny(tiny, tiny_dir):
    _memory_graphs_match(tiny, tiny_dir)


def test_a_video_tracked_through_onnx_equals_samkits_tracks(nano, nano_dir):
    clip = make_clip(10, 120, 160, 2, seed=5)
    frames = list(clip.frames)
    ys, xs = np.nonzero(clip.object_mask(0, 1))
    click = [[float(xs.mean()), float(ys.mean())]]
    ys, xs = np.nonzero(clip.object_mask(0, 2))
    box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    predictor = VideoPredictor(nano, progress=False, fill_hole_area=0, memory_dtype=None)
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=click, labels=[1])
    predictor.add_new_points_or_box(state, 0, 2, box=box)
    want = [(f, ids, m.numpy()) for f, ids, m in predictor.propagate_in_video(state)]
    got = list(OnnxVideoTracker(nano_dir, num_threads=1).track(
        frames, {1: ObjectPrompt(points=click, labels=[1]), 2: ObjectPrompt(box=box)}))
    assert [f for f, _, _ in got] == [f for f, _, _ in want] == list(range(10))
    for (_, ids_a, a), (_, ids_b, b) in zip(want, got):
        assert ids_a == ids_b == [1, 2] and a.shape == b.shape == (2, 1, 120, 160)
        iou = mask_iou(a[:, 0] > 0, b[:, 0] > 0, empty=1.0)
        assert float(iou.min()) >= 0.99
    assert all((m[:, 0] > 0).any(axis=(1, 2)).all() for _, _, m in got)  # both objects tracked, not empty
