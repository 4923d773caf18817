"""End to end: `feedsvc serve` (granian, 2 workers) on 127.0.0.1, real sockets."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import selectors
import socket
import subprocess
import sys
import time
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
    assert status == 200 and doc["articles"] == 12
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
    assert bad.stdout.splitlines() == [      # grouped by file, with line and column
        "articles/2024/bad-date.md:3:1: 'date' is not an ISO 8601 datetime (got 'yesterday')",
        "",
        "articles/2024/no-title.md: 'title' is required",
        f"{bundled.root}: 12 articles, 2 errors, 0 warnings",
    ]


def raw_request(srv, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Bytes as written on the wire (no client library tidies them), one connection."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock, method=request.split(b" ")[0].decode())
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


ARTICLE = "/articles/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight/"
MEDIA = "/media/2015/rouhani-erdogan-phone-call.jpg"


def test_hostile_requests_over_sockets(serve, bundled):
    (bundled.root / "media" / "root").symlink_to("/")
    srv = serve(bundled.root, workers=1)
    close = b"Connection: close\r\n\r\n"
    assert raw_request(srv, b"GET * HTTP/1.1\r\nHost: x\r\n" + close)[0] == 400
    status, h, _ = raw_request(srv, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n" + close)
    assert status == 405 and h["allow"] == "GET, HEAD"
    for path in (b"/feeds/all.rss", b"/", ARTICLE.encode(), b"/healthz"):
        status, h, body = raw_request(srv, b"GET " + path + b" HTTP/1.1\r\n" + close)
        assert status == 400 and b"Host" in body, path
        for method in (b"get", b"OPTIONS", b"Head"):
            status, h, _ = raw_request(srv, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                       + close)
            assert status == 405 and h["allow"] == "GET, HEAD", (method, path)
    status, h, body = raw_request(srv, b"GET /nope%0D%0ASet-Cookie:%20a=b%00 HTTP/1.1\r\n"
                                  b"Host: x\r\n" + close)
    assert status == 404 and b"Page not found" in body and b"Set-Cookie" not in body
    status, h, _ = raw_request(srv, b"GET /articles//x/ HTTP/1.1\r\nHost: evil.example\r\n"
                               + close)
    assert status == 308 and h["location"] == "/articles/x/"
    assert raw_request(srv, b"GET /media/root/etc/passwd HTTP/1.1\r\nHost: x\r\n"
                       + close)[0] == 404
    bad = b"Fri, 31 Dec 2147483648 23:59:59 GMT"
    for path in (b"/feeds/all.rss", ARTICLE.encode(), MEDIA.encode()):
        plain = raw_request(srv, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + close)
        assert plain[0] == 200 and plain[1]["x-content-type-options"] == "nosniff"
        csp = plain[1]["content-security-policy"]     # one script, by its hash
        assert "script-src 'sha256-" in csp and "unsafe" not in csp
        for header in (b"If-Modified-Since: ", b"If-Unmodified-Since: ",
                       b"Range: bytes=0-9\r\nIf-Range: "):
            status, _, body = raw_request(srv, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                          + header + bad + b"\r\n" + close)
            assert status == 200 and body == plain[2], (path, header)


@pytest.mark.slow                   # granian's header timeout is 10 s
def test_stalled_readers_and_silent_connections_do_not_stop_the_service(serve, bundled):
    """A client that stops reading a large file held granian's one WSGI thread, and a
    connection that never sends a byte was never closed: either could stop all service."""
    bundled.write("media/big.bin", os.urandom(12 << 20))
    srv = serve(bundled.root, workers=1)
    stalled = []
    for _ in range(4):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(b"GET /media/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"       # being answered; then read no more
        stalled.append(sock)
    silent = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(40)]
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("GET", "/feeds/all.rss")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read().startswith(b"<?xml")
        # the silent ones, and this idle keep-alive one, are closed by the server
        waiting = [*silent, conn.sock]
        deadline = time.monotonic() + 25        # granian's header timeout: 10 s
        # (epoll, not select: in a full run this process's descriptors pass 1,024)
        with selectors.DefaultSelector() as sel:
            for sock in waiting:
                sel.register(sock, selectors.EVENT_READ)
            while waiting and time.monotonic() < deadline:
                for key, _ in sel.select(1):
                    assert key.fileobj.recv(1) == b""
                    sel.unregister(key.fileobj)
                    waiting.remove(key.fileobj)
        assert not waiting, f"{len(waiting)} of 41 idle connections still open"
    finally:
        for sock in stalled + silent:
            sock.close()
        conn.close()
