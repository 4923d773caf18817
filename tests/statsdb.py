"""Statistics stores of the kind under test, for the tests of both (`stats` fixture):
SQLite in a state directory, or PostgreSQL, and direct reads of their tables."""
from __future__ import annotations

import itertools
import os
import sqlite3

import psycopg

from feedsvc.store import open_stats

TABLES = ("totals", "reported", "poller_hashes", "pollers", "salts", "imports")


class Stats:
    """Stats stores on one shared state, of the kind under test: each `open()` is another
    worker or instance (SQLite: one state directory; PostgreSQL: one database, each
    instance its own state directory); `rows` and `dump` read the tables directly."""

    def __init__(self, root, url: str):
        self.root, self.url = root, url
        self.made: list = []

    def open(self):
        store = open_stats(str(self.root / ("state" if not self.url else
                                             f"state{len(self.made)}")), self.url)
        self.made.append(store)
        return store

    def _query(self, sql: str) -> list[tuple]:
        if self.url:
            with psycopg.connect(self.url) as conn:
                return conn.execute(sql.replace("FROM ", "FROM feedsvc_stats_")).fetchall()
        db = sqlite3.connect(self.root / "state" / "stats.sqlite")
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def rows(self, table: str) -> int:
        return self._query(f"SELECT count(*) FROM {table}")[0][0]

    def dump(self) -> str:
        return "\n".join(repr(row) for table in TABLES
                         for row in self._query(f"SELECT * FROM {table}"))  # noqa: S608


def _database_sorting_like_people(cluster) -> str:
    """A new database whose text sorts in English order (ICU), not bytewise as SQLite's
    does: what many servers have, and what the store must not let through."""
    name = f"icu{os.getpid()}_{next(_databases)}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                     "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    return cluster.url(name)


_databases = itertools.count()


def stats_of(request, tmp_path):
    """The body of a `stats` fixture parametrized with "sqlite" and "postgresql" (the
    PostgreSQL kind needs the `pg_cluster` fixture imported where it is used)."""
    url = ""
    if request.param == "postgresql":
        url = _database_sorting_like_people(request.getfixturevalue("pg_cluster"))
    made = Stats(tmp_path, url)
    yield made
    for store in made.made:
        store.close()
