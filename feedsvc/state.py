"""What survives a restart: validators and caches, in SQLite in the state directory.

Validators: when did each document's bytes last change?

Last-Modified must move forward whenever the bytes change (a deletion or a
backdated article included) and stay put while they do not, across restarts
and in every worker.  So it is not derived from article dates: it is the time
this state first saw the current ETag of the document, kept in SQLite that
all workers (and all instances sharing the state directory) update in one
transaction.  Losing the file costs each client one full download: the new
time is "now", later than anything handed out before.
"""
from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial


def _connect(state_dir: str | None, name: str, page_size: int = 4096) -> sqlite3.Connection:
    """SQLite in the state directory (in memory without one), shared by every worker:
    WAL lets readers proceed while one process writes; writers wait up to 30 s.
    `page_size` applies to a database this call creates."""
    path = ":memory:"
    if state_dir:
        os.makedirs(state_dir, exist_ok=True)
        path = os.path.join(state_dir, name)
    db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    db.execute(f"PRAGMA page_size={int(page_size)}")
    db.execute("PRAGMA journal_mode=WAL" if state_dir else "PRAGMA journal_mode=MEMORY")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class Validators:
    def __init__(self, state_dir: str | None):
        self._lock = threading.Lock()
        self._db = _connect(state_dir, "validators.sqlite")
        self._db.execute("CREATE TABLE IF NOT EXISTS validators (path TEXT PRIMARY KEY, "
                         "etag TEXT NOT NULL, modified INTEGER NOT NULL, seen REAL NOT NULL)")
        self._version: int | None = None    # data_version as of our last stamp
        self._behind: set[str] = set()      # paths whose recorded ETag is newer than ours

    def stamp(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int]] | None = None) -> dict[str, int]:
        """Last-Modified (Unix seconds) for each path's ETag, as built from data scanned at `seen`.

        A new ETag from data at least as fresh as the recorded one gets max(now, previous
        + 1): strictly later than any time handed out for older bytes, even if the clock
        stepped back. A worker whose data is older than what another recorded (it scanned
        before a save that another worker already published) records nothing: it keeps
        the time it `held` for its bytes, or one second before the newer bytes' time, so no
        client can carry its time to the newer bytes and get a false 304.
        """
        held = held or {}
        now_s = int(time.time())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out: dict[str, int] = {}
                paths = list(etags)
                # read while we hold the write lock: no other commit can come before ours
                version = self._data_version()
                if version == self._version:
                    # nothing written by anyone else since our last stamp: what we hold is
                    # what is recorded, but where we were behind (an edit asks about its
                    # few paths, not all of them)
                    paths = [p for p, e in etags.items()
                             if held.get(p, ("",))[0] != e or p in self._behind]
                    out.update((p, held[p][1]) for p in etags.keys() - set(paths))
                known: dict[str, tuple[str, int, float]] = {}
                for i in range(0, len(paths), 500):
                    chunk = paths[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    known.update((p, (e, m, t)) for p, e, m, t in self._db.execute(
                        "SELECT path, etag, modified, seen FROM validators "  # noqa: S608
                        f"WHERE path IN ({marks})", chunk))
                changed = []
                behind: set[str] = set()
                for path in paths:
                    etag, old = etags[path], known.get(path)
                    if old and old[0] == etag:
                        out[path] = old[1]
                    elif old and seen < old[2]:                 # we are behind: write nothing
                        mine = held.get(path)
                        out[path] = mine[1] if mine and mine[0] == etag else old[1] - 1
                        behind.add(path)
                    else:
                        out[path] = max(now_s, old[1] + 1) if old else now_s
                        changed.append((path, etag, out[path], seen))
                self._db.executemany("INSERT OR REPLACE INTO validators VALUES (?, ?, ?, ?)",
                                     changed)
                self._db.execute("COMMIT")
                self._version = version         # (our own commits leave it as it is)
                self._behind = (self._behind - set(paths)) | behind
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return {p: out[p] for p in etags}

    def _data_version(self) -> int:
        """SQLite's count of commits by other connections (other workers, instances)."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class Cache:
    """Content-keyed results shared by every worker and restart, so nothing unchanged is
    parsed, rendered or compressed twice: parsed article records (by file digest), rendered
    bodies (by body and page URL), finished documents and their gzip bytes (by recipe).

    Keys are hashes of everything a value depends on, so an entry is never stale; `prune`
    drops what the current data no longer uses.
    """

    TABLES = {"records": "key TEXT PRIMARY KEY, value BLOB",
              "html": "key TEXT PRIMARY KEY, html TEXT, summary TEXT",
              "gzdocs": "key TEXT PRIMARY KEY, gz BLOB, etag TEXT"}   # identity = gunzip(gz)
    # A table whose layout changes gets a new name; the old one is dropped, never misread:
    # "docs" (key, body, gz). "documents" (key, gz) is left alone: an older instance
    # sharing this state directory during a rolling upgrade still reads and writes it.
    RETIRED = ("docs",)
    PAGE_SIZE = 16384   # for a new cache: its values are large (bodies, gzip documents);
    # the 80 MB a 10k-article cold start writes took a third less CPU than with 4 KB pages

    def __init__(self, state_dir: str | None):
        self._lock = threading.Lock()
        self._db = _connect(state_dir, "cache.sqlite", self.PAGE_SIZE)
        self._db.execute("BEGIN IMMEDIATE")
        for table in self.RETIRED:
            self._db.execute(f"DROP TABLE IF EXISTS {table}")
        for table, columns in self.TABLES.items():
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        self._db.execute("COMMIT")
        # reads have their own connection: in WAL mode they go on while a write commits
        self._reader = _connect(state_dir, "cache.sqlite", self.PAGE_SIZE) if state_dir \
            else self._db
        self._read_lock = threading.Lock() if state_dir else self._lock
        self.renders = 0                    # bodies rendered, for tests and bench
        self._pending: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue()
        self._queued: Counter[str] = Counter()      # writes waiting, per table
        self._done = threading.Condition()
        self._writer: threading.Thread | None = None
        self._held: list[tuple[str, Callable[[], None]]] = []     # see `held`
        self._holds = 0
        self._closed = False

    def put_later(self, table: str, rows: dict[str, tuple]) -> None:
        """`put`, in this cache's writer thread: SQLite lets go of the GIL while it writes,
        so a build goes on meanwhile.  Writes run in order; a read of a table waits for
        the writes queued to it before; exit waits for all of them."""
        self._queue(table, partial(self.put, table, rows))

    def prune_later(self, table: str, keep: set[str] | Callable[[], set[str]]) -> None:
        """`prune`, in the writer thread; `keep` may be a function that makes the set."""
        self._queue(table, lambda: self.prune(table, keep() if callable(keep) else keep))

    def put_records_later(self, records: dict[str, object] | Callable[[], dict[str, object]]
                          ) -> None:
        """`records`, or a function that makes them, called in the writer thread."""
        self._queue("records", lambda: self.put_records(
            records() if callable(records) else records))

    def put_pickled_later(self, blobs: dict[str, bytes]) -> None:
        self._queue("records", partial(self.put_pickled, blobs))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Writes queued in the block wait until it ends (or until a read needs them).

        A first build holds them: its caches (10,000 records, thousands of bodies and
        documents) are written once every feed is servable, rather than on the cores the
        build is using; a restart before they are written is a cold start again."""
        with self._done:
            self._holds += 1
        try:
            yield
        finally:
            with self._done:
                self._holds -= 1
                if not self._holds:
                    self._let_go()

    def _let_go(self) -> None:
        """(Holding `_done`.)  The held writes go to the writer, in order, before any
        write queued after them."""
        for table, write in self._held:
            self._enqueue(table, write)
        self._held = []

    def _queue(self, table: str, write: Callable[[], None]) -> None:
        if self._closed:
            return
        with self._done:
            if self._holds:
                self._held.append((table, write))
            else:
                self._enqueue(table, write)

    def _enqueue(self, table: str, write: Callable[[], None]) -> None:
        """(Holding `_done`.)  One writer, started by whichever thread comes first."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="feedsvc-cache",
                                            daemon=True)
            self._writer.start()
            atexit.register(self.flush, timeout=60)
        self._queued[table] += 1
        self._pending.put((table, write))

    def flush(self, table: str | None = None, timeout: float | None = None) -> None:
        """Wait for the queued writes (to `table`, or all), held ones included: a read
        lets go of what is held so far."""
        with self._done:
            if any(table is None or t == table for t, _ in self._held):
                self._let_go()
            if self._writer is None:
                return
            self._done.wait_for(lambda: not (self._queued[table] if table
                                             else sum(self._queued.values())), timeout)

    def _write(self) -> None:
        while True:
            table, write = self._pending.get()
            try:
                write()
            except BaseException as e:      # a cache that cannot be written costs speed only
                logging.getLogger("feedsvc").warning("cache write failed: %s", e)
            finally:
                with self._done:
                    self._queued[table] -= 1
                    self._done.notify_all()

    def get(self, table: str, keys: list[str]) -> dict[str, tuple]:
        self.flush(table)
        out: dict[str, tuple] = {}
        with self._read_lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._reader.execute(
                        f"SELECT * FROM {table} WHERE key IN ({marks})", chunk):  # noqa: S608
                    out[row[0]] = tuple(row[1:])
        return out

    def put(self, table: str, rows: dict[str, tuple]) -> None:
        if not rows:
            return
        width = len(self.TABLES[table].split(","))
        with self._lock, self._transaction():
            self._db.executemany(
                f"INSERT OR REPLACE INTO {table} VALUES ({','.join('?' * width)})",  # noqa: S608
                [(k, *v) for k, v in rows.items()])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, rolled back on any error: a failed write (a busy or full
        disk) must not leave the connection inside a transaction for the next one."""
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def delete(self, table: str, keys: list[str]) -> None:
        if not keys:
            return
        self.flush(table)
        with self._lock, self._transaction():
            self._db.executemany(f"DELETE FROM {table} WHERE key = ?",  # noqa: S608
                                 [(k,) for k in keys])

    def get_records(self, keys: list[str]) -> dict[str, object]:
        return {k: pickle.loads(v[0]) for k, v in self.get("records", keys).items()}  # noqa: S301

    def put_records(self, records: dict[str, object]) -> None:
        self.put_pickled({k: pickle.dumps(v, protocol=5) for k, v in records.items()})

    def put_pickled(self, blobs: dict[str, bytes]) -> None:
        self.put("records", {k: (blob,) for k, blob in blobs.items()})

    def prune(self, table: str, keep: set[str]) -> None:
        """Delete the entries of `table` not in `keep` (called after a full build)."""
        with self._lock, self._transaction():
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (key TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM keep")
            self._db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", [(k,) for k in keep])
            self._db.execute(f"DELETE FROM {table} WHERE key NOT IN (SELECT key FROM keep)")  # noqa: S608

    def close(self) -> None:
        self.flush(timeout=60)
        atexit.unregister(self.flush)
        self._closed = True
        if self._reader is not self._db:
            self._reader.close()
        self._db.close()
