"""The audience statistics in PostgreSQL: one `StatsStore` for instances on several machines.

`PgStats` runs the SQL of `statsstore.SqlStats` (the same upserts and reads as the
SQLite file, so the same batches give the same numbers) on the `feedsvc_stats_*`
tables of `pglink.SCHEMA`.  Every worker of every instance adds to the same rows:
counts add up, a reported count keeps the latest of the day per (feed, aggregator,
feed id), and the day's salt is one row, so a poller's hash is the same on every
machine and is counted once.  Text columns compare bytewise (`COLLATE "C"`), as
SQLite's do, so rows come back in the same order.

Ending a day moves its poller hashes into counts with one statement (`DELETE ...
RETURNING` feeding the insert), so two instances ending the same day at once never
count a hash twice; late hashes of an ended day keep the larger count (statsstore).
The database lost while serving costs no request: `PgLink` fails at once while it
reconnects in the background, and the counter keeps its tallies (bounded) until a
flush gets through (audience.py).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import psycopg

from .pglink import PgLink
from .statsstore import END_SALTS, PAST_RETENTION, SqlStats, StatsUnavailable, oldest_kept

T = TypeVar("T")

_NAMED = re.compile(r":([a-z]+)\b")
END_HASHES = (
    "WITH gone AS (DELETE FROM feedsvc_stats_poller_hashes WHERE day < %s "
    "RETURNING day, path, client) "
    "INSERT INTO feedsvc_stats_pollers SELECT day, path, client, count(*) FROM gone "
    "GROUP BY day, path, client ON CONFLICT (day, path, client) DO UPDATE SET "
    "distinct_count = GREATEST(feedsvc_stats_pollers.distinct_count, "
    "excluded.distinct_count)")


class PgStats(SqlStats):
    """The stats store in PostgreSQL, shared by every instance (see the module docstring).
    Each method is one transaction; StatsUnavailable when the database cannot be used
    now (lost, or refusing the statement)."""

    PREFIX = "feedsvc_stats_"

    def __init__(self, url: str):
        self.link = PgLink(url, "statistics")
        self.where = self.link.where

    def _q(self, sql: str) -> str:
        return _NAMED.sub(r"%(\1)s", super()._q(sql).replace("?", "%s"))

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        return self.link.run_as(work, lambda why: StatsUnavailable(
            f"{self.where}: the statistics cannot be used now ({why}); retrying with backoff"))

    def _select(self, sql: str, args: tuple | dict) -> list[tuple]:
        query = self._q(sql)
        return self._run(lambda conn: conn.execute(query, args).fetchall())

    def _write(self, steps: list[tuple[str, list[tuple]]]) -> None:
        queries = [(self._q(sql), rows) for sql, rows in steps]

        def work(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                for query, rows in queries:
                    cur.executemany(query, rows)
        self._run(work)

    def keep(self, today: str, retention_days: int) -> None:
        """End the days before `today` (hashes to counts, salts deleted) and delete the
        days past the retention."""
        oldest = oldest_kept(today, retention_days)

        def work(conn: psycopg.Connection) -> None:
            conn.execute(END_HASHES, (today,))
            conn.execute(self._q(END_SALTS), (today,))
            for sql in PAST_RETENTION:
                conn.execute(self._q(sql), (oldest,))
        self._run(work)

    def close(self) -> None:
        self.link.close()
