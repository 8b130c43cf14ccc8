"""LRUCache: the count bound, the byte bound, use order."""

from __future__ import annotations

import pytest

from samkit.lru import LRUCache


def test_count_bound_drops_the_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert cache.keys() == ["a", "c"] and cache.get("b") is None


def test_byte_bound_drops_old_entries_and_refuses_an_oversized_one() -> None:
    cache: LRUCache[str, bytes] = LRUCache(10, max_bytes=10, sizeof=len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.put("c", b"12345")  # 13 bytes: "a" goes
    assert cache.keys() == ["b", "c"] and cache.nbytes == 9
    cache.put("b", b"1")  # replacing a value counts its new size
    assert cache.nbytes == 6
    cache.put("huge", b"x" * 11)
    assert "huge" not in cache and cache.keys() == ["c", "b"]  # the put made "b" the most recent
    cache.pop("c")
    assert cache.nbytes == 1
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_byte_bound_needs_a_size_function() -> None:
    with pytest.raises(ValueError, match="go together"):
        LRUCache(2, max_bytes=10)
