"""WebSub benchmark: save-to-delivery latency and the request path with 1,000 subscribers.

    python bench/websub.py [--subscribers 1000] [--edits 5] [--seconds 3]
                           [--stores sqlite,postgresql] [--database-url URL]

For each store named (the hub's subscriptions in `websub.sqlite`, or in
PostgreSQL: the URL given, else a throwaway cluster as tests/pgcluster.py makes),
starts two `feedsvc serve --workers 2`, each on its own copy of the bundled
site (state in bench/out/websub/), and subscriber servers on 127.0.0.1-127.0.0.4
(the hub allows at most 1,000 subscriptions per callback host).  It measures:
- 304 throughput (If-None-Match, keep-alive, 2 client threads) of the server
  with no subscription and of the one whose site Atom feed has every
  subscriber, in interleaved rounds;
- for each edit of an article: from the file's save to the first delivery, and
  to the last of all subscribers' deliveries.
Everything listens on and talks to 127.0.0.0/8; every loop is bounded.
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out" / "websub"
SITE = "http://127.0.0.1:{port}/"
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


class Arrivals:
    """When each callback path got its deliveries (perf_counter)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.verified = 0
        self.lock = threading.Lock()

    def make_server(self, host: str) -> ThreadingHTTPServer:
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                challenge = parse_qs(urlsplit(self.path).query).get("hub.challenge", [""])[0]
                body = challenge.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with arrivals.lock:
                    arrivals.verified += 1

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with arrivals.lock:
                    arrivals.times.append(time.perf_counter())
                self.send_response(204)
                self.end_headers()

        server = ThreadingHTTPServer((host, 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 256
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def throughput(port: int, path: str, seconds: float, threads: int = 2) -> float:
    """304 responses a second (If-None-Match, keep-alive)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    resp.read()
    etag = resp.getheader("ETag")
    conn.close()
    counts = [0] * threads

    def run(i: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            c.request("GET", path, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
            r = c.getresponse()
            r.read()
            assert r.status == 304, r.status
            counts[i] += 1
        c.close()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def start_server(name: str, url: str = "") -> tuple[subprocess.Popen, int, Path]:
    """`feedsvc serve --workers 2` on its own copy of the bundled site and state (and the
    database at `url`, if given)."""
    data = OUT / name / "data"
    shutil.copytree(ROOT / "data", data)
    port = free_port()
    env = {**os.environ, "FEEDSVC_WEBSUB_ALLOW_PRIVATE": "true", "FEEDSVC_WEBSUB_RATE": "100000",
           "FEEDSVC_POLL_SECONDS": "10", "FEEDSVC_DATABASE_URL": url}
    log = open(OUT / name / "serve.log", "w")      # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "feedsvc", "serve", "--port", str(port),
                             "--workers", "2", "--data-dir", str(data), "--state-dir",
                             str(OUT / name / "state"), "--base-url", SITE.format(port=port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    _LIVE.append(proc)
    assert wait(lambda: _up(SITE.format(port=port)), 60), f"{name}: feedsvc did not start"
    return proc, port, data


_LIVE: list[subprocess.Popen] = []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stores", default="sqlite", help="sqlite, postgresql or both "
                    "(comma-separated), measured one after the other")
    ap.add_argument("--database-url", default="", help="for postgresql (default: a "
                    "throwaway cluster)")
    args = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    cluster = None
    try:
        for store in args.stores.split(","):
            url = ""
            if store == "postgresql":
                url = args.database_url
                if not url:
                    cluster = cluster or throwaway_cluster()
                    url = cluster.new_database()
            print(f"-- store: {store}")
            run(args, store, url)
            stop_servers()
    finally:
        stop_servers()
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)


def throwaway_cluster():
    sys.path[:0] = [str(ROOT / "tests")]
    from pgcluster import for_bench
    return for_bench("bench/websub.py")


def stop_servers() -> None:
    while _LIVE:
        proc = _LIVE.pop()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def run(args, store: str, url: str) -> None:
    _, bare_port, _ = start_server(f"{store}-none", url)
    _, port, data = start_server(f"{store}-subscribed", url)
    base = SITE.format(port=port)
    arrivals = Arrivals()
    servers = [arrivals.make_server(h) for h in HOSTS]
    subscribe_all(base, servers, args.subscribers)
    assert wait(lambda: arrivals.verified >= args.subscribers, 120), arrivals.verified
    time.sleep(1.0)
    none, subscribed = [], []
    for p in (bare_port, port):                     # warm-up, not counted
        throughput(p, "/feeds/all.atom", 1.0)
    for _ in range(args.rounds):                    # side by side, interleaved
        none.append(throughput(bare_port, "/feeds/all.atom", args.seconds))
        subscribed.append(throughput(port, "/feeds/all.atom", args.seconds))
    first, every = edits(data, arrivals, args)
    print(f"subscribers: {args.subscribers}, edits: {args.edits}, workers: 2")
    print(f"save -> first delivery: median {statistics.median(first) * 1000:.0f} ms "
          f"(all: {', '.join(f'{x * 1000:.0f}' for x in first)})")
    print(f"save -> all {args.subscribers}: median {statistics.median(every):.2f} s "
          f"(all: {', '.join(f'{x:.2f}' for x in every)})")
    print(f"304/s, server with no subscription: {statistics.median(none):,.0f} "
          f"({', '.join(f'{x:,.0f}' for x in none)}); with {args.subscribers}: "
          f"{statistics.median(subscribed):,.0f} "
          f"({', '.join(f'{x:,.0f}' for x in subscribed)}); "
          f"ratio {statistics.median(subscribed) / statistics.median(none):.2f}")


def subscribe_all(base: str, servers: list[ThreadingHTTPServer], count: int) -> None:
    session = requests.Session()
    for i in range(count):
        server = servers[i % len(servers)]
        host, sport = server.server_address[:2]
        for _ in range(500):            # a busy hub says 503: come back, as subscribers do
            r = session.post(base + "websub", data={
                "hub.mode": "subscribe", "hub.topic": base + "feeds/all.atom",
                "hub.callback": f"http://{host}:{sport}/cb/{i}"}, timeout=10)
            if r.status_code != 503:
                break
            time.sleep(0.02)
        assert r.status_code == 202, r.text


def edits(data: Path, arrivals: Arrivals, args) -> tuple[list[float], list[float]]:
    """Save-to-first and save-to-all delivery times of `args.edits` edits."""
    first, every = [], []
    article = next((data / "articles").rglob("*.md"))
    text = article.read_text()
    for n in range(args.edits):
        with arrivals.lock:
            arrivals.times.clear()
        tmp = article.with_name(".bench.tmp")
        tmp.write_text(text + f"\n\nEdit {n}.\n")
        t0 = time.perf_counter()
        os.replace(tmp, article)
        assert wait(lambda: len(arrivals.times) >= args.subscribers, 60), len(arrivals.times)
        with arrivals.lock:
            times = sorted(arrivals.times)
        first.append(times[0] - t0)
        every.append(times[args.subscribers - 1] - t0)
        time.sleep(0.5)
    return first, every


def _up(base: str) -> bool:
    try:
        return requests.get(base + "healthz", timeout=2).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
