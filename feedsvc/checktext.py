"""`feedsvc check`'s text: a check report (checks.Report) as lines for a terminal.

Problems come grouped by file, one `file:line:col: message` line each (editors and
terminals jump to that place); a kind of warning found in more than `LIST_LIMIT`
places is summed up in one line unless every line is asked for.  Then the scheduled
articles, then one summary line.
"""
from __future__ import annotations

import os
from collections import Counter

from .checks import KINDS, Report

LIST_LIMIT = 20         # warnings of one kind listed one by one; more are summed up


def lines(report: Report, data_dir: str, every: bool = False) -> list[str]:
    """What `feedsvc check` prints for `report` on `data_dir`; `every`: no summing up."""
    counts = Counter(p.code for p in report.problems if not p.is_error and p.code)
    summed = _summed(counts, every)
    out: list[str] = []
    for problems in report.by_file().values():
        _section(out, [str(p) for p in problems if p.is_error or p.code not in summed])
    for code in sorted(summed):
        first = next(p for p in report.problems if p.code == code)
        _section(out, [f"warning: {counts[code]} {KINDS[code]}; the first: {first} "
                       "(--all lists every one)"])
    if report.scheduled:
        _section(out, ["scheduled (not in the feeds yet):"] +
                 [f"  {s.goes_live.isoformat()}  {s.file}  {s.title}" for s in report.scheduled])
    out.append(summary(report, data_dir))
    return out


def _summed(counts: Counter, every: bool) -> set[str]:
    """The kinds of warning summed up in one line."""
    return set() if every else {code for code, n in counts.items() if n > LIST_LIMIT}


def _section(out: list[str], lines: list[str]) -> None:
    """Append `lines` to `out`, after a blank line if `out` has some already."""
    if lines and out:
        out.append("")
    out += lines


def summary(report: Report, data_dir: str) -> str:
    if not report.problems:
        counted = "no problems"
    else:
        counted = f"{_count(report.errors, 'error')}, {_count(report.warnings, 'warning')}"
    scheduled = f", {len(report.scheduled)} scheduled" if report.scheduled else ""
    shown = os.fsencode(data_dir).decode("utf-8", "backslashreplace")  # (a path not UTF-8)
    return f"{shown}: {report.articles} articles{scheduled}, {counted}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
