"""Validators: Last-Modified moves forward with the bytes, and a stale worker cannot lie."""
from __future__ import annotations

import os
import sqlite3

import pytest

from feedsvc.cache import Cache
from feedsvc.validators import Validators


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


# -- the rule: a second once given to some bytes goes to no other bytes, and never ahead --

class Clock:
    """An injected clock (Unix seconds), moved by hand."""

    def __init__(self, now: float = 1_700_000_000.2):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_busy_minute_does_not_push_last_modified_ahead_of_the_clock(tmp_path):
    """150 versions in a minute: each shows a second that has begun, or none for the
    rest of its second; the last one shows its own second once that has begun."""
    clock = Clock()
    v = Validators(str(tmp_path), clock)
    given: dict[int, str] = {}
    for n in range(150):
        clock.now += 0.4
        second = v.claim({"feeds/all.rss": f'"{n}"'}, seen=clock.now)["feeds/all.rss"]
        if second is not None:
            assert second <= int(clock.now)
            assert given.setdefault(second, f'"{n}"') == f'"{n}"'
        else:
            assert v.retry_at == int(clock.now) + 1     # the watcher asks again then
    clock.now = v.retry_at or clock.now
    last = v.claim({"feeds/all.rss": '"149"'}, seen=clock.now)["feeds/all.rss"]
    assert last is not None and int(clock.now) - 1 <= last <= int(clock.now)
    assert len(given) >= 55         # nearly every second showed a version


def test_a_change_within_the_same_second_waits_for_the_next_one(tmp_path):
    clock = Clock(1_700_000_000.2)
    a, b = Validators(str(tmp_path), clock), Validators(str(tmp_path), clock)
    assert a.claim({"f": '"1"'}, seen=clock.now)["f"] == 1_700_000_000
    clock.now += 0.5
    assert a.claim({"f": '"2"'}, seen=clock.now)["f"] is None       # its second is taken
    assert b.claim({"f": '"2"'}, seen=clock.now)["f"] is None       # in every worker
    assert a.retry_at == 1_700_000_001
    clock.now = 1_700_000_001.0
    assert b.claim({"f": '"2"'}, seen=clock.now - 0.5)["f"] == 1_700_000_001
    assert a.claim({"f": '"2"'}, seen=clock.now)["f"] == 1_700_000_001
    assert a.retry_at is None
    # a version replaced before its second came claimed nothing: the next takes that one
    clock.now += 0.1
    assert a.claim({"f": '"3"'}, seen=clock.now)["f"] is None
    clock.now += 0.1
    assert a.claim({"f": '"4"'}, seen=clock.now)["f"] is None
    clock.now += 1
    assert a.claim({"f": '"4"'}, seen=clock.now)["f"] == 1_700_000_002


def test_a_clock_that_steps_back_gives_no_second_twice(tmp_path):
    clock = Clock(1_700_000_100.5)
    v = Validators(str(tmp_path), clock)
    first = v.claim({"f": '"1"'}, seen=clock.now)["f"]
    clock.now -= 30                                     # NTP stepped the clock back
    assert v.claim({"f": '"2"'}, seen=clock.now)["f"] is None
    assert v.claim({"f": '"1"'}, seen=clock.now)["f"] == first   # (bytes seen before keep it)
    clock.now = 1_700_000_101.0
    assert v.claim({"f": '"2"'}, seen=clock.now)["f"] == first + 1


def test_random_workers_never_give_one_second_to_two_versions(tmp_path):
    """Workers sharing a state directory, each a random moment behind the data, with
    restarts, a clock that jitters back and forth, garbage written over the file, and the
    state directory deleted now and then (every running worker stamps before a new one
    starts: it notices on its next refresh): no second is ever given to two versions of a
    document, none before the clock, and a client holding some bytes' second never gets a
    304 for newer bytes."""
    import random
    import shutil

    for seed in range(8):
        rng = random.Random(seed)
        clock = Clock(1_700_000_000.0)
        state = tmp_path / f"state{seed}"
        workers = [Validators(str(state), clock, settle=5.0) for _ in range(3)]
        views: list[tuple[int, float]] = [(0, 0.0)] * 3   # (version, scanned at)
        served: list[dict[str, tuple[str, int | None]]] = [{}, {}, {}]
        owner: dict[int, int] = {}                      # second -> the version shown it

        def stamp(w: int) -> None:
            version, seen = views[w]
            etag = f'"{version}"'
            second = workers[w].claim({"f": etag}, seen, served[w])["f"]  # noqa: B023
            served[w] = {"f": (etag, second)}  # noqa: B023
            if second is None:
                return
            if second not in owner:             # claimed now: a second that has begun
                assert second <= int(clock.now), (seed, second, clock.now)  # noqa: B023
            assert owner.setdefault(second, version) == version, (seed, second)
            # If-Modified-Since: S from some bytes must find every newer version modified
            assert all(second > s for s, v in owner.items() if v < version), (seed, second)

        version = scans = 0
        for w in range(3):                          # each worker stamps as it starts
            stamp(w)
        for _ in range(300):
            clock.now += rng.choice([0.0, 0.05, 0.3, 0.6, 1.0, -0.4])
            event = rng.random()
            if event < 0.3:
                version += 1
            elif event < 0.33:
                shutil.rmtree(state, ignore_errors=True)
                for w in range(3):
                    stamp(w)
            elif event < 0.35 and (state / "validators.sqlite").exists():
                with open(state / "validators.sqlite", "r+b") as f:   # (unnoticed, mostly:
                    f.write(b"garbage!" * 512)                       # pages are cached)
            elif event < 0.37:
                w = rng.randrange(3)
                workers[w].close()
                workers[w], served[w] = Validators(str(state), clock, settle=5.0), {}
                stamp(w)                            # (a worker stamps as it starts)
            w = rng.randrange(3)
            if rng.random() < 0.7:                  # this worker scans now (scan times
                scans += 1                          # keep their order: see the README)
                views[w] = (version, float(scans))
            stamp(w)
        assert len(owner) > 15                  # (it did show seconds)
        for v in workers:
            v.close()


def test_an_older_feedsvc_s_records_are_kept(tmp_path):
    old = sqlite3.connect(tmp_path / "validators.sqlite")
    old.execute("CREATE TABLE validators (path TEXT PRIMARY KEY, etag TEXT NOT NULL, "
                "modified INTEGER NOT NULL, seen REAL NOT NULL)")
    old.execute("INSERT INTO validators VALUES ('f', '\"1\"', 1700000005, 1.0)")  # ahead
    old.commit()
    old.close()
    clock = Clock(1_700_000_003.0)
    v = Validators(str(tmp_path), clock)
    assert v.claim({"f": '"1"'}, seen=2.0)["f"] == 1_700_000_005    # held back by FeedApp
    assert v.claim({"f": '"2"'}, seen=2.0)["f"] is None             # 5 was claimed
    clock.now = 1_700_000_006.0
    assert v.claim({"f": '"2"'}, seen=2.0)["f"] == 1_700_000_006


# -- a lost, damaged, read-only or full state: warn, mend or go without, keep publishing --

def test_a_state_directory_deleted_while_running_gives_no_second_twice(tmp_path):
    """The workers notice the file is gone (its inode) and make it again with the seconds
    they have given out; a worker started afterwards stamps nothing earlier."""
    import shutil

    clock = Clock(1_700_000_100.2)
    state = tmp_path / "state"
    a, b = Validators(str(state), clock, settle=5), Validators(str(state), clock, settle=5)
    served = a.claim({"f": '"1"', "g": '"1"'}, seen=1.0)
    assert served == {"f": 1_700_000_100, "g": 1_700_000_100}
    assert b.claim({"f": '"1"', "g": '"1"'}, seen=1.0) == served
    shutil.rmtree(state)
    clock.now += 0.1
    assert a.claim({"f": '"1"', "g": '"1"'}, seen=2.0, held={**{
        p: ('"1"', s) for p, s in served.items()}}) == served      # the next safety walk
    assert (state / "validators.sqlite").exists()
    assert "vanished" in a.problems[0].message
    # a worker starting now (granian respawned one): same bytes, same second; new bytes
    # get no second until the others have carried theirs over, and never an earlier one
    c = Validators(str(state), clock, settle=5)
    assert c.claim({"f": '"1"'}, seen=3.0)["f"] == 1_700_000_100
    assert c.claim({"g": '"2"'}, seen=3.0)["g"] is None
    assert b.claim({"f": '"1"', "g": '"2"'}, seen=3.5)["g"] is None   # b carries its own
    clock.now += 5
    later = c.claim({"g": '"2"'}, seen=4.0)["g"]
    assert later is not None and later > 1_700_000_100
    assert b.claim({"g": '"2"'}, seen=4.0)["g"] == later


def test_a_worker_started_before_the_others_noticed_gives_its_second_back(tmp_path):
    """Started on a new file before the running workers made it again, a worker gave a
    second already given to other bytes (nobody could know); the first running worker
    to notice takes it back, and the bytes claim a later second once all have noticed."""
    import shutil

    clock = Clock(1_700_000_100.2)
    state = tmp_path / "state"
    a = Validators(str(state), clock, settle=5)
    assert a.claim({"f": '"1"'}, seen=1.0)["f"] == 1_700_000_100
    shutil.rmtree(state)
    clock.now += 0.2
    c = Validators(str(state), clock, settle=5)
    assert c.claim({"f": '"2"'}, seen=2.0)["f"] == 1_700_000_100     # the same second
    clock.now += 0.1
    assert a.claim({"f": '"1"'}, seen=1.0, held={"f": ('"1"', 1_700_000_100)})["f"] \
        == 1_700_000_100                        # a is behind c: it keeps what it served
    assert c.claim({"f": '"2"'}, seen=2.0, held={"f": ('"2"', 1_700_000_100)})["f"] is None
    clock.now += 5
    assert c.claim({"f": '"2"'}, seen=2.0, held={"f": ('"2"', None)})["f"] == 1_700_000_101


def test_garbage_over_the_validators_file_is_set_aside(tmp_path):
    """Before a start: set aside, a new file, one warning. While running: the same, and no
    second given twice."""
    clock = Clock(1_700_000_100.2)
    (tmp_path / "validators.sqlite").write_bytes(b"garbage " * 1000)
    v = Validators(str(tmp_path), clock)
    assert v.claim({"f": '"1"'}, seen=1.0) == {"f": 1_700_000_100}
    assert len(v.problems) == 1 and "damaged" in v.problems[0].message
    assert len(list(tmp_path.glob("validators.sqlite.damaged-*"))) == 1
    paths = {f"p{i}": '"1"' for i in range(3000)}   # more pages than a stamp keeps cached
    v.claim(paths, seen=1.0)
    v.close()
    v = Validators(str(tmp_path), clock)             # a restart: reads few pages
    assert v.claim({"f": '"1"'}, seen=1.0) == {"f": 1_700_000_100}
    (tmp_path / "validators.sqlite").write_bytes(b"garbage " * 1000)
    clock.now += 0.1
    stamps = v.claim({**paths, "f": '"2"'}, seen=2.0)           # reads them all
    assert stamps["p7"] is None or stamps["p7"] >= 1_700_000_100
    assert stamps["f"] is None                   # 1_700_000_100 went to other bytes
    assert len(list(tmp_path.glob("validators.sqlite.damaged-*"))) == 2
    clock.now += 31                     # once every worker has carried its seconds over
    assert Validators(str(tmp_path), clock).claim({"p7": '"1"'}, seen=3.0)["p7"] == \
        1_700_000_100                   # the second its bytes were first seen in


def test_garbage_over_the_cache_file_is_set_aside(tmp_path):
    (tmp_path / "cache.sqlite").write_bytes(b"garbage " * 1000)
    cache = Cache(str(tmp_path))                    # before a start
    assert cache.get("html", ["k"]) == {}
    cache.put("html", {"k": ("<p>k</p>", "k")})
    assert cache.get("html", ["k"]) == {"k": ("<p>k</p>", "k")}
    assert len(cache.problems) == 1 and "damaged" in cache.problems[0].message
    cache.put("html", {f"k{i}": ("<p>x</p>" * 50, "x") for i in range(3000)})
    cache.close()
    cache = Cache(str(tmp_path))
    (tmp_path / "cache.sqlite").write_bytes(b"garbage " * 1000)     # while running
    assert cache.get("html", [f"k{i}" for i in range(3000)]) == {}   # a miss, not an error
    cache.put("html", {"k": ("<p>again</p>", "k")})
    cache.delete("html", ["nothing"])
    cache.prune("html", {"k"})
    assert cache.get("html", ["k"]) == {"k": ("<p>again</p>", "k")}
    assert len(list(tmp_path.glob("cache.sqlite.damaged-*"))) == 2
    cache.close()
    assert Cache(str(tmp_path)).get("html", ["k"]) == {"k": ("<p>again</p>", "k")}


def test_a_state_directory_that_cannot_be_written_leaves_caches_off(tmp_path):
    """(A path that is a file: chmod cannot stop root.)  Nothing raises; the cache is
    off; documents get no Last-Modified, since no second could be shared."""
    state = tmp_path / "state"
    state.write_text("not a directory")
    cache, v = Cache(str(state)), Validators(str(state), Clock())
    cache.put("html", {"k": ("x", "y")})
    cache.put_later("html", {"k": ("x", "y")})
    assert cache.get("html", ["k"]) == {}
    assert v.claim({"f": '"1"'}, seen=1.0) == {"f": None}
    assert "cannot be used" in cache.problems[0].message
    assert "cannot be written" in v.problems[0].message
    cache.close()


def test_a_full_disk_while_running_keeps_recorded_seconds_and_comes_back(tmp_path):
    """SQLite's max_page_count makes a real SQLITE_FULL: bytes already stamped keep their
    second, new bytes get none (the other workers could not see a claim), and the file is
    used again once it can be written."""
    clock = Clock(1_700_000_100.2)
    v = Validators(str(tmp_path), clock)
    first = v.claim({"f": '"1"', "g": '"1"'}, seen=1.0)
    pages = v._db.execute("PRAGMA page_count").fetchone()[0]
    v._db.execute(f"PRAGMA max_page_count={pages}")
    clock.now += 2
    many = {f"p{i}": '"1"' for i in range(500)}
    assert v.claim({"f": '"1"', "g": '"2"', **many}, seen=2.0) == \
        {"f": first["f"], "g": None, **dict.fromkeys(many)}
    assert "database or disk is full" in v.problems[0].message
    assert v.retry_at == clock.now + 60
    clock.now += 61                                  # space freed: a new connection
    second = v.claim({"f": '"1"', "g": '"2"'}, seen=3.0)
    assert second["f"] == first["f"] and second["g"] == int(clock.now)
    assert not v.problems


def test_a_cache_write_on_a_full_disk_turns_caching_off(tmp_path):
    cache = Cache(str(tmp_path))
    cache.put("html", {"k": ("x", "y")})
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count={pages}")
    cache.put("html", {f"k{i}": ("x" * 4000, "y") for i in range(100)})     # synchronous
    cache.put_later("html", {"z": ("x" * 100000, "y")})
    cache.flush()
    assert "database or disk is full" in cache.problems[0].message
    assert cache.get("html", ["k"]) == {}            # off: a miss
    cache.close()


# -- the service: the state's troubles never stop it publishing --------------------------

def _service(data, state, clock=None, **config):
    import time

    from feedsvc import settings
    from feedsvc.live import Service

    return Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                     "state_dir": str(state), **config}), clock or time.time)


def _garbage_over(state, *names):
    for name in names:
        path = state / name
        with open(path, "r+b") as f:
            f.write(b"garbage!" * (path.stat().st_size // 8))


def _healthz(app) -> dict:
    import json

    return json.loads(app.test_client().get("/healthz").data)


def test_garbage_over_the_state_while_running_costs_a_warning_not_a_refresh(
        data, make_app, tmp_path):
    """Before: every refresh raised ("file is not a database"), /healthz said nothing,
    and every later start crashed."""
    from contextlib import suppress

    data.article("a", title="Before")
    data.article("b", title="Elsewhere", authors=["Ann Other"], categories=["Sport"])
    make_app(data.root).extensions["feedsvc"].close()
    app = make_app(data.root)                       # a restart: few pages cached
    service = app.extensions["feedsvc"]
    service.cache.flush()
    for db in (service.validators._db, service.cache._db, service.cache._reader):
        with suppress(sqlite3.Error):               # what is in the WAL goes to the file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA cache_size=0")           # (pages leave the cache, as they do)
    _garbage_over(tmp_path / "state", "validators.sqlite", "cache.sqlite")
    data.article("a", title="After")
    assert service.refresh()
    assert "After" in app.test_client().get("/feeds/all.atom").text
    problems = {e["path"].rsplit("/", 1)[1]: e for e in _healthz(app)["errors"]}
    assert set(problems) == {"validators.sqlite", "cache.sqlite"}
    assert all(e["path"].startswith("FEEDSVC_STATE_DIR/") and str(tmp_path) not in
               e["message"] for e in problems.values())      # nothing about the host
    assert all(e["level"] == "warning" and "damaged" in e["message"]
               for e in problems.values())
    again = make_app(data.root)                     # and a restart starts
    feed = again.test_client().get("/feeds/all.atom")
    assert "After" in feed.text
    # the new file was made from what the worker served: unchanged feeds keep their
    # Last-Modified; changed ones get one once every worker has carried its own over
    assert "Last-Modified" not in feed.headers
    assert again.test_client().get("/feeds/category/sport.atom").headers["Last-Modified"] \
        == app.test_client().get("/feeds/category/sport.atom").headers["Last-Modified"]


def test_garbage_over_the_state_before_a_start(data, make_app, tmp_path):
    data.article("a", title="Published")
    make_app(data.root).extensions["feedsvc"].close()
    _garbage_over(tmp_path / "state", "validators.sqlite", "cache.sqlite")
    app = make_app(data.root)
    feed = app.test_client().get("/feeds/all.atom")
    assert "Published" in feed.text and feed.headers["Last-Modified"]
    assert len(_healthz(app)["errors"]) == 2
    assert len(list((tmp_path / "state").glob("*.damaged-*"))) == 2


@pytest.mark.parametrize("error", ["attempt to write a readonly database",
                                   "database or disk is full", "not a directory"])
def test_a_read_only_or_full_state_at_start_still_publishes(data, make_app, tmp_path,
                                                            monkeypatch, error):
    """Before: the start crashed.  (chmod does not stop root: the read-only and full
    cases are SQLite's own errors, raised by connect; the third is a state path that is
    a file.)"""
    data.article("a", title="Published")
    state = tmp_path / "state"
    if error == "not a directory":
        state.write_text("a file")
    else:
        connect = sqlite3.connect

        def failing(path, *args, **kwargs):
            if str(state) in str(path):
                raise sqlite3.OperationalError(error)
            return connect(path, *args, **kwargs)
        monkeypatch.setattr(sqlite3, "connect", failing)
    app = make_app(data.root)
    client = app.test_client()
    feed = client.get("/feeds/all.atom")
    assert feed.status_code == 200 and "Published" in feed.text
    assert "Last-Modified" not in feed.headers      # no second others could see
    assert client.get("/feeds/all.atom", headers={"If-None-Match": feed.headers["ETag"]}
                      ).status_code == 304          # ETags revalidate as ever
    health = _healthz(app)
    assert health["status"] == "ok" and len(health["errors"]) == 2
    assert all(e["level"] == "warning" for e in health["errors"])
    service = app.extensions["feedsvc"]
    data.article("a", title="Edited")
    assert service.refresh() and "Edited" in client.get("/feeds/all.atom").text
    service.checkpoint()                            # cannot be written: said, not raised


def test_a_disk_filled_while_running_still_publishes_edits(data, tmp_path):
    """A real SQLITE_FULL (max_page_count) for the cache's large writes, SQLite's error
    for the validators' small ones (they fit in pages it has).  Before: the refresh
    raised (a synchronous cache write), and so did every later one."""
    data.article("a", title="First", categories=["World"])
    data.article("b", title="Other", categories=["Sport"])
    service = _service(data, tmp_path / "state")
    service.cache.flush()
    before = {p: r.last_modified for p, r in service.resources.items()}
    pages = service.cache._db.execute("PRAGMA page_count").fetchone()[0]
    service.cache._db.execute(f"PRAGMA max_page_count={pages}")

    class Full:                                     # the validators' connection, full
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *args):
            if sql.startswith(("INSERT", "UPDATE")):
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *args)

        def executemany(self, sql, rows):
            if rows:
                raise sqlite3.OperationalError("database or disk is full")

        def __getattr__(self, name):
            return getattr(self.db, name)
    service.validators._db = Full(service.validators._db)
    data.article("a", title="Edited " + "x" * 20000, categories=["World"])
    assert service.refresh()
    assert "Edited" in service.documents["feeds/all.atom"].body.decode()
    from feedsvc.live import NOT_YET
    stamps = {p: r.last_modified for p, r in service.resources.items()}
    assert stamps["feeds/all.atom"] == NOT_YET                          # changed
    assert stamps["feeds/category/sport.atom"] == before["feeds/category/sport.atom"]
    assert {e.path.rsplit("/", 1)[1] for e in service.errors} >= {"validators.sqlite",
                                                                  "cache.sqlite"}
    data.article("b", title="Edited too", categories=["Sport"])
    assert service.refresh()                        # and the next one
    service.close()


def test_a_state_directory_deleted_while_running_is_made_again(data, tmp_path):
    """The running worker notices on its next refresh and makes the validators again
    from what it serves: a worker started afterwards serves the same seconds."""
    import shutil

    data.article("a", title="First")
    state = tmp_path / "state"
    clock = Clock(1_700_000_100.5)
    first = _service(data, state, clock)
    served = {p: r.last_modified for p, r in first.resources.items()}
    shutil.rmtree(state)
    clock.now += 0.2
    assert not first.refresh()                      # nothing changed: the safety walk
    assert (state / "validators.sqlite").exists()
    respawned = _service(data, state, clock)
    assert {p: r.last_modified for p, r in respawned.resources.items()} == served
    first.checkpoint()                              # into the state directory made again
    assert list(state.glob("checkpoint-*.pickle"))
    first.close()
    respawned.close()


def test_a_second_change_within_a_second_is_sent_without_last_modified_not_ahead(
        data, tmp_path):
    """Before: it got the next second at once (ahead of the clock: FeedApp withheld it, or,
    after a busy minute, for minutes).  Now: no Last-Modified for the rest of the second,
    then the next second, with If-Modified-Since answered right all along."""
    import time

    from werkzeug.http import http_date
    from werkzeug.test import Client

    from feedsvc.http import FeedApp

    clock = Clock(int(time.time()) - 1000 + 0.2)     # (FeedApp compares with real time)
    data.article("a", title="One")
    service = _service(data, tmp_path / "state", clock)
    client = Client(FeedApp(service, lambda environ, start: []))
    first = client.get("/feeds/all.atom")
    second = int(clock.now)
    assert first.headers["Last-Modified"] == http_date(second)
    clock.now += 0.5
    data.article("a", title="Two")
    assert service.refresh()
    two = client.get("/feeds/all.atom")
    assert "Two" in two.text and "Last-Modified" not in two.headers
    assert client.get("/feeds/all.atom", headers={
        "If-Modified-Since": http_date(second)}).status_code == 200
    assert service.validators.retry_at == second + 1        # the watcher wakes then
    clock.now = second + 1.0
    assert not service.refresh()
    shown = client.get("/feeds/all.atom")
    assert shown.headers["Last-Modified"] == http_date(second + 1)
    assert client.get("/feeds/all.atom", headers={
        "If-Modified-Since": http_date(second)}).status_code == 200
    assert client.get("/feeds/all.atom", headers={
        "If-Modified-Since": http_date(second + 1)}).status_code == 304
    service.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs as the state directory, where mounting is permitted (root with
    CAP_SYS_ADMIN); skipped elsewhere.  Unmounted at the end."""
    import shutil
    import subprocess

    where = tmp_path / "state"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here: the simulated full disks stand in")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_real_full_disk_while_running_and_at_start(data, tiny_disk):
    data.article("a", title="First", categories=["World"])
    service = _service(data, tiny_disk)
    service.cache.flush()
    _fill(tiny_disk)
    for n in range(3):
        data.article("a", title=f"Edited {n}", body=os.urandom(300000).hex()[:400000],
                     categories=["World"])
        data.article(f"new{n}", title=f"New {n}", categories=[f"Topic {n}"])
        assert service.refresh()
        assert f"Edited {n}" in service.documents["feeds/all.atom"].body.decode()
    service.checkpoint()                            # cannot be written: said, not raised
    again = _service(data, tiny_disk)               # a start on the full disk
    assert "Edited 2" in again.documents["feeds/all.atom"].body.decode()
    again.close()
    service.close()


def test_state_files_are_readable_by_their_owner_only(make_app, data, tmp_path):
    """stats.sqlite holds the day's salt beside the poller hashes (reversible by whoever
    reads both), websub.sqlite the subscribers' secrets: every state file is 0600, and
    one an older release made 0644 is tightened."""
    import os
    import stat
    state = tmp_path / "state"
    state.mkdir()
    (state / "stats.sqlite").touch(mode=0o644)
    os.chmod(state / "stats.sqlite", 0o644)
    app = make_app(data.root, stats_flush_seconds=3600)
    app.test_client().get("/feeds/all.rss", headers={"User-Agent": "Miniflux/2.0"})
    app.extensions["feedsvc-stats"].counter.flush()
    made = sorted(p.name for p in state.glob("*.sqlite*"))
    assert {"stats.sqlite", "validators.sqlite", "cache.sqlite", "websub.sqlite"} <= set(made)
    for name in made:
        assert stat.S_IMODE((state / name).stat().st_mode) & 0o077 == 0, name
