"""The WebSub hub's `SubscriptionStore` in PostgreSQL, shared by instances on several machines.

The same rules as `websubstore.SqliteStore` (its docstring says why they make each
change go once to each subscriber), with PostgreSQL's locks in place of SQLite's one
writer:
- `record` holds a transaction-level advisory lock, so instances reporting the same
  change queue it once, and one whose data is older than the recorded bytes queues
  nothing;
- `claim` and `claim_intents` take rows with `FOR UPDATE SKIP LOCKED` and stamp a
  deadline on them: two instances polling at once take different rows, and a row
  whose claimer died is free again at its deadline;
- `done` and `failed` change one row under its row lock, conditioned on the version
  they sent, so a newer version queued meanwhile stays queued.
Two links (pglink.PgLink): one for the requests to /websub, one for the dispatcher,
so a burst of deliveries never makes a subscriber's request wait.  A lost server
raises `StoreDown` (PgLink logs the loss and reconnects in the background).

Work one instance queues (a change, an intent to verify) is announced with
`NOTIFY feedsvc_websub` in the same transaction; each dispatcher LISTENs on a third
connection (`Listener`) and wakes at once, so an idle instance looks at the tables
every `IDLE_SECONDS` instead of four times a second.  While that connection is lost
it wakes its dispatcher every `POLL_SECONDS`, as without notifications.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

from .pglink import BACKOFF, PgLink, Unavailable, connect
from .websubstore import (
    CLAIM_SECONDS,
    MAX_INTENTS,
    POLL_SECONDS,
    HeldIntent,
    Intent,
    Job,
    StoreDown,
    Subscription,
    TopicBytes,
    retry_delay,
)

T = TypeVar("T")
RECORD_LOCK = 0x66656566            # advisory lock held by each `record` transaction
SUBS, TOPICS, PENDING = "feedsvc_websub_subs", "feedsvc_websub_topics", "feedsvc_websub_pending"
INTENTS, RATES = "feedsvc_websub_intents", "feedsvc_websub_rates"
_KEY = "kind = %s AND target = %s AND topic = %s"
CHANNEL = "feedsvc_websub"          # NOTIFY: work was queued
IDLE_SECONDS = 5.0                  # a dispatcher's look when nothing woke it (expiries,
                                    # deliveries whose claimer died)
NOTIFY = f"NOTIFY {CHANNEL}"


class Listener(threading.Thread):
    """Sets `wake` on every notification on CHANNEL (see the module docstring); without a
    connection, every POLL_SECONDS while it reconnects with backoff."""

    def __init__(self, url: str, wake: threading.Event):
        super().__init__(name="feedsvc-websub-listen", daemon=True)
        self.url, self.wake = url, wake
        self._closed = threading.Event()

    def run(self) -> None:
        attempt = 0
        while not self._closed.is_set():
            try:
                with connect(self.url) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake.set()             # what was queued while not listening
                    attempt = 0
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
            except psycopg.Error:
                pass
            pause = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            attempt += 1
            for _ in range(int(pause / POLL_SECONDS)):
                self.wake.set()
                if self._closed.wait(POLL_SECONDS):
                    return

    def close(self) -> None:
        self._closed.set()
        self.join(timeout=5)


class PgSubscriptions:
    """`SubscriptionStore` in the `feedsvc_websub_*` tables (pglink.SCHEMA creates them)."""

    def __init__(self, url: str):
        self.url = url
        self._requests = PgLink(url, "the WebSub hub (requests)")
        self._deliveries = PgLink(url, "the WebSub hub (deliveries)")
        self._listener: Listener | None = None

    @staticmethod
    def _run(link: PgLink, work: Callable[[psycopg.Connection], T]) -> T:
        try:
            return link.run(work)
        except Unavailable as e:
            raise StoreDown(str(e)) from e

    # -- subscriptions -------------------------------------------------------------
    def subscribe(self, sub: Subscription, host: str, now: float) -> None:
        """Add the subscription, or renew it (new lease and secret) if it exists."""
        self._run(self._requests, lambda c: c.execute(
            f"INSERT INTO {SUBS} (topic, callback, host, secret, expires, delivered)"  # noqa: S608
            " VALUES (%s, %s, %s, %s, %s, 0) ON CONFLICT (topic, callback) DO UPDATE SET"
            " secret = EXCLUDED.secret, expires = EXCLUDED.expires",
            (sub.topic, sub.callback, host, sub.secret, now + sub.lease_seconds)))

    def unsubscribe(self, topic: str, callback: str) -> None:
        self._run(self._requests, lambda c: _drop(c, "topic = %s AND callback = %s",
                                                  (topic, callback)))

    def counts(self, topic: str, host: str, now: float) -> tuple[int, int]:
        """Live subscriptions to `topic`, and with callbacks on `host`."""
        def work(c: psycopg.Connection) -> tuple[int, int]:
            row = c.execute(
                f"SELECT count(*) FILTER (WHERE topic = %s), count(*) FILTER (WHERE host = %s)"  # noqa: S608
                f" FROM {SUBS} WHERE (topic = %s OR host = %s) AND expires > %s",
                (topic, host, topic, host, now)).fetchone()
            return (row[0], row[1]) if row else (0, 0)
        return self._run(self._requests, work)

    def active(self, now: float) -> dict[str, int]:
        """The live subscriptions of each topic that has any."""
        return self._run(self._requests, lambda c: dict(c.execute(
            f"SELECT topic, count(*) FROM {SUBS} WHERE expires > %s GROUP BY topic",  # noqa: S608
            (now,)).fetchall()))

    def expire(self, now: float) -> int:
        """Drop subscriptions whose lease ended, with their pending deliveries."""
        return self._run(self._deliveries, lambda c: _drop(c, "expires <= %s", (now,)))

    # -- changes and deliveries -----------------------------------------------------
    def record(self, changes: list[TopicBytes], seen: float, pings: tuple[str, ...],
               now: float) -> int:
        """Take the topics' new bytes and queue their deliveries (see SqliteStore.record);
        the number of deliveries queued."""
        def work(c: psycopg.Connection) -> int:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (RECORD_LOCK,))
            queued = sum(_record_one(c, change, seen, pings, now) for change in changes)
            if queued:
                c.execute(NOTIFY)               # sent when the transaction commits
            return queued
        return self._run(self._deliveries, work)

    def claim(self, now: float, limit: int) -> list[Job]:
        """Up to `limit` due deliveries nobody holds, now held by the caller."""
        if limit <= 0:
            return []
        return self._run(self._deliveries, lambda c: _claim(c, now, limit))

    def done(self, job: Job) -> None:
        """`job` was delivered: forget it, unless a newer version is queued meanwhile."""
        def work(c: psycopg.Connection) -> None:
            key = (job.kind, job.target, job.topic)
            c.execute(f"DELETE FROM {PENDING} WHERE {_KEY} AND version <= %s",  # noqa: S608
                      (*key, job.version))
            c.execute(f"UPDATE {PENDING} SET claimed = 0 WHERE {_KEY}", key)  # noqa: S608
            if job.kind == "sub":
                c.execute(f"UPDATE {SUBS} SET delivered = greatest(delivered, %s)"  # noqa: S608
                          " WHERE id = %s", (job.version, int(job.target)))
        self._run(self._deliveries, work)

    def failed(self, job: Job, now: float, retry_seconds: float) -> bool:
        """`job` failed: due again after a back-off; False once it has been retried for
        `retry_seconds` (then dropped; the subscription stays)."""
        key = (job.kind, job.target, job.topic)

        def work(c: psycopg.Connection) -> bool:
            if now - job.since >= retry_seconds:
                c.execute(f"DELETE FROM {PENDING} WHERE {_KEY} AND version <= %s",  # noqa: S608
                          (*key, job.version))
                c.execute(f"UPDATE {PENDING} SET claimed = 0 WHERE {_KEY}", key)  # noqa: S608
                return False
            delay = retry_delay(job.attempts)
            c.execute(f"UPDATE {PENDING} SET attempts = attempts + 1,"  # noqa: S608
                      f" due = greatest(due, %s), claimed = 0 WHERE {_KEY}",
                      (now + delay, *key))
            return True
        return self._run(self._deliveries, work)

    # -- intents and the rate limit -------------------------------------------------
    def intend(self, intent: Intent, now: float) -> bool:
        """Keep `intent` until a worker verifies it; False when `MAX_INTENTS` wait."""
        def work(c: psycopg.Connection) -> bool:
            row = c.execute(f"SELECT count(*) FROM {INTENTS}").fetchone()  # noqa: S608
            if row and row[0] >= MAX_INTENTS:
                return False
            c.execute(
                f"INSERT INTO {INTENTS} (mode, topic, callback, lease_seconds, secret,"  # noqa: S608
                " since, claimed) VALUES (%s, %s, %s, %s, %s, %s, 0) ON CONFLICT (topic,"
                " callback) DO UPDATE SET mode = EXCLUDED.mode, lease_seconds ="
                " EXCLUDED.lease_seconds, secret = EXCLUDED.secret, since = EXCLUDED.since,"
                " claimed = 0", (intent.mode, intent.topic, intent.callback,
                                 intent.lease_seconds, intent.secret, now))
            c.execute(NOTIFY)
            return True
        return self._run(self._requests, work)

    def claim_intents(self, now: float, limit: int) -> list[HeldIntent]:
        """Up to `limit` intents nobody holds, now held by the caller for `CLAIM_SECONDS`."""
        if limit <= 0:
            return []

        def work(c: psycopg.Connection) -> list[HeldIntent]:
            rows = c.execute(
                f"UPDATE {INTENTS} SET claimed = %s WHERE id IN (SELECT id FROM {INTENTS}"  # noqa: S608
                " WHERE claimed <= %s ORDER BY since LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id, since, mode, callback, topic, lease_seconds, secret",
                (now + CLAIM_SECONDS, now, limit)).fetchall()
            return [HeldIntent(key, since, Intent(mode, callback, topic, lease,
                                                  bytes(secret) if secret else None))
                    for key, since, mode, callback, topic, lease, secret in rows]
        return self._run(self._deliveries, work)

    def settle(self, held: HeldIntent) -> None:
        """`held` was verified or refused: forget it (not a newer intent for its pair)."""
        def work(c: psycopg.Connection) -> None:
            c.execute(f"DELETE FROM {INTENTS} WHERE id = %s AND since = %s",  # noqa: S608
                      (held.key, held.since))
            c.execute(f"UPDATE {INTENTS} SET claimed = 0 WHERE id = %s", (held.key,))  # noqa: S608
        self._run(self._deliveries, work)

    def allow(self, client: str, minute: int, per_minute: int) -> bool:
        """Count a request of `client` (a hash) in `minute`; whether it is within
        `per_minute` (a fixed window, shared by every instance on this database)."""
        def work(c: psycopg.Connection) -> bool:
            c.execute(f"DELETE FROM {RATES} WHERE minute < %s", (minute,))  # noqa: S608
            row = c.execute(
                f"INSERT INTO {RATES} VALUES (%s, %s, 1) ON CONFLICT (client, minute)"  # noqa: S608
                f" DO UPDATE SET requests = {RATES}.requests + 1 RETURNING requests",
                (client, minute)).fetchone()
            return row is not None and row[0] <= per_minute
        return self._run(self._requests, work)

    def watch(self, wake: threading.Event) -> float:
        """Wake on the NOTIFY of any instance (one `Listener` per store)."""
        if self._listener is None:
            self._listener = Listener(self.url, wake)
            self._listener.start()
        return IDLE_SECONDS

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._requests.close()
        self._deliveries.close()


def _record_one(c: psycopg.Connection, change: TopicBytes, seen: float,
                pings: tuple[str, ...], now: float) -> int:
    """(Under RECORD_LOCK.)  One topic's change; the deliveries it queued."""
    row = c.execute(f"SELECT version, etag, seen FROM {TOPICS} WHERE topic = %s",  # noqa: S608
                    (change.topic,)).fetchone()
    if row is not None and (row[1] == change.etag or row[2] > seen):
        return 0                    # already recorded, or older than what was
    version = row[0] + 1 if row else 1
    targets = [] if row is None else [("sub", str(i)) for (i,) in c.execute(
        f"SELECT id FROM {SUBS} WHERE topic = %s AND expires > %s",  # noqa: S608
        (change.topic, now)).fetchall()] + [("ping", hub) for hub in pings]
    c.execute(f"INSERT INTO {TOPICS} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (topic)"  # noqa: S608
              " DO UPDATE SET version = EXCLUDED.version, etag = EXCLUDED.etag,"
              " seen = EXCLUDED.seen, content_type = EXCLUDED.content_type,"
              " gzip = EXCLUDED.gzip",
              (change.topic, version, change.etag, seen, change.content_type,
               change.gzip if targets else b""))
    if targets:
        with c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {PENDING} VALUES (%s, %s, %s, %s, 0, %s, %s, 0)"  # noqa: S608
                " ON CONFLICT (kind, target, topic) DO UPDATE SET version ="
                " EXCLUDED.version, attempts = 0, due = EXCLUDED.due, since = EXCLUDED.since",
                [(kind, target, change.topic, version, now, now) for kind, target in targets])
    return len(targets)


def _claim(c: psycopg.Connection, now: float, limit: int) -> list[Job]:
    """(In a transaction.)  Lock up to `limit` due rows others do not hold; drop the
    ones with nobody to send to, stamp a deadline on the rest."""
    rows = c.execute(
        "SELECT p.kind, p.target, p.topic, t.version, p.attempts, p.since,"  # noqa: S608
        " s.callback, s.secret, t.content_type, t.gzip, s.expires, s.delivered"
        f" FROM {PENDING} p JOIN {TOPICS} t ON t.topic = p.topic"
        f" LEFT JOIN {SUBS} s ON s.id = CASE WHEN p.kind = 'sub' THEN p.target::bigint END"
        " WHERE p.due <= %s AND p.claimed <= %s ORDER BY p.due LIMIT %s"
        " FOR UPDATE OF p SKIP LOCKED", (now, now, limit)).fetchall()
    jobs, gone, held = [], [], []
    for (kind, target, topic, version, attempts, since, callback, secret, ctype,
         gz, expires, delivered) in rows:
        key = (kind, target, topic)
        if kind == "sub" and (callback is None or expires <= now or delivered >= version):
            gone.append(key)                # gone, expired, or already sent
            continue
        held.append((now + CLAIM_SECONDS, *key))
        jobs.append(Job(kind, target, topic, version, attempts, since,
                        target if kind == "ping" else callback,
                        bytes(secret) if secret else None, ctype, bytes(gz)))
    with c.cursor() as cur:
        if gone:
            cur.executemany(f"DELETE FROM {PENDING} WHERE {_KEY}", gone)  # noqa: S608
        if held:
            cur.executemany(f"UPDATE {PENDING} SET claimed = %s WHERE {_KEY}", held)  # noqa: S608
    return jobs


def _drop(c: psycopg.Connection, where: str, args: tuple) -> int:
    """Delete the subscriptions matching `where`, with their pending deliveries."""
    ids = [str(i) for (i,) in c.execute(
        f"DELETE FROM {SUBS} WHERE {where} RETURNING id", args).fetchall()]  # noqa: S608
    if ids:
        c.execute(f"DELETE FROM {PENDING} WHERE kind = 'sub' AND target = ANY(%s)",  # noqa: S608
                  (ids,))
    return len(ids)
