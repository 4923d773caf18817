"""Progress of long work (`serve`'s warm-up, `build`): files read, bodies rendered, feeds
written, each with its rate.

On a terminal it is one line redrawn in place per stage (a bar when the total is known);
in a log, a line every `LOG_EVERY` seconds while a stage goes on and one when a stage
that took `WORTH_SAYING` or longer ends, so a 50,000-article start is a few lines, not silence, and
a small site's start says nothing more than before.  Stages
are named after the function the worker pool runs (workers.observe).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

STAGES = {"_read_and_parse": "files read", "render_file": "bodies rendered",
          "_feeds_job": "feeds written", "written": "files written"}
LOG_EVERY = 10.0        # seconds between log lines of one stage
WORTH_SAYING = 2.0      # seconds a stage takes before its end is logged
BAR = 30                # characters of the bar

log = logging.getLogger("feedsvc")


@dataclass
class Stage:
    """One stage's count, total (when known) and when it started."""
    name: str
    done: int
    total: int | None
    started: float
    said: float                          # when it was last logged
    drawn: float = float("-inf")         # when it was last drawn

    def line(self, now: float) -> str:
        took = max(now - self.started, 1e-6)
        of = f" of {self.total}" if self.total else ""
        return f"{self.name}: {self.done}{of} in {took:.1f} s ({self.done / took:,.0f}/s)"


class Progress:
    """Reports the stages of one piece of long work to a terminal or a log."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        """`stream`: a terminal to draw on; None logs instead."""
        self.stream = stream
        self.clock = clock
        self.stage: Stage | None = None
        self.since = clock()        # when the next stage began: the last one's end (the
                                    # pool says how far a stage is only after a batch)

    @classmethod
    def to(cls, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> Progress:
        """Drawn on `stream` if it is a terminal, else logged."""
        return cls(stream if stream.isatty() else None, clock)

    def update(self, what: str, done: int, total: int | None = None) -> None:
        """`done` items of stage `what` (a pool function's name or a stage name)."""
        name = STAGES.get(what, what)
        now = self.clock()
        stage = self.stage
        if stage is None or stage.name != name or done < stage.done:
            self.end()
            stage = self.stage = Stage(name, 0, total, self.since, self.since)
        stage.done, stage.total = done, total or stage.total
        if self.stream is not None:
            self._draw(stage, now)
        elif now - stage.said >= LOG_EVERY:
            stage.said = now
            log.info("feedsvc: %s", stage.line(now))
        if stage.total and done >= stage.total:
            self.end()

    def end(self) -> None:
        """The current stage is over: its last line."""
        stage, self.stage = self.stage, None
        if stage is None:
            return
        now = self.since = self.clock()
        line = stage.line(now)
        if self.stream is not None:
            self.stream.write(f"\r\x1b[2Kfeedsvc: {line}\n")
            self.stream.flush()
        elif now - stage.started >= WORTH_SAYING:  # a quick stage is not news in a log
            log.info("feedsvc: %s", line)

    def _draw(self, stage: Stage, now: float) -> None:
        if now - stage.drawn < 0.1 and stage.done != stage.total:
            return                          # ten redraws a second are enough
        stage.drawn = now
        bar = ""
        if stage.total:
            filled = BAR * min(stage.done, stage.total) // stage.total
            bar = f"[{'#' * filled}{'.' * (BAR - filled)}] "
        self.stream.write(f"\r\x1b[2Kfeedsvc: {bar}{stage.line(now)}")   # type: ignore[union-attr]
        self.stream.flush()                                               # type: ignore[union-attr]
