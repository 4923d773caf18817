"""Print the identity ETag of every document a data directory publishes, as JSON.

    python bench/etags.py DATA_DIR [--now UNIX_SECONDS] > etags.json

A cold build (its own temporary state directory, watch off) at a fixed time, so
scheduled articles do not move: every feed of every format, every scope page, the
index, the OPML and every article page, by URL path.  Two checkouts that print the
same JSON for the same data publish the same bytes (tests/test_digests.py does this
for the bundled site; this is the same check for a generated corpus).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NOW = 1_800_000_000.0           # 2027-01-15 08:00 UTC


def etags(data_dir: str, now: float) -> dict[str, str]:
    from feedsvc import live, settings
    with tempfile.TemporaryDirectory() as state:
        config = settings.resolve({"data_dir": data_dir, "state_dir": state, "watch": False},
                                  environ={})
        service = live.Service(config, clock=lambda: now)
        try:
            out = {path: doc.etag for path, doc in service.documents.items()}
            corpus = service.corpus
            assert corpus is not None, f"{data_dir}: the data could not be read"
            for article in corpus.articles:
                page = service.publisher.article_page(corpus, article)
                out[f"articles/{article.slug}/"] = \
                    '"%s"' % hashlib.sha256(page).hexdigest()[:32]
        finally:
            service.close()
    return dict(sorted(out.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--now", type=float, default=NOW)
    args = parser.parse_args()
    json.dump(etags(os.path.abspath(args.data_dir), args.now), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
