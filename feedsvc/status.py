"""The editors' status page, `/admin/status/`: problems by file, scheduled articles, the
last refresh and what it rebuilt (Flask-free: web.py routes to it behind the admin login).

Linked from nowhere public.  The checks behind it re-read every
file (seconds on 10,000 articles), so a report is kept per corpus and made again only
when the data changed or a scheduled article went live.
"""
from __future__ import annotations

import datetime as dt
import threading

import jinja2

from . import checks
from .live import Service

SHOWN = 500             # files, and rebuilt paths, listed on the page; the rest counted

_templates = jinja2.Environment(loader=jinja2.PackageLoader("feedsvc", "templates"),
                                autoescape=True)


class StatusPage:
    """Renders the status page of one service; keeps the report of its current corpus."""

    def __init__(self, service: Service, max_file_bytes: int):
        self.service = service
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._made: tuple[int, float, checks.Report] | None = None  # corpus serial, when due

    def report(self, now: dt.datetime) -> checks.Report | None:
        corpus = self.service.corpus
        if corpus is None:
            return None
        with self._lock:                # one report at a time: it reads every file
            made = self._made
            nxt = corpus.next_go_live(now)
            due = nxt.timestamp() if nxt else float("inf")
            if made is None or made[0] != corpus.serial or now.timestamp() >= made[1]:
                made = self._made = (corpus.serial, due,
                                     checks.report(corpus, now, self.max_file_bytes))
            return made[2]

    def render(self) -> str:
        service = self.service
        now = dt.datetime.now(dt.UTC)
        report = self.report(now)
        problems = list(report.problems) if report else []
        # what the data's report does not hold: the state files' problems, or why the
        # data directory cannot be read at all
        known = {(p.file, p.message) for p in problems}
        problems += [checks.Problem.of(e) for e in service.errors
                     if (e.path, e.message) not in known]
        whole = checks.Report(tuple(problems), report.scheduled if report else (),
                              report.articles if report else 0)
        refreshed = dt.datetime.fromtimestamp(service.refreshed_at, dt.UTC).isoformat(
            timespec="seconds") \
            if service.refreshed_at else ""
        corpus = service.corpus
        return _templates.get_template("status.html").render(
            site_title=corpus.site.title if corpus else "feedsvc",
            articles=whole.articles, errors=whole.errors, warnings=whole.warnings,
            files=list(whole.by_file().items()), scheduled=whole.scheduled,
            refreshed=refreshed, rebuilt=sorted(service.rebuilt), shown=SHOWN)
