"""What the service last published, by path: the record a (re)start serves from.

After each refresh that rebuilt something, `live.Service` stores a `Snapshot` in the
cache (`records` table, one key per data directory): for every ready document its
recipe (the key of its gzip bytes and ETag in the `gzdocs` table), media type and
WebSub `Link` header, and when the next scheduled article goes live (which cuts
`Cache-Control` short).  It lives in the store, not in the checkpoint file, so it is
there with SQLite or PostgreSQL alike and costs no unpickling of a corpus to read.

Two readers: `lastserved.LastServed` (the port's answers while `feedsvc serve` starts)
and `live.Service` when the data directory cannot be read.  The record is plain
builtins (dicts, lists, strings, numbers), so an older or newer feedsvc sharing the
state directory reads it or ignores it, never fails on it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Protocol

Links = tuple[tuple[str, str], ...]


class Records(Protocol):
    """The part of `cache.Cache` this module uses."""

    def get_records(self, keys: list[str]) -> dict[str, object]: ...

    def put_records_later(self, records: dict[str, object]) -> None: ...


class Published(Protocol):
    """The part of a `documents.Document` a snapshot records."""

    @property
    def recipe(self) -> str: ...

    @property
    def content_type(self) -> str: ...


@dataclass(frozen=True)
class Entry:
    """One published document: where its bytes are, and the headers only it carries."""
    recipe: str             # its key in the cache's `gzdocs` table
    content_type: str
    links: Links            # its WebSub `Link` header (feeds only), as served


@dataclass(frozen=True)
class Snapshot:
    """Every ready document published at one moment, by URL path (no leading slash)."""
    documents: dict[str, Entry]
    next_change: float | None       # Unix time the next scheduled article goes live

    def record(self) -> dict:
        return {"documents": {p: _row(e.recipe, e.content_type, e.links)
                              for p, e in self.documents.items()},
                "next_change": self.next_change}

    @classmethod
    def of(cls, value: object) -> Snapshot | None:
        """The snapshot a stored record holds; None if it is not one (another version)."""
        if not isinstance(value, dict) or not isinstance(value.get("documents"), dict):
            return None
        nxt = value.get("next_change")
        if nxt is not None and not isinstance(nxt, (int, float)):
            return None
        try:
            documents = {path: Entry(recipe, ctype, tuple((str(k), str(v)) for k, v in links))
                         for path, (recipe, ctype, links) in value["documents"].items()}
        except (TypeError, ValueError):
            return None
        if not all(isinstance(p, str) and isinstance(e.recipe, str) and
                   isinstance(e.content_type, str) for p, e in documents.items()):
            return None
        return cls(documents, nxt)


def _row(recipe: str, content_type: str, links: Links) -> list:
    return [recipe, content_type, [list(h) for h in links]]


class Recorder:
    """Makes `Snapshot.record()` of the documents a refresh publishes, re-making only the
    rows of documents that are not the objects the last record was made from (a
    one-article edit rebuilds about 25 of 1,700).  `context`: what the `links` of a path
    depend on (the base URL and hubs); when it moves, every row is made again.
    tests/test_early.py holds it to the plain `Snapshot(...).record()`."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[Published, list]] = {}  # path -> (made from, its row)
        self._context: Hashable = None

    def record(self, documents: Mapping[str, Published], links: Callable[[str], Links],
               next_change: float | None, context: Hashable) -> dict:
        last = self._rows if context == self._context else {}
        rows = {}
        for path, doc in documents.items():
            made = last.get(path)
            if made is None or made[0] is not doc:
                made = doc, _row(doc.recipe, doc.content_type, links(path))
            rows[path] = made
        self._rows, self._context = rows, context
        return {"documents": {p: row for p, (_, row) in rows.items()},
                "next_change": next_change}


def key(data_dir: str) -> str:
    """The record's key: one per data directory (a path that is not UTF-8 is spelled
    with backslash escapes: keys are text)."""
    return "published\0" + os.fsencode(data_dir).decode("utf-8", "backslashreplace")


def save_later(cache: Records, data_dir: str, record: dict) -> None:
    """Queue a snapshot's record (written after the documents it names, by the cache's
    writer)."""
    cache.put_records_later({key(data_dir): record})


def load(cache: Records, data_dir: str) -> Snapshot | None:
    """The last snapshot stored for `data_dir`, or None (never published, or unreadable)."""
    try:
        value = cache.get_records([key(data_dir)]).get(key(data_dir))
    except Exception:           # a record another version pickled: as good as none
        return None
    return Snapshot.of(value)
