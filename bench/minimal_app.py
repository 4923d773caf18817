"""The floor for serving one feed from Python: a raw WSGI app returning precomputed bytes.

bench/run.py fetches one feed from a running feedsvc (identity and gzip bodies with
their headers) into a payload folder and points BENCH_PAYLOAD at it.  This app
answers that one path with exactly those bytes and headers, doing the same work a
feed request needs and nothing more: a dict lookup, a choice of encoding, an exact
If-None-Match check, a write.  Anything else is a 404.

Served by granian with the settings `feedsvc serve` uses (`python bench/minimal_app.py
--port P --workers N`), or by any WSGI server as `minimal_app:app` (gunicorn).
"""
from __future__ import annotations

import json
import os
import sys


def _load(folder: str) -> dict:
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    table = {}
    variants = {}
    for name in ("identity", "gzip"):
        v = meta[name]
        with open(os.path.join(folder, v["file"]), "rb") as f:
            body = f.read()
        headers = [(k, str(val)) for k, val in v["headers"]]
        common = [(k, val) for k, val in headers
                  if k.lower() in ("etag", "last-modified", "vary", "cache-control")]
        variants[name] = (v["etag"], body, headers, common)
    table[meta["path"]] = variants
    return table


TABLE = _load(os.environ.get("BENCH_PAYLOAD", os.path.join(os.path.dirname(__file__), "out",
                                                           "serve", "payload")))
NOT_FOUND = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "10")]


def app(environ, start_response):
    variants = TABLE.get(environ.get("PATH_INFO", "/"))
    if variants is None:
        start_response("404 Not Found", NOT_FOUND)
        return [b"not found\n"]
    v = variants["gzip" if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "") else "identity"]
    if environ.get("HTTP_IF_NONE_MATCH") == v[0]:
        start_response("304 Not Modified", v[3])
        return []
    start_response("200 OK", v[2])
    return [v[1]]


def main(argv: list[str]) -> None:
    """Serve under granian exactly as feedsvc/cli.py `serve` configures it."""
    import argparse

    from granian.constants import Interfaces
    from granian.server import Server

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    Server("minimal_app:app", address=a.host, port=a.port, interface=Interfaces.WSGI,
           workers=max(1, a.workers), blocking_threads=1, websockets=False, log_access=False,
           respawn_failed_workers=True).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
