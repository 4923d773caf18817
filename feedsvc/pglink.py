"""One PostgreSQL connection that survives losing the server (see `PgLink`), and the schema.

The schema is versioned in `feedsvc_schema`: each start applies the steps it lacks, in
one transaction under an advisory lock, so instances starting together upgrade it once
and operators never run SQL by hand.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

log = logging.getLogger("feedsvc")
T = TypeVar("T")
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)   # seconds between attempts while the server is lost
CONNECT_TIMEOUT = 5                     # seconds to reach the server
STATEMENT_TIMEOUT_MS = 10_000           # no refresh waits longer on one statement
SCHEMA_LOCK = 0x66656564                # advisory lock: one instance upgrades at a time

# Step n brings the schema from version n to n + 1; steps are only ever appended.
SCHEMA: list[tuple[str, ...]] = [
    ("CREATE TABLE feedsvc_stamps (path TEXT PRIMARY KEY, etag TEXT NOT NULL, "
     "first_seen DOUBLE PRECISION NOT NULL, second BIGINT, claimed BIGINT NOT NULL, "
     "seen DOUBLE PRECISION NOT NULL)",
     "CREATE TABLE feedsvc_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
     "INSERT INTO feedsvc_meta VALUES ('generation', 0)",
     "CREATE TABLE feedsvc_records (key TEXT PRIMARY KEY, value BYTEA)",
     "CREATE TABLE feedsvc_html (key TEXT PRIMARY KEY, html TEXT, summary TEXT)",
     "CREATE TABLE feedsvc_gzdocs (key TEXT PRIMARY KEY, gz BYTEA, etag TEXT)"),
    # the WebSub hub's store (pgwebsub.py)
    ("CREATE TABLE feedsvc_websub_subs (id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, "
     "callback TEXT NOT NULL, host TEXT NOT NULL, secret BYTEA, "
     "expires DOUBLE PRECISION NOT NULL, delivered BIGINT NOT NULL, UNIQUE (topic, callback))",
     "CREATE INDEX feedsvc_websub_subs_host ON feedsvc_websub_subs (host)",
     "CREATE TABLE feedsvc_websub_topics (topic TEXT PRIMARY KEY, version BIGINT NOT NULL, "
     "etag TEXT NOT NULL, seen DOUBLE PRECISION NOT NULL, content_type TEXT NOT NULL, "
     "gzip BYTEA NOT NULL)",
     "CREATE TABLE feedsvc_websub_pending (kind TEXT NOT NULL, target TEXT NOT NULL, "
     "topic TEXT NOT NULL, version BIGINT NOT NULL, attempts INTEGER NOT NULL, "
     "due DOUBLE PRECISION NOT NULL, since DOUBLE PRECISION NOT NULL, "
     "claimed DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, target, topic))",
     "CREATE INDEX feedsvc_websub_pending_due ON feedsvc_websub_pending (due)",
     "CREATE TABLE feedsvc_websub_intents (id BIGSERIAL PRIMARY KEY, mode TEXT NOT NULL, "
     "topic TEXT NOT NULL, callback TEXT NOT NULL, lease_seconds INTEGER NOT NULL, "
     "secret BYTEA, since DOUBLE PRECISION NOT NULL, claimed DOUBLE PRECISION NOT NULL, "
     "UNIQUE (topic, callback))",
     "CREATE TABLE feedsvc_websub_rates (client TEXT NOT NULL, minute BIGINT NOT NULL, "
     "requests INTEGER NOT NULL, PRIMARY KEY (client, minute))"),
    # the audience statistics (pgstats.py); text compares bytewise, as in SQLite
    ('CREATE TABLE feedsvc_stats_totals (day TEXT COLLATE "C", path TEXT COLLATE "C", '
     'kind TEXT COLLATE "C", client TEXT COLLATE "C", requests BIGINT, ok BIGINT, '
     "not_modified BIGINT, bytes_sent BIGINT, bytes_saved BIGINT, "
     "PRIMARY KEY (day, path, kind, client))",
     'CREATE TABLE feedsvc_stats_reported (day TEXT COLLATE "C", path TEXT COLLATE "C", '
     'client TEXT COLLATE "C", feed_id TEXT COLLATE "C", subscribers BIGINT, '
     "seen DOUBLE PRECISION, PRIMARY KEY (day, path, client, feed_id))",
     'CREATE TABLE feedsvc_stats_poller_hashes (day TEXT COLLATE "C", '
     'path TEXT COLLATE "C", client TEXT COLLATE "C", hash BYTEA, '
     "PRIMARY KEY (day, path, client, hash))",
     'CREATE TABLE feedsvc_stats_pollers (day TEXT COLLATE "C", path TEXT COLLATE "C", '
     'client TEXT COLLATE "C", distinct_count BIGINT, PRIMARY KEY (day, path, client))',
     'CREATE TABLE feedsvc_stats_salts (day TEXT COLLATE "C" PRIMARY KEY, salt BYTEA)',
     'CREATE TABLE feedsvc_stats_imports (source TEXT PRIMARY KEY, "offset" BIGINT)'),
    # admin access (pgadmin.py): the password's hash and the signing key, logged-out
    # sessions, failed logins
    ("CREATE TABLE feedsvc_admin_keys (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
     "CREATE TABLE feedsvc_admin_ended (nonce TEXT PRIMARY KEY, "
     "until DOUBLE PRECISION NOT NULL)",
     "CREATE TABLE feedsvc_admin_failures (who TEXT NOT NULL, "
     "at DOUBLE PRECISION NOT NULL)",
     "CREATE INDEX feedsvc_admin_failures_at ON feedsvc_admin_failures (at)"),
]


class Unavailable(Exception):
    """The database cannot be used now (lost, or waiting before the next attempt)."""


def redact(url: str) -> str:
    """The URL with its password replaced by `***`: what logs and errors show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a database URL that cannot be parsed)"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def connect(url: str) -> psycopg.Connection:
    """A connection in autocommit mode (transactions are explicit), schema brought up to
    date.  psycopg.Error when the server cannot be reached or refuses."""
    # a server gone without a word (a network partition) is noticed in seconds, not at
    # the TCP timeout: keepalives, and no unacknowledged write waits longer than 5 s
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                           options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                           keepalives=1, keepalives_idle=5, keepalives_interval=2,
                           keepalives_count=2, tcp_user_timeout=5000)
    try:
        upgrade(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def upgrade(conn: psycopg.Connection) -> int:
    """Apply the schema steps this database lacks; its version afterwards."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS feedsvc_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM feedsvc_schema").fetchone()
        version = row[0] if row and row[0] is not None else 0
        if version > len(SCHEMA):
            raise psycopg.errors.FeatureNotSupported(
                f"the database holds schema version {version}, newer than this feedsvc's "
                f"{len(SCHEMA)}: upgrade feedsvc")
        for step in SCHEMA[version:]:
            for statement in step:
                conn.execute(statement)     # (our own constants)
        if version < len(SCHEMA):
            conn.execute("DELETE FROM feedsvc_schema")
            conn.execute("INSERT INTO feedsvc_schema VALUES (%s)", (len(SCHEMA),))
    return len(SCHEMA)


class PgLink:
    """One connection for one user (the validators, or the cache), used by one thread at a
    time.  The first use connects; once lost, a background thread reconnects with backoff
    (1 s ... 30 s) and meanwhile `run` raises `Unavailable` at once, so no caller (an
    article page's first request, say) waits on a dead server.  The loss and the
    recovery are each logged once."""

    def __init__(self, url: str, what: str, conn: psycopg.Connection | None = None):
        self.url = url
        self.where = redact(url)
        self.what = what
        self.lost: str | None = None        # why, while lost
        self._conn = conn
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._retrying: threading.Thread | None = None

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """`work(conn)` in one transaction; Unavailable if the server cannot be used."""
        with self._lock:
            conn = self._ready()
            try:
                with conn.transaction():
                    return work(conn)
            except psycopg.OperationalError as e:
                self._failed(e)
                raise Unavailable(str(e)) from e
            except psycopg.Error:
                if conn.closed or conn.broken:
                    self._failed(Exception("connection closed"))
                raise

    def run_as(self, work: Callable[[psycopg.Connection], T],
               error: Callable[[str], Exception]) -> T:
        """`run`, raising `error(why)` if the database cannot be used or refuses: `why`
        is the first line of what went wrong, the URL's password redacted."""
        try:
            return self.run(work)
        except (Unavailable, psycopg.Error) as e:
            text = str(e).strip().replace(self.url, self.where)
            raise error(text.splitlines()[0] if text else type(e).__name__) from e

    def _ready(self) -> psycopg.Connection:
        """(Holding the lock.)"""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._closed.is_set() or self.lost is not None:
            raise Unavailable(self.lost or "closed")
        try:                                # the first use: connect now
            self._conn = connect(self.url)
        except psycopg.Error as e:
            self._failed(e)
            raise Unavailable(str(e)) from e
        return self._conn

    def _failed(self, error: BaseException) -> None:
        """(Holding the lock.)  Drop the connection; reconnect in the background."""
        text = str(error).strip()
        if self.lost is None:
            log.warning("%s: lost (%s); %s goes on without it (ready documents are "
                        "served), retrying with backoff", self.where,
                        text.splitlines()[0] if text else type(error).__name__, self.what)
        self.lost = text or type(error).__name__
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()
        if self._retrying is None and not self._closed.is_set():
            self._retrying = threading.Thread(target=self._reconnect, daemon=True,
                                              name=f"feedsvc-db-{self.what}")
            self._retrying.start()

    def _reconnect(self) -> None:
        for attempt in itertools.count():
            if self._closed.wait(BACKOFF[min(attempt, len(BACKOFF) - 1)]):
                return
            try:
                conn = connect(self.url)
            except psycopg.Error:
                continue
            with self._lock:
                self._retrying = None
                if self._closed.is_set():
                    conn.close()
                    return
                self._conn, self.lost = conn, None
            log.info("%s: reachable again; %s resumed", self.where, self.what)
            return

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
