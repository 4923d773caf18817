"""Speed tricks held to the plain path: with each one on and off, the same bytes and rows.

bench/tricks.py measures what each trick saves; bench/coldstart.py `--off NAME` turns
one off the way these tests do.  The lxml-free body path (`content._plain`) has its
own differential tests in tests/test_content.py; forked workers (gc.freeze before the
fork) and spawned ones against one process in tests/test_workers.py.
"""
from __future__ import annotations

import sqlite3
from contextlib import nullcontext
from pathlib import Path

from feedsvc import live, settings
from feedsvc.cache import Cache


def _rows(state_dir: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(state_dir / "cache.sqlite")
    try:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY key").fetchall()  # noqa: S608
                for table in Cache.TABLES}
    finally:
        db.close()


def _cold_start(data_dir: Path, state_dir: Path) -> None:
    service = live.Service(settings.resolve({"data_dir": str(data_dir), "watch": False,
                                             "state_dir": str(state_dir)}, environ={}))
    service.cache.flush()
    service.close()


def test_held_and_unheld_cache_writes_end_with_the_same_rows(bundled, tmp_path, monkeypatch):
    """A first build holds its cache writes until every feed is servable (Cache.held);
    written as they come instead, the cache ends with the same rows."""
    let_go: list[int] = []
    real_let_go = Cache._let_go

    def counting(self: Cache) -> None:
        let_go.append(len(self._held))
        real_let_go(self)
    monkeypatch.setattr(Cache, "_let_go", counting)
    _cold_start(bundled.root, tmp_path / "held")
    assert max(let_go) > 0                          # the build did hold its writes
    let_go.clear()
    monkeypatch.setattr(Cache, "held", lambda self: nullcontext())
    _cold_start(bundled.root, tmp_path / "unheld")
    assert not any(let_go)                          # and here it did not
    held, unheld = _rows(tmp_path / "held"), _rows(tmp_path / "unheld")
    assert all(held.values())
    assert held == unheld
