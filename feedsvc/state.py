"""Persisted validators: when did each document's bytes last change?

Last-Modified must move forward whenever the bytes change (a deletion or a
backdated article included) and stay put while they do not, across restarts
and in every worker.  So it is not derived from article dates: it is the time
this state first saw the current ETag of the document, kept in SQLite that
all workers (and all instances sharing the state directory) update in one
transaction.  Losing the file costs each client one full download: the new
time is "now", later than anything handed out before.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time


class Validators:
    def __init__(self, state_dir: str | None):
        self._lock = threading.Lock()
        path = ":memory:"
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
            path = os.path.join(state_dir, "validators.sqlite")
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30,
                                   isolation_level=None)
        if state_dir:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS current "
                         "(path TEXT PRIMARY KEY, etag TEXT NOT NULL, modified INTEGER NOT NULL)")

    def stamp(self, etags: dict[str, str], now: float | None = None) -> dict[str, int]:
        """Last-Modified (Unix seconds) for each path's current ETag, recording new ones.

        A changed ETag gets max(now, previous + 1): strictly later than any time a
        client may hold for the old bytes, even if the clock stepped back.
        """
        now_s = int(now if now is not None else time.time())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                known: dict[str, tuple[str, int]] = {}
                paths = list(etags)
                for i in range(0, len(paths), 500):
                    chunk = paths[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    known.update((p, (e, m)) for p, e, m in self._db.execute(
                        f"SELECT path, etag, modified FROM current WHERE path IN ({marks})",  # noqa: S608
                        chunk))
                out: dict[str, int] = {}
                changed = []
                for path, etag in etags.items():
                    old = known.get(path)
                    if old and old[0] == etag:
                        out[path] = old[1]
                        continue
                    out[path] = max(now_s, old[1] + 1) if old else now_s
                    changed.append((path, etag, out[path]))
                self._db.executemany("INSERT OR REPLACE INTO current VALUES (?, ?, ?)", changed)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def close(self) -> None:
        self._db.close()
