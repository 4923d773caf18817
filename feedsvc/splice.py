"""A feed written again keeps the bytes of the entries its last version shares with it
(a speed trick: an edit writes the one entry that changed, not the fifty of its feeds).

Every writer puts a feed's entries last, one after another, each written the same
whatever its neighbours (`feeds.Writer.entry_start`, `entry_sep`, `entries_end`).  So a
document is its head, its entries and its tail; the entries of the last version whose
`key` (a hash of every field of the `feeds.Entry`, made once per entry and build by
feedmaker) is unchanged are cut out of its bytes, the others and the head and tail
come from the plain writers run on a feed holding only those (the head does not
depend on which entries a feed holds).  A cut that does not
find exactly the entries expected (a body quoting a writer's markers, raw HTML in an RSS
CDATA section) falls back to the plain path.  tests/test_tricks.py holds it to
`feeds.render`, byte for byte.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import fields, replace
from operator import attrgetter
from typing import NamedTuple

from . import feeds
from .documents import decompress

Key = int     # an entry's splice key (see `key`)


class Last(NamedTuple):
    """A feed's last version in every format: the keys of its entries, in order, and
    each format's gzip bytes."""
    keys: tuple[Key, ...]
    gzip: dict[str, bytes]             # writer name -> the document's gzip bytes


def key(entry: feeds.Entry) -> Key:
    """What the entry's bytes are made from, in every format: Python's hash of all its
    fields, its dates as ISO 8601 with their offsets (all any writer takes of them).
    Strings hash by the process's keyed SipHash, so two entries that differ share a key
    with odds of about 2**-64; keys are only compared with keys made by the same process
    (`publish.Publisher` keeps them in memory, never stored)."""
    return hash(tuple(v.isoformat() if isinstance(v, dt.datetime) else v
                      for v in _FIELDS(entry)))


_FIELDS = attrgetter(*(f.name for f in fields(feeds.Entry)))


def render(feed: feeds.Feed, keys: tuple[Key, ...], last: Last | None) -> dict[str, bytes]:
    """What `feeds.render(feed)` gives (`keys`: the key of each of its entries), writing
    only the entries `last` does not hold."""
    kept = {k: i for i, k in enumerate(last.keys)} if last else {}
    fresh = [e for e, k in zip(feed.entries, keys, strict=True) if k not in kept]
    if last is None or len(fresh) == len(feed.entries) or set(last.gzip) != set(feed.self_urls):
        return feeds.render(feed)
    written = fresh or [feed.entries[0]]    # (none to write: one shows where the head ends)
    made = feeds.render(replace(feed, entries=tuple(written)))
    out = {name: _splice(feeds.WRITERS[name], doc, len(written), last.gzip[name], keys, kept,
                         len(last.keys))
           for name, doc in made.items()}
    return feeds.render(feed) if None in out.values() else out  # type: ignore[return-value]


def _splice(writer: feeds.Writer, doc: bytes, written: int, old_gzip: bytes,
            keys: tuple[Key, ...], kept: dict[Key, int], old_count: int) -> bytes | None:
    """The document of entries `keys`: the head, tail and `written` entries of `doc`,
    the kept ones cut from the last version (None: a cut is not to be trusted)."""
    new, old = _cut(writer, doc, written), _cut(writer, decompress(old_gzip), old_count)
    if new is None or old is None:
        return None
    head, fresh, tail = new
    taken = iter(fresh)
    return head + writer.entry_sep.join(
        old[1][kept[k]] if k in kept else next(taken) for k in keys) + tail


def _cut(writer: feeds.Writer, doc: bytes, count: int
         ) -> tuple[bytes, list[bytes], bytes] | None:
    """`doc` as (head, its `count` entries, tail), or None if its entry markers are not
    exactly `count`."""
    start, sep, end = writer.entry_start, writer.entry_sep, doc.rfind(writer.entries_end)
    head, *pieces = doc[:end].split(start) if start and end > 0 else [b""]
    if len(pieces) != count or not all(p.endswith(sep) for p in pieces[:-1]):
        return None
    cut = len(sep)
    entries = [start + p[:-cut] for p in pieces[:-1]] if cut else [start + p for p in pieces]
    if cut:
        entries.append(start + pieces[-1])
    return head, entries, doc[end:]
