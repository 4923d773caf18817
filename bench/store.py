"""State stores side by side: cold start on SQLite and on PostgreSQL, a second instance
with an empty disk on a warm database, and a one-article refresh's database work.

    python bench/store.py [--n 10000] [--reps 5] [--database-url URL]

Without --database-url it makes a throwaway PostgreSQL cluster (tests/pgcluster.py:
initdb in a temp dir, a free 127.0.0.1 port, removed at the end).  Each start runs in
its own process (bench/coldstart.py, which prints build wall and CPU); the corpus is
bench/run.py's generated one.  Prints one JSON object; bench/README.md has the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(BENCH)]


def start(data: Path, state: Path, url: str = "") -> dict:
    """One cold or warm start of a Service in a new process: coldstart.py's report."""
    env = {**os.environ, "FEEDSVC_DATABASE_URL": url}
    out = subprocess.run([sys.executable, str(BENCH / "coldstart.py"), "--data", str(data),
                          "--state", str(state)], env=env, capture_output=True, text=True,
                         check=True, timeout=1800)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(report[k], 3) for k in ("build_s", "build_cpu_s", "caches_written_s",
                                             "cache_write_cpu_s")} | {
        "renders": report["renders"], "documents": report["documents"]}


def refresh_db_ms(data: Path, state: Path, url: str, reps: int) -> dict:
    """A one-article edit on a warm instance: the refresh's wall time, and the part of it
    spent in database calls (validators and caches, cache writes included)."""
    from coldstart import _atomic_write, retitle

    from feedsvc import live, pglink, settings
    spent: list[float] = []
    run = pglink.PgLink.run

    def timed(self, work):
        t = time.perf_counter()
        try:
            return run(self, work)
        finally:
            spent.append(time.perf_counter() - t)
    pglink.PgLink.run = timed       # type: ignore[method-assign]
    service = live.Service(settings.resolve({"data_dir": str(data), "state_dir": str(state),
                                             "database_url": url, "watch": False}))
    service.cache.flush()
    newest = max(service.corpus.articles, key=lambda a: a.published)
    path = os.path.join(str(data), newest.source) if hasattr(newest, "source") else None
    if path is None or not os.path.exists(path):
        path = str(sorted((data / "articles").rglob("*.md"))[-1])
    original = Path(path).read_bytes()
    walls, dbs = [], []
    try:
        for i in range(reps):
            _atomic_write(path, retitle(original, f"bench {i}"))
            spent.clear()
            t = time.perf_counter()
            service.refresh(paths={os.path.relpath(path, data)})
            service.cache.flush()
            walls.append((time.perf_counter() - t) * 1000)
            dbs.append(sum(spent) * 1000)
    finally:
        _atomic_write(path, original)
        service.close()
    return {"refresh_wall_ms_median": round(statistics.median(walls), 1),
            "db_ms_median": round(statistics.median(dbs), 1),
            "db_ms_max": round(max(dbs), 1)}


def throughput(data: Path, work: Path, url: str, seconds: float) -> dict:
    """304 and 200 (gzip) requests per second of /feeds/all.rss from `feedsvc serve`
    (2 workers) on SQLite and on PostgreSQL, alternated twice (A B A B) against drift."""
    import run
    (run.OUT / "logs").mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, list[float]]] = {"sqlite": {}, "postgresql": {}}
    for rep in range(2):
        for kind, db in (("sqlite", ""), ("postgresql", url)):
            port = run.free_port()
            p = run.start([sys.executable, "-m", "feedsvc", "serve", "--port", str(port),
                           "--workers", "2"], name=f"store-{kind}",
                          env=run.feedsvc_env(data, work / f"tp-{kind}",
                                              FEEDSVC_DATABASE_URL=db))
            try:
                run.wait_ready(p, port, "/feeds/all.rss", 600, workers=2, healthz=True)
                _, headers, _ = run.request(port, "/feeds/all.rss", {"Accept-Encoding": "gzip"})
                for case in ("304", "200 gzip"):
                    res = run.load(port, "/feeds/all.rss",
                                   run.case_headers(case, headers["etag"]), seconds, 8, 2)
                    out[kind].setdefault(case, []).append(round(res["rps"]))
            finally:
                run.stop(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--load-seconds", type=float, default=5.0,
                    help="per throughput case (on a 1,000-article corpus); 0: skip")
    a = ap.parse_args()
    from run import corpus
    data = corpus(a.n)
    work = Path(tempfile.mkdtemp(prefix="feedsvc-bench-store-"))
    cluster = None
    url = a.database_url
    try:
        if not url:
            from pgcluster import for_bench
            cluster = for_bench("bench/store.py")
            url = cluster.new_database()
        copy = work / "copy"
        shutil.copytree(data, copy)         # the second machine's copy (times kept)
        out = {"articles": a.n,
               "sqlite_cold": start(data, work / "s-sqlite"),
               "postgresql_cold": start(data, work / "s-pg1", url),
               "postgresql_second_instance_empty_disk": start(copy, work / "s-pg2", url),
               "refresh_one_article": refresh_db_ms(copy, work / "s-pg2", url, a.reps)}
        out["pg_over_sqlite_cold_wall"] = round(
            out["postgresql_cold"]["build_s"] / out["sqlite_cold"]["build_s"], 2)
        if a.load_seconds:
            out["rps_all_rss_1k"] = throughput(corpus(1000), work, url, a.load_seconds)
        print(json.dumps(out, indent=1))
    finally:
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
