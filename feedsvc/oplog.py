"""The operators' log of the data: each problem once per change, not once per worker.

Every worker of `feedsvc serve` loads the same data and finds the same problems; the
first to see a change logs it (a new problem, a fixed one, an article gone live) and
notes what it said in a small shared file in the state directory, under a file lock.
The others find it said and stay quiet.  When the file cannot be used (a read-only
state directory), each process logs what is new to itself, as before.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from itertools import takewhile

from .model import Article, DataError

FILE = "logged.json"
EVENTS_KEPT = 1000              # go-live lines remembered (each is logged once)


@dataclass(frozen=True)
class Said:
    """What the shared file says was logged last: problems (hash -> path), events."""
    problems: dict[str, str]
    events: list[str]


def _key(e: DataError) -> str:
    text = f"{e.path}\0{e.message}\0{e.warning}"         # (a path may not be UTF-8)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


class SharedLog:
    """Logs data problems and go-live events once across the processes of a state dir."""

    def __init__(self, state_dir: str, log: logging.Logger):
        self.path = os.path.join(state_dir, FILE)
        self.log = log
        self._own = Said({}, [])            # what this process said (when the file fails)

    def problems(self, errors: Iterable[DataError]) -> None:
        """Log the problems new since the last report, and a line per file fixed."""
        now = {_key(e): e for e in errors}
        with self._said() as said:
            for key, e in now.items():
                if key not in said.problems:
                    (self.log.warning if e.warning else self.log.error)(
                        "%s: %s%s", e.path, "warning: " if e.warning else "", e.message)
            paths = {e.path for e in now.values()}
            for path in sorted({p for k, p in said.problems.items() if k not in now}):
                if path not in paths:
                    self.log.info("%s: fixed, no problems left", path)
            said.problems.clear()
            said.problems.update({k: e.path for k, e in now.items()})

    def went_live(self, articles: Iterable[Article]) -> None:
        """Log each scheduled article that has just gone live, once."""
        with self._said() as said:
            for a in articles:
                event = f"{a.path}\0{a.published.isoformat()}"
                if event not in said.events:
                    self.log.info("%s: scheduled article %r went live (%s)", a.path, a.title,
                                  a.published.isoformat())
                    said.events.append(event)
            del said.events[:-EVENTS_KEPT]

    def _said(self) -> _Locked:
        return _Locked(self.path, self._own)


class _Locked:
    """The shared record, read under an exclusive lock and written back on exit."""

    def __init__(self, path: str, own: Said):
        self.path = path
        self.own = own
        self.fd: int | None = None
        self.said = own
        self.raw = b""

    def __enter__(self) -> Said:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.raw = raw = os.read(self.fd, os.fstat(self.fd).st_size)
            data = json.loads(raw) if raw.strip() else {}
            self.said = Said(dict(data.get("problems", {})), list(data.get("events", [])))
        except (OSError, ValueError, TypeError, AttributeError):
            self.said = self.own            # unusable: this process's own memory
        return self.said

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        try:
            blob = json.dumps({"problems": self.said.problems,
                               "events": self.said.events}).encode()
            if self.said is not self.own and blob != self.raw:      # only what changed
                os.lseek(self.fd, 0, os.SEEK_SET)
                os.ftruncate(self.fd, 0)
                os.write(self.fd, blob)
        except OSError:
            pass
        finally:
            with suppress(OSError):
                os.close(self.fd)               # (closing releases the lock)
            self.fd = None


def newly_live(visible: list[Article], since: float) -> list[Article]:
    """Of the `visible` articles (newest first), those published after `since` (POSIX)."""
    lo = dt.datetime.fromtimestamp(since, dt.UTC)
    return list(takewhile(lambda a: a.published > lo, visible))
