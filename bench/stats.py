"""Audience statistics: what counting costs the 304 path, and memory under a UA flood.

    python bench/stats.py [--rounds 5] [--calls 100000] [--server] [--pairs 8]
                          [--duration 3] [--warmup 1]

1. In process, side by side: the WSGI app (http.FeedApp over the bundled site) answers
   conditional GETs of /feeds/all.rss with a ready 304, its counting hook switched off
   and on between short interleaved rounds (6 per `--rounds`, `--calls`/6 calls each);
   for an aggregator's User-Agent (a reported count) and a self-hosted reader's (whose
   address is kept for the poller hash).  Prints calls/s, on/off, and the hook's cost
   in microseconds from the best rounds.
2. `--server`: the same through real `feedsvc serve --workers 1` servers, counting off
   (`FEEDSVC_STATS=0`) and on, in `--pairs` interleaved pairs: each pair starts two
   fresh servers (in alternating order, so neither the first-started process nor a
   process's memory layout favours one side), then loads each in turn (alternating
   order again) with `--warmup` seconds of load not counted and `--duration` seconds
   counted.  Each server is asked with its own ETag (a server's feeds name its port, so
   ETags differ between servers: asking one with another's ETag measures 200s, which
   is what made earlier runs show counting "faster"), and a run whose answers carry
   bodies stops.  The servers run on one CPU, the load generator (wrk, one thread) on
   another, and its CPU use is reported (`client_cpu_share_max` well under 1: the
   client is not the bottleneck).  Reported per pair and summarised as median and
   range: the on/off throughput ratio and the off/on ratio of the server's CPU time per
   304 (its process tree, from /proc), the throughput ratio of a CPU-bound server,
   which other load on a shared machine disturbs much less.
3. A flood of 300,000 distinct User-Agents through one Counter: the memo's size and
   the process's peak memory growth (tracemalloc), before and after a flush.
Everything runs on 127.0.0.1 and in temporary directories; every loop is bounded.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

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


class Sample(NamedTuple):
    """One measured load: 304s per second, server CPU microseconds per 304, and the share
    of its CPU the load generator used."""
    rate: float
    cpu_us: float
    client_share: float


def server(duration: float, pairs: int, warmup: float) -> dict:
    """Counting off and on through real servers, in interleaved pairs (see the docstring):
    per pair the on/off ratios of throughput and of server CPU per 304, then their
    median and spread."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import Server  # noqa: PLC0415 - the tests' server helper
    server_cpu, client_cpu = _cpus()
    os.sched_setaffinity(0, {server_cpu})       # servers started from here inherit it
    samples: dict[str, dict[str, list[Sample]]] = {k: {"off": [], "on": []} for k in AGENTS}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(pairs):
            order = ("off", "on") if pair % 2 == 0 else ("on", "off")
            srv = {}
            try:
                for name in order:              # fresh processes, started in this order
                    Path(tmp, name).mkdir(exist_ok=True)
                    srv[name] = Server(None, Path(tmp, name, "state"), workers=1,
                                       env={"FEEDSVC_STATS": "1" if name == "on" else "0"})
                for kind, ua in AGENTS.items():
                    for name in order:
                        samples[kind][name].append(
                            _measure(srv[name], ua, duration, warmup, client_cpu))
            finally:
                for s in srv.values():
                    s.stop()
    return {kind: _summary(got["off"], got["on"]) for kind, got in samples.items()}


def _cpus() -> tuple[int, int]:
    """(the servers' CPU, the load generator's CPU): two different ones when we may."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1], cpus[0]


def _measure(srv, ua: str, duration: float, warmup: float, client_cpu: int) -> Sample:
    """`duration` seconds of 304s from `srv`, after `warmup` seconds of the same load."""
    import requests
    asked = {"Accept-Encoding": "gzip", "User-Agent": ua}
    etag = requests.get(srv.url + "/feeds/all.rss", headers=asked, timeout=10).headers["ETag"]
    check = requests.get(srv.url + "/feeds/all.rss", timeout=10,
                         headers={**asked, "If-None-Match": etag})
    assert check.status_code == 304, check.status_code      # each server's own ETag
    if warmup > 0:
        _load(srv.port, etag, ua, warmup, client_cpu)
    before = cpu_seconds(srv.proc.pid)
    rate, client = _load(srv.port, etag, ua, duration, client_cpu)
    used = cpu_seconds(srv.proc.pid) - before
    return Sample(rate, used / (rate * duration) * 1e6, client / duration)


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3),
            "range": [round(min(values), 3), round(max(values), 3)],
            "quartiles": [round(q, 3) for q in statistics.quantiles(values, n=4)]
            if len(values) > 1 else []}


def _summary(off: list[Sample], on: list[Sample]) -> dict:
    """The per-pair ratios, median, range and quartiles: on/off throughput, and off/on
    CPU per 304 (the throughput ratio of a server that is CPU-bound)."""
    return {"pairs": len(off),
            "off_req_per_s": round(statistics.median(s.rate for s in off)),
            "on_req_per_s": round(statistics.median(s.rate for s in on)),
            "cpu_us_per_304_off": round(statistics.median(s.cpu_us for s in off), 2),
            "cpu_us_per_304_on": round(statistics.median(s.cpu_us for s in on), 2),
            "throughput_ratio": _spread([b.rate / a.rate for a, b in zip(off, on)]),
            "cpu_ratio": _spread([a.cpu_us / b.cpu_us for a, b in zip(off, on)]),
            "per_pair_cpu_ratio": [round(a.cpu_us / b.cpu_us, 3) for a, b in zip(off, on)],
            "client_cpu_share_max": round(max(s.client_share for s in off + on), 2)}


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


def _load(port: int, etag: str, ua: str, duration: float, cpu: int) -> tuple[float, float]:
    """(304s per second, CPU seconds the load generator used): wrk with one thread on
    CPU `cpu` (16 connections), or without wrk bench/pyload.py (then the Python client
    is the bottleneck and the ratio says little).  A body in the answers (bytes per
    response above a 304's) stops the run: the ETag did not match."""
    headers = ["Accept-Encoding: gzip", f"If-None-Match: {etag}", f"User-Agent: {ua}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if shutil.which("wrk"):
        cmd = ["wrk", "-t1", "-c16", f"-d{max(1, round(duration))}s", "--timeout", "2s",
               *[a for h in headers for a in ("-H", h)], f"http://127.0.0.1:{port}/feeds/all.rss"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                             check=True, preexec_fn=lambda: os.sched_setaffinity(0, {cpu})
                             ).stdout
        found = re.search(r"(\d+) requests in ([\d.]+)s, ([\d.]+)([KMG]?B) read", out)
        assert found and "Non-2xx" not in out, out
        count = int(found.group(1))
        size = float(found.group(3)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20,
                                        "GB": 1 << 30}[found.group(4)]
        assert size / count < 1000, f"{size / count:.0f} bytes per answer: not 304s"
        rate = count / float(found.group(2))
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "pyload.py"), "--port", str(port),
               "--path", "/feeds/all.rss", "--duration", str(duration), "--connections", "16",
               *[a for h in headers for a in ("-H", h)]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                           check=True)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        rate = res["requests"] / (res["duration_us"] / 1e6)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rate, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


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
    ap.add_argument("--rounds", type=int, default=5, help="in-process rounds")
    ap.add_argument("--pairs", type=int, default=8, help="server pairs (off and on)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load not counted")
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--server", action="store_true")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--flood", type=int, default=300_000)
    args = ap.parse_args()
    report = {"in_process_304_calls_per_s": in_process(args.rounds, args.calls)}
    if args.server:
        report["server_304"] = server(args.duration, args.pairs, args.warmup)
    report["flood"] = flood(args.flood)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
