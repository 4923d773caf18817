"""The numbers of the statistics page, from the stats store: one pure function per view.

`rows` joins the store's tables into one row per (day, feed, client): requests,
200s, 304s, bytes, and subscribers (reported by an aggregator, or the distinct
direct pollers of a reader).  A feed's *scope* is its path without the format
(`feeds/all` for `feeds/all.rss`, `.atom`, `.json`); the site is every scope.
The subscriber estimate of a scope on a day is the sum over its formats and
clients: an aggregator's reported count (the latest of the day per feed id),
plus one per distinct address and User-Agent of a reader that reports none.  It
is an estimate: one person polling two formats, or from two addresses, counts
twice; people behind one address with one app count once.  WebSub subscriptions
are readers too: each worker's flusher writes the hub's subscriptions per feed as
the reader "WebSub"'s reported count of the day (audience.Flusher), so they have a
history like every aggregator's.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass

from .statsstore import ClientDay, ScopeDay, StatsStore, kind_of_report

RANGES = (7, 30, 365)
COLUMNS = ("day", "feed", "client", "kind", "requests", "ok", "not_modified", "bytes_sent",
           "bytes_saved", "subscribers")


@dataclass(frozen=True)
class Row:
    """One row of the CSV and JSON exports: a day, a feed and a client's counts."""
    day: str
    feed: str
    client: str
    kind: str
    requests: int = 0
    ok: int = 0
    not_modified: int = 0
    bytes_sent: int = 0
    bytes_saved: int = 0
    subscribers: int = 0


@dataclass(frozen=True)
class Ranked:
    """A scope in the page's ranking of feeds."""
    scope: str
    subscribers: int        # on the last day with requests in the range
    requests: int
    not_modified: int


@dataclass(frozen=True)
class Reader:
    """A client in the page's table of readers and aggregators."""
    client: str
    kind: str
    requests: int
    subscribers: int        # on the last day it was seen


@dataclass(frozen=True)
class Report:
    """What the page shows for one scope ("" for the site) over `days`."""
    days: list[str]
    scope: str
    scopes: list[str]
    subscribers: dict[str, list[int]]       # client -> subscribers each day (stacked)
    answered: dict[str, list[int]]          # "200" and "304" -> requests each day
    bytes_sent: int
    bytes_saved: int
    top: list[Reader]
    ranking: list[Ranked]


def span(today: dt.date, days: int) -> list[str]:
    return [(today - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def rows(store: StatsStore, first: str, last: str) -> list[Row]:
    """Every (day, feed, client) of the range with its counts, sorted."""
    merged: dict[tuple[str, str, str], dict] = {}
    for t in store.totals(first, last):
        merged[(t.day, t.path, t.client)] = {
            "kind": t.kind, "requests": t.requests, "ok": t.ok, "not_modified": t.not_modified,
            "bytes_sent": t.bytes_sent, "bytes_saved": t.bytes_saved}
    for kind, counts in (("aggregator", store.reported(first, last)),
                         ("reader", store.pollers(first, last))):
        for c in counts:
            row = merged.setdefault((c.day, c.path, c.client), {
                "kind": kind_of_report(c.client) if kind == "aggregator" else kind})
            row["subscribers"] = row.get("subscribers", 0) + c.subscribers
    return [Row(day, path, client, **values)
            for (day, path, client), values in sorted(merged.items())]


def report(store: StatsStore, today: dt.date, days: int, scope: str) -> Report:
    """The page's numbers for `scope` ("" for the site) over the `days` up to `today`
    (summed by the store: a year of a large site is a few thousand rows here)."""
    dates = span(today, days)
    mine = store.by_client(dates[0], dates[-1], scope)
    by_scope = store.by_scope(dates[0], dates[-1])
    index = {d: n for n, d in enumerate(dates)}
    subscribers: dict[str, list[int]] = defaultdict(lambda: [0] * len(dates))
    answered = {"200": [0] * len(dates), "304": [0] * len(dates)}
    for r in mine:
        if r.subscribers:
            subscribers[r.client][index[r.day]] += r.subscribers
        answered["200"][index[r.day]] += r.ok
        answered["304"][index[r.day]] += r.not_modified
    return Report(dates, scope, sorted({s.scope for s in by_scope}),
                  dict(sorted(subscribers.items())), answered,
                  sum(r.bytes_sent for r in mine), sum(r.bytes_saved for r in mine),
                  top_readers(mine), ranking(by_scope))


def _scope(path: str) -> str:
    """`feeds/all.rss` -> `feeds/all` (as statsstore.SCOPE)."""
    stem, dot, ext = path.rpartition(".")
    return stem if dot and ext.isalpha() else path


def top_readers(found: list[ClientDay], limit: int = 15) -> list[Reader]:
    """Clients by subscribers on the last day each was seen, then by requests."""
    by_client: dict[tuple[str, str], list[ClientDay]] = defaultdict(list)
    for r in found:
        by_client[(r.client, r.kind)].append(r)
    readers = [Reader(client, kind, sum(r.requests for r in group),
                      max(group, key=lambda r: r.day).subscribers)
               for (client, kind), group in by_client.items()]
    return sorted(readers, key=lambda r: (-r.subscribers, -r.requests, r.client))[:limit]


def ranking(found: list[ScopeDay]) -> list[Ranked]:
    """Scopes by subscribers on the last day each has numbers, then by requests."""
    by_scope: dict[str, list[ScopeDay]] = defaultdict(list)
    for r in found:
        by_scope[r.scope].append(r)
    ranked = [Ranked(scope, max(group, key=lambda r: r.day).subscribers,
                     sum(r.requests for r in group), sum(r.not_modified for r in group))
              for scope, group in by_scope.items()]
    return sorted(ranked, key=lambda r: (-r.subscribers, -r.requests, r.scope))


def as_csv(found: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in found:
        writer.writerow([_cell(v) for v in asdict(r).values()])
    return out.getvalue()


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: a leading = + - @ is quoted away (client
    names come from User-Agents)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def as_json(found: list[Row], first: str, last: str) -> str:
    return json.dumps({"first": first, "last": last, "columns": list(COLUMNS),
                       "rows": [list(asdict(r).values()) for r in found]},
                      ensure_ascii=False, separators=(",", ":"))
