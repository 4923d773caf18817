"""Recorded digests: the ETag of every document of the bundled site, as published.

A refactoring must not change one byte of a feed.  This test builds the bundled data
directory (at a fixed time, so scheduled articles do not move) and compares the ETag of
every document (feeds of every format, pages, the OPML) and of every article page with
tests/digests.json.

When a change of bytes is meant (a template, a new field, a library upgrade that writes
other bytes), look at the difference first, then record the new digests and commit them
with the change, saying why they moved:

    python tests/test_digests.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGESTS = Path(__file__).with_name("digests.json")
NOW = 1_800_000_000.0           # 2027-01-15 08:00 UTC: after every date of the bundled site


def published(data_dir: Path, state_dir: Path) -> dict[str, str]:
    """{path: identity ETag} of every document and article page the service publishes."""
    from feedsvc import live, publish, settings
    config = settings.resolve({"data_dir": str(data_dir), "state_dir": str(state_dir),
                               "watch": False}, environ={})
    service = live.Service(config, clock=lambda: NOW)
    try:
        out = {path: doc.etag for path, doc in service.documents.items()}
        assert service.corpus is not None
        for article in service.corpus.articles:
            page = service.publisher.article_page(service.corpus, article)
            out[f"articles/{article.slug}/"] = publish.etag_of(page)
    finally:
        service.close()
    return dict(sorted(out.items()))


def test_every_document_keeps_its_recorded_etag(bundled, tmp_path):
    recorded = json.loads(DIGESTS.read_text())
    now = published(bundled.root, tmp_path / "state")
    changed = sorted(p for p in recorded.keys() & now.keys() if recorded[p] != now[p])
    assert not changed, f"bytes changed (if meant, see {Path(__file__).name}): {changed}"
    assert sorted(now) == sorted(recorded), "documents added or gone: re-record if meant"
    # every format of every scope is held to its bytes
    assert {p.rsplit(".", 1)[1] for p in recorded if p.startswith("feeds/")} >= {
        "rss", "atom", "json"}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as state:
        digests = published(ROOT / "data", Path(state))
    DIGESTS.write_text(json.dumps(digests, indent=1) + "\n")
    print(f"recorded {len(digests)} digests in {DIGESTS}")
