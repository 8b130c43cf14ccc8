"""Atomic writes and strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from samkit.fileio import atomic_write, write_json


def test_write_json_is_strict_json(tmp_path):
    path = write_json(tmp_path / "a.json", {"x": math.nan, "y": [1.5, math.inf, -math.inf], "z": (2, "s")})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": [1.5, None, None], "z": [2, "s"]}


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = write_json(tmp_path / "b.json", {"v": 1})

    def broken(f):
        f.write(b'{"v": 2')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]
