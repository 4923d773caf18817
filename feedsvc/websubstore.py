"""The WebSub hub's state: subscriptions, the last bytes of each topic, pending deliveries,
intents waiting for verification, and the subscription rate limit's counts.

`SubscriptionStore` is the interface the hub uses; `SqliteStore` keeps it in
`websub.sqlite` in the state directory, shared by every worker (and instance) on
it, so subscriptions and undelivered changes survive restarts (pgwebsub.py keeps
the same in PostgreSQL, for instances on several machines).  Nothing the hub has
accepted lives only in a process's memory: an intent answered 202 is verified by
whichever worker claims it, even if the one that accepted it died.

Exactly once per change and subscriber comes from three rules, each one SQL
transaction (`BEGIN IMMEDIATE`: one writer at a time, across processes):
- `record` takes a topic's new bytes only if its ETag differs from the stored one
  and it was scanned later than the stored one (`seen`): every worker reports
  the same change, one records it; a slow worker never brings back older bytes.
  Each change queues one pending row per live subscription (and external hub),
  or moves an existing row to the newest version: a subscriber behind gets the
  latest bytes once, not every version.
- `claim` marks due rows as taken until a deadline: no other worker sends them
  meanwhile; a worker that dies loses its claim at the deadline, and the row is
  sent again (at least once across crashes).
- `done` removes a row only if no newer version was queued while it was sent.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from typing import Protocol

from .statefile import StateFile, close_quietly, connect, damaged

log = logging.getLogger("feedsvc")
NAME = "websub.sqlite"

CLAIM_SECONDS = 60.0        # a claimed delivery is free again after this (its sender died)
FIRST_RETRY = 0.5           # seconds before the first retry; doubled each time
LONGEST_RETRY = 60.0
POLL_SECONDS = 0.25         # how often a dispatcher looks for work other processes queued

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, callback TEXT NOT NULL,
    host TEXT NOT NULL, secret BLOB, expires REAL NOT NULL, delivered INTEGER NOT NULL,
    UNIQUE (topic, callback));
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY, version INTEGER NOT NULL, etag TEXT NOT NULL,
    seen REAL NOT NULL, content_type TEXT NOT NULL, gzip BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    kind TEXT NOT NULL, target TEXT NOT NULL, topic TEXT NOT NULL,
    version INTEGER NOT NULL, attempts INTEGER NOT NULL, due REAL NOT NULL,
    since REAL NOT NULL, claimed REAL NOT NULL,
    PRIMARY KEY (kind, target, topic));
CREATE INDEX IF NOT EXISTS pending_due ON pending (due);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY, mode TEXT NOT NULL, topic TEXT NOT NULL,
    callback TEXT NOT NULL, lease_seconds INTEGER NOT NULL, secret BLOB,
    since REAL NOT NULL, claimed REAL NOT NULL, UNIQUE (topic, callback));
CREATE TABLE IF NOT EXISTS rates (
    client TEXT NOT NULL, minute INTEGER NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (client, minute));
"""
MAX_INTENTS = 100_000       # intents waiting for verification; beyond, requests get 503


@dataclass(frozen=True)
class TopicBytes:
    """A topic's document as one worker serves it."""
    topic: str                  # absolute URL
    etag: str
    content_type: str
    gzip: bytes


@dataclass(frozen=True)
class Subscription:
    """One verified subscriber of one topic, with its lease."""
    topic: str
    callback: str
    secret: bytes | None
    lease_seconds: int


@dataclass(frozen=True)
class Intent:
    """A subscription or unsubscription request the hub accepted (202), to be verified."""
    mode: str                   # subscribe | unsubscribe
    callback: str
    topic: str
    lease_seconds: int
    secret: bytes | None


@dataclass(frozen=True)
class HeldIntent:
    """An intent one worker claimed for verification until the claim's deadline; `key`
    and `since` name it in the store (a newer intent for the same pair has a new
    `since`, and is kept when this one is settled)."""
    key: int
    since: float
    intent: Intent


class StoreDown(Exception):
    """The store cannot be used now (a shared database lost); the hub tries again later."""


@dataclass(frozen=True)
class Job:
    """One claimed delivery: to a subscription (kind "sub", `target` its id) or a publish
    ping to an external hub (kind "ping", `target` the hub's URL)."""
    kind: str
    target: str
    topic: str
    version: int
    attempts: int
    since: float
    callback: str               # where to send it
    secret: bytes | None
    content_type: str
    gzip: bytes


def retry_delay(attempts: int) -> float:
    """Seconds before the next try of a delivery that failed after `attempts` retries."""
    return min(LONGEST_RETRY, FIRST_RETRY * 2 ** attempts)


class SubscriptionStore(Protocol):
    """What the hub needs from its storage (SQLite here, PostgreSQL in pgwebsub.py).
    Any method may raise StoreDown."""

    def subscribe(self, sub: Subscription, host: str, now: float) -> None: ...
    def unsubscribe(self, topic: str, callback: str) -> None: ...
    def counts(self, topic: str, host: str, now: float) -> tuple[int, int]: ...
    def record(self, changes: list[TopicBytes], seen: float, pings: tuple[str, ...],
               now: float) -> int: ...
    def claim(self, now: float, limit: int) -> list[Job]: ...
    def done(self, job: Job) -> None: ...
    def failed(self, job: Job, now: float, retry_seconds: float) -> bool: ...
    def expire(self, now: float) -> int: ...
    def intend(self, intent: Intent, now: float) -> bool: ...
    def claim_intents(self, now: float, limit: int) -> list[HeldIntent]: ...
    def settle(self, held: HeldIntent) -> None: ...
    def allow(self, client: str, minute: int, per_minute: int) -> bool: ...
    def active(self, now: float) -> dict[str, int]: ...

    def watch(self, wake: threading.Event) -> float:
        """Set `wake` when another process queues work, where the store can tell; the
        seconds a dispatcher may wait between looks when nothing wakes it."""
        ...

    def close(self) -> None: ...


class SqliteStore:
    """`SubscriptionStore` in `<state_dir>/websub.sqlite` (in memory without a state dir).
    A damaged file is set aside (`websub.sqlite.damaged-<time>`) and started afresh:
    subscribers subscribe again when their lease ends, or sooner."""

    def __init__(self, state_dir: str | None):
        self._lock = threading.Lock()   # one connection, shared by this process's threads
        try:
            self.db = self._open(state_dir)
        except sqlite3.DatabaseError as e:
            if not (state_dir and damaged(e)):
                raise
            file = StateFile(state_dir, NAME)
            aside = file.set_aside(file.identity())
            log.error("%s: damaged (%s); set aside as %s: subscriptions start afresh",
                      file.path, e, aside)
            self.db = self._open(state_dir)

    @staticmethod
    def _open(state_dir: str | None) -> sqlite3.Connection:
        db = connect(state_dir, NAME)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.executescript(SCHEMA)
        except BaseException:
            close_quietly(db)
            raise
        return db

    def _write(self) -> _Transaction:
        return _Transaction(self.db, self._lock)

    def subscribe(self, sub: Subscription, host: str, now: float) -> None:
        """Add the subscription, or renew it (new lease and secret) if it exists."""
        with self._write() as db:
            db.execute(
                "INSERT INTO subscriptions (topic, callback, host, secret, expires, delivered)"
                " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (topic, callback) DO UPDATE SET"
                " secret = excluded.secret, expires = excluded.expires",
                (sub.topic, sub.callback, host, sub.secret, now + sub.lease_seconds))

    def unsubscribe(self, topic: str, callback: str) -> None:
        with self._write() as db:
            _drop(db, "topic = ? AND callback = ?", (topic, callback))

    def counts(self, topic: str, host: str, now: float) -> tuple[int, int]:
        """Live subscriptions to `topic`, and with callbacks on `host`."""
        with self._lock:
            per_topic = self.db.execute("SELECT count(*) FROM subscriptions WHERE topic = ?"
                                        " AND expires > ?", (topic, now)).fetchone()[0]
            per_host = self.db.execute("SELECT count(*) FROM subscriptions WHERE host = ?"
                                       " AND expires > ?", (host, now)).fetchone()[0]
        return per_topic, per_host

    def record(self, changes: list[TopicBytes], seen: float, pings: tuple[str, ...],
               now: float) -> int:
        """Take the topics' new bytes (see the module docstring) and queue their
        deliveries; the number of deliveries queued."""
        queued = 0
        with self._write() as db:
            for change in changes:
                row = db.execute("SELECT version, etag, seen FROM topics WHERE topic = ?",
                                 (change.topic,)).fetchone()
                if row is not None and (row[1] == change.etag or row[2] > seen):
                    continue            # already recorded, or older than what was
                version = row[0] + 1 if row else 1
                targets = [] if row is None else [("sub", str(i)) for (i,) in db.execute(
                    "SELECT id FROM subscriptions WHERE topic = ? AND expires > ?",
                    (change.topic, now))] + [("ping", hub) for hub in pings]
                # the bytes only when someone gets them (first sight of a topic: nothing
                # changed); a start records every feed, and most have no subscriber
                db.execute("INSERT OR REPLACE INTO topics VALUES (?, ?, ?, ?, ?, ?)",
                           (change.topic, version, change.etag, seen, change.content_type,
                            change.gzip if targets else b""))
                db.executemany(
                    "INSERT INTO pending VALUES (?, ?, ?, ?, 0, ?, ?, 0)"
                    " ON CONFLICT DO UPDATE SET version = excluded.version, attempts = 0,"
                    " due = excluded.due, since = excluded.since",
                    [(kind, target, change.topic, version, now, now)
                     for kind, target in targets])
                queued += len(targets)
        return queued

    def claim(self, now: float, limit: int) -> list[Job]:
        """Up to `limit` due deliveries nobody holds, now held by the caller."""
        if limit <= 0:
            return []
        with self._lock:                # most polls find nothing: no write transaction
            due = self.db.execute("SELECT 1 FROM pending WHERE due <= ? AND claimed <= ?"
                                  " LIMIT 1", (now, now)).fetchone()
        if due is None:
            return []
        with self._write() as db:
            rows = db.execute(
                "SELECT p.kind, p.target, p.topic, t.version, p.attempts, p.since,"
                " s.callback, s.secret, t.content_type, t.gzip, s.expires, s.delivered"
                " FROM pending p JOIN topics t ON t.topic = p.topic"
                " LEFT JOIN subscriptions s ON p.kind = 'sub' AND s.id = p.target"
                " WHERE p.due <= ? AND p.claimed <= ? ORDER BY p.due LIMIT ?",
                (now, now, limit)).fetchall()
            jobs = []
            for (kind, target, topic, version, attempts, since, callback, secret, ctype,
                 gz, expires, delivered) in rows:
                key = (kind, target, topic)
                if kind == "sub" and (callback is None or expires <= now
                                      or delivered >= version):
                    db.execute("DELETE FROM pending WHERE kind = ? AND target = ? AND"
                               " topic = ?", key)      # gone, expired, or already sent
                    continue
                db.execute("UPDATE pending SET claimed = ? WHERE kind = ? AND target = ?"
                           " AND topic = ?", (now + CLAIM_SECONDS, *key))
                jobs.append(Job(kind, target, topic, version, attempts, since,
                                target if kind == "ping" else callback, secret, ctype, gz))
        return jobs

    def done(self, job: Job) -> None:
        """`job` was delivered: forget it, unless a newer version is queued meanwhile."""
        with self._write() as db:
            key = (job.kind, job.target, job.topic)
            db.execute("DELETE FROM pending WHERE kind = ? AND target = ? AND topic = ?"
                       " AND version <= ?", (*key, job.version))
            db.execute("UPDATE pending SET claimed = 0 WHERE kind = ? AND target = ? AND"
                       " topic = ?", key)
            if job.kind == "sub":
                db.execute("UPDATE subscriptions SET delivered = max(delivered, ?)"
                           " WHERE id = ?", (job.version, job.target))

    def failed(self, job: Job, now: float, retry_seconds: float) -> bool:
        """`job` failed: due again after a back-off; False once it has been retried for
        `retry_seconds` (then dropped; the subscription stays)."""
        key = (job.kind, job.target, job.topic)
        with self._write() as db:
            if now - job.since >= retry_seconds:
                db.execute("DELETE FROM pending WHERE kind = ? AND target = ? AND topic = ?"
                           " AND version <= ?", (*key, job.version))
                db.execute("UPDATE pending SET claimed = 0 WHERE kind = ? AND target = ?"
                           " AND topic = ?", key)
                return False
            delay = retry_delay(job.attempts)
            db.execute("UPDATE pending SET attempts = attempts + 1, due = max(due, ?),"
                       " claimed = 0 WHERE kind = ? AND target = ? AND topic = ?",
                       (now + delay, *key))
        return True

    def expire(self, now: float) -> int:
        """Drop subscriptions whose lease ended, with their pending deliveries."""
        with self._write() as db:
            return _drop(db, "expires <= ?", (now,))

    def intend(self, intent: Intent, now: float) -> bool:
        """Keep `intent` until a worker verifies it (the latest intent for a topic and
        callback replaces an earlier one); False when `MAX_INTENTS` are waiting."""
        with self._write() as db:
            if db.execute("SELECT count(*) FROM intents").fetchone()[0] >= MAX_INTENTS:
                return False
            db.execute(
                "INSERT INTO intents (mode, topic, callback, lease_seconds, secret, since,"
                " claimed) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (topic, callback) DO"
                " UPDATE SET mode = excluded.mode, lease_seconds = excluded.lease_seconds,"
                " secret = excluded.secret, since = excluded.since, claimed = 0",
                (intent.mode, intent.topic, intent.callback, intent.lease_seconds,
                 intent.secret, now))
        return True

    def claim_intents(self, now: float, limit: int) -> list[HeldIntent]:
        """Up to `limit` intents nobody holds, now held by the caller for `CLAIM_SECONDS`."""
        if limit <= 0:
            return []
        with self._lock:                # most polls find nothing: no write transaction
            if self.db.execute("SELECT 1 FROM intents WHERE claimed <= ? LIMIT 1",
                               (now,)).fetchone() is None:
                return []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, since, mode, callback, topic, lease_seconds, secret FROM intents"
                " WHERE claimed <= ? ORDER BY since LIMIT ?", (now, limit)).fetchall()
            db.executemany("UPDATE intents SET claimed = ? WHERE id = ?",
                           [(now + CLAIM_SECONDS, row[0]) for row in rows])
        return [HeldIntent(key, since, Intent(*rest)) for key, since, *rest in rows]

    def settle(self, held: HeldIntent) -> None:
        """`held` was verified or refused: forget it (not a newer intent for its pair)."""
        with self._write() as db:
            db.execute("DELETE FROM intents WHERE id = ? AND since = ?",
                       (held.key, held.since))
            db.execute("UPDATE intents SET claimed = 0 WHERE id = ?", (held.key,))

    def allow(self, client: str, minute: int, per_minute: int) -> bool:
        """Count a request of `client` (a hash) in `minute`; whether it is within
        `per_minute` (a fixed window, shared by every worker on this store)."""
        with self._write() as db:
            db.execute("DELETE FROM rates WHERE minute < ?", (minute,))
            (count,) = db.execute(
                "INSERT INTO rates VALUES (?, ?, 1) ON CONFLICT (client, minute) DO UPDATE"
                " SET requests = requests + 1 RETURNING requests", (client, minute)).fetchone()
        return count <= per_minute

    def active(self, now: float) -> dict[str, int]:
        """The live subscriptions of each topic that has any."""
        with self._lock:
            return dict(self.db.execute(
                "SELECT topic, count(*) FROM subscriptions WHERE expires > ? GROUP BY topic",
                (now,)).fetchall())

    def watch(self, wake: threading.Event) -> float:
        """The workers sharing this file cannot tell each other: look every POLL_SECONDS
        (a read of a local file)."""
        return POLL_SECONDS

    def close(self) -> None:
        with self._lock:
            self.db.close()


def _drop(db: sqlite3.Connection, where: str, args: tuple) -> int:
    ids = [str(i) for (i,) in db.execute(f"SELECT id FROM subscriptions WHERE {where}",  # noqa: S608
                                         args)]
    db.executemany("DELETE FROM pending WHERE kind = 'sub' AND target = ?",
                   [(i,) for i in ids])
    db.executemany("DELETE FROM subscriptions WHERE id = ?", [(i,) for i in ids])
    return len(ids)


class _Transaction:
    """`with`: the connection inside BEGIN IMMEDIATE (committed, or rolled back on error),
    under the store's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind, value, tb) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.lock.release()
