"""The last published state as ready responses, for the port while `feedsvc serve` starts.

`feedsvc serve` reads and renders the site before its workers start.  Meanwhile the
start-up listener (early.py) answers from what was last published, when the state
directory (or the database) holds it: the `published.Snapshot` names each document's
recipe, media type and Link header; its bytes and ETag are in the cache (`gzdocs`),
its Last-Modified in the validators.  A request reads both for its one path, and the
response is made by `http.Resource` and answered by `http.FeedApp`, as on the ready path.

A document is served only while the validators still record the ETag of the bytes the
cache holds for it: those are the newest bytes any worker or instance showed for that
path, and their second is the one they were shown with (none yet: no Last-Modified).
So no client gets bytes older than it got before the restart, nor a false 304.  A path
whose validators moved on (the build under way published new bytes, another instance
did), whose bytes were pruned, or that is not in the snapshot answers None (503).
Nothing is written.  The store stays open until the listener closes, while granian
forks its first workers: they inherit the connections but never use or close them
(see `early.Early._forget`).
"""
from __future__ import annotations

import logging
import threading

from . import published
from .documents import Document
from .http import INFLATED, NOT_YET, CacheControl, Resource
from .settings import Settings
from .store import Store, open_store

log = logging.getLogger("feedsvc")


class LastServed:
    """The responses of the documents last published, read from the store when asked.
    It is its own `resources` (FeedApp asks `source.resources.get(path)`)."""

    def __init__(self, store: Store, snapshot: published.Snapshot, max_age: int):
        self._store: Store | None = store
        self._index = snapshot.documents
        self.cache_control = CacheControl(max_age)
        self.cache_control.next_change = snapshot.next_change
        self.resources = self
        self._lock = threading.Lock()       # one reader of the store at a time

    @classmethod
    def open(cls, config: Settings) -> LastServed | None:
        """The last published state of `config`'s data directory; None when there is none
        (a first start) or it cannot be read."""
        try:
            store = open_store(config.state_dir, config.database_url, strict=False)
        except Exception:               # whatever the state is, start-up goes on: 503s
            log.warning("feedsvc: the last published state cannot be read; the port "
                        "answers 503 until the workers serve", exc_info=True)
            return None
        snapshot = published.load(store.cache, config.data_dir)
        if snapshot is None or not snapshot.documents:
            store.close()
            return None
        return cls(store, snapshot, config.max_age)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, path: str) -> Resource | None:
        """The response for `path` (no leading slash), if it is a document last published
        and still the newest the validators record for it."""
        entry = self._index.get(path)
        if entry is None:
            return None
        with self._lock:
            store = self._store
            if store is None:
                return None
            row = store.cache.get("gzdocs", [entry.recipe]).get(entry.recipe)
            stamp = store.validators.recorded([path]).get(path)
        if row is None or stamp is None or stamp.etag != row[1]:
            return None
        doc = Document(path, entry.recipe, entry.content_type, row[1], row[0])
        return Resource.make(doc.content_type, NOT_YET if stamp.second is None else stamp.second,
                             doc.etag, doc.gzip, doc.gzip_etag, entry.links)

    def close(self) -> None:
        """Let the store go (requests from now on get None), and the identity bytes
        gunzipped for its requests."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
            INFLATED.clear()
