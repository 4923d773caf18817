"""Fallback load generator when wrk is not installed: keep-alive HTTP/1.1 GETs from threads.

    python bench/pyload.py --port P --path /feeds/x.rss [-H 'Name: value'] --duration 5
        [--connections 32] [--processes 2] [--max-requests 2000000]

Bounded in time and in count; prints one JSON line like bench/run.py's wrk script
(requests, duration_us, p50_us, p99_us, errors).  Python is slower than wrk, so the
absolute numbers are a floor set by the client; ratios between servers measured with
the same client are still comparable only while the client is not the bottleneck.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import threading
import time


def _worker(args, conns: int, deadline: float, budget: int, out) -> None:
    lat: list[float] = []
    errors = [0]
    count = [0]
    lock = threading.Lock()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}

    def loop() -> None:
        conn = None
        local: list[float] = []
        while time.perf_counter() < deadline:
            with lock:
                if count[0] >= budget:
                    break
                count[0] += 1
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(args.host, args.port, timeout=5)
                conn.request("GET", args.path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    errors[0] += 1
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            local.append(time.perf_counter() - t)
        with lock:
            lat.extend(local)

    threads = [threading.Thread(target=loop) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((lat, errors[0]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("-H", "--header", action="append", default=[])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--max-requests", type=int, default=2_000_000)
    args = ap.parse_args()
    start = time.perf_counter()
    deadline = start + args.duration
    q: mp.Queue = mp.Queue()
    per = max(1, args.connections // args.processes)
    procs = [mp.Process(target=_worker, args=(args, per, deadline,
                                              args.max_requests // args.processes, q))
             for _ in range(args.processes)]
    for p in procs:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in procs:
        part, err = q.get(timeout=args.duration + 60)
        lat.extend(part)
        errors += err
    for p in procs:
        p.join(timeout=10)
    elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> int:
        return int(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e6) if lat else 0
    print(json.dumps({"requests": len(lat), "duration_us": int(elapsed * 1e6), "p50_us": pct(50),
                      "p90_us": pct(90), "p99_us": pct(99), "max_us": pct(100),
                      "err_status": errors, "err_connect": 0, "err_read": 0, "err_write": 0,
                      "err_timeout": 0, "bytes": 0}))


if __name__ == "__main__":
    main()
