"""One SQLite file of the state directory, as the validators and the cache use it.

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

import fcntl
import logging
import os
import sqlite3
import time
from contextlib import suppress

from .model import DataError

log = logging.getLogger("feedsvc")
RETRY_SECONDS = 60.0        # a state file that could not be used is tried again after this
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def connect(state_dir: str | None, name: str, page_size: int = 4096) -> sqlite3.Connection:
    """SQLite in the state directory (in memory without one), shared by every worker:
    WAL lets readers proceed while one process writes; writers wait up to 30 s.
    `page_size` applies to a database this call creates."""
    path = ":memory:"
    if state_dir:
        os.makedirs(state_dir, exist_ok=True)
        path = os.path.join(state_dir, name)
        private(path)
    db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    try:
        db.execute(f"PRAGMA page_size={int(page_size)}")
        db.execute("PRAGMA journal_mode=WAL" if state_dir else "PRAGMA journal_mode=MEMORY")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def private(path: str) -> None:
    """Make the state file `path` readable by its owner only: created so (SQLite gives
    its -wal and -shm files the same mode), or, made by an older release, its group and
    other bits dropped.  The statistics keep the day's salt beside the poller hashes, the
    hub its subscribers' secrets, admin access its failed logins."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    except OSError:
        return                          # a read-only directory: SQLite says what is wrong
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with suppress(OSError):
            mode = os.stat(name).st_mode
            if mode & 0o077:
                os.chmod(name, mode & 0o700)


def damaged(error: BaseException) -> bool:
    """SQLite found the file is not a database, or not a sound one."""
    return getattr(error, "sqlite_errorcode", None) in _DAMAGED


def close_quietly(db: sqlite3.Connection | None) -> None:
    if db is not None:
        with suppress(sqlite3.Error):
            db.close()


class StateFile:
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




def open_with(state_dir: str | None, name: str, schema: str) -> sqlite3.Connection:
    """A state file with `schema` applied (CREATE ... IF NOT EXISTS statements).  A
    damaged file is set aside and started afresh; a file that cannot be opened at all
    (a read-only or full disk) gives an in-memory database, so the service runs on
    without what the file would have kept.  Both are logged."""
    state = StateFile(state_dir, name)
    for attempt in (1, 2):
        db = None
        try:
            db = connect(state_dir, name)
            db.executescript(schema)
            return db
        except (sqlite3.Error, OSError) as e:       # OSError: the directory is a file
            close_quietly(db)
            if attempt == 1 and state.path and damaged(e):
                with suppress(OSError):
                    state.warn(state.set_aside_message(e, state.set_aside(state.identity())))
                    continue
            state.warn(f"cannot be used ({e}); kept in memory until the next start")
            break
    db = connect(None, name)
    db.executescript(schema)
    return db


def rollback_quietly(db: sqlite3.Connection) -> None:
    """ROLLBACK, which fails too on a connection that just failed, at times."""
    with suppress(sqlite3.Error):
        db.execute("ROLLBACK")
