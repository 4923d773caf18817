"""What idle instances cost their PostgreSQL database: transactions a second.

    python bench/pgidle.py [--instances 2] [--workers 2] [--seconds 30]

Starts a throwaway cluster (as tests/pgcluster.py makes; or `--database-url`), then
`--instances` x `feedsvc serve --workers N` on copies of the bundled site, all on one
database, WebSub hub on, nothing subscribed, nobody polling; after 8 s of start-up,
reads `pg_stat_database.xact_commit` every 5 s for `--seconds` and prints the
transactions a second of each window and their median.  To compare two versions, run
it with `PYTHONPATH` set to each checkout (the servers inherit it).
Everything listens on 127.0.0.1; every loop is bounded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def committed(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
        return int(row[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    cluster, url = None, args.database_url
    if not url:
        sys.path[:0] = [str(ROOT / "tests")]
        from pgcluster import for_bench
        cluster = for_bench("bench/pgidle.py")
        url = cluster.new_database()
    work = Path(tempfile.mkdtemp(prefix="feedsvc-pgidle-"))
    servers: list[subprocess.Popen] = []
    try:
        for n in range(args.instances):
            shutil.copytree(ROOT / "data", work / f"data{n}")
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "feedsvc", "serve", "--port", str(free_port()),
                 "--workers", str(args.workers), "--data-dir", str(work / f"data{n}"),
                 "--state-dir", str(work / f"state{n}")],
                env={**os.environ, "FEEDSVC_DATABASE_URL": url}, cwd=work,  # not ROOT:
                # `-m` puts the working directory before PYTHONPATH
                stdout=open(work / f"serve{n}.log", "w"),  # noqa: SIM115
                stderr=subprocess.STDOUT, start_new_session=True))
        time.sleep(8.0)
        rates, last = [], committed(url)
        for _ in range(max(1, int(args.seconds / 5))):
            time.sleep(5.0)
            now = committed(url)
            rates.append((now - last) / 5.0)
            last = now
        print(f"{args.instances} instances x {args.workers} workers, idle: "
              f"median {statistics.median(rates):.1f} transactions/s "
              f"(5 s windows: {', '.join(f'{r:.1f}' for r in rates)})")
    finally:
        for proc in servers:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
