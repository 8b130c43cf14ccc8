"""A bounded least-recently-used map, the one cache type of the package."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

__all__ = ["LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``maxsize`` entries; a ``put`` beyond that drops the least recently used one
    (``get`` and ``put`` both count as a use). ``maxsize <= 0`` keeps nothing.

    With ``max_bytes`` and ``sizeof`` (a value's size in bytes) the entries also stay within
    ``max_bytes`` together: the least recently used ones go first, and a value larger than
    ``max_bytes`` on its own is not kept.

    Not thread-safe: callers that share one across threads hold a lock around it.
    """

    def __init__(self, maxsize: int, *, max_bytes: Optional[int] = None,
                 sizeof: Optional[Callable[[V], int]] = None) -> None:
        if (max_bytes is None) != (sizeof is None):
            raise ValueError("LRUCache: max_bytes and sizeof go together")
        self.maxsize = int(maxsize)
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._sizes: dict[K, int] = {}
        self._data: OrderedDict[K, V] = OrderedDict()

    @property
    def nbytes(self) -> int:
        """The stored values' total size (0 without ``sizeof``)."""
        return sum(self._sizes.values())

    def get(self, key: K) -> Optional[V]:
        """The value stored for ``key`` (now the most recently used), or ``None``."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.maxsize <= 0:
            return
        if self._sizeof is not None:
            size = int(self._sizeof(value))
            if size > self.max_bytes:
                self.pop(key)
                return
            self._sizes[key] = size
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize or (self.max_bytes is not None and self.nbytes > self.max_bytes):
            old, _ = self._data.popitem(last=False)
            self._sizes.pop(old, None)

    def pop(self, key: K) -> Optional[V]:
        """Remove ``key``; its value, or ``None`` when it was not stored."""
        self._sizes.pop(key, None)
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[K]:
        """The keys, least recently used first."""
        return list(self._data)

    def clear(self) -> None:
        self._data.clear()
        self._sizes.clear()
