"""The editors' checks run off the request path: the last result, and one run at a time.

`checks.report` re-reads every data file (about 6 s at 10,000 articles), too slow for
a request.  `BackgroundChecks` runs it in one thread of its own after a refresh that
made a new corpus (the service's listeners call it), and again when a scheduled
article went live since; a request only reads the last result (`last`) and whether
newer data is being checked (`running`).  At most one run at a time per process; data
that changes during a run is checked once more when it ends, the latest only.
A worker runs the checks only once its status page has been asked for (`wanted`), so
workers that never serve the page never pay for them.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import checks
from .corpus import Corpus
from .live import Service

log = logging.getLogger("feedsvc")


@dataclass(frozen=True)
class Checked:
    """One run of the checks: on which corpus, when, and what they found."""
    serial: int                     # the corpus checked (Corpus.serial)
    at: dt.datetime                 # when the run began (UTC)
    due: float                      # Unix time its list of scheduled articles goes stale
    report: checks.Report


class BackgroundChecks:
    """The last check report of one service's data, kept current by a background run."""

    def __init__(self, service: Service, max_file_bytes: int,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)):
        self.service = service
        self.max_file_bytes = max_file_bytes
        self.clock = clock
        self.last: Checked | None = None
        self.running = False
        self.wanted = False             # the status page was asked for in this process
        self._lock = threading.Lock()
        service.listeners.append(self._refreshed)

    def _refreshed(self, _documents: object, _seen: float) -> None:
        """After a refresh that swapped in documents: check them, if anyone looks."""
        if self.wanted:
            self.start()

    def current(self, corpus: Corpus | None) -> bool:
        """Whether the last result is of `corpus` and its scheduled list still holds."""
        last = self.last
        return corpus is None or (last is not None and last.serial == corpus.serial and
                                  self.clock().timestamp() < last.due)

    def start(self) -> bool:
        """Check the current data in the background unless a run is under way or the last
        result is current; True when a run is under way."""
        with self._lock:
            if self.running:
                return True
            if self.current(self.service.corpus):
                return False
            self.running = True
        threading.Thread(target=self._run, name="feedsvc-checks", daemon=True).start()
        return True

    def _run(self) -> None:
        """Check the service's corpus until the result is of the latest one."""
        try:
            corpus = self.service.corpus
            while corpus is not None:
                now = self.clock()
                report = checks.report(corpus, now, self.max_file_bytes)
                nxt = corpus.next_go_live(now)
                self.last = Checked(corpus.serial, now,
                                    nxt.timestamp() if nxt else float("inf"), report)
                with self._lock:
                    corpus = self.service.corpus
                    if self.current(corpus):
                        self.running = False
                        return
        except Exception:               # a check that fails says so, and is tried again
            log.exception("feedsvc: the editors' checks failed; the status page shows the "
                          "last result")
        with self._lock:
            self.running = False
