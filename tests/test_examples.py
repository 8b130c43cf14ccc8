"""The notebooks in examples/: committed clean, and each one runs top to bottom, as shipped.

The slow test executes every notebook with nbclient in a fresh kernel of this interpreter (one
torch thread, inline pictures), fails on any cell error, and checks what the notebook showed: its
inline pictures, and the figures of the ``summary: {...}`` line its last cell prints (shapes,
thresholds kept, round trips, a correction that helps, the fine-tuning gain). It prints each
notebook's run time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# the default model, offline; the one line (commented) that switches a notebook to Meta's weights
DEFAULT_MODEL_LINE = "model = samkit.build_model(device=device)"
OFFICIAL_SWITCH = '# model = samkit.build_model("sam2.1_hiera_tiny", pretrained=True, device=device)'

# seconds one cell may take; a whole notebook takes 1-2 minutes on a 2-core CPU
CELL_TIMEOUT = int(os.environ.get("SAMKIT_EXAMPLES_CELL_TIMEOUT", "600"))


def _automatic_mask_generator(s: dict[str, Any]) -> None:
    assert s["masks"] >= 1 and s["masks_per_setting"]["model default"] == s["masks"]
    assert s["min_predicted_iou"] > s["pred_iou_thresh"]  # every kept mask passed both thresholds
    assert s["min_stability_score"] >= s["stability_score_thresh"]
    assert s["rle_equals_binary"] is True
    assert s["dense_masks"] >= 1


def _image_predictor(s: dict[str, Any]) -> None:
    assert s["one_click"] == {"masks": [3, 512, 512], "low_res": [3, 64, 64]}  # 64: the default model's 256 px / 4
    assert s["box_mask_inside_box"] >= 0.8  # the mask of a box prompt lies in the box
    assert s["batched_boxes"] == [4, 1, 512, 512]
    assert len(s["session_ious"]) == 3 and s["prompts_after_undo"] == 2


def _video_predictor(s: dict[str, Any]) -> None:
    assert s["frames"] == 24
    before, after = s["iou_on_correction_frame"]
    assert after > before and after >= 0.5  # the correction click fixes its frame
    assert all(v >= 0.99 for v in s["stream_vs_propagate_frame0"].values())  # same prompts, same masks
    assert s["part_frames"] == list(range(4, 10))  # start_frame_idx=4, max_frame_num_to_track=5


def _finetune_and_evaluate(s: dict[str, Any]) -> None:
    assert s["metrics_steps"][0] == 0 and s["metrics_steps"][-1] == s["steps"]  # validated at step 0 and the end
    before, after = s["before"], s["after"]
    assert after["NoC@85"] < before["NoC@85"]  # the gain, on the held-out images
    assert after["mIoU@5"] > before["mIoU@5"]


# notebook -> (the least number of inline pictures, the checks of its summary line)
NOTEBOOKS: dict[str, tuple[int, Callable[[dict[str, Any]], None]]] = {
    "automatic_mask_generator.ipynb": (6, _automatic_mask_generator),
    "image_predictor.ipynb": (9, _image_predictor),
    "video_predictor.ipynb": (6, _video_predictor),
    "finetune_and_evaluate.ipynb": (4, _finetune_and_evaluate),
}


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_notebook_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_committed_clean(name):
    """Valid, without outputs, on the default model with one commented line for Meta's weights."""
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for cell in _code(nb):
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell has outputs; clear them"
    lines = [line.strip() for c in _code(nb) for line in c.source.splitlines()]
    assert lines.count(DEFAULT_MODEL_LINE + "   # samkit_nano with the weights shipped in the package (offline)") == 1
    assert sum(line.startswith(OFFICIAL_SWITCH) for line in lines) == 1


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory) -> Iterator[str]:
    """A kernel spec that runs this interpreter (not whatever `python3` kernel the machine has),
    with inline pictures and one torch thread, as the suite's other long tests use (on a busy
    2-core machine two threads were several times slower)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "samkit-examples"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "samkit examples",
        "language": "python",
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "OMP_NUM_THREADS": "1"},
    }))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root) + (os.pathsep + old if old else "")
    yield "samkit-examples"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs(name, kernel_name, tmp_path, monkeypatch, capsys, record_property):
    from nbclient import NotebookClient

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's temporary folders (clips, datasets, runs) land here
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT, startup_timeout=180,
                            allow_errors=False, resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    seconds = time.perf_counter() - t0
    record_property("seconds", round(seconds, 1))
    with capsys.disabled():
        print(f"\n{name}: {seconds:.1f} s")

    outputs = [o for c in _code(nb) for o in c.outputs]
    least, check = NOTEBOOKS[name]
    pictures = [o for o in outputs if o.output_type in ("display_data", "execute_result")
                and "image/png" in o.get("data", {})]
    assert len(pictures) >= least, f"{name}: {len(pictures)} pictures, expected at least {least}"
    last = "".join(o.get("text", "") for o in _code(nb)[-1].outputs if o.output_type == "stream")
    assert last.startswith("summary: "), f"{name}: the last cell printed no summary line: {last!r}"
    summary = json.loads(last[len("summary: "):])
    with capsys.disabled():
        print(f"{name} summary: {json.dumps(summary)}")
    check(summary)
