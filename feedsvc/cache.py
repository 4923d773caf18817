"""Content-keyed results in `cache.sqlite` in the state directory (see `Cache`)."""
from __future__ import annotations

import atexit
import logging
import pickle
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from .model import DataError
from .statefile import (
    RETRY_SECONDS,
    StateFile,
    close_quietly,
    connect,
    damaged,
    rollback_quietly,
)


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
        self._lock = threading.Lock()           # the writing connection
        self._read_lock = threading.Lock() if state_dir else self._lock
        self.file = StateFile(state_dir, "cache.sqlite")
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # in WAL mode reads go on meanwhile
        self._off_until = 0.0                   # (monotonic) no usable file until then
        self._off: DataError | None = None      # the problem while off
        self.renders = 0                    # bodies rendered, for tests and bench
        self._pending: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue()
        self._queued: Counter[str] = Counter()      # writes waiting, per table
        self._done = threading.Condition()
        self._writer: threading.Thread | None = None
        self._held: list[tuple[str, Callable[[], None]]] = []     # see `held`
        self._holds = 0
        self._closed = False
        self._open()

    @property
    def problems(self) -> list[DataError]:
        return self.file.problems

    # -- the file, and what to do when it fails ------------------------------------------
    def _open(self, error: BaseException | None = None) -> None:
        """(Holding both locks, or in __init__.)  Connect, creating the tables; when the
        file is damaged (`error`, from using it), set it aside and start an empty one;
        when it cannot be used, caching is off for a while.  A cache costs speed only."""
        bad = self.file.opened if error else self.file.identity()
        if error is None:
            try:
                return self._connect()
            except (sqlite3.Error, OSError) as e:
                error = e
        if damaged(error) and self.file.path:
            try:
                aside = self.file.set_aside(bad)
                self._connect()
            except (sqlite3.Error, OSError) as e:
                error = e
            else:
                self.file.warn(self.file.set_aside_message(error, aside) + ": what it held "
                               "is parsed and rendered again")
                return None
        self._off_until = time.monotonic() + RETRY_SECONDS
        self._off = self.file.warn(
            f"cannot be used ({error}); caching is off (everything still published, "
            "more slowly) until it can: check the state directory's permissions and free "
            "space (FEEDSVC_STATE_DIR); tried again every minute")
        return None

    def _connect(self) -> None:
        state_dir = self.file.state_dir
        db = connect(state_dir, self.file.name, self.PAGE_SIZE)
        reader = None
        try:
            self.file.opened = self.file.identity()
            db.execute("BEGIN IMMEDIATE")
            for table in self.RETIRED:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for table, columns in self.TABLES.items():
                db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            db.execute("COMMIT")
            reader = connect(state_dir, self.file.name, self.PAGE_SIZE) if state_dir else db
        except BaseException:
            close_quietly(db)
            raise
        self._db, self._reader = db, reader
        if self._off is not None:
            self.file.resolved(self._off, "can be used again; caching is on")
            self._off = None

    @contextmanager
    def _both(self) -> Iterator[None]:
        """Both connections' locks, the writer's first (no one takes them the other way)."""
        with self._lock:
            if self._read_lock is self._lock:
                yield
            else:
                with self._read_lock:
                    yield

    def _ready(self) -> sqlite3.Connection | None:
        """The writing connection, after reopening a file that was replaced (the state
        directory deleted, a damaged file set aside by another process) or trying again
        one that could not be used; None while caching is off."""
        db = self._db
        if db is not None and not self.file.replaced():
            return db
        if db is None and time.monotonic() < self._off_until:
            return None
        with self._both():
            if self._db is db:              # (another thread may have done it meanwhile)
                if db is not None:
                    self.file.warn("vanished or was replaced while in use (the state "
                                   "directory deleted?); started a new one")
                self._disconnect()
                self._open()
            return self._db

    def _failed(self, db: sqlite3.Connection, error: BaseException) -> None:
        with self._both():
            if self._db is db:
                self._disconnect()
                self._open(error)

    def _disconnect(self) -> None:
        """(Holding both locks.)"""
        if self._reader is not self._db:
            close_quietly(self._reader)
        close_quietly(self._db)
        self._db = self._reader = None

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
        db = self._ready()
        if db is None:
            return out
        try:
            with self._read_lock:
                reader = self._reader
                if reader is None:
                    return out
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    for row in reader.execute(
                            f"SELECT * FROM {table} WHERE key IN ({marks})", chunk):  # noqa: S608
                        out[row[0]] = tuple(row[1:])
        except sqlite3.Error as e:          # found nothing, then
            self._failed(db, e)
            return {}
        return out

    def _change(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """`work(db)` in one transaction, rolled back on any error: a failed write (a busy
        or full disk) must not leave the connection inside a transaction for the next one.
        A failure sets a damaged file aside, or turns caching off for a while."""
        db = self._ready()
        if db is None:
            return
        try:
            with self._lock:
                if self._db is not db:      # reopened meanwhile: nothing is lost but time
                    return
                db.execute("BEGIN")
                try:
                    work(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        rollback_quietly(db)
                    raise
        except sqlite3.Error as e:
            self._failed(db, e)

    def put(self, table: str, rows: dict[str, tuple]) -> None:
        if not rows:
            return
        width = len(self.TABLES[table].split(","))
        self._change(lambda db: db.executemany(
            f"INSERT OR REPLACE INTO {table} VALUES ({','.join('?' * width)})",  # noqa: S608
            [(k, *v) for k, v in rows.items()]))

    def delete(self, table: str, keys: list[str]) -> None:
        if not keys:
            return
        self.flush(table)
        self._change(lambda db: db.executemany(
            f"DELETE FROM {table} WHERE key = ?", [(k,) for k in keys]))  # noqa: S608

    def get_records(self, keys: list[str]) -> dict[str, object]:
        return {k: pickle.loads(v[0]) for k, v in self.get("records", keys).items()}  # noqa: S301

    def put_records(self, records: dict[str, object]) -> None:
        self.put_pickled({k: pickle.dumps(v, protocol=5) for k, v in records.items()})

    def put_pickled(self, blobs: dict[str, bytes]) -> None:
        self.put("records", {k: (blob,) for k, blob in blobs.items()})

    def prune(self, table: str, keep: set[str]) -> None:
        """Delete the entries of `table` not in `keep` (called after a full build)."""
        def work(db: sqlite3.Connection) -> None:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (key TEXT PRIMARY KEY)")
            db.execute("DELETE FROM keep")
            db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", [(k,) for k in keep])
            db.execute(f"DELETE FROM {table} WHERE key NOT IN (SELECT key FROM keep)")  # noqa: S608
        self._change(work)

    def close(self) -> None:
        self.flush(timeout=60)
        atexit.unregister(self.flush)
        self._closed = True
        with self._both():
            self._disconnect()
            self._off_until = float("inf")
