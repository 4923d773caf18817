"""Who polls the feeds: User-Agent classification and the per-worker tally of requests.

`classify` names the client behind a User-Agent with the known-readers table
(`readers.toml`): an aggregator and the subscriber count and feed id it reports,
a feed reader, a browser or a crawler; it is memoized in a bounded LRU cache, so
a flood of distinct User-Agents costs at most `MEMO_SIZE` entries of at most
`UA_CHARS` characters.  `Tally` is what one worker counted since its last flush:
the request path adds to a dict under a lock; `Flusher` hands the tally to the
stats store every few seconds (statsstore.py merges workers and instances).
Direct pollers are kept as keyed BLAKE2b hashes of address and User-Agent with
the day's salt: no raw address is kept past the request.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import re
import threading
import time
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .statsstore import Batch, StatsStore, day_of

log = logging.getLogger("feedsvc")
UA_CHARS = 512              # longer User-Agents are classified by their first 512 characters
MEMO_SIZE = 4096            # User-Agents whose classification is kept
MAX_POLLERS = 100_000       # distinct poller hashes held between two flushes
MAX_REPORTS = 10_000        # distinct (feed, aggregator, feed id) held between two flushes
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
    return Client(reader.kind, reader.name,
                  int(count.group(1)[:9]) if count else None,
                  ident.group(1)[:FEED_ID_CHARS] if ident else "")


BOT_NAME = re.compile(r"(?i)\b([a-z][\w.-]{0,30}(?:bot|crawler|spider))\b")


def _product(user_agent: str) -> str:
    """A crawler's name: its bot token (`Googlebot`), else the first product token
    (`curl/8.5.0` is curl), at most 40 characters of letters, digits, `.`, `-`, `_`."""
    found = BOT_NAME.search(user_agent) or re.match(r"([A-Za-z][\w.-]{0,39})", user_agent)
    return found.group(1) if found else ""


@dataclass
class Tally:
    """What one worker counted since the last flush (see `Batch` for the fields)."""
    totals: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    reports: dict[tuple[str, str, str, str], tuple[int, float]] = field(default_factory=dict)
    pollers: set[tuple[str, str, str, bytes]] = field(default_factory=set)


class Counter:
    """The request path's side: `record` adds one answered request to the tally;
    `drain` takes the tally away for a flush.  Thread-safe (one lock, held for a few
    dict operations)."""

    def __init__(self, store: StatsStore, forwarded_for: bool = False):
        self.store = store
        self.forwarded_for = forwarded_for
        self._tally = Tally()
        self._lock = threading.Lock()
        self._salts: dict[str, bytes] = {}

    def observe(self, environ: dict, status: int, sent: int, full: int) -> None:
        """http.FeedApp's hook: count an answer if it is a feed's."""
        path = environ.get("PATH_INFO", "")
        if path.startswith("/feeds/"):
            address = environ.get("REMOTE_ADDR", "")
            if self.forwarded_for and "HTTP_X_FORWARDED_FOR" in environ:
                address = environ["HTTP_X_FORWARDED_FOR"].rsplit(",", 1)[-1].strip()
            self.record(path[1:], environ.get("HTTP_USER_AGENT", ""), address, status, sent,
                        full, time.time())

    def record(self, path: str, user_agent: str, address: str, status: int, sent: int,
               full: int, now: float) -> None:
        """One answer to a feed at `path`: `status` 200 or 304, `sent` body bytes,
        `full` the size of the representation (what a 304 saved)."""
        client = classify(user_agent[:UA_CHARS])
        day = day_of(now)
        key = (day, path, client.kind, client.name)
        digest = None
        if client.kind == "reader":
            salt = self._salts.get(day)
            if salt is None:
                salt = self._salts[day] = self.store.salt(day)
                self._salts = {day: salt}           # yesterday's salt is forgotten
            digest = hashlib.blake2b(f"{address}\n{user_agent[:UA_CHARS]}".encode(),
                                     key=salt, digest_size=16).digest()
        with self._lock:
            tally = self._tally
            row = tally.totals.get(key)
            if row is None:
                row = tally.totals[key] = [0, 0, 0, 0, 0]
            row[0] += 1
            if status == 304:
                row[2] += 1
                row[4] += full
            else:
                row[1] += 1
                row[3] += sent
            if client.subscribers is not None and len(tally.reports) < MAX_REPORTS:
                tally.reports[(day, path, client.name, client.feed_id)] = \
                    (client.subscribers, now)
            elif digest is not None and len(tally.pollers) < MAX_POLLERS:
                tally.pollers.add((day, path, client.name, digest))

    def drain(self) -> Batch:
        with self._lock:
            tally, self._tally = self._tally, Tally()
        return Batch({k: tuple(v) for k, v in tally.totals.items()},  # type: ignore[misc]
                     tally.reports, tally.pollers)

    def flush(self) -> None:
        batch = self.drain()
        if batch.totals or batch.reports or batch.pollers:
            self.store.add(batch)


class Flusher(threading.Thread):
    """Flushes a Counter every `seconds`, closes ended days and prunes old ones hourly,
    and once more when the process exits."""

    def __init__(self, counter: Counter, seconds: float, retention_days: int):
        super().__init__(name="feedsvc-stats", daemon=True)
        self.counter = counter
        self.seconds = seconds
        self.retention_days = retention_days
        self._stop = threading.Event()
        self._kept_at = 0.0

    def run(self) -> None:
        atexit.register(self.counter.flush)
        while not self._stop.wait(self.seconds):
            self.once(time.time())

    def once(self, now: float) -> None:
        try:
            self.counter.flush()
            if now - self._kept_at > 3600:
                self.counter.store.keep(day_of(now), self.retention_days)
                self._kept_at = now
        except Exception:       # noqa: BLE001 - statistics never take serving down
            log.exception("statistics: could not write to the stats store")

    def stop(self) -> None:
        self._stop.set()
