"""Where the audience statistics persist: the `StatsStore` interface and its SQLite file.

Every worker of every instance adds its tally (`Batch`) to one store, which merges
them: counts add up, a reported subscriber count keeps the latest of the day per
(feed, aggregator, feed id), poller hashes are a set.  `SQLiteStats` is the store
of one machine (`stats.sqlite` in the state directory, shared by the instances
that share that directory); a store shared between machines implements the same
methods.  Days are UTC dates (`2026-12-05`).  `keep` ends days: the poller hashes
of days before today become a count and are deleted with the day's salt, and
days older than the retention are deleted.  Hashes of a day that already ended (a
worker's last seconds flushed after another ended the day, a late log import) are
under a new salt and cannot be matched with the readers already counted: the day
keeps the larger of its count and theirs (never a reader twice; a reader first seen
in such a late batch may be missed).
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
WEBSUB = "WebSub"       # the reader a hub's subscriptions are counted as (a reported count)
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
    """A day's counts of one feed for one client, as the store holds them."""
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


class StatsUnavailable(Exception):
    """The store cannot be used now (a database being reconnected): the message names it."""


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
    def close(self) -> None: ...


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

# The SQL both stores run, written once: `{t}` is the store's table prefix, `?` a
# positional and `:first` a named parameter (`SqlStats._q` turns them into the
# driver's style).  Each upsert names its conflict and qualifies the stored row.
ADD_TOTALS = (
    "INSERT INTO {t}totals VALUES (?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (day, path, kind, client) DO UPDATE SET "
    "requests = {t}totals.requests + excluded.requests, "
    "ok = {t}totals.ok + excluded.ok, "
    "not_modified = {t}totals.not_modified + excluded.not_modified, "
    "bytes_sent = {t}totals.bytes_sent + excluded.bytes_sent, "
    "bytes_saved = {t}totals.bytes_saved + excluded.bytes_saved")
ADD_REPORTED = (
    "INSERT INTO {t}reported VALUES (?,?,?,?,?,?) "
    "ON CONFLICT (day, path, client, feed_id) DO UPDATE SET "
    "subscribers = excluded.subscribers, seen = excluded.seen "
    "WHERE excluded.seen >= {t}reported.seen")
ADD_HASHES = "INSERT INTO {t}poller_hashes VALUES (?,?,?,?) ON CONFLICT DO NOTHING"
MARK = ('INSERT INTO {t}imports VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET '
        '"offset" = excluded."offset"')
# the day's salt, made by the first to ask: one statement, so no other instance's
# `keep` can come between making it and reading it
SALT = ("INSERT INTO {t}salts VALUES (?, ?) ON CONFLICT (day) DO UPDATE SET "
        "salt = {t}salts.salt RETURNING salt")
TOTALS = ("SELECT day, path, kind, client, requests, ok, not_modified, bytes_sent, "
          "bytes_saved FROM {t}totals WHERE day BETWEEN :first AND :last "
          "ORDER BY day, path, kind, client")
REPORTED = ("SELECT day, path, client, CAST(sum(subscribers) AS BIGINT) FROM {t}reported "
            "WHERE day BETWEEN :first AND :last GROUP BY day, path, client "
            "ORDER BY day, path, client")
POLLERS = (
    "SELECT day, path, client, CAST(sum(n) AS BIGINT) FROM (SELECT day, path, client, "
    "distinct_count AS n FROM {t}pollers WHERE day BETWEEN :first AND :last UNION ALL "
    "SELECT day, path, client, count(*) FROM {t}poller_hashes "
    "WHERE day BETWEEN :first AND :last GROUP BY day, path, client) AS u "
    "GROUP BY day, path, client ORDER BY day, path, client")
IMPORTED = 'SELECT "offset" FROM {t}imports WHERE source = ?'
END_SALTS = "DELETE FROM {t}salts WHERE day < ?"
PAST_RETENTION = ("DELETE FROM {t}totals WHERE day < ?",
                  "DELETE FROM {t}reported WHERE day < ?",
                  "DELETE FROM {t}pollers WHERE day < ?")


def kind_of_report(client: str) -> str:
    """The kind of a client known only by reported counts: WebSub's hub, or an aggregator."""
    return "websub" if client == WEBSUB else "aggregator"


def oldest_kept(today: str, retention_days: int) -> str:
    """The first day kept with `retention_days` of statistics ending at `today`."""
    return (dt.date.fromisoformat(today) - dt.timedelta(days=retention_days)).isoformat()


class SqlStats:
    """The reading, adding and merging both stores share (one SQL text for each), over
    two primitives a store provides: `_select` and `_write` (one transaction)."""

    PREFIX = ""                 # the store's table names: PREFIX + "totals", ...

    def _q(self, sql: str) -> str:
        """`sql` (one of this module's constants) for this store's tables and driver."""
        return sql.replace("{t}", self.PREFIX)

    def _select(self, sql: str, args: tuple | dict) -> list[tuple]:
        raise NotImplementedError

    def _write(self, steps: list[tuple[str, list[tuple]]]) -> None:
        """Run each (sql, rows) with every row, all in one transaction."""
        raise NotImplementedError

    def add(self, batches: list[Batch], mark: tuple[str, int] | None = None) -> None:
        """Add the batches and, for a log import, record `mark` (the log, bytes read):
        all in one transaction, so a log is never counted twice nor half marked.  Rows
        go in key order, so two instances adding at once lock them in the same order."""
        steps: list[tuple[str, list[tuple]]] = []
        for batch in batches:
            steps += [(ADD_TOTALS, sorted((*k, *v) for k, v in batch.totals.items())),
                      (ADD_REPORTED, sorted((*k, *v) for k, v in batch.reports.items())),
                      (ADD_HASHES, sorted(batch.pollers))]
        if mark is not None:
            steps.append((MARK, [mark]))
        self._write([(sql, rows) for sql, rows in steps if rows])

    def salt(self, day: str) -> bytes:
        """The day's salt for poller hashes, the same for every worker and instance."""
        return bytes(self._select(SALT, (day, secrets.token_bytes(32)))[0][0])

    def totals(self, first: str, last: str) -> list[Total]:
        return [Total(*row) for row in self._select(TOTALS, {"first": first, "last": last})]

    def reported(self, first: str, last: str) -> list[Count]:
        return [Count(*row) for row in self._select(REPORTED, {"first": first, "last": last})]

    def pollers(self, first: str, last: str) -> list[Count]:
        return [Count(*row) for row in self._select(POLLERS, {"first": first, "last": last})]

    @staticmethod
    def _subscribers(columns: str, group: str, where: str) -> str:
        """SQL for (group..., subscribers): reported counts plus distinct pollers, with
        `columns` selected (they may name aliases) grouped by `group` (the aliases).
        Every argument is one of this module's constants, never a request's text."""
        parts = [f"SELECT {columns}, {n} FROM {{t}}{table} WHERE {where} GROUP BY {group}"  # noqa: S608
                 for n, table in (("sum(subscribers) AS n", "reported"),
                                  ("sum(distinct_count)", "pollers"),
                                  ("count(*)", "poller_hashes"))]
        union = " UNION ALL ".join(parts)
        return f"SELECT {group}, CAST(sum(n) AS BIGINT) FROM ({union}) AS u GROUP BY {group}"  # noqa: S608

    def by_client(self, first: str, last: str, scope: str) -> list[ClientDay]:
        """Each client's numbers each day, over the feeds of `scope` ("": all)."""
        where = "day BETWEEN :first AND :last" + (f" AND {SCOPE} = :scope" if scope else "")
        args = {"first": first, "last": last, "scope": scope}
        merged: dict[tuple[str, str], list] = {}
        for day, client, kind, *numbers in self._select(
                "SELECT day, client, kind, CAST(sum(requests) AS BIGINT), "  # noqa: S608
                "CAST(sum(ok) AS BIGINT), CAST(sum(not_modified) AS BIGINT), "
                "CAST(sum(bytes_sent) AS BIGINT), CAST(sum(bytes_saved) AS BIGINT) "
                f"FROM {{t}}totals WHERE {where} GROUP BY day, client, kind", args):
            merged[(day, client)] = [kind, *numbers, 0]
        for day, client, n in self._select(
                self._subscribers("day, client", "day, client", where), args):
            merged.setdefault((day, client), [kind_of_report(client), 0, 0, 0, 0, 0, 0]
                              )[-1] += n
        return [ClientDay(day, client, *row) for (day, client), row in sorted(merged.items())]

    def by_scope(self, first: str, last: str) -> list[ScopeDay]:
        """Each scope's numbers each day."""
        where = "day BETWEEN :first AND :last"
        args = {"first": first, "last": last}
        merged: dict[tuple[str, str], list[int]] = {}
        for scope, day, requests, not_modified in self._select(
                f"SELECT {SCOPE} AS scope, day, CAST(sum(requests) AS BIGINT), "  # noqa: S608
                f"CAST(sum(not_modified) AS BIGINT) FROM {{t}}totals WHERE {where} "
                "GROUP BY scope, day", args):
            merged[(scope, day)] = [requests, not_modified, 0]
        for scope, day, n in self._select(
                self._subscribers(f"{SCOPE} AS scope, day", "scope, day", where), args):
            merged.setdefault((scope, day), [0, 0, 0])[2] += n
        return [ScopeDay(scope, day, *row) for (scope, day), row in sorted(merged.items())]

    def imported(self, source: str) -> int:
        """How many bytes of the log `source` were imported already (0: none)."""
        rows = self._select(IMPORTED, (source,))
        return int(rows[0][0]) if rows else 0


class SQLiteStats(SqlStats):
    """The stats store in one SQLite file (WAL: the page reads while workers write)."""

    def __init__(self, state_dir: str | None):
        self.db = statefile.open_with(state_dir, FILE, SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        statefile.close_quietly(self.db)

    def _select(self, sql: str, args: tuple | dict) -> list[tuple]:
        with self._lock:
            return self.db.execute(self._q(sql), args).fetchall()

    def _write(self, steps: list[tuple[str, list[tuple]]]) -> None:
        with self._lock, self._transaction() as db:
            for sql, rows in steps:
                db.executemany(self._q(sql), rows)

    def _transaction(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def keep(self, today: str, retention_days: int) -> None:
        """End the days before `today` (hashes to counts, salts deleted) and delete the
        days past the retention."""
        with self._lock, self._transaction() as db:
            db.execute("INSERT INTO pollers SELECT day, path, client, count(*) FROM "
                       "poller_hashes WHERE day < ? GROUP BY day, path, client "
                       "ON CONFLICT DO UPDATE SET distinct_count="
                       "max(distinct_count, excluded.distinct_count)", (today,))
            db.execute("DELETE FROM poller_hashes WHERE day < ?", (today,))
            db.execute(self._q(END_SALTS), (today,))
            for sql in PAST_RETENTION:
                db.execute(self._q(sql), (oldest_kept(today, retention_days),))
