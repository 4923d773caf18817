"""Validators: Last-Modified moves forward with the bytes, and a stale worker cannot lie."""
from __future__ import annotations

import sqlite3

from feedsvc.state import Cache, Validators


def test_new_bytes_get_a_later_time_and_same_bytes_keep_theirs(tmp_path):
    v = Validators(str(tmp_path))
    first = v.stamp({"feeds/all.rss": '"a"'}, seen=100.0)["feeds/all.rss"]
    assert v.stamp({"feeds/all.rss": '"a"'}, seen=150.0)["feeds/all.rss"] == first
    second = v.stamp({"feeds/all.rss": '"b"'}, seen=200.0)["feeds/all.rss"]
    assert second > first
    back = v.stamp({"feeds/all.rss": '"a"'}, seen=300.0)["feeds/all.rss"]   # A, B, then A
    assert back > second, "old bytes coming back must not reuse their old time"
    again = Validators(str(tmp_path))                                   # a restart
    assert again.stamp({"feeds/all.rss": '"a"'}, seen=301.0)["feeds/all.rss"] == back


def test_a_worker_behind_another_records_nothing(tmp_path):
    fresh, stale = Validators(str(tmp_path)), Validators(str(tmp_path))
    old_time = stale.stamp({"f": '"old"'}, seen=100.0)["f"]
    new_time = fresh.stamp({"f": '"new"'}, seen=200.0)["f"]             # a save, seen by one
    # The other worker scanned before that save; its late stamp keeps its own time ...
    assert stale.stamp({"f": '"old"'}, seen=150.0, held={"f": ('"old"', old_time)})["f"] \
        == old_time
    # ... or, holding none, a time before the newer bytes' time: never after it.
    assert stale.stamp({"f": '"old"'}, seen=150.0)["f"] < new_time
    # and the shared record still belongs to the newer bytes.
    assert fresh.stamp({"f": '"new"'}, seen=250.0)["f"] == new_time


def test_a_cache_of_an_older_layout_is_dropped_not_misread(tmp_path):
    old = sqlite3.connect(tmp_path / "cache.sqlite")
    old.execute("CREATE TABLE docs (key TEXT PRIMARY KEY, body BLOB, gz BLOB)")
    old.execute("INSERT INTO docs VALUES ('r', x'00', x'01')")
    old.execute("CREATE TABLE documents (key TEXT PRIMARY KEY, gz BLOB)")
    old.execute("INSERT INTO documents VALUES ('r', x'01')")
    old.commit()
    old.close()
    cache = Cache(str(tmp_path))
    tables = {name for name, in sqlite3.connect(tmp_path / "cache.sqlite").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "docs" not in tables
    assert "documents" in tables        # an older instance may still be using it
    assert cache.get("gzdocs", ["r"]) == {}
    cache.put("gzdocs", {"r": (b"gz", '"e"')})
    assert cache.get("gzdocs", ["r"]) == {"r": (b"gz", '"e"')}
    cache.close()
    assert Cache(str(tmp_path)).get("gzdocs", ["r"]) == {"r": (b"gz", '"e"')}  # same layout: kept
