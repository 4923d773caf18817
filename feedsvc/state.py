"""What survives a restart: validators and caches, in SQLite in the state directory.

Validators: when did each document's bytes last change?

Last-Modified must move forward whenever the bytes change (a deletion or a
backdated article included) and stay put while they do not, across restarts
and in every worker.  So it is not derived from article dates: it is a second
this state gives the document's current ETag, kept in SQLite that all workers
(and all instances sharing the state directory) update in one transaction.
The rule (`Validators.claim`):

- A second given to some bytes of a document is never given to other bytes of
  it: each version claims a second later than every second claimed before for
  that document, so an If-Modified-Since carrying the time of some bytes never
  matches other, newer ones.
- A second is claimed only once it has begun, never ahead of the clock (RFC
  9110 8.8.2.1): the second in which the bytes were first seen, or, when the
  document changed twice within one second, the next second as soon as it
  comes.  Until then the version is served with its ETag and no Last-Modified
  (for the rest of that second).  A version replaced before then claims
  nothing, so a busy minute cannot push Last-Modified ahead of the clock.

The state is a cache plus validators, so nothing in it is worth a failed start
or refresh.  A damaged file is set aside (`<name>.damaged-<time>`) and started
afresh; a file that cannot be written (a read-only or full disk) turns the
caches off and leaves documents whose bytes change without Last-Modified until
it can be written again (tried every minute).  Each says so once in the log and
in `problems` (listed at /healthz).  A lost validators file costs each client
one full download: every worker carries the seconds it has seen given out over
to the new file, so none of them is given to other bytes, and nobody claims a new
second until all of them have had the time to (`settle`).
"""
from __future__ import annotations

import atexit
import fcntl
import logging
import os
import pickle
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import NamedTuple

from .model import DataError

log = logging.getLogger("feedsvc")
RETRY_SECONDS = 60.0        # a state file that could not be used is tried again after this
SETTLE_SECONDS = 30.0       # after validators are made again, no new second for this long
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _connect(state_dir: str | None, name: str, page_size: int = 4096) -> sqlite3.Connection:
    """SQLite in the state directory (in memory without one), shared by every worker:
    WAL lets readers proceed while one process writes; writers wait up to 30 s.
    `page_size` applies to a database this call creates."""
    path = ":memory:"
    if state_dir:
        os.makedirs(state_dir, exist_ok=True)
        path = os.path.join(state_dir, name)
    db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    try:
        db.execute(f"PRAGMA page_size={int(page_size)}")
        db.execute("PRAGMA journal_mode=WAL" if state_dir else "PRAGMA journal_mode=MEMORY")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def _damaged(error: BaseException) -> bool:
    """SQLite found the file is not a database, or not a sound one."""
    return getattr(error, "sqlite_errorcode", None) in _DAMAGED


def _close(db: sqlite3.Connection | None) -> None:
    if db is not None:
        with suppress(sqlite3.Error):
            db.close()


class _File:
    """One SQLite file of the state directory: whether it is still the file we opened,
    setting a damaged one aside, and the problems to report about it."""

    def __init__(self, state_dir: str | None, name: str):
        self.state_dir = state_dir
        self.name = name
        self.path = os.path.join(state_dir, name) if state_dir else None
        self.opened: tuple[int, int] | None = None      # (device, inode) of the file we use
        self.problems: list[DataError] = []             # replaced whole, never changed

    def identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def replaced(self) -> bool:
        """The file we opened is no longer at its path (deleted with the state directory,
        set aside by another process): what we write there nobody will read."""
        return self.path is not None and self.opened is not None and \
            self.identity() != self.opened

    def set_aside(self, bad: tuple[int, int] | None) -> str | None:
        """Rename the damaged file (with its -wal and -shm) to `<name>.damaged-<time>`,
        unless another process has done so already (the file at the path is not `bad`);
        the new name, or None.  OSError if it cannot be renamed."""
        assert self.path is not None    # noqa: S101
        with open(self.path + ".lock", "a") as lock:   # one process at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            if bad is None or self.identity() != bad:
                return None
            aside = f"{self.path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            n = 1
            while os.path.lexists(aside):
                n += 1
                aside = f"{aside.rsplit('~', 1)[0]}~{n}"
            for suffix in ("", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.rename(self.path + suffix, aside + suffix)
            return aside

    def warn(self, message: str) -> DataError:
        """Log `path: message` once and list it among the problems."""
        problem = DataError(self.path or self.name, message, warning=True)
        if problem not in self.problems:
            log.warning("%s: %s", problem.path, message)
            self.problems = [*self.problems[-9:], problem]
        return problem

    def resolved(self, problem: DataError | None, message: str) -> None:
        if problem is not None and problem in self.problems:
            log.info("%s: %s", problem.path, message)
            self.problems = [p for p in self.problems if p != problem]

    def set_aside_message(self, error: BaseException, aside: str | None) -> str:
        where = f"set it aside as {os.path.basename(aside)} and " if aside else ""
        return f"damaged ({error}); {where}started a new one"


class Stamp(NamedTuple):
    """What the validators record for one document."""
    etag: str                   # its current bytes
    first_seen: float           # when this state first saw them (Unix time)
    second: int | None          # the Last-Modified they show; None until they claim one
    claimed: int                # the latest second ever claimed for the document
    seen: float                 # when the data they were made from was scanned


_COLUMNS = "path, etag, first_seen, second, claimed, seen"


class Validators:
    """Last-Modified per document path, shared by every worker through `validators.sqlite`
    (in memory without a state directory)."""

    def __init__(self, state_dir: str | None, clock: Callable[[], float] = time.time,
                 settle: float = SETTLE_SECONDS):
        """`settle`: how long after the file was made again (lost or damaged) nobody claims
        a new second, so that every running worker has carried its floors over first
        (each stamps at least once per safety walk, `poll_seconds`)."""
        self.clock = clock
        self.settle = settle
        self.file = _File(state_dir, "validators.sqlite")
        self.retry_at: float | None = None  # when a document shown without a second may
        #                                     claim one (`clock` time); None: none waits
        self._lock = threading.Lock()
        self._known: dict[str, Stamp] = {}  # the last record read or written per path: the
        #                                     floor carried over to a new file
        self._version: int | None = None    # data_version as of our last stamp
        self._behind: set[str] = set()      # paths whose recorded ETag is newer than ours
        self._unwritable: DataError | None = None   # the problem while no file is usable
        self._retry_file = 0.0              # `clock` time to try the file again
        self._reader: sqlite3.Connection | None = None  # read-only, while unwritable
        self._db = self._open()

    @property
    def problems(self) -> list[DataError]:
        return self.file.problems

    # -- the file, and what to do when it fails ------------------------------------------
    def _open(self, error: BaseException | None = None) -> sqlite3.Connection | None:
        """The validators file, with this worker's floors carried over to it; when it is
        damaged (`error`, from using it), a new one with the old one set aside; None when
        it cannot be written."""
        if self.file.path is None:
            db = _connect(None, self.file.name)
            self._create(db)
            return db
        bad = self.file.opened if error else self.file.identity()
        if error is None:
            try:
                return self._open_file()
            except (sqlite3.Error, OSError) as e:
                error = e
        if _damaged(error):
            try:
                aside = self.file.set_aside(bad)
                db = self._open_file()
            except (sqlite3.Error, OSError) as e:
                error = e
            else:
                self.file.warn(self.file.set_aside_message(error, aside) + ", from the "
                               "seconds this worker has given out: clients download each "
                               "feed once more")
                return db
        self._unwritable = self.file.warn(
            f"cannot be written ({error}); documents keep the Last-Modified recorded for "
            "their bytes, and those whose bytes change are served without one (ETag only) "
            "until it can: check the state directory's permissions and free space "
            "(FEEDSVC_STATE_DIR); tried again every minute")
        self._retry_file = self.clock() + RETRY_SECONDS
        _close(self._reader)
        self._reader = self._read_only()
        return None

    def _open_file(self) -> sqlite3.Connection:
        db = _connect(self.file.state_dir, self.file.name)
        try:
            self.file.opened = self.file.identity()
            self._carry_over(db, made=self._create(db))
        except BaseException:
            db.close()
            raise
        if self._unwritable is not None:
            self.file.resolved(self._unwritable, "can be written again")
            self._unwritable = None
            _close(self._reader)
            self._reader = None
        return db

    def _read_only(self) -> sqlite3.Connection | None:
        """The file opened for reading (a full disk still reads), or None."""
        assert self.file.path is not None   # noqa: S101
        try:
            db = sqlite3.connect(Path(self.file.path).as_uri() + "?mode=ro", uri=True,
                                 check_same_thread=False, timeout=30)
        except sqlite3.Error:
            return None
        try:
            db.execute("SELECT 1 FROM stamps LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            return None
        return db

    @staticmethod
    def _create(db: sqlite3.Connection) -> bool:
        """Create the tables; True if the file had none (a new file)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {name for name, in db.execute("SELECT name FROM sqlite_master")}
            if "meta" not in tables:
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
            if "stamps" not in tables:
                db.execute("CREATE TABLE stamps (path TEXT PRIMARY KEY, etag TEXT NOT NULL, "
                           "first_seen REAL NOT NULL, second INTEGER, claimed INTEGER NOT NULL, "
                           "seen REAL NOT NULL)")
                if "validators" in tables:      # an older feedsvc's: its times were claimed
                    db.execute("INSERT INTO stamps SELECT path, etag, modified, modified, "
                               "modified, seen FROM validators")
            db.execute("COMMIT")
            return "stamps" not in tables
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _carry_over(self, db: sqlite3.Connection, made: bool) -> None:
        """This worker's floors into `db` (`made`: a new file; or one another worker made
        anew, or the one it could not write): no second it has seen given to some bytes
        goes to other bytes of the document."""
        if not self._known:
            return
        now = self.clock()
        db.execute("BEGIN IMMEDIATE")
        try:
            theirs = self._read(db, list(self._known))
            rows = {p: _floored(theirs.get(p), mine) for p, mine in self._known.items()}
            rows = {p: s for p, s in rows.items() if s != theirs.get(p)}
            db.executemany(f"INSERT OR REPLACE INTO stamps ({_COLUMNS}) "   # noqa: S608
                           "VALUES (?, ?, ?, ?, ?, ?)", [(p, *s) for p, s in rows.items()])
            # the other workers have not carried theirs over yet: nobody claims a new
            # second until they have (from the first worker that made it again)
            if made:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('made_again', ?)", (now,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._known.update(rows)

    def _reopen(self, error: BaseException | None = None) -> None:
        _close(self._db)
        self._db = None
        self._version, self._behind = None, set()
        self._db = self._open(error)

    def _settling(self, db: sqlite3.Connection, now: float) -> float | None:
        """Until when no new second is claimed (the file was made again), or None."""
        row = db.execute("SELECT value FROM meta WHERE key = 'made_again'").fetchone()
        until = row[0] + self.settle if row else None
        return until if until is not None and row[0] - 1 <= now < until else None

    @staticmethod
    def _read(db: sqlite3.Connection, paths: list[str]) -> dict[str, Stamp]:
        known: dict[str, Stamp] = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            marks = ",".join("?" * len(chunk))
            known.update((row[0], Stamp(*row[1:])) for row in db.execute(
                f"SELECT {_COLUMNS} FROM stamps WHERE path IN ({marks})", chunk))  # noqa: S608
        return known

    # -- stamping ------------------------------------------------------------------------
    def claim(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int | None]] | None = None) -> dict[str, int | None]:
        """Last-Modified (Unix seconds) for each path's ETag, as built from data scanned at
        `seen`; None where the bytes may not show one yet (see the module's docstring):
        `retry_at` says when to ask again.  `held`: what the caller serves now.

        A worker whose data is older than what another recorded (it scanned before a save
        that another worker already published) records nothing: it keeps the second it
        `held` for its bytes, or shows none, so no client can carry its time to the newer
        bytes and get a false 304.
        """
        return self._stamp(etags, seen, held or {}, ahead=False)

    def stamp(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int | None]] | None = None) -> dict[str, int]:
        """`claim` for a build that writes files (`feedsvc build`: a file needs a time
        now): a version whose second is taken claims the next one even if it has not
        begun (one second ahead, for a second build within one second); a build that is
        behind gets the second before the newer bytes' one."""
        out = self._stamp(etags, seen, held or {}, ahead=True)
        now = int(self.clock())
        return {p: now if s is None else s for p, s in out.items()}   # (no usable file)

    def _stamp(self, etags: dict[str, str], seen: float,
               held: dict[str, tuple[str, int | None]], ahead: bool) -> dict[str, int | None]:
        with self._lock:
            if self._db is not None and self.file.replaced():
                self.file.warn("vanished or was replaced while in use (the state directory "
                               "deleted?); made again from the seconds this worker has given "
                               "out")
                self._reopen()
            elif self._db is None and self.clock() >= self._retry_file:
                self._reopen()                  # can it be written again?
            for _ in range(2):
                db = self._db
                if db is None:
                    break
                try:
                    return self._record(db, etags, seen, held, ahead)
                except sqlite3.Error as e:
                    self._reopen(e)     # set aside and started afresh, or unwritable
            return self._recorded(etags)

    def _record(self, db: sqlite3.Connection, etags: dict[str, str], seen: float,
                held: dict[str, tuple[str, int | None]], ahead: bool) -> dict[str, int | None]:
        now = self.clock()
        now_s = int(now)
        db.execute("BEGIN IMMEDIATE")
        try:
            out: dict[str, int | None] = {}
            paths = list(etags)
            # read while we hold the write lock: no other commit can come before ours
            version = self._data_version(db)
            settling = None if ahead else self._settling(db, now)
            if version == self._version:
                # nothing written by anyone else since our last stamp: what we hold is
                # what is recorded, but where we were behind or hold no second yet (an
                # edit asks about its few paths, not all of them)
                paths = [p for p, e in etags.items() if held.get(p, ("", None))[0] != e
                         or held[p][1] is None or p in self._behind]
                out.update((p, held[p][1]) for p in etags.keys() - set(paths))
            known = self._read(db, paths)
            rows: dict[str, Stamp] = {}
            behind: set[str] = set()
            for path in paths:
                etag, old = etags[path], known.get(path)
                if old and old.etag == etag:
                    new = old
                    if old.second is None and settling is None:    # its second may have come
                        second = max(int(old.first_seen), old.claimed + 1)
                        if second <= now_s or ahead:
                            new = old._replace(second=second, claimed=second)
                elif old and seen <= old.seen:  # we are behind (a tie too): write nothing
                    mine = held.get(path)
                    if mine and mine[0] == etag:
                        out[path] = mine[1]
                    elif ahead:                 # a file needs a time: one before theirs
                        out[path] = (old.claimed + 1 if old.second is None else old.second) - 1
                    else:
                        out[path] = None
                    behind.add(path)
                    continue
                else:                           # new bytes
                    second = max(now_s, old.claimed + 1) if old else now_s
                    new = Stamp(etag, now, second, second, seen) \
                        if (second <= now_s and settling is None) or ahead \
                        else Stamp(etag, now, None, old.claimed if old else 0, seen)
                out[path] = new.second
                if new != old:
                    rows[path] = new
            db.executemany(f"INSERT OR REPLACE INTO stamps ({_COLUMNS}) "   # noqa: S608
                           "VALUES (?, ?, ?, ?, ?, ?)", [(p, *s) for p, s in rows.items()])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                _close_transaction(db)
            raise
        self._version = version             # (our own commits leave it as it is)
        self._behind = (self._behind - set(paths)) | behind
        self._known.update(known)
        self._known.update(rows)
        waiting = [max(self._known[p].claimed + 1, settling or 0) for p in paths
                   if out[p] is None and p not in behind]
        self.retry_at = min(waiting, default=None)
        return {p: out[p] for p in etags}

    def _recorded(self, etags: dict[str, str]) -> dict[str, int | None]:
        """Without a writable file: the second recorded for each path's bytes (read from
        the file if it still reads), or None; a second claimed here could not be seen by
        the other workers, so none is."""
        known = self._known
        if self._reader is not None:
            with suppress(sqlite3.Error):
                known = {**known, **self._read(self._reader, list(etags))}
        out: dict[str, int | None] = {}
        for path, etag in etags.items():
            record = known.get(path)
            out[path] = record.second if record and record.etag == etag else None
        self.retry_at = self._retry_file if None in out.values() else None
        return out

    @staticmethod
    def _data_version(db: sqlite3.Connection) -> int:
        """SQLite's count of commits by other connections (other workers, instances)."""
        return db.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            _close(self._db)
            _close(self._reader)
            self._db = self._reader = None
            self._retry_file = float("inf")


def _close_transaction(db: sqlite3.Connection) -> None:
    """ROLLBACK, which fails too on a connection that just failed, at times."""
    with suppress(sqlite3.Error):
        db.execute("ROLLBACK")


def _floored(theirs: Stamp | None, mine: Stamp) -> Stamp:
    """A record merged with what this worker knew: the bytes of the later scan, the latest
    claim of both, and no second that is not later than every second the other side
    claimed for other bytes (those bytes claim a new one)."""
    if theirs is None:
        return mine
    claimed = max(theirs.claimed, mine.claimed)
    newer, older = (mine, theirs) if mine.seen > theirs.seen else (theirs, mine)
    if newer.etag == older.etag:
        second = newer.second if newer.second is not None else older.second
        if second is not None and second < claimed and second not in (theirs.second,
                                                                      mine.second):
            second = None
    else:
        second = newer.second if newer.second is not None and \
            newer.second > older.claimed else None
    return newer._replace(second=second, claimed=claimed)


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
        self.file = _File(state_dir, "cache.sqlite")
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
        if _damaged(error) and self.file.path:
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
        db = _connect(state_dir, self.file.name, self.PAGE_SIZE)
        reader = None
        try:
            self.file.opened = self.file.identity()
            db.execute("BEGIN IMMEDIATE")
            for table in self.RETIRED:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for table, columns in self.TABLES.items():
                db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            db.execute("COMMIT")
            reader = _connect(state_dir, self.file.name, self.PAGE_SIZE) if state_dir else db
        except BaseException:
            _close(db)
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
            _close(self._reader)
        _close(self._db)
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
                        _close_transaction(db)
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
