"""Where the audience statistics persist: the `StatsStore` interface and its SQLite file.

Every worker of every instance adds its tally (`Batch`) to one store, which merges
them: counts add up, a reported subscriber count keeps the latest of the day per
(feed, aggregator, feed id), poller hashes are a set.  `SQLiteStats` is the store
of one machine (`stats.sqlite` in the state directory, shared by the instances
that share that directory); a store shared between machines implements the same
methods.  Days are UTC dates (`2026-12-05`).  `keep` ends days: the poller hashes
of days before today become a count and are deleted with the day's salt, and
days older than the retention are deleted.
"""
from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from . import statefile

FILE = "stats.sqlite"
# a feed path's scope: `feeds/all.rss` without its extension (letters after the last dot)
SCOPE = "rtrim(rtrim(path, 'abcdefghijklmnopqrstuvwxyz'), '.')"


def day_of(unix: float) -> str:
    """The UTC date of a Unix time, as the store keys days."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).date().isoformat()


@dataclass(frozen=True)
class Batch:
    """Counts to add.  `totals`: (day, path, kind, client) -> (requests, 200s, 304s,
    bytes sent, bytes saved by 304s); `reports`: (day, path, aggregator, feed id) ->
    (subscribers, Unix time reported); `pollers`: (day, path, reader, hash)."""
    totals: dict[tuple[str, str, str, str], tuple[int, int, int, int, int]]
    reports: dict[tuple[str, str, str, str], tuple[int, float]]
    pollers: set[tuple[str, str, str, bytes]]


class Total(NamedTuple):
    day: str
    path: str
    kind: str
    client: str
    requests: int
    ok: int
    not_modified: int
    bytes_sent: int
    bytes_saved: int


class Count(NamedTuple):
    """Subscribers of one client for one feed on one day: reported by an aggregator
    (summed over its feed ids, the latest count of each) or distinct direct pollers."""
    day: str
    path: str
    client: str
    subscribers: int


class ClientDay(NamedTuple):
    """One client's numbers on one day, summed over the feeds asked for."""
    day: str
    client: str
    kind: str
    requests: int
    ok: int
    not_modified: int
    bytes_sent: int
    bytes_saved: int
    subscribers: int


class ScopeDay(NamedTuple):
    """One scope's numbers (its formats summed) on one day."""
    scope: str
    day: str
    requests: int
    not_modified: int
    subscribers: int


class StatsStore(Protocol):
    """What the counting, the log import and the statistics page need of a store."""

    def add(self, batches: list[Batch], mark: tuple[str, int] | None = None) -> None: ...
    def salt(self, day: str) -> bytes: ...
    def keep(self, today: str, retention_days: int) -> None: ...
    def totals(self, first: str, last: str) -> list[Total]: ...
    def reported(self, first: str, last: str) -> list[Count]: ...
    def pollers(self, first: str, last: str) -> list[Count]: ...
    def by_client(self, first: str, last: str, scope: str) -> list[ClientDay]: ...
    def by_scope(self, first: str, last: str) -> list[ScopeDay]: ...
    def imported(self, source: str) -> int: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS totals (day TEXT, path TEXT, kind TEXT, client TEXT,
  requests INTEGER, ok INTEGER, not_modified INTEGER, bytes_sent INTEGER,
  bytes_saved INTEGER, PRIMARY KEY (day, path, kind, client)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reported (day TEXT, path TEXT, client TEXT, feed_id TEXT,
  subscribers INTEGER, seen REAL, PRIMARY KEY (day, path, client, feed_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS poller_hashes (day TEXT, path TEXT, client TEXT, hash BLOB,
  PRIMARY KEY (day, path, client, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pollers (day TEXT, path TEXT, client TEXT, distinct_count INTEGER,
  PRIMARY KEY (day, path, client)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS salts (day TEXT PRIMARY KEY, salt BLOB);
CREATE TABLE IF NOT EXISTS imports (source TEXT PRIMARY KEY, offset INTEGER);
"""


class SQLiteStats:
    """The stats store in one SQLite file (WAL: the page reads while workers write)."""

    def __init__(self, state_dir: str | None):
        self.db = statefile.open_with(state_dir, FILE, SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        statefile.close_quietly(self.db)

    def add(self, batches: list[Batch], mark: tuple[str, int] | None = None) -> None:
        """Add the batches and, for a log import, record `mark` (the log, bytes read):
        all in one transaction, so a log is never counted twice nor half marked."""
        with self._lock, self._transaction() as db:
            for batch in batches:
                self._add(db, batch)
            if mark is not None:
                db.execute("INSERT INTO imports VALUES (?, ?) ON CONFLICT DO UPDATE SET "
                           "offset = excluded.offset", mark)

    @staticmethod
    def _add(db: sqlite3.Connection, batch: Batch) -> None:
        db.executemany(
            "INSERT INTO totals VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
            "requests=requests+excluded.requests, ok=ok+excluded.ok, "
            "not_modified=not_modified+excluded.not_modified, "
            "bytes_sent=bytes_sent+excluded.bytes_sent, "
            "bytes_saved=bytes_saved+excluded.bytes_saved",
            [(*k, *v) for k, v in batch.totals.items()])
        db.executemany(
            "INSERT INTO reported VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
            "subscribers=excluded.subscribers, seen=excluded.seen "
            "WHERE excluded.seen >= reported.seen",
            [(*k, *v) for k, v in batch.reports.items()])
        db.executemany("INSERT OR IGNORE INTO poller_hashes VALUES (?,?,?,?)",
                       sorted(batch.pollers))

    def _transaction(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def salt(self, day: str) -> bytes:
        """The day's salt for poller hashes, the same for every worker and instance."""
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO salts VALUES (?, ?)",
                            (day, secrets.token_bytes(32)))
            row = self.db.execute("SELECT salt FROM salts WHERE day = ?", (day,)).fetchone()
        return bytes(row[0])

    def keep(self, today: str, retention_days: int) -> None:
        """End the days before `today` (hashes to counts, salts deleted) and delete the
        days past the retention."""
        oldest = (dt.date.fromisoformat(today) - dt.timedelta(days=retention_days)).isoformat()
        with self._lock, self._transaction() as db:
            db.execute("INSERT INTO pollers SELECT day, path, client, count(*) FROM "
                       "poller_hashes WHERE day < ? GROUP BY day, path, client "
                       "ON CONFLICT DO UPDATE SET "
                       "distinct_count=distinct_count+excluded.distinct_count", (today,))
            db.execute("DELETE FROM poller_hashes WHERE day < ?", (today,))
            db.execute("DELETE FROM salts WHERE day < ?", (today,))
            for table in ("totals", "reported", "pollers"):
                db.execute(f"DELETE FROM {table} WHERE day < ?", (oldest,))  # noqa: S608

    def _select(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    def totals(self, first: str, last: str) -> list[Total]:
        rows = self._select("SELECT * FROM totals WHERE day BETWEEN ? AND ? "
                               "ORDER BY day, path, kind, client", (first, last))
        return [Total(*row) for row in rows]

    def reported(self, first: str, last: str) -> list[Count]:
        rows = self._select("SELECT day, path, client, sum(subscribers) FROM reported "
                               "WHERE day BETWEEN ? AND ? GROUP BY day, path, client "
                               "ORDER BY day, path, client", (first, last))
        return [Count(*row) for row in rows]

    def pollers(self, first: str, last: str) -> list[Count]:
        rows = self._select(
            "SELECT day, path, client, sum(n) FROM (SELECT day, path, client, "
            "distinct_count AS n FROM pollers WHERE day BETWEEN ?1 AND ?2 UNION ALL "
            "SELECT day, path, client, count(*) FROM poller_hashes WHERE day BETWEEN ?1 AND ?2 "
            "GROUP BY day, path, client) GROUP BY day, path, client "
            "ORDER BY day, path, client", (first, last))
        return [Count(*row) for row in rows]

    @staticmethod
    def _subscribers(columns: str, group: str, where: str) -> str:
        """SQL for (group..., subscribers): reported counts plus distinct pollers, with
        `columns` selected (they may name aliases) grouped by `group` (the aliases).
        Every argument is one of this module's constants, never a request's text."""
        parts = [f"SELECT {columns}, {n} FROM {table} WHERE {where} GROUP BY {group}"  # noqa: S608
                 for n, table in (("sum(subscribers) AS n", "reported"),
                                  ("sum(distinct_count)", "pollers"),
                                  ("count(*)", "poller_hashes"))]
        union = " UNION ALL ".join(parts)
        return f"SELECT {group}, sum(n) FROM ({union}) GROUP BY {group}"  # noqa: S608

    def by_client(self, first: str, last: str, scope: str) -> list[ClientDay]:
        """Each client's numbers each day, over the feeds of `scope` ("": all)."""
        where = "day BETWEEN ?1 AND ?2" + (f" AND {SCOPE} = ?3" if scope else "")
        args = (first, last, scope) if scope else (first, last)
        merged: dict[tuple[str, str], list] = {}
        for day, client, kind, *numbers in self._select(
                "SELECT day, client, kind, sum(requests), sum(ok), sum(not_modified), "  # noqa: S608
                f"sum(bytes_sent), sum(bytes_saved) FROM totals WHERE {where} "
                "GROUP BY day, client, kind", args):
            merged[(day, client)] = [kind, *numbers, 0]
        for day, client, n in self._select(
                self._subscribers("day, client", "day, client", where), args):
            merged.setdefault((day, client), ["aggregator", 0, 0, 0, 0, 0, 0])[-1] += n
        return [ClientDay(day, client, *row) for (day, client), row in sorted(merged.items())]

    def by_scope(self, first: str, last: str) -> list[ScopeDay]:
        """Each scope's numbers each day."""
        where = "day BETWEEN ?1 AND ?2"
        merged: dict[tuple[str, str], list[int]] = {}
        for scope, day, requests, not_modified in self._select(
                f"SELECT {SCOPE} AS scope, day, sum(requests), sum(not_modified) "  # noqa: S608
                f"FROM totals WHERE {where} GROUP BY scope, day", (first, last)):
            merged[(scope, day)] = [requests, not_modified, 0]
        for scope, day, n in self._select(
                self._subscribers(f"{SCOPE} AS scope, day", "scope, day", where),
                (first, last)):
            merged.setdefault((scope, day), [0, 0, 0])[2] += n
        return [ScopeDay(scope, day, *row) for (scope, day), row in sorted(merged.items())]

    def imported(self, source: str) -> int:
        """How many bytes of the log `source` were imported already (0: none)."""
        rows = self._select("SELECT offset FROM imports WHERE source = ?", (source,))
        return int(rows[0][0]) if rows else 0
