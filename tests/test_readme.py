"""The README's shell and Python blocks run as written.

Every fenced ```bash / ```python block of README.md runs, in README order, in one temporary folder
that holds the small inputs the README's examples name (``photo.jpg``: the bundled astronaut photo;
``photos/``: a folder with one image; ``clip.mp4``: an 8-frame generated clip), with the default model:

* Python blocks share one namespace (a later block uses the ``model`` an earlier one built);
* shell blocks run with ``bash -euo pipefail``; ``samkit`` is this interpreter's ``python -m
  samkit.cli``; files one block writes are there for the next ones.

A block that needs what a test cannot have (the network, Meta's weights, a dataset download, a
camera, a person in the studio) or that runs for minutes says so on the line before its fence::

    <!-- readme-test: skip (needs the network: downloads Meta's weights) -->

and is skipped with that reason (``pytest -rs`` lists them). Blocks of other languages (tables of
output, the layout tree) are never run. Set ``SAMKIT_README`` to test another copy of the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("SAMKIT_README", ROOT / "README.md"))
LANGUAGES = ("bash", "python")
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<what>\S+)\s*(?P<reason>.*?)\s*-->")

# the whole file runs in about 1-3 minutes on a 2-core CPU (commands start a Python with torch each)
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, first line number (of the fence) in README.md, code, and
    the reason it is skipped (None: it runs)."""

    language: str
    line: int
    code: str
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.language}-L{self.line}"


def parse_blocks(text: str) -> list[Block]:
    """The ```bash and ```python blocks of a Markdown text with their skip markers.

    Raises:
        ValueError: a marker that is not right before a fence, an unknown marker, a skip without a
            reason, an unclosed fence.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # (line, reason) of the last marker
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.search(line)
        if marker:
            if marker["what"] != "skip":
                raise ValueError(f"README.md:{i + 1}: unknown readme-test marker {marker['what']!r} (only 'skip')")
            reason = marker["reason"].strip()
            if reason.startswith("(") and reason.endswith(")"):
                reason = reason[1:-1].strip()
            if not reason:
                raise ValueError(f"README.md:{i + 1}: a readme-test skip needs its reason, e.g. "
                                 "<!-- readme-test: skip (needs the network) -->")
            pending = (i + 1, reason)
            i += 1
            continue
        fence = re.match(r"^(\s*)```(\S*)\s*$", line)
        if fence:
            language, start = fence.group(2), i + 1
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise ValueError(f"README.md:{start}: a fence that is never closed")
            if language in LANGUAGES:
                blocks.append(Block(language, start, "\n".join(lines[i + 1:end]) + "\n",
                                    pending[1] if pending else None))
            elif pending:
                raise ValueError(f"README.md:{pending[0]}: readme-test marker before a ```{language} block, "
                                 "which is never run")
            pending = None
            i = end + 1
            continue
        if pending and line.strip():
            raise ValueError(f"README.md:{pending[0]}: a readme-test marker must be on the line right before a "
                             "fence")
        i += 1
    if pending:
        raise ValueError(f"README.md:{pending[0]}: a readme-test marker with no block after it")
    return blocks


BLOCKS = parse_blocks(README.read_text()) if README.is_file() else []
# A README without any marker has not been through its first review for this test: running its blocks
# would download weights and start servers, so none runs until the blocks that need those are marked.
MARKED = README.is_file() and MARKER.search(README.read_text()) is not None


def _inputs(folder: Path) -> None:
    """The small inputs the README's examples name, in ``folder``."""
    cv2 = pytest.importorskip("cv2")  # clip.mp4 (the dev extra installs OpenCV)
    from samkit.data.synthetic.clips import make_clip

    photo = ROOT / "samkit" / "assets" / "astronaut.jpg"  # 512 x 512
    shutil.copyfile(photo, folder / "photo.jpg")
    (folder / "photos" / "lab").mkdir(parents=True)  # one image, in a subfolder: annotate searches recursively
    with Image.open(photo) as im:
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((200, 160)).save(
            folder / "photos" / "lab" / "flipped.jpg")
    clip = make_clip(num_frames=8, height=384, width=512, num_objects=2, seed=3)
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (512, 384))
    for frame in clip.frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()


class Runner:
    """Runs the blocks in README order in one folder, each block once; a block's test first runs
    the earlier blocks that have not run (so ``-k`` on one block works too)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.namespace: dict[str, Any] = {"__name__": "__readme__"}
        self.done: dict[str, str | None] = {}  # block name -> None (passed) or its failure

    def run_through(self, block: Block) -> None:
        for earlier in BLOCKS:
            if earlier.skip is None and earlier.name not in self.done:
                self.done[earlier.name] = self._run(earlier)
            if earlier == block:
                break
        failure = self.done[block.name]
        if failure is not None:
            pytest.fail(f"README.md:{block.line} ({block.language} block) fails:\n{failure}", pytrace=False)

    def _run(self, block: Block) -> str | None:
        return self._python(block) if block.language == "python" else self._shell(block)

    def _python(self, block: Block) -> str | None:
        here = os.getcwd()
        os.chdir(self.folder)
        try:
            # blank lines first, so that a traceback's line numbers are README.md's
            exec(compile("\n" * block.line + block.code, "README.md", "exec"), self.namespace)
        except Exception:
            return traceback.format_exc(limit=-3)
        finally:
            os.chdir(here)
        return None

    def _shell(self, block: Block) -> str | None:
        script = f'samkit() {{ "{sys.executable}" -m samkit.cli "$@"; }}\n' + block.code
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.folder, env=env,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return f"exit {r.returncode}\n{block.code}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
        return None


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    folder = tmp_path_factory.mktemp("readme")
    _inputs(folder)
    return Runner(folder)


def test_the_markers_parse():
    """Every readme-test marker is right before a bash/python fence and gives its reason."""
    assert README.is_file(), f"{README} is missing"
    blocks = parse_blocks(README.read_text())
    assert any(b.skip is None for b in blocks), "no README block runs"
    with pytest.raises(ValueError, match="needs its reason"):
        parse_blocks("<!-- readme-test: skip -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="right before a fence"):
        parse_blocks("<!-- readme-test: skip (x) -->\ntext\n```bash\nls\n```\n")
    text = "<!-- readme-test: skip (needs x (and y)) -->\n```bash\nls\n```\n```python\n1\n```\n"
    assert [b.skip for b in parse_blocks(text)] == ["needs x (and y)", None]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_readme_block(block: Block, runner: Runner) -> None:
    if block.skip is not None:
        pytest.skip(f"README.md:{block.line}: {block.skip}")
    if not MARKED:
        pytest.skip("README.md has no readme-test markers: mark the blocks that need the network, data or a "
                    "server first (see this file's docstring)")
    runner.run_through(block)
