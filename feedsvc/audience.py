"""Who polls the feeds: User-Agent classification and the per-worker tally of requests.

`classify` names the client behind a User-Agent with the known-readers table
(`readers.toml`): an aggregator and the subscriber count and feed id it reports,
a feed reader, a browser or a crawler; it is memoized in a bounded LRU cache, so
a flood of distinct User-Agents costs at most `MEMO_SIZE` entries of at most
`UA_CHARS` characters.  `Tally` is what one worker counted since its last flush:
the request path adds to a dict under a lock, keyed by feed and User-Agent (at
most `MAX_KEYS`, then unnamed); `Flusher` classifies it and hands it to the
stats store every few seconds (statsstore.py merges workers and instances).
Direct pollers are written as keyed BLAKE2b hashes of address and User-Agent
with the day's salt: an address stays in the worker's memory until the next
flush (while the store cannot be written, with its tally, at most MAX_HELD_DAYS)
and is never written or logged.  A reported count over MAX_REPORTED is not taken.
"""
from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import itertools
import logging
import re
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .statsstore import WEBSUB, Batch, StatsStore, StatsUnavailable, day_of

log = logging.getLogger("feedsvc")
UA_CHARS = 512              # longer User-Agents are classified by their first 512 characters
MEMO_SIZE = 4096            # User-Agents whose classification is kept
MAX_KEYS = 10_000           # distinct (feed, User-Agent) held between two flushes
MAX_POLLERS = 50_000        # distinct (feed, User-Agent, address) held between two flushes
MAX_REPORTED = 10_000_000   # subscribers one aggregator may report for one feed
MAX_HELD_DAYS = 3           # days of tallies held while the store cannot be written
FEED_ID_CHARS = 64


class Reader(NamedTuple):
    """One row of readers.toml, its expressions compiled."""
    name: str
    kind: str                   # "aggregator" or "reader"
    match: re.Pattern
    subscribers: re.Pattern | None
    feed_id: re.Pattern | None
    home: str
    source: str
    examples: tuple[str, ...]


class Client(NamedTuple):
    """What a User-Agent says about the client: `kind` is aggregator, reader, browser or
    crawler; `subscribers` is None unless an aggregator reported a count."""
    kind: str
    name: str
    subscribers: int | None = None
    feed_id: str = ""


def load_readers(path: Path = Path(__file__).with_name("readers.toml")) -> tuple[Reader, ...]:
    """The known-readers table; a bad row names the file, the row and the field."""
    rows = tomllib.loads(path.read_text("utf-8"))["reader"]
    out = []
    for number, row in enumerate(rows, 1):
        try:
            out.append(Reader(row["name"], row["kind"], re.compile(row["match"]),
                              re.compile(row["subscribers"]) if row["subscribers"] else None,
                              re.compile(row["feed_id"]) if row["feed_id"] else None,
                              row["home"], row["source"], tuple(row["examples"])))
        except (KeyError, re.error) as e:
            raise ValueError(f"{path}: reader row {number}: {e}; see the file's header") from e
    return tuple(out)


READERS = load_readers()
CRAWLER = re.compile(r"(?i)bot\b|bot/|crawl|spider|slurp|curl/|wget/|python-|go-http|"
                     r"okhttp|java/|libwww|httpclient|axios/|node-fetch|scrapy|headless")
BROWSER = re.compile(r"^Mozilla/5\.0 \([^)]*\) .*(Gecko|Chrome|Safari|Firefox|Edg)/?")


@lru_cache(maxsize=MEMO_SIZE)
def classify(user_agent: str) -> Client:
    """The client behind `user_agent` (cut to UA_CHARS by the caller): the first known
    reader that matches, else a crawler, a browser, or a reader we do not know (a
    direct poller, counted like the known ones)."""
    for reader in READERS:
        if reader.match.search(user_agent):
            return _reported(reader, user_agent)
    if not user_agent or CRAWLER.search(user_agent):
        return Client("crawler", _product(user_agent) or "(none)")
    if BROWSER.search(user_agent):
        return Client("browser", "browser")
    return Client("reader", "other")


def _reported(reader: Reader, user_agent: str) -> Client:
    count = reader.subscribers.search(user_agent) if reader.subscribers else None
    ident = reader.feed_id.search(user_agent) if reader.feed_id else None
    return Client(reader.kind, reader.name, _plausible(count.group(1)) if count else None,
                  ident.group(1)[:FEED_ID_CHARS] if ident else "")


def _plausible(digits: str) -> int | None:
    """A reported subscriber count, or None past MAX_REPORTED (a User-Agent is a claim
    anyone can make: one line must not put a feed at the top of the ranking)."""
    count = int(digits) if len(digits) <= 8 else MAX_REPORTED + 1
    return count if count <= MAX_REPORTED else None


BOT_NAME = re.compile(r"(?i)\b([a-z][\w.-]{0,30}(?:bot|crawler|spider))\b")


def _product(user_agent: str) -> str:
    """A crawler's name: its bot token (`Googlebot`), else the first product token
    (`curl/8.5.0` is curl), at most 40 characters of letters, digits, `.`, `-`, `_`."""
    found = BOT_NAME.search(user_agent) or re.match(r"([A-Za-z][\w.-]{0,39})", user_agent)
    return found.group(1) if found else ""


@dataclass
class Tally:
    """What one worker counted on one day since the last flush, raw: per (path,
    User-Agent) a row [200s, 304s, bytes sent, bytes saved, last seen, the User-Agent,
    whether it is a reader's], and the readers' (path, User-Agent, address) triples,
    which `Counter.drain` turns into keyed hashes (addresses are never written)."""
    day: str
    day_starts: float
    day_ends: float
    hits: dict[tuple[str, str], list] = field(default_factory=dict)
    seen: set[tuple[str, str, str]] = field(default_factory=set)


def _tally(now: float) -> Tally:
    day = day_of(now)
    starts = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()
    return Tally(day, starts, starts + 86400)


class Counter:
    """The request path's side: `record` adds one answered request to the tally (a dict
    increment under a lock); `drain` takes the tallies away for a flush and classifies
    them there, off the request path."""

    def __init__(self, store: StatsStore, forwarded_for: bool = False):
        self.store = store
        self.forwarded_for = forwarded_for
        self._tally = _tally(time.time())
        self._ended: list[Tally] = []
        self._lock = threading.Lock()

    def observe(self, environ: dict, status: int, sent: int, full: int) -> None:
        """http.FeedApp's hook: count an answer if it is a feed's.  This runs on every
        feed request: a known (feed, User-Agent) row of today is added to here, in
        place; anything else goes through `record`."""
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/feeds/"):
            return
        now = time.time()
        key = (path, environ.get("HTTP_USER_AGENT", "")[:UA_CHARS])
        with self._lock:
            tally = self._tally
            row = tally.hits.get(key) if now < tally.day_ends else None
            if row is not None:
                if status == 304:
                    row[1] += 1
                    row[3] += full
                else:
                    row[0] += 1
                    row[2] += sent
                row[4] = now
                if row[6] and len(tally.seen) < MAX_POLLERS:
                    tally.seen.add((path, row[5], self._address(environ)))
                return
        self.record(path, key[1], self._address(environ), status, sent, full, now)

    def _address(self, environ: dict) -> str:
        if self.forwarded_for and "HTTP_X_FORWARDED_FOR" in environ:
            return environ["HTTP_X_FORWARDED_FOR"].rsplit(",", 1)[-1].strip()
        return environ.get("REMOTE_ADDR", "")

    def record(self, path: str, user_agent: str, address: str, status: int, sent: int,
               full: int, now: float) -> None:
        """One answer to the feed at `path` (`/feeds/...`): `status` 200 or 304, `sent`
        body bytes, `full` the size of the representation (what a 304 saved), at Unix
        time `now`."""
        key = (path, user_agent[:UA_CHARS])
        reader = classify(key[1]).kind == "reader"
        with self._lock:
            tally = self._tally
            if not tally.day_starts <= now < tally.day_ends:
                tally = self._next_day(now)
            row = _row(tally, key, reader, now)
            if status == 304:
                row[1] += 1
                row[3] += full
            else:
                row[0] += 1
                row[2] += sent
            row[4] = now
            if row[6] and len(tally.seen) < MAX_POLLERS:
                tally.seen.add((path, row[5], address))

    def _next_day(self, now: float) -> Tally:
        """Start the tally of `now`'s day (the lock is held)."""
        self._ended.append(self._tally)
        self._tally = _tally(now)
        return self._tally

    def drain(self) -> list[Tally]:
        """Take the tallies so far away (the request path starts new ones)."""
        with self._lock:
            tallies = [*self._ended, self._tally]
            self._ended, self._tally = [], _tally(self._tally.day_ends - 1)
        return tallies

    def put_back(self, tallies: list[Tally]) -> None:
        """Merge tallies that could not be written back into the held ones, to be written
        by a later flush: within the same bounds as counting (MAX_KEYS, MAX_POLLERS per
        day), and at most MAX_HELD_DAYS days (older ones are dropped, and logged)."""
        with self._lock:
            held = {t.day: t for t in (*self._ended, self._tally)}
            for tally in tallies:
                into = held.get(tally.day)
                if into is None:
                    into = held[tally.day] = Tally(tally.day, tally.day_starts, tally.day_ends)
                    self._ended.append(into)
                _merge(tally, into)
            self._ended.sort(key=lambda t: t.day)
            while len(self._ended) >= MAX_HELD_DAYS:
                lost = self._ended.pop(0)
                log.warning("statistics: the counts of %s are dropped: the stats store "
                            "could not be written since that day", lost.day)

    def _batch(self, tally: Tally) -> Batch:
        totals: dict[tuple[str, str, str, str], list[int]] = {}
        reports: dict[tuple[str, str, str, str], tuple[int, float]] = {}
        for (path, ua), (ok, nm, sent, saved, seen, _, _) in tally.hits.items():
            client = classify(ua)
            row = totals.setdefault((tally.day, path[1:], client.kind, client.name), [0] * 5)
            for n, value in enumerate((ok + nm, ok, nm, sent, saved)):
                row[n] += value
            report = (tally.day, path[1:], client.name, client.feed_id)
            if client.subscribers is not None and seen >= reports.get(report, (0, 0.0))[1]:
                reports[report] = (client.subscribers, seen)
        salt = b""
        pollers = set()
        for path, ua, address in tally.seen:
            client = classify(ua)
            if client.kind == "reader":
                salt = salt or self.store.salt(tally.day)
                digest = hashlib.blake2b(f"{address}\n{ua}".encode(), key=salt,
                                         digest_size=16).digest()
                pollers.add((tally.day, path[1:], client.name, digest))
        return Batch({k: (v[0], v[1], v[2], v[3], v[4]) for k, v in totals.items()},
                     reports, pollers)

    def flush(self, mark: tuple[str, int] | None = None) -> str:
        """Write the tallies to the store (with a log import's `mark`, in one go); the
        earliest day written ("" for none).  If the store cannot take them, they are put
        back for the next flush and the error is raised."""
        tallies = self.drain()
        try:
            batches = [self._batch(t) for t in tallies if t.hits]
            if batches or mark is not None:
                self.store.add(batches, mark)
        except BaseException:
            self.put_back(tallies)
            raise
        return min((t.day for t in tallies if t.hits), default="")


def _row(tally: Tally, key: tuple[str, str], reader: bool, now: float) -> list:
    """The tally's row for (path, User-Agent), made if new; once the tally holds
    MAX_KEYS rows a new User-Agent is counted in its path's unnamed row (a flood)."""
    row = tally.hits.get(key)
    if row is None:
        if len(tally.hits) >= MAX_KEYS:
            key, reader = (key[0], ""), False
            row = tally.hits.get(key)
        if row is None:
            row = tally.hits[key] = [0, 0, 0, 0, now, key[1], reader]
    return row


def _merge(tally: Tally, into: Tally) -> None:
    """Add the counts of `tally` to `into` (the same day), as if counted there."""
    for key, (ok, nm, sent, saved, seen, _, reader) in tally.hits.items():
        row = _row(into, key, reader, seen)
        for n, value in enumerate((ok, nm, sent, saved)):
            row[n] += value
        row[4] = max(row[4], seen)
    room = MAX_POLLERS - len(into.seen)
    into.seen.update(itertools.islice(tally.seen - into.seen, max(room, 0)))


class Flusher(threading.Thread):
    """Flushes a Counter every `seconds` (and once more when the process exits), ends
    the days before today as soon as one ends, and deletes days past the retention.
    With `websub` (the hub's live subscriptions per feed path, None when they cannot be
    read now), each flush also writes them as the reader WebSub's reported count of the
    day, when they changed since this worker last wrote them, or the day did."""

    def __init__(self, counter: Counter, seconds: float, retention_days: int,
                 websub: Callable[[], dict[str, int] | None] | None = None):
        super().__init__(name="feedsvc-stats", daemon=True)
        self.counter = counter
        self.seconds = seconds
        self.retention_days = retention_days
        self.websub = websub
        self._stop = threading.Event()
        self._kept_at = 0.0
        self._pushed: tuple[str, dict[str, int]] = ("", {})   # day, counts last written
        self.failing = False            # since the last flush that could not write

    def run(self) -> None:
        atexit.register(self.last)
        while not self._stop.wait(self.seconds):
            self.once(time.time())

    def once(self, now: float) -> None:
        """One flush (and, at start, hourly and when a day ends, `keep`).  A store that
        cannot be written is logged once until it can be again; the counts wait."""
        try:
            earliest = self.counter.flush()
            self.push_websub(now)
            # at start, hourly, and at once when a day ends (its poller hashes go) or a
            # late flush brought hashes of an ended day (under a salt made again)
            today = day_of(now)
            if now - self._kept_at > 3600 or today != day_of(self._kept_at) or \
                    (earliest and earliest < today):
                self.counter.store.keep(today, self.retention_days)
                self._kept_at = now
        except Exception as e:      # noqa: BLE001 - statistics never take serving down
            if not self.failing:
                log.warning("statistics: could not write to the stats store (%s); the "
                            "counts are held in memory and written once it can be",
                            e, exc_info=not isinstance(e, StatsUnavailable))
            self.failing = True
            return
        if self.failing:
            log.info("statistics: the stats store is written again")
        self.failing = False

    def push_websub(self, now: float) -> None:
        """Write the hub's subscriptions per feed as WebSub's count of the day: those
        that changed (a feed no longer subscribed to, as 0), or all on a new day."""
        active = self.websub() if self.websub else None
        if active is None:
            return
        day, active = day_of(now), {path: n for path, n in active.items() if n}
        was_day, was = self._pushed
        changed = dict(active) if day != was_day else {
            **{path: 0 for path in was if path not in active},
            **{path: n for path, n in active.items() if was.get(path) != n}}
        if changed:
            self.counter.store.add([Batch({}, {(day, path, WEBSUB, ""): (n, now)
                                               for path, n in changed.items()}, set())])
        self._pushed = (day, active)

    def last(self) -> None:
        """The flush when the process exits: what cannot be written now is lost (logged)."""
        try:
            self.counter.flush()
        except Exception as e:      # noqa: BLE001
            log.warning("statistics: the last counts of this worker are lost (%s)", e)

    def stop(self) -> None:
        """Stop flushing, after a last flush now rather than at exit (`web.close_app`)."""
        self._stop.set()
        atexit.unregister(self.last)
        self.last()
