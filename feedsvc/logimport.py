"""`feedsvc stats import-log`: nginx access logs (combined format, `.gz` too) into the stats.

Lines for a feed URL (`/feeds/all.<format>`, `/feeds/category/<slug>.<format>`,
`/feeds/author/<slug>.<format>`, slugs as python-slugify makes them) answered 200 or
304 count as the live service counts them
(audience.Counter), each at its own time, its address hashed with that day's
salt and then forgotten.  A 304's saved bytes are the size of the last 200 of the
same feed seen in the file (0 before one).  Importing is idempotent: the store
remembers, per log (named by a hash of its first line), how many bytes were
read, so reading the same file again adds nothing and reading it after nginx
appended to it adds only the new lines.  Lines that do not parse are counted
and skipped.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import unquote, urlsplit

from .audience import Counter
from .statsstore import StatsStore

# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent"
COMBINED = re.compile(
    r'(?P<addr>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+)'
    r'(?: [^"]*)?" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?:[^"\\]|\\.)*" '
    r'"(?P<ua>(?:[^"\\]|\\.)*)"')
ESCAPED = re.compile(r"\\x([0-9A-Fa-f]{2})")     # nginx writes `"` as \x22
# the shapes of feed URLs; anything else under /feeds/ (a probe, a typo) is not a feed
FEED_PATH = re.compile(r"/feeds/(?:all|(?:category|author)/[a-z0-9]+(?:-[a-z0-9]+)*)"
                       r"\.[a-z]{2,8}")
BATCH_LINES = 20_000


@dataclass(frozen=True)
class Imported:
    """What one import did: lines read, counted, and not understood."""
    lines: int
    counted: int
    skipped: int
    already: bool           # the whole file had been imported before


def _open(path: str) -> IO[bytes] | gzip.GzipFile:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _lines(f: IO[bytes] | gzip.GzipFile, skip: int) -> Iterator[tuple[int, bytes]]:
    """(offset after the line, line) for every whole line after the first `skip` bytes."""
    offset = 0
    for line in f:
        offset += len(line)
        if offset <= skip:
            continue
        if not line.endswith(b"\n"):
            return                  # nginx is still writing it: the next import reads it
        yield offset, line


def import_log(path: str, store: StatsStore) -> Imported:
    """Add the feed requests of the nginx log at `path` to `store` (see the docstring)."""
    with _open(path) as f:
        first = f.readline()
    source = hashlib.sha256(first).hexdigest()
    done = store.imported(source)
    counter = Counter(store)
    sizes: dict[str, int] = {}
    lines = counted = skipped = 0
    offset = done
    with _open(path) as f:
        for offset, raw in _lines(f, done):
            lines += 1
            result = _count(raw.decode("utf-8", "replace"), counter, sizes)
            counted += result is True
            skipped += result is None
            if lines % BATCH_LINES == 0:
                counter.flush((source, offset))
    counter.flush((source, offset))
    return Imported(lines, counted, skipped, already=lines == 0 and done > 0)


def _count(line: str, counter: Counter, sizes: dict[str, int]) -> bool | None:
    """Count one log line: True if counted, False if not a feed answer, None if the
    line is not in the combined format."""
    m = COMBINED.match(line)
    if m is None:
        return None
    try:
        when = dt.datetime.strptime(m["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        path = unquote(urlsplit(m["target"]).path)
    except ValueError:
        return None
    status = int(m["status"])
    if not FEED_PATH.fullmatch(path) or m["method"] not in ("GET", "HEAD") or \
            status not in (200, 304):
        return False
    sent = int(m["bytes"]) if m["bytes"] != "-" else 0
    if status == 200 and m["method"] == "GET":
        sizes[path] = sent
    ua = ESCAPED.sub(lambda e: chr(int(e[1], 16)), m["ua"])
    counter.record(path, ua, m["addr"], status, sent, sizes.get(path, 0), when)
    return True
