"""The state store in PostgreSQL, for several instances (machines) sharing one truth.

`PgValidators` applies the rule of `lastmodified` (the same pure functions decide) in one
transaction per stamp that holds an advisory lock, so stamps from every instance are
serialized as SQLite's `BEGIN IMMEDIATE` serializes workers: the first-seen second of
some bytes is decided once, and an instance whose data is older than what another
recorded writes nothing.  A `generation` counter plays SQLite's `data_version`: an
instance re-reads every document's record only when another one wrote since.

Instances see each other's stamps on their next refresh: every file event and every
safety walk (`poll_seconds`) stamps, which reads what changed.  Requests never touch
the database; a lost server costs Last-Modified on bytes that change meanwhile (they go
out with their ETag only) and cache hits, never a response.

`PgCache` is `cache.Cache` (its queue, writer thread and holds) with the rows in
PostgreSQL, so an instance with an empty disk starts from what another one built.
"""
from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from contextlib import suppress

import psycopg

from .cache import Cache
from .lastmodified import Moment, Stamp, verdicts
from .model import DataError
from .pglink import PgLink, Unavailable

STAMP_LOCK = 0x66656565             # advisory lock held by each stamping transaction
_COLUMNS = "path, etag, first_seen, second, claimed, seen"
_UPSERT = (f"INSERT INTO feedsvc_stamps ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "  # noqa: S608
           "ON CONFLICT (path) DO UPDATE SET etag = EXCLUDED.etag, "
           "first_seen = EXCLUDED.first_seen, second = EXCLUDED.second, "
           "claimed = EXCLUDED.claimed, seen = EXCLUDED.seen")


PLACE = "FEEDSVC_DATABASE_URL"      # what problems name (/healthz shows them to anyone)


def _problems(link: PgLink, what: str) -> list[DataError]:
    """The problem while the database is lost: by setting name, without host or error
    text (which may name the host); the log has both, with the password hidden."""
    if link.lost is None:
        return []
    return [DataError(PLACE, f"the database is unreachable; {what}; retrying with backoff",
                      warning=True)]


class PgValidators:
    """Last-Modified per document path, in `feedsvc_stamps`, agreed by every instance."""

    def __init__(self, link: PgLink, clock: Callable[[], float] = time.time):
        self.link = link
        self.clock = clock
        self.retry_at: float | None = None
        self.where = link.where
        self._lock = threading.Lock()
        self._known: dict[str, Stamp] = {}      # the last record read or written per path
        self._generation: int | None = None     # the counter as of our last stamp
        self._behind: set[str] = set()

    @property
    def problems(self) -> list[DataError]:
        return _problems(self.link, "documents whose bytes change go out without "
                                    "Last-Modified (ETag only)")

    def claim(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int | None]] | None = None) -> dict[str, int | None]:
        """See `validators.Validators.claim`."""
        return self._stamp(etags, seen, held or {}, ahead=False)

    def stamp(self, etags: dict[str, str], seen: float,
              held: dict[str, tuple[str, int | None]] | None = None) -> dict[str, int]:
        """See `validators.Validators.stamp`."""
        out = self._stamp(etags, seen, held or {}, ahead=True)
        now = int(self.clock())
        return {p: now if s is None else s for p, s in out.items()}

    def _stamp(self, etags: dict[str, str], seen: float,
               held: dict[str, tuple[str, int | None]], ahead: bool) -> dict[str, int | None]:
        with self._lock:
            try:
                return self.link.run(lambda conn: self._record(conn, etags, seen, held, ahead))
            except (Unavailable, psycopg.Error):
                self._generation = None         # re-read everything once it is back
                return self._recorded(etags)

    def _record(self, conn: psycopg.Connection, etags: dict[str, str], seen: float,
                held: dict[str, tuple[str, int | None]], ahead: bool) -> dict[str, int | None]:
        now = self.clock()
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (STAMP_LOCK,))
        row = conn.execute("SELECT value FROM feedsvc_meta WHERE key = 'generation'"
                           ).fetchone()
        generation = row[0] if row else 0
        out: dict[str, int | None] = {}
        paths = list(etags)
        if generation == self._generation:      # nobody else wrote since our last stamp
            paths = [p for p, e in etags.items() if held.get(p, ("", None))[0] != e
                     or held[p][1] is None or p in self._behind]
            out.update((p, held[p][1]) for p in etags.keys() - set(paths))
        known = {r[0]: Stamp(*r[1:]) for r in conn.execute(
            f"SELECT {_COLUMNS} FROM feedsvc_stamps WHERE path = ANY(%s)",  # noqa: S608
            (paths,))}
        rows, behind = verdicts(paths, etags, known, held, Moment(now, seen, None, ahead),
                                out)
        if rows:
            generation = self._write(conn, rows, generation)
        self._generation = generation
        self._behind = (self._behind - set(paths)) | behind
        self._known.update(known)
        self._known.update(rows)
        waiting = [self._known[p].claimed + 1 for p in paths
                   if out[p] is None and p not in behind]
        self.retry_at = min(waiting, default=None)
        return {p: out[p] for p in etags}

    @staticmethod
    def _write(conn: psycopg.Connection, rows: dict[str, Stamp], generation: int) -> int:
        """Upsert `rows`; the generation other instances will see is the one returned."""
        with conn.cursor() as cur:
            cur.executemany(_UPSERT, [(p, *s) for p, s in rows.items()])
        row = conn.execute("UPDATE feedsvc_meta SET value = value + 1 "
                           "WHERE key = 'generation' RETURNING value").fetchone()
        return row[0] if row else generation

    def _recorded(self, etags: dict[str, str]) -> dict[str, int | None]:
        """Without the database: the second last known for each path's bytes, or None (a
        second claimed here could not be seen by the other instances, so none is)."""
        out: dict[str, int | None] = {}
        for path, etag in etags.items():
            record = self._known.get(path)
            out[path] = record.second if record and record.etag == etag else None
        self.retry_at = self.clock() + 5.0 if None in out.values() else None
        return out

    def recorded(self, paths: list[str]) -> dict[str, Stamp]:
        """See `validators.Validators.recorded`."""
        with self._lock:
            try:
                return self.link.run(lambda conn: {r[0]: Stamp(*r[1:]) for r in conn.execute(
                    f"SELECT {_COLUMNS} FROM feedsvc_stamps WHERE path = ANY(%s)",  # noqa: S608
                    (paths,))})
            except (Unavailable, psycopg.Error):
                return {}

    def close(self) -> None:
        with self._lock:
            self.link.close()


class PgCache(Cache):
    """`cache.Cache` with its tables in PostgreSQL (`feedsvc_<table>`), shared by every
    instance; a database that cannot be used costs cache hits only."""

    def __init__(self, link: PgLink):
        self.link = link
        super().__init__(None)
        self.file.path = PLACE          # what the problems name

    def _open(self, error: BaseException | None = None) -> None:
        return None                     # (the link connects on use)

    @property
    def problems(self) -> list[DataError]:
        return _problems(self.link, "caching is off (everything still published)")

    def get(self, table: str, keys: list[str]) -> dict[str, tuple]:
        self.flush(table)
        if not keys:
            return {}
        query = f"SELECT * FROM feedsvc_{table} WHERE key = ANY(%s)"  # noqa: S608

        def work(conn: psycopg.Connection) -> dict[str, tuple]:
            return {row[0]: tuple(row[1:]) for row in conn.execute(query, (keys,))}
        try:
            return self.link.run(work)
        except (Unavailable, psycopg.Error):
            return {}

    def _run(self, work: Callable[[psycopg.Connection], object]) -> None:
        with suppress(Unavailable, psycopg.Error):     # a cache costs speed only
            self.link.run(work)

    def put(self, table: str, rows: dict[str, tuple]) -> None:
        if not rows:
            return
        columns = [c.split()[0] for c in self.TABLES[table].split(",")]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
        query = (f"INSERT INTO feedsvc_{table} VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
                 f"ON CONFLICT (key) DO UPDATE SET {sets}")
        values = [(k, *v) for k, v in rows.items()]

        def work(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany(query, values)
        self._run(work)

    def delete(self, table: str, keys: list[str]) -> None:
        if not keys:
            return
        self.flush(table)
        self._run(lambda conn: conn.execute(
            f"DELETE FROM feedsvc_{table} WHERE key = ANY(%s)", (keys,)))  # noqa: S608

    def prune(self, table: str, keep: set[str]) -> None:
        self._run(lambda conn: conn.execute(
            f"DELETE FROM feedsvc_{table} WHERE NOT key = ANY(%s)", (list(keep),)))  # noqa: S608

    def close(self) -> None:
        self.flush(timeout=60)
        atexit.unregister(self.flush)
        self._closed = True
        self.link.close()
