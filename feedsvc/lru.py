"""A map that keeps the most recently used values, within a count and a total size.

The service keeps a few things in memory only because they are asked for again soon:
identity bytes of gzip-only documents (http.Inflated), article bodies a refresh asks
for again (bodies.Bodies), the entries of feeds spliced last (splice.HELD).  Each is an
`LRU`: safe to share between threads, oldest out first while either bound is passed;
a value larger than the whole size bound is not held at all (it would push out
everything else and then itself).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most `max_items` values, of at most `max_size` in all as `size_of` measures."""

    def __init__(self, max_items: int, max_size: int, size_of: Callable[[V], int]):
        self.max_items = max_items
        self.max_size = max_size
        self.size_of = size_of
        self.size = 0                       # of the values held
        self._held: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value held for `key` (now the most recently used), or None."""
        with self._lock:
            held = self._held.get(key)
            if held is None:
                return None
            self._held.move_to_end(key)
            return held[0]

    def put(self, key: K, value: V) -> None:
        """Hold `value` for `key` as the most recently used (a key holds one value for
        good: one already held is only moved up)."""
        with self._lock:
            if key in self._held:
                self._held.move_to_end(key)
                return
            size = self.size_of(value)
            if size > self.max_size or self.max_items <= 0:
                return
            self._held[key] = (value, size)
            self.size += size
            while len(self._held) > self.max_items or self.size > self.max_size:
                self.size -= self._held.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self.size = 0

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def values(self) -> Iterator[V]:
        """The values held, oldest first (a copy: safe while others put)."""
        with self._lock:
            return iter([v for v, _ in self._held.values()])
