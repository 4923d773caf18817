"""lru.LRU: the one bounded map behind http.Inflated, bodies' and splice's held values."""
from __future__ import annotations

import threading

from feedsvc.lru import LRU


def test_the_oldest_go_first_past_either_bound():
    held: LRU[str, bytes] = LRU(3, 10, len)
    for key in "abc":
        held.put(key, b"xx")
    assert held.get("a") == b"xx"               # now the newest: b goes first
    held.put("d", b"xx")
    assert "b" not in held and list("acd") == [k for k in "abcd" if k in held]
    held.put("e", b"xxxxxx")                    # 12 bytes, past 10: the oldest goes
    assert "c" not in held and held.size == 10 and [k for k in "ade" if k in held] == \
        list("ade")
    held.put("f", b"xxxxxxxxx")                 # 9 more: all but it go
    assert len(held) == 1 and held.size == 9


def test_a_value_larger_than_the_bound_is_not_held_and_pushes_nothing_out():
    held: LRU[str, bytes] = LRU(10, 10, len)
    held.put("a", b"x" * 6)
    held.put("big", b"x" * 11)
    assert "big" not in held and held.get("a") == b"x" * 6 and held.size == 6
    held.put("a", b"other")                     # a key holds one value for good
    assert held.get("a") == b"x" * 6
    none: LRU[str, bytes] = LRU(0, 10, len)     # no room at all: nothing is held
    none.put("a", b"x")
    assert len(none) == 0 and none.get("a") is None


def test_threads_putting_and_getting_keep_the_size_true():
    held: LRU[int, bytes] = LRU(50, 2_000, len)

    def work(offset: int) -> None:
        for i in range(2_000):
            held.put((i * 7 + offset) % 300, b"x" * (i % 40))
            held.get(i % 300)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert held.size == sum(map(len, held.values())) <= 2_000 and len(held) <= 50
