"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a small shared CPU, two threads wait on each other at every operation when the cores are busy
    (10x slower on small inputs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real photos and clips beside the checkout; tests using it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real photos are optional)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/parity/ compares with the official package: mark it ``parity``."""
    parity = Path(__file__).resolve().parent / "parity"
    for item in items:
        if parity in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.parity)
