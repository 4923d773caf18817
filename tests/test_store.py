"""One suite for both state stores (SQLite in the state directory, PostgreSQL): the
validators' rule and the caches behave the same through `store.open_store`."""
from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures)

from feedsvc import pglink, settings
from feedsvc.store import Store, StoreUnavailable, open_store


class Clock:
    """An injected clock (Unix seconds), moved by hand."""

    def __init__(self, now: float = 1_700_000_000.2):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def stores(kind, tmp_path, request) -> Callable[..., Store]:
    """A factory of stores on one shared state: each call is another worker or instance
    (for SQLite: on the same state directory; for PostgreSQL: each its own directory)."""
    url = request.getfixturevalue("pg_url") if kind == "postgresql" else ""
    made: list[Store] = []

    def make(clock: Callable[[], float] = time.time) -> Store:
        state = tmp_path / ("state" if not url else f"state{len(made)}")
        store = open_store(str(state), url, clock)
        made.append(store)
        return store
    yield make
    for store in made:
        store.close()


def test_new_bytes_get_a_later_time_and_same_bytes_keep_theirs(stores):
    v = stores().validators
    first = v.stamp({"feeds/all.rss": '"a"'}, seen=100.0)["feeds/all.rss"]
    assert v.stamp({"feeds/all.rss": '"a"'}, seen=150.0)["feeds/all.rss"] == first
    second = v.stamp({"feeds/all.rss": '"b"'}, seen=200.0)["feeds/all.rss"]
    assert second > first
    back = v.stamp({"feeds/all.rss": '"a"'}, seen=300.0)["feeds/all.rss"]   # A, B, then A
    assert back > second, "old bytes coming back must not reuse their old time"
    again = stores().validators                                         # another instance
    assert again.stamp({"feeds/all.rss": '"a"'}, seen=301.0)["feeds/all.rss"] == back


def test_what_is_recorded_is_read_without_writing(stores):
    """`recorded` (the start-up listener's read: lastserved.py) sees another instance's
    stamps as they are and writes nothing."""
    writer, reader = stores().validators, stores().validators
    second = writer.stamp({"feeds/all.rss": '"a"'}, seen=100.0)["feeds/all.rss"]
    (stamp,) = reader.recorded(["feeds/all.rss", "feeds/none.rss"]).values()
    assert (stamp.etag, stamp.second) == ('"a"', second)
    assert reader.recorded(["feeds/none.rss"]) == {}
    assert writer.stamp({"feeds/all.rss": '"a"'}, seen=101.0)["feeds/all.rss"] == second


def test_an_instance_behind_another_records_nothing(stores):
    fresh, stale = stores().validators, stores().validators
    old_time = stale.stamp({"f": '"old"'}, seen=100.0)["f"]
    new_time = fresh.stamp({"f": '"new"'}, seen=200.0)["f"]
    assert stale.stamp({"f": '"old"'}, seen=150.0, held={"f": ('"old"', old_time)})["f"] \
        == old_time
    assert stale.stamp({"f": '"old"'}, seen=150.0)["f"] < new_time
    assert fresh.stamp({"f": '"new"'}, seen=250.0)["f"] == new_time
    # once its data is as new, the other instance serves the same second for those bytes
    assert stale.claim({"f": '"new"'}, seen=260.0)["f"] == new_time


def test_a_change_within_the_same_second_waits_for_the_next_one(stores):
    clock = Clock(1_700_000_000.2)
    a, b = stores(clock).validators, stores(clock).validators
    assert a.claim({"f": '"1"'}, seen=clock.now)["f"] == 1_700_000_000
    clock.now += 0.5
    assert a.claim({"f": '"2"'}, seen=clock.now)["f"] is None       # its second is taken
    assert b.claim({"f": '"2"'}, seen=clock.now)["f"] is None       # in every instance
    assert a.retry_at == 1_700_000_001
    clock.now = 1_700_000_001.0
    assert b.claim({"f": '"2"'}, seen=clock.now - 0.5)["f"] == 1_700_000_001
    assert a.claim({"f": '"2"'}, seen=clock.now)["f"] == 1_700_000_001
    assert a.retry_at is None


def test_random_instances_never_give_one_second_to_two_versions(stores):
    """Three instances, each a random moment behind the data, restarting now and then,
    under a jittering clock: no second goes to two versions of a document, none before
    the clock, and a client holding some bytes' second never gets a 304 for newer ones."""
    for seed in range(3):
        rng = random.Random(seed)
        clock = Clock(1_700_000_000.0 + 1000 * seed)
        path = f"f{seed}"
        workers = [stores(clock).validators for _ in range(3)]
        views: list[tuple[int, float]] = [(0, 0.0)] * 3
        served: list[dict[str, tuple[str, int | None]]] = [{}, {}, {}]
        owner: dict[int, int] = {}

        def stamp(w: int) -> None:
            version, seen = views[w]  # noqa: B023
            etag = f'"{version}"'
            second = workers[w].claim({path: etag}, seen, served[w])[path]  # noqa: B023
            served[w] = {path: (etag, second)}  # noqa: B023
            if second is None:
                return
            if second not in owner:
                assert second <= int(clock.now)  # noqa: B023
            assert owner.setdefault(second, version) == version  # noqa: B023
            assert all(second > s for s, v in owner.items() if v < version)  # noqa: B023

        version = scans = 0
        for w in range(3):
            stamp(w)
        for _ in range(120):
            clock.now += rng.choice([0.0, 0.05, 0.3, 0.6, 1.0, -0.4])
            event = rng.random()
            if event < 0.3:
                version += 1
            elif event < 0.34:
                w = rng.randrange(3)
                workers[w], served[w] = stores(clock).validators, {}
                stamp(w)
            w = rng.randrange(3)
            if rng.random() < 0.7:
                scans += 1
                views[w] = (version, float(scans))
            stamp(w)
        assert len(owner) > 10


def test_caches_are_shared_by_every_instance(stores):
    a, b = stores(), stores()
    a.cache.put("gzdocs", {"r1": (b"\x1f\x8bgz", '"e1"'), "r2": (b"two", '"e2"')})
    a.cache.put_later("html", {"h": ("<p>x</p>", "x")})
    a.cache.put_records({"k": {"a": [1, 2]}})
    a.cache.flush()
    assert b.cache.get("gzdocs", ["r1", "r2", "r3"]) == {"r1": (b"\x1f\x8bgz", '"e1"'),
                                                         "r2": (b"two", '"e2"')}
    assert b.cache.get("html", ["h"]) == {"h": ("<p>x</p>", "x")}
    assert b.cache.get_records(["k"]) == {"k": {"a": [1, 2]}}
    b.cache.put("gzdocs", {"r1": (b"new", '"e3"')})             # replaced, not added
    assert a.cache.get("gzdocs", ["r1"]) == {"r1": (b"new", '"e3"')}
    a.cache.prune("gzdocs", {"r1"})
    a.cache.delete("html", ["h"])
    assert b.cache.get("gzdocs", ["r1", "r2"]).keys() == {"r1"}
    assert b.cache.get("html", ["h"]) == {}


# -- PostgreSQL only ---------------------------------------------------------------------
def test_the_schema_is_versioned_and_upgraded_without_manual_sql(pg_url):  # noqa: F811
    open_store("", pg_url).close()
    open_store("", pg_url).close()                  # a second start changes nothing
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM feedsvc_schema").fetchall() == \
            [(len(pglink.SCHEMA),)]
        conn.execute("UPDATE feedsvc_schema SET version = version + 1")
    with pytest.raises(StoreUnavailable, match="newer than this feedsvc"):
        open_store("", pg_url)


def test_an_unreachable_database_at_start_is_one_line_without_the_password(tmp_path):
    from conftest import free_port, run_feedsvc
    url = f"postgresql://feedsvc:s3cret@127.0.0.1:{free_port()}/feedsvc"
    with pytest.raises(StoreUnavailable) as e:
        open_store(str(tmp_path), url)
    assert "s3cret" not in str(e.value) and "feedsvc:***@127.0.0.1" in str(e.value)
    out = run_feedsvc("serve", "--port", str(free_port()), "--state-dir", str(tmp_path / "s"),
                      env={"FEEDSVC_DATABASE_URL": url})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot use the database" in lines[0], out.stderr
    assert "s3cret" not in out.stderr + out.stdout
    assert "FEEDSVC_DATABASE_URL" in lines[0]


def test_a_lost_database_keeps_the_seconds_known_logs_once_and_comes_back(
        pg_url, tmp_path, caplog, monkeypatch):  # noqa: F811
    monkeypatch.setattr(pglink, "BACKOFF", (0.2,))
    clock = Clock()
    store = open_store(str(tmp_path), pg_url, clock)
    v = store.validators
    first = v.claim({"f": '"1"'}, seen=100.0)["f"]
    store.cache.put("gzdocs", {"r": (b"gz", '"e"')})
    with psycopg.connect(pg_url, autocommit=True) as conn:      # the server drops us
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    connects: list[str] = []               # who reconnects: never the caller
    real = pglink.connect
    monkeypatch.setattr(pglink, "connect", lambda url: (
        connects.append(threading.current_thread().name), real(url))[1])
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        assert v.claim({"f": '"1"'}, seen=101.0, held={"f": ('"1"', first)})["f"] == first
        assert v.claim({"f": '"2"'}, seen=102.0)["f"] is None   # no second claimed alone
        assert v.claim({"f": '"2"'}, seen=102.0)["f"] is None
        assert store.cache.get("gzdocs", ["r"]) == {}           # a miss, not an error
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 2, [r.getMessage() for r in caplog.records]   # once each
    assert store.problems and all("retrying" in p.message for p in store.problems)
    time.sleep(0.3)
    clock.now += 2
    assert v.claim({"f": '"2"'}, seen=103.0)["f"] is not None   # resumed, no restart
    assert store.cache.get("gzdocs", ["r"]) == {"r": (b"gz", '"e"')}
    assert store.problems == []
    assert connects and all(name.startswith("feedsvc-db-") for name in connects), connects
    store.close()


def test_a_second_instance_with_an_empty_disk_starts_warm(pg_url, data, tmp_path):  # noqa: F811
    from feedsvc.live import Service
    for n in range(5):
        data.article(f"story-{n}", body=f"Body {n}.\n\nMore.\n")
    copy = tmp_path / "copy"
    shutil.copytree(data.root, copy)
    config = settings.resolve({"data_dir": str(data.root), "state_dir": str(tmp_path / "s1"),
                               "database_url": pg_url, "watch": False}, environ={})
    first = Service(config)
    assert first.publisher.cache.renders > 0
    first.close()
    second = Service(settings.resolve({"data_dir": str(copy), "database_url": pg_url,
                                       "state_dir": str(tmp_path / "s2"), "watch": False},
                                      environ={}))
    assert second.publisher.cache.renders == 0          # nothing rendered again
    assert {p: r.identity.etag for p, r in second.resources.items()} == \
        {p: r.identity.etag for p, r in first.resources.items()}
    assert {p: r.last_modified for p, r in second.resources.items()} == \
        {p: r.last_modified for p, r in first.resources.items()}
    second.close()


def test_across_machines_the_data_is_as_new_as_its_newest_file_or_folder(data, tmp_path):
    from feedsvc.scan import walk
    from feedsvc.store import newest_mtime
    paths = [data.article(f"story-{n}") for n in range(2)]
    for path in [*data.root.rglob("*"), data.root]:
        os.utime(path, (900_000_000, 900_000_000))
    for path, when in zip(paths, (1_000_000_000, 1_500_000_000), strict=True):
        os.utime(path, (when, when))
    sigs = walk(str(data.root), {}).sigs
    assert newest_mtime(sigs) == newest_mtime(sigs, str(data.root)) == 1_500_000_000
    data.remove("articles/story-1.md")            # a deletion dates its folder
    sigs = walk(str(data.root), {}).sigs
    assert newest_mtime(sigs) == 1_000_000_000
    assert newest_mtime(sigs, str(data.root)) > 1_500_000_000
    single = open_store(str(tmp_path / "s"))
    assert single.seen(5.0, 1_000_000_000) == 5.0     # one machine: when it was scanned
    single.close()


def test_feedsvc_build_on_postgresql_keeps_its_times(data, tmp_path, pg_url):  # noqa: F811
    from conftest import run_feedsvc
    data.article("story-0")
    env = {"FEEDSVC_DATABASE_URL": pg_url}
    runs = []
    for n in range(2):                      # two machines, each its own state directory
        out = tmp_path / f"site{n}"
        done = run_feedsvc("build", str(out), "--data-dir", str(data.root), "--state-dir",
                           str(tmp_path / f"state{n}"), env=env)
        assert done.returncode == 0, done.stderr
        runs.append({p.relative_to(out): p.stat().st_mtime for p in out.rglob("*.rss")})
    assert runs[0] and runs[0] == runs[1]   # the same Last-Modified (file times) on both
