"""What outlives a process, behind one interface: `open_store` picks where it lives.

A `Store` holds the validators (the current ETag and first-seen second of every
document) and the caches (parsed records, rendered bodies, finished documents, the last
good versions).  Without `database_url` they are SQLite files in the state directory
(one machine: every worker and instance sharing that directory agree); with it, tables
in PostgreSQL (several machines agree).  Nothing above this module knows which.  The
checkpoint stays a file in the state directory either way: it names files by inode
and mtime, which mean nothing on another machine.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from .adminstore import AdminStore, FileAdminStore
from .cache import Cache
from .model import DataError
from .statsstore import SQLiteStats, StatsStore
from .validators import SETTLE_SECONDS, Stamp, Validators


class ValidatorStore(Protocol):
    """Last-Modified per document path (see `validators.Validators` for the rule)."""
    retry_at: float | None

    @property
    def problems(self) -> list[DataError]: ...

    def claim(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int | None]] | None = None
              ) -> dict[str, int | None]: ...

    def stamp(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int | None]] | None = None) -> dict[str, int]: ...

    def recorded(self, paths: list[str]) -> dict[str, Stamp]: ...

    def close(self) -> None: ...


def check(database_url: str) -> None:
    """Reach the database and bring its schema up to date (at start, before serving);
    StoreUnavailable, with one line saying why, if it cannot be used."""
    if database_url:
        open_store("", database_url, strict=True).close()


def newest_mtime(sigs: Mapping[str, object], root: str | None = None) -> float | None:
    """The newest modification time (Unix seconds) among scanned files' signatures and,
    given the data directory `root`, the folders holding them (a deletion changes only
    its folder's time)."""
    times = [t for t in (getattr(sig, "mtime_ns", None) for sig in sigs.values())
             if isinstance(t, int)]
    if root is not None:
        folders = {os.path.dirname(os.path.join(root, rel)) for rel in sigs} | {root}
        for folder in folders:
            with suppress(OSError):
                times.append(os.stat(folder).st_mtime_ns)
    return max(times) / 1e9 if times else None


class StoreUnavailable(Exception):
    """The configured database cannot be used at start (the message says which, and why)."""


@dataclass(frozen=True)
class Store:
    """The validators and the caches of one process, and where they live."""
    validators: ValidatorStore
    cache: Cache
    where: str                  # the state directory, or the database URL without password
    shared: bool                # several machines, each with its own copy of the data
    places: tuple[str | None, ...]  # what its problems name (state files, or `where`)

    def seen(self, scanned: float, newest_mtime: float | None) -> float:
        """How new the data behind some bytes is, for the rule that a lagging instance
        records nothing: on one machine, when it was scanned; across machines (copies
        synced by git or rsync), the newest modification time of its files."""
        if not self.shared or newest_mtime is None or scanned <= 0:
            return scanned
        return newest_mtime

    @property
    def problems(self) -> list[DataError]:
        return self.cache.problems + self.validators.problems

    def close(self) -> None:
        self.cache.close()
        self.validators.close()


def open_store(state_dir: str, database_url: str = "",
               clock: Callable[[], float] = time.time,
               settle: float = SETTLE_SECONDS, strict: bool = True) -> Store:
    """The store the settings name.  `strict`: StoreUnavailable if its database cannot be
    used now; else it is connected on first use, and retried with backoff until then."""
    if not database_url:
        validators, cache = Validators(state_dir, clock, settle=settle), Cache(state_dir)
        return Store(validators, cache, state_dir, shared=False,
                     places=(cache.file.path, validators.file.path))
    import psycopg

    from .pglink import PgLink, connect, redact
    from .pgstore import PLACE, PgCache, PgValidators
    where = redact(database_url)
    conn = None
    try:
        conn = connect(database_url)
    except psycopg.Error as e:
        if strict:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StoreUnavailable(
                f"{where}: cannot use the database ({reason.replace(database_url, where)}); "
                "check FEEDSVC_DATABASE_URL and that the server is up") from e
    pg = PgValidators(PgLink(database_url, "Last-Modified", conn), clock)
    return Store(pg, PgCache(PgLink(database_url, "caching")), where, shared=True,
                 places=(PLACE,))


def open_stats(state_dir: str, database_url: str = "") -> StatsStore:
    """The audience statistics' store the settings name: `stats.sqlite` in the state
    directory, or with `database_url` the database every instance shares (connected on
    first use; `open_store` has already checked it at start)."""
    if not database_url:
        return SQLiteStats(state_dir)
    from .pgstats import PgStats
    return PgStats(database_url)


def open_admin(state_dir: str, database_url: str = "") -> AdminStore:
    """What admin access keeps (password hash, key, ended sessions, failed logins): files
    of the state directory, or with `database_url` the database every instance shares
    (connected on first use)."""
    if not database_url:
        return FileAdminStore(state_dir)
    from .pgadmin import PgAdminStore
    return PgAdminStore(database_url)
