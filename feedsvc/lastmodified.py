"""The Last-Modified rule: which second a document's bytes show, and what is recorded.

Pure functions on typed values, one rule for every store (`validators` keeps it in
SQLite, `pgstore` in PostgreSQL).  The rule:

- A second given to some bytes of a document is never given to other bytes of
  it: each version claims a second later than every second claimed before for
  that document, so an If-Modified-Since carrying the time of some bytes never
  matches other, newer ones.
- A second is claimed only once it has begun, never ahead of the clock (RFC
  9110 8.8.2.1): the second in which the bytes were first seen, or, when the
  document changed twice within one second, the next second as soon as it
  comes.  Until then the version is served with its ETag and no Last-Modified
  (for the rest of that second).  A version replaced before then claims
  nothing, so a busy minute cannot push Last-Modified ahead of the clock.
- A worker whose data is older than what is recorded writes nothing (`verdict_of`).
"""
from __future__ import annotations

from typing import NamedTuple


class Stamp(NamedTuple):
    """What the validators record for one document."""
    etag: str                   # its current bytes
    first_seen: float           # when this state first saw them (Unix time)
    second: int | None          # the Last-Modified they show; None until they claim one
    claimed: int                # the latest second ever claimed for the document
    seen: float                 # when the data they were made from was scanned


def floored(theirs: Stamp | None, mine: Stamp) -> Stamp:
    """A record merged with what this worker knew: the bytes of the later scan, the latest
    claim of both, and no second that is not later than every second the other side
    claimed for other bytes (those bytes claim a new one)."""
    if theirs is None:
        return mine
    claimed = max(theirs.claimed, mine.claimed)
    newer, older = (mine, theirs) if mine.seen > theirs.seen else (theirs, mine)
    if newer.etag == older.etag:
        second = newer.second if newer.second is not None else older.second
        if second is not None and second < claimed and second not in (theirs.second,
                                                                      mine.second):
            second = None
    else:
        second = newer.second if newer.second is not None and \
            newer.second > older.claimed else None
    return newer._replace(second=second, claimed=claimed)


class Moment(NamedTuple):
    """When and how a worker stamps."""
    now: float                  # `clock` time
    seen: float                 # when the data the bytes were made from was scanned
    settling: float | None      # no new second until then (the file was made again)
    ahead: bool                 # a second may be given before it begins (see `stamp`)


class Verdict(NamedTuple):
    """What one document shows, and what the validators record for it."""
    second: int | None          # its Last-Modified, None while it may show none
    stamp: Stamp | None         # its record; None: we are behind, nothing is written


def verdicts(paths: list[str], etags: dict[str, str], known: dict[str, Stamp],
             held: dict[str, tuple[str, int | None]], moment: Moment,
             out: dict[str, int | None]) -> tuple[dict[str, Stamp], set[str]]:
    """Each path's second into `out` (`verdict_of`); the stamps to write, and the paths
    whose data is behind the recorded state (nothing recorded for them).  Both stores
    decide with this one function."""
    rows: dict[str, Stamp] = {}
    behind: set[str] = set()
    for path in paths:
        old = known.get(path)
        verdict = verdict_of(etags[path], old, held.get(path), moment)
        out[path] = verdict.second
        if verdict.stamp is None:
            behind.add(path)
        elif verdict.stamp != old:
            rows[path] = verdict.stamp
    return rows, behind


def verdict_of(etag: str, old: Stamp | None, mine: tuple[str, int | None] | None,
               moment: Moment) -> Verdict:
    """The second of the bytes `etag` of a document recorded as `old` (if at all), which
    this worker showed with `mine` (ETag, second) if at all.  The rule itself, for every
    store (pgstore applies it too)."""
    if old and old.etag == etag:
        return _same_bytes(old, moment)
    if old and moment.seen <= old.seen:     # we are behind (a tie too): write nothing
        if mine and mine[0] == etag:
            return Verdict(mine[1], None)
        if moment.ahead:                    # a file needs a time: one before theirs
            return Verdict((old.claimed + 1 if old.second is None else old.second) - 1, None)
        return Verdict(None, None)
    return _new_bytes(etag, old, moment)


def _same_bytes(old: Stamp, moment: Moment) -> Verdict:
    """Bytes already recorded: their second, claimed now if it has come."""
    new = old
    if old.second is None and moment.settling is None:    # its second may have come
        second = max(int(old.first_seen), old.claimed + 1)
        if second <= int(moment.now) or moment.ahead:
            new = old._replace(second=second, claimed=second)
    return Verdict(new.second, new)


def _new_bytes(etag: str, old: Stamp | None, moment: Moment) -> Verdict:
    """Bytes not recorded before: a second later than every one claimed, if it has come."""
    now, now_s = moment.now, int(moment.now)
    second = max(now_s, old.claimed + 1) if old else now_s
    new = Stamp(etag, now, second, second, moment.seen) \
        if (second <= now_s and moment.settling is None) or moment.ahead \
        else Stamp(etag, now, None, old.claimed if old else 0, moment.seen)
    return Verdict(new.second, new)
