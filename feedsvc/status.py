"""The editors' status page, `/admin/status/`: problems by file, scheduled articles, the
last refresh and what it rebuilt (Flask-free: web.py routes to it behind the admin login).

Linked from nowhere public.  The checks behind it re-read every file (seconds on
10,000 articles), so the page never runs them: it shows the last result of
`lastcheck.BackgroundChecks`, with when it was made, and starts a background run when
the data changed since ("checking again").  Until a first run ends it shows the
loader's problems alone.  It answers in milliseconds at any size.
"""
from __future__ import annotations

import datetime as dt

import jinja2

from . import checks
from .lastcheck import BackgroundChecks
from .live import Service

SHOWN = 500             # files, and rebuilt paths, listed on the page; the rest counted

_templates = jinja2.Environment(loader=jinja2.PackageLoader("feedsvc", "templates"),
                                autoescape=True)


class StatusPage:
    """Renders the status page of one service from its last check report."""

    def __init__(self, service: Service, max_file_bytes: int):
        self.service = service
        self.checks = BackgroundChecks(service, max_file_bytes)

    def render(self) -> str:
        service = self.service
        self.checks.wanted = True
        checking = self.checks.start()
        last = self.checks.last
        report = last.report if last else None
        problems = list(report.problems) if report else []
        # what the last report does not hold: the state files' problems, why the data
        # directory cannot be read at all, or (before a first report) the loader's
        known = {(p.file, p.message) for p in problems}
        problems += [checks.Problem.of(e) for e in service.errors
                     if (e.path, e.message) not in known]
        whole = checks.Report(tuple(problems), report.scheduled if report else (),
                              report.articles if report else
                              len(service.corpus.articles) if service.corpus else 0)
        corpus = service.corpus
        return _templates.get_template("status.html").render(
            site_title=corpus.site.title if corpus else "feedsvc",
            articles=whole.articles, errors=whole.errors, warnings=whole.warnings,
            files=list(whole.by_file().items()), scheduled=whole.scheduled,
            refreshed=_iso(service.refreshed_at), rebuilt=sorted(service.rebuilt),
            shown=SHOWN, checked=last.at.isoformat(timespec="seconds") if last else "",
            checking=checking)


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds") \
        if when else ""
