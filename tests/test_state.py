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


def test_a_stamp_asks_only_about_changed_paths_while_nobody_else_writes(tmp_path):
    """With no commit by another connection since its last stamp (SQLite's data_version),
    a worker asks only about paths whose ETag it changed, or where it was behind; the
    answers must be the ones asking about every path gives."""
    a, b = Validators(str(tmp_path)), Validators(str(tmp_path))
    etags = {f"p{i}": f'"{i}"' for i in range(600)}
    held = {p: (e, t) for (p, e), t in zip(etags.items(),
                                         a.stamp(etags, seen=100.0).values(), strict=True)}
    asked: list[int] = []
    a._db.set_trace_callback(lambda sql: asked.append(sql.count("'p")) if "SELECT" in sql
                             else None)           # (the statements come with their values)
    edited = {**etags, "p7": '"7b"'}
    stamps = a.stamp(edited, seen=200.0, held=held)
    assert asked == [1]                                 # one path, not 600
    assert stamps["p7"] > held["p7"][1] and stamps["p8"] == held["p8"][1]
    held["p7"] = ('"7b"', stamps["p7"])
    # another worker records newer bytes for p8: the next stamp must see it (a false 304
    # otherwise: a client holding p8's newer time would be told ours is not newer)
    newer = b.stamp({"p8": '"8b"'}, seen=300.0)["p8"]
    asked.clear()
    stamps = a.stamp(edited, seen=250.0, held=held)     # we scanned before that save
    assert sum(asked) == 600 and stamps["p8"] == held["p8"][1]
    # behind on p8, we have written nothing; once our data is as fresh, asking again:
    asked.clear()
    caught_up = a.stamp(edited, seen=400.0, held=held)
    assert asked == [1] and caught_up["p8"] > newer
    assert b.stamp({"p8": '"8"'}, seen=401.0)["p8"] == caught_up["p8"]


def test_a_commit_right_after_ours_is_not_taken_for_ours(tmp_path):
    """Another worker committing just after our stamp must still be seen by our next one:
    the commit count is read inside our transaction, before anyone else can commit."""
    a, b = Validators(str(tmp_path)), Validators(str(tmp_path))
    etags = {"p": '"1"', "q": '"1"'}
    held = {p: (etags[p], t) for p, t in a.stamp(etags, seen=100.0).items()}

    class Racing:                   # a's connection, with b committing right after a does
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *args):
            result = self.db.execute(sql, *args)
            if sql == "COMMIT":
                b.stamp({"q": '"2"'}, seen=300.0)
            return result

        def __getattr__(self, name):
            return getattr(self.db, name)
    a._db = Racing(a._db)
    a.stamp({**etags, "p": '"1b"'}, seen=200.0, held=held)
    a._db = a._db.db
    # q is unchanged for us, but b recorded other bytes for it since: with data as fresh
    # as b's, our q must get a time after b's (a client holding b's q and its time would
    # get a false 304 from our old time)
    newer = b.stamp({"q": '"2"'}, seen=301.0)["q"]
    assert a.stamp({**etags, "p": '"1b"'}, seen=400.0, held=held)["q"] > newer


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


def test_held_writes_wait_for_the_end_of_the_block_or_a_read(tmp_path):
    """A first build holds its cache writes until every feed is servable; a read of a
    table with held writes must get them (not wait forever for a writer that never
    starts), and the end of the block writes the rest, in order."""
    cache = Cache(str(tmp_path))
    other = sqlite3.connect(tmp_path / "cache.sqlite")        # what another process sees

    def stored(table: str) -> set[str]:
        return {k for (k,) in other.execute(f"SELECT key FROM {table}")}  # noqa: S608

    with cache.held():
        cache.put_later("html", {"a": ("<p>a</p>", "a")})
        cache.put_later("gzdocs", {"d": (b"gz", '"e"')})
        cache.put_later("html", {"b": ("<p>b</p>", "b")})
        assert cache._writer is None                  # nothing started, nothing written
        assert stored("html") == stored("gzdocs") == set()
        assert cache.get("gzdocs", ["d"]) == {"d": (b"gz", '"e"')}    # a read lets them go
        assert not cache._held                        # all of them, to the writer thread:
        # the read waited for its own table only, so the html writes (queued after the
        # gzdocs one) reach SQLite without anyone flushing, still inside the block
        with cache._done:
            assert cache._done.wait_for(lambda: not sum(cache._queued.values()), timeout=30)
        assert stored("html") == {"a", "b"}
        cache.put_later("html", {"c": ("<p>c</p>", "c")})            # after: not held
    cache.flush()
    assert stored("html") == {"a", "b", "c"} and stored("gzdocs") == {"d"}
    with cache.held():
        cache.put_later("html", {"e": ("<p>e</p>", "e")})
    cache.flush()
    assert "e" in stored("html")
    cache.close()


def test_nested_holds_keep_every_write_in_order(tmp_path):
    """Holds nest (the outermost end lets the writes go), and held writes reach SQLite
    before any write queued after them."""
    cache = Cache(str(tmp_path))
    with cache.held():
        cache.put_later("html", {"k": ("first", "")})
        with cache.held():
            cache.put_later("html", {"k2": ("inner", "")})
        assert cache._writer is None                      # still held by the outer block
        cache.put_later("html", {"k": ("second", "")})
    cache.put_later("html", {"k": ("third", "")})
    cache.flush()
    assert cache.get("html", ["k", "k2"]) == {"k": ("third", ""), "k2": ("inner", "")}
    cache.close()
