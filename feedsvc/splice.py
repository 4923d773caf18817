"""A feed written again keeps the bytes of the entries its last version shares with it
(a speed trick: an edit writes the one entry that changed, not the fifty of its feeds).

Every writer puts a feed's entries last, one after another, each written the same
whatever its neighbours (`feeds.Writer.entry_start`, `entry_sep`, `entries_end`).  So a
document is its head, its entries and its tail; the entries of the last version whose
`key` (a hash of every field of the `feeds.Entry`, made once per entry and build by
feedmaker) is unchanged are cut out of its bytes, the others and the head and tail
come from the plain writers run on a feed holding only those (the head does not
depend on which entries a feed holds).  A cut that does not find exactly the entries
expected (a body quoting a writer's markers, raw HTML in an RSS CDATA section) falls back
to the plain path.  The entries of the last documents spliced or cut stay cut (`HELD`),
so the next edit of the same feeds neither gunzips nor cuts.  tests/test_tricks.py
holds both to `feeds.render`, byte for byte.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import fields, replace
from operator import attrgetter
from typing import NamedTuple

from . import feeds
from .documents import decompress, pack
from .lru import LRU

Key = int     # an entry's splice key (see `key`)


class Last(NamedTuple):
    """A feed's last version in every format: the keys of its entries, in order, and
    each format's gzip bytes and identity ETag."""
    keys: tuple[Key, ...]
    gzip: dict[str, bytes]             # writer name -> the document's gzip bytes
    etags: dict[str, str]              # writer name -> its ETag (see HELD)


def key(entry: feeds.Entry) -> Key:
    """What the entry's bytes are made from, in every format: Python's hash of all its
    fields as text (`_text`).  Strings hash by the process's keyed SipHash, so two
    entries that differ share a key with odds of about 2**-64; keys are only compared
    with keys made by the same process (`publish.Publisher` keeps them in memory, never
    stored)."""
    return hash(tuple(map(_text, _FIELDS(entry))))


def _text(value: object) -> object:
    """A field as text, or a tuple of texts: dates as ISO 8601 with their offsets (all any
    writer takes of them), numbers as digits (Python hashes an int modulo 2**61 - 1, so
    5 and 5 + 2**61 - 1 would share a key)."""
    if value.__class__ is str:
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return tuple(map(_text, value))
    return str(value) if isinstance(value, int) else value


_FIELDS = attrgetter(*(f.name for f in fields(feeds.Entry)))


def packed(feed: feeds.Feed, keys: tuple[Key, ...], last: Last | None
           ) -> list[tuple[str, bytes]]:
    """What `feeds.render(feed)` gives (`keys`: the key of each of its entries), writing
    only the entries `last` does not hold, as `documents.pack` gives it (ETag, gzip
    bytes), in the order of the feed's formats; the entries of each spliced document are
    held by its ETag, for the next splice of the same feed (see HELD)."""
    out = []
    for doc, entries in _render(feed, keys, last).values():
        etag, gz = pack(doc)
        if entries is not None:
            HELD.put(etag, entries)
        out.append((etag, gz))
    return out


def _render(feed: feeds.Feed, keys: tuple[Key, ...], last: Last | None
            ) -> dict[str, tuple[bytes, list[bytes] | None]]:
    """Each format's document and, if it was spliced, its entries' bytes."""
    kept = {k: i for i, k in enumerate(last.keys)} if last else {}
    fresh = [e for e, k in zip(feed.entries, keys, strict=True) if k not in kept]
    if last is None or len(fresh) == len(feed.entries) or set(last.gzip) != set(feed.self_urls):
        return _plain(feed)
    written = fresh or [feed.entries[0]]    # (none to write: one shows where the head ends)
    made = feeds.render(replace(feed, entries=tuple(written)))
    out = {name: _splice(feeds.WRITERS[name], doc, len(written), last.gzip[name],
                         last.etags[name], keys, kept, len(last.keys))
           for name, doc in made.items()}
    return _plain(feed) if None in out.values() else out  # type: ignore[return-value]


def _plain(feed: feeds.Feed) -> dict[str, tuple[bytes, list[bytes] | None]]:
    return {name: (doc, None) for name, doc in feeds.render(feed).items()}


def _splice(writer: feeds.Writer, doc: bytes, written: int, old_gzip: bytes, old_etag: str,
            keys: tuple[Key, ...], kept: dict[Key, int], old_count: int
            ) -> tuple[bytes, list[bytes]] | None:
    """The document of entries `keys` and their bytes: the head, tail and `written`
    entries of `doc`, the kept ones from the last version, as HELD keeps them or cut from
    its bytes (None: a cut is not to be trusted)."""
    new = _cut(writer, doc, written)
    old = HELD.get(old_etag)
    if old is None or len(old) != old_count:
        cut = _cut(writer, decompress(old_gzip), old_count)
        old = cut[1] if cut else None
        if old is not None:
            HELD.put(old_etag, old)
    if new is None or old is None:
        return None
    head, fresh, tail = new
    taken = iter(fresh)
    entries = [old[kept[k]] if k in kept else next(taken) for k in keys]
    return head + writer.entry_sep.join(entries) + tail, entries


# The entries' bytes of the feed documents this process spliced or cut last, by the
# identity ETag of each (a hash of its bytes): a feed spliced again from them needs
# neither gunzip nor cut, about 6 ms of a 50 ms one-article refresh at 10k articles (an
# edit rewrites about 15 feeds, ~350 KB each on the bench's corpus).  A refresh of many
# scopes splices in the pool's workers: what they hold ends with them.
HELD: LRU[str, list[bytes]] = LRU(32, 32 << 20, lambda entries: sum(map(len, entries)))


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
