"""Audience statistics: what counting costs the 304 path, and memory under a UA flood.

    python bench/stats.py [--rounds 5] [--calls 200000] [--server] [--duration 3]

1. In process, side by side: the WSGI app (http.FeedApp over the bundled site) answers
   conditional GETs of /feeds/all.rss with a ready 304, its counting hook switched off
   and on between short interleaved rounds (6 per `--rounds`, `--calls`/6 calls each);
   for an aggregator's User-Agent (a reported count) and a self-hosted reader's (whose
   address is kept for the poller hash).  Prints calls/s, on/off, and the hook's cost
   in microseconds from the best rounds.
2. `--server`: the same through real `feedsvc serve --workers 1` servers (stats on and
   off, started side by side, 127.0.0.1), loaded in turn, `--rounds` interleaved rounds,
   by wrk (`-t2 -c32`) or, without it, bench/pyload.py (then the Python client is the
   bottleneck and the ratio says little).  Besides requests per second it reports the
   server's CPU time per request (its process tree, from /proc), which other load on
   the machine disturbs much less: `cpu_ratio` is off/on, the throughput ratio of a
   CPU-bound server.
3. A flood of 300,000 distinct User-Agents through one Counter: the memo's size and
   the process's peak memory growth (tracemalloc), before and after a flush.
Everything runs on 127.0.0.1 and in temporary directories; every loop is bounded.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedsvc import audience  # noqa: E402
from feedsvc.statsstore import SQLiteStats  # noqa: E402

AGENTS = {
    "aggregator": "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 462 subscribers; )",
    "reader": "Mozilla/5.0 (compatible; Miniflux/2.0.50; +https://miniflux.app)",
}


def make_app(state: str, stats: bool):
    from feedsvc.web import create_app
    return create_app({"state_dir": state, "watch": False, "stats": stats,
                       "stats_flush_seconds": 1.0})


def environ_for(app, ua: str) -> dict:
    """A GET of /feeds/all.rss that gets a 304 (the gzip ETag)."""
    resp = app.test_client().get("/feeds/all.rss", headers={"Accept-Encoding": "gzip"})
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/feeds/all.rss", "SERVER_PROTOCOL":
            "HTTP/1.1", "HTTP_HOST": "127.0.0.1", "HTTP_ACCEPT_ENCODING": "gzip",
            "HTTP_IF_NONE_MATCH": resp.headers["ETag"], "HTTP_USER_AGENT": ua,
            "REMOTE_ADDR": "203.0.113.9"}


def calls_per_second(app, environ: dict, calls: int) -> float:
    wsgi = app.wsgi_app
    statuses: list[str] = []

    def start_response(status, headers):
        statuses.append(status)
    started = time.perf_counter()
    for _ in range(calls):
        wsgi(dict(environ), start_response)
    elapsed = time.perf_counter() - started
    assert statuses[-1].startswith("304"), statuses[-1]
    return calls / elapsed


def in_process(rounds: int, calls: int) -> dict:
    """One app, its counting hook switched off and on between short interleaved rounds
    (what differs is only the hook): medians, the best rounds, and the hook's cost."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(os.path.join(tmp, "state"), stats=False)
        counter = audience.Counter(SQLiteStats(os.path.join(tmp, "counted")))
        feed_app = app.wsgi_app
        for kind, ua in AGENTS.items():
            env = environ_for(app, ua)
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for n in range(rounds * 6):
                for name in (("off", "on") if n % 2 else ("on", "off")):
                    feed_app.observe = counter.observe if name == "on" else None
                    rates[name].append(calls_per_second(app, env, max(1, calls // 6)))
            feed_app.observe = None
            med = {k: statistics.median(v) for k, v in rates.items()}
            best = {k: max(v) for k, v in rates.items()}
            out[kind] = {"off": round(med["off"]), "on": round(med["on"]),
                         "ratio": round(med["on"] / med["off"], 3),
                         "best_ratio": round(best["on"] / best["off"], 3),
                         "hook_us_best": round(1e6 / best["on"] - 1e6 / best["off"], 2)}
    return out


def server(duration: float, rounds: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import Server  # noqa: PLC0415 - the tests' server helper
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        srv = {}
        try:
            for name, flag in (("off", "0"), ("on", "1")):
                state = Path(tmp, name, "state")
                state.parent.mkdir()
                srv[name] = Server(None, state, workers=1, env={"FEEDSVC_STATS": flag})
            import requests
            etag = requests.get(srv["on"].url + "/feeds/all.rss").headers["ETag"]
            for kind, ua in AGENTS.items():
                rates: dict[str, list[float]] = {"off": [], "on": []}
                cpu: dict[str, list[float]] = {"off": [], "on": []}
                for _ in range(rounds):
                    for name in ("off", "on"):
                        before = cpu_seconds(srv[name].proc.pid)
                        rate = _load(srv[name].port, etag, ua, duration)
                        used = cpu_seconds(srv[name].proc.pid) - before
                        rates[name].append(rate)
                        cpu[name].append(used / (rate * duration) * 1e6)
                off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
                cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
                out[kind] = {"off": round(off), "on": round(on), "ratio": round(on / off, 3),
                             "cpu_us_per_request_off": round(cpu_off, 2),
                             "cpu_us_per_request_on": round(cpu_on, 2),
                             "cpu_ratio": round(cpu_off / cpu_on, 3)}
        finally:
            for s in srv.values():
                s.stop()
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and all its descendants (Linux)."""
    parent: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(pid, 0.0) for pid in tree)


def _load(port: int, etag: str, ua: str, duration: float) -> float:
    """Requests per second of 304s: wrk (-t2 -c32) if installed, else bench/pyload.py."""
    if shutil.which("wrk"):
        cmd = ["wrk", "-t2", "-c32", f"-d{max(1, round(duration))}s", "--timeout", "2s",
               "-H", "Accept-Encoding: gzip", "-H", f"If-None-Match: {etag}",
               "-H", f"User-Agent: {ua}", f"http://127.0.0.1:{port}/feeds/all.rss"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                             check=True).stdout
        found = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert found and "Non-2xx" not in out, out
        return float(found.group(1))
    cmd = [sys.executable, str(ROOT / "bench" / "pyload.py"), "--port", str(port), "--path",
           "/feeds/all.rss", "--duration", str(duration), "--connections", "16",
           "-H", "Accept-Encoding: gzip", "-H", f"If-None-Match: {etag}",
           "-H", f"User-Agent: {ua}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return res["requests"] / (res["duration_us"] / 1e6)


def flood(count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStats(tmp)
        counter = audience.Counter(store)
        audience.classify.cache_clear()
        tracemalloc.start()
        now = time.time()
        for n in range(count):
            ua = f"FloodReader/{n} (+https://flood.example/{n}) " + "x" * 600
            counter.record("feeds/all.rss", ua, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                           304, 0, 5000, now)
        _, peak = tracemalloc.get_traced_memory()
        counter.flush()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows = store.db.execute("SELECT count(*) FROM poller_hashes").fetchone()[0]
        return {"user_agents": count, "memo_entries": audience.classify.cache_info().currsize,
                "peak_mb": round(peak / 1e6, 1), "after_flush_mb": round(after / 1e6, 1),
                "poller_hashes_stored": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--server", action="store_true")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--flood", type=int, default=300_000)
    args = ap.parse_args()
    report = {"in_process_304_calls_per_s": in_process(args.rounds, args.calls)}
    if args.server:
        report["server_304_req_per_s"] = server(args.duration, args.rounds)
    report["flood"] = flood(args.flood)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
