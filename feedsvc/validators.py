"""Last-Modified per document, in `validators.sqlite` in the state directory.

When did each document's bytes last change?  Last-Modified must move forward
whenever the bytes change (a deletion or a backdated article included) and stay
put while they do not, across restarts and in every worker.  So it is not derived
from article dates: it is a second this state gives the document's current ETag,
kept in SQLite that all workers (and all instances sharing the state directory)
update in one transaction, by the rule in `lastmodified` (`Validators.claim`).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from .lastmodified import Moment, Stamp, floored, verdicts
from .model import DataError
from .statefile import (
    RETRY_SECONDS,
    StateFile,
    close_quietly,
    connect,
    damaged,
    rollback_quietly,
)

SETTLE_SECONDS = 30.0       # after validators are made again, no new second for this long
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
        self.file = StateFile(state_dir, "validators.sqlite")
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
            db = connect(None, self.file.name)
            self._create(db)
            return db
        bad = self.file.opened if error else self.file.identity()
        if error is None:
            try:
                return self._open_file()
            except (sqlite3.Error, OSError) as e:
                error = e
        if damaged(error):
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
        close_quietly(self._reader)
        self._reader = self._read_only()
        return None

    def _open_file(self) -> sqlite3.Connection:
        db = connect(self.file.state_dir, self.file.name)
        try:
            self.file.opened = self.file.identity()
            self._carry_over(db, made=self._create(db))
        except BaseException:
            db.close()
            raise
        if self._unwritable is not None:
            self.file.resolved(self._unwritable, "can be written again")
            self._unwritable = None
            close_quietly(self._reader)
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
            rows = {p: floored(theirs.get(p), mine) for p, mine in self._known.items()}
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
        close_quietly(self._db)
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
        `seen`; None where the bytes may not show one yet (see `lastmodified`):
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
                paths = self._unsure(etags, held)
                out.update((p, held[p][1]) for p in etags.keys() - set(paths))
            known = self._read(db, paths)
            rows, behind = verdicts(paths, etags, known, held,
                                    Moment(now, seen, settling, ahead), out)
            db.executemany(f"INSERT OR REPLACE INTO stamps ({_COLUMNS}) "   # noqa: S608
                           "VALUES (?, ?, ?, ?, ?, ?)", [(p, *s) for p, s in rows.items()])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                rollback_quietly(db)
            raise
        self._version = version             # (our own commits leave it as it is)
        self._behind = (self._behind - set(paths)) | behind
        self._known.update(known)
        self._known.update(rows)
        waiting = [max(self._known[p].claimed + 1, settling or 0) for p in paths
                   if out[p] is None and p not in behind]
        self.retry_at = min(waiting, default=None)
        return {p: out[p] for p in etags}

    def _unsure(self, etags: dict[str, str], held: dict[str, tuple[str, int | None]]
                ) -> list[str]:
        """The paths whose bytes or second we hold may not be those recorded."""
        return [p for p, e in etags.items() if held.get(p, ("", None))[0] != e
                or held[p][1] is None or p in self._behind]

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

    def recorded(self, paths: list[str]) -> dict[str, Stamp]:
        """What the file records for `paths` now, read only (none where it cannot be read):
        for a reader that serves documents it did not make (lastserved.py)."""
        with self._lock:
            db = self._db or self._reader
            if db is None:
                return {}
            try:
                return self._read(db, paths)
            except sqlite3.Error:
                return {}

    @staticmethod
    def _data_version(db: sqlite3.Connection) -> int:
        """SQLite's count of commits by other connections (other workers, instances)."""
        return db.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            close_quietly(self._db)
            close_quietly(self._reader)
            self._db = self._reader = None
            self._retry_file = float("inf")
