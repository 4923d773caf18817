"""The statistics page for editors (`/admin/stats`), its charts and its exports.

Charts are SVG written here on the server (the pages allow no script): stacked
bars, one bar a day, colours from the page's stylesheet (classes `c0`..`c7`),
so dark mode and narrow screens are the stylesheet's business.  The numbers
come from statsreport.py, with the WebSub hub's live subscriptions added as a
reader; `/admin/stats.csv` and `/admin/stats.json` give the rows behind them.
Every route is behind `admin.require_login`.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from html import escape

from flask import Flask, Response, request

from . import statsreport
from .admin import page, require_login
from .statsstore import StatsStore, StatsUnavailable

log = logging.getLogger("feedsvc")

WIDTH, HEIGHT, PAD = 720, 220, 56
COLOURS = 8


def _scale(top: int) -> int:
    """A round axis maximum at or above `top`."""
    step = 1
    while step * 10 < top:
        step *= 10
    for m in (1, 2, 5, 10):
        if top <= m * step:
            return m * step
    return 10 * step


def _short(n: int) -> str:
    """An axis label: 500, 2k, 10M."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def stacked_bars(days: list[str], series: dict[str, list[int]], label: str) -> str:
    """An SVG bar chart, one bar a day, `series` stacked bottom up in the given order."""
    totals = [sum(values[n] for values in series.values()) for n in range(len(days))]
    top = _scale(max(totals, default=0) or 1)
    plot_w, plot_h = WIDTH - PAD - 8, HEIGHT - PAD - 8
    bar = plot_w / max(len(days), 1)
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" '
             f'aria-label="{escape(label)}"><title>{escape(label)}</title>',
             f'<line class="axis" x1="{PAD}" y1="{8 + plot_h}" x2="{WIDTH - 8}" '
             f'y2="{8 + plot_h}"/>',
             f'<text class="tick" x="{PAD - 4}" y="14" text-anchor="end">{_short(top)}</text>',
             f'<text class="tick" x="{PAD - 4}" y="{8 + plot_h}" text-anchor="end">0</text>']
    for n, day in enumerate(days):
        base = 8.0 + plot_h
        for colour, (name, values) in enumerate(series.items()):
            if not values[n]:
                continue
            h = values[n] / top * plot_h
            base -= h
            parts.append(f'<rect class="c{colour % COLOURS}" x="{PAD + n * bar + bar * 0.1:.1f}" '
                         f'y="{base:.1f}" width="{bar * 0.8:.1f}" height="{h:.1f}">'
                         f'<title>{day} {escape(name)}: {values[n]:,}</title></rect>')
    for n in (0, len(days) - 1):
        if days:
            anchor = "start" if n == 0 else "end"
            parts.append(f'<text class="tick" x="{PAD + n * bar + (bar if n else 0):.1f}" '
                         f'y="{HEIGHT - 12}" text-anchor="{anchor}">{days[n]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _days() -> int:
    asked = request.args.get("days", "30")
    return int(asked) if asked in {str(r) for r in statsreport.RANGES} else 30


def install(app: Flask, store: StatsStore, today: Callable[[], dt.date]) -> None:
    """Add /admin/stats, /admin/stats.csv and /admin/stats.json to `app`."""

    def numbers_of(days: int, scope: str) -> statsreport.Report:
        return statsreport.report(store, today(), days, scope)

    def rows(dates: list[str]) -> list[statsreport.Row]:
        return statsreport.rows(store, dates[0], dates[-1])

    @app.errorhandler(StatsUnavailable)
    def unavailable(error: StatsUnavailable) -> Response:
        log.warning("%s", error)            # the page names no host: only the setting
        return Response("The statistics database cannot be reached now "
                        "(FEEDSVC_DATABASE_URL); requests are still counted and written "
                        "once it is back. Try again in a minute.\n", 503,
                        content_type="text/plain; charset=utf-8",
                        headers={"Retry-After": "60", "Cache-Control": "no-store"})

    @app.get("/admin/")
    @require_login
    def admin_home() -> Response:
        return Response("", 303, headers={"Location": "/admin/stats"})

    @app.get("/admin/stats")
    @require_login
    def stats() -> Response:
        days, scope = _days(), request.args.get("feed", "")
        numbers = numbers_of(days, scope)
        if scope and scope not in numbers.scopes:
            scope = ""
            numbers = numbers_of(days, "")
        charts = {
            "subscribers": stacked_bars(numbers.days, numbers.subscribers,
                                        "Subscribers per day, stacked per reader"),
            "requests": stacked_bars(numbers.days, numbers.answered,
                                     "Requests per day: answered 200, answered 304"),
        }
        return page("admin_stats.html", numbers=numbers, charts=charts, days=days,
                    ranges=statsreport.RANGES, scope=scope)

    @app.get("/admin/stats.csv")
    @require_login
    def stats_csv() -> Response:
        dates = statsreport.span(today(), _days())
        body = statsreport.as_csv(rows(dates))
        return Response(body, content_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="feedsvc-stats-{dates[-1]}.csv"'})

    @app.get("/admin/stats.json")
    @require_login
    def stats_json() -> Response:
        dates = statsreport.span(today(), _days())
        body = statsreport.as_json(rows(dates), dates[0], dates[-1])
        return Response(body, content_type="application/json")
