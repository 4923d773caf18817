"""End to end: `feedsvc serve` (granian, 2 workers) on 127.0.0.1, real sockets."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest

pytestmark = pytest.mark.e2e


def raw_get(srv, path: str, headers: dict | None = None, method: str = "GET"):
    """One request on a fresh connection (so the kernel may pick either worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def workers_seen(srv, tries: int = 400) -> dict[str, str]:
    """worker -> snapshot digest, from /healthz over fresh connections."""
    import json
    seen: dict[int, str] = {}
    for _ in range(tries):
        _, _, body = raw_get(srv, "/healthz")
        doc = json.loads(body)
        seen[doc["worker"]] = doc["snapshot"]
        if len(seen) >= 2:
            break
    return seen


def test_two_workers_serve_identical_bytes_and_validators(serve, bundled):
    srv = serve(bundled.root, workers=2)
    seen = workers_seen(srv)
    assert len(seen) == 2, "expected both workers to answer"
    assert len(set(seen.values())) == 1, f"workers disagree: {seen}"
    validators = set()
    for _ in range(40):
        status, headers, body = raw_get(srv, "/feeds/all.atom")
        assert status == 200
        digest = hashlib.sha256(body).hexdigest()
        validators.add((headers["etag"], headers["last-modified"], digest))
    assert len(validators) == 1


def test_gzip_round_trip_and_conditional_requests_over_sockets(serve, bundled):
    srv = serve(bundled.root, workers=2)
    status, plain_h, plain = raw_get(srv, "/feeds/all.rss")
    assert status == 200 and plain_h["content-type"] == "application/rss+xml; charset=utf-8"
    assert feedparser.parse(plain).bozo == 0
    status, gz_h, gz = raw_get(srv, "/feeds/all.rss", {"Accept-Encoding": "gzip"})
    assert status == 200 and gz_h["content-encoding"] == "gzip"
    assert gzip.decompress(gz) == plain
    assert gz_h["etag"] != plain_h["etag"]
    assert gz_h["vary"] == plain_h["vary"] == "Accept-Encoding"

    for headers in ({"If-None-Match": plain_h["etag"]},
                    {"If-None-Match": f'"nope", W/{plain_h["etag"]}'},
                    {"If-None-Match": gz_h["etag"], "Accept-Encoding": "gzip"},
                    {"If-Modified-Since": plain_h["last-modified"]}):
        for _ in range(4):                                  # reach both workers
            status, h, body = raw_get(srv, "/feeds/all.rss", headers)
            assert status == 304, headers
            assert body == b""
            assert h["etag"] in (plain_h["etag"], gz_h["etag"])
            assert h["vary"] == "Accept-Encoding" and h["cache-control"].startswith("public")

    status, _, body = raw_get(srv, "/feeds/all.rss", {"If-None-Match": '"other"'})
    assert status == 200 and body == plain
    status, h, body = raw_get(srv, "/feeds/all.rss", method="HEAD")
    assert status == 200 and body == b"" and h["etag"] == plain_h["etag"]
    status, _, body = raw_get(srv, "/feeds/category/nope.rss")
    assert status == 404 and b"not found" in body
    status, h, _ = raw_get(srv, "/feeds/all.rss", method="POST")
    assert status == 405 and "GET" in h["allow"]


def test_bad_file_at_start_is_reported_and_the_rest_is_served(serve, bundled):
    bundled.write("articles/2024/broken.md", "---\ntitle: [unclosed\n---\nbody\n")
    srv = serve(bundled.root, workers=1)
    import json
    status, _, body = raw_get(srv, "/healthz")
    doc = json.loads(body)
    assert status == 200 and doc["articles"] == 11
    assert [e["path"] for e in doc["errors"]] == ["articles/2024/broken.md"]
    assert "invalid YAML" in doc["errors"][0]["message"]
    log = Path(srv.log.name).read_text()
    assert "articles/2024/broken.md: invalid YAML" in log


def test_check_command(bundled, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "feedsvc", "check", str(bundled.root)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no problems" in ok.stdout
    bundled.write("articles/2024/no-title.md", "---\ndate: 2024-01-01T00:00:00Z\n---\nx\n")
    bundled.write("articles/2024/bad-date.md", "---\ntitle: T\ndate: yesterday\n---\nx\n")
    bad = subprocess.run([sys.executable, "-m", "feedsvc", "check", str(bundled.root)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "articles/2024/bad-date.md: 'date' is not an ISO 8601 datetime (got 'yesterday')",
        "articles/2024/no-title.md: 'title' is required",
    ]
