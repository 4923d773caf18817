"""Serving while starting, and the status page off the request path (issue 14).

    python bench/coldserve.py [--size 10000] [--workers 2]

1. A corpus of `--size` articles (../shared/tools/gen_articles.py) in a temporary
   directory is served once by `feedsvc serve` (127.0.0.1), then restarted on the same
   state: requests for /feeds/all.atom (plain, and with the ETag as If-None-Match) run
   from the restart's first moment until granian answers three times in a row.  It
   prints when the port first answered, until when the start-up listener answered
   (the last published state), and every answer that was not 200/304 with the bytes
   and Last-Modified of before the restart.
2. In process, on the same corpus: the status page's render time on its first request
   (which starts the checks in the background), while they run, and after, against
   one run of `checks.report`.
Every loop is bounded; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GEN = Path(os.environ.get("BENCH_GEN", ROOT.parent / "shared" / "tools" / "gen_articles.py"))
SITE_YML = ('title: "Bench News"\ndescription: "Synthetic corpus."\n'
            'base_url: "http://localhost:8000/"\nlanguage: "en"\ntimezone: "Asia/Tehran"\n')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """`feedsvc serve` in its own process group."""

    def __init__(self, data: Path, state: Path, port: int, workers: int, log: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", "serve", "--port", str(port), "--workers",
             str(workers), "--data-dir", str(data), "--state-dir", str(state)],
            stdout=open(log, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)

    def stop(self) -> None:
        os.killpg(self.proc.pid, 15)
        self.proc.wait(60)


def restart(data: Path, state: Path, workers: int, log: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/feeds/all.atom"
    srv = Serve(data, state, port, workers, log)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).headers.get("Server") == "granian":
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    time.sleep(12)                  # past the checkpoint's quiet time
    before = requests.get(url, timeout=10)
    srv.stop()
    srv = Serve(data, state, port, workers, log)
    t0 = time.monotonic()
    seen: list[tuple[float, str, int, int, bool]] = []
    try:
        while time.monotonic() - t0 < 120 and [s[1] for s in seen[-3:]] != ["granian"] * 3:
            try:
                plain = requests.get(url, timeout=5)
                cond = requests.get(url, headers={"If-None-Match": before.headers["ETag"]},
                                    timeout=5)
            except requests.ConnectionError:
                time.sleep(0.01)
                continue
            same = plain.content == before.content and \
                plain.headers.get("Last-Modified") == before.headers["Last-Modified"]
            seen.append((time.monotonic() - t0, plain.headers.get("Server", ""),
                         plain.status_code, cond.status_code, same))
            time.sleep(0.01)
    finally:
        srv.stop()
    early = [s for s in seen if s[1] != "granian"]
    print(f"restart: first answer at {seen[0][0]:.2f} s; the start-up listener answered "
          f"until {early[-1][0] if early else 0:.2f} s ({len(early)} request pairs); "
          f"granian from {next(s[0] for s in seen if s[1] == 'granian'):.2f} s")
    print("answers other than 200/304 with the same bytes and Last-Modified:",
          [s for s in seen if s[2:] != (200, 304, True)])


def status_page(data: Path, state: Path) -> None:
    from feedsvc import checks, settings
    from feedsvc.live import Service
    from feedsvc.status import StatusPage

    config = settings.resolve({"data_dir": str(data), "state_dir": str(state),
                               "watch": False})
    service = Service(config)
    page = StatusPage(service, config.max_file_bytes)
    t = time.perf_counter()
    page.render()
    first = (time.perf_counter() - t) * 1e3
    print(f"status page, first request (starts the checks): {first:.1f} ms")
    during: list[float] = []
    deadline = time.monotonic() + 300
    while page.checks.running and time.monotonic() < deadline:
        t = time.perf_counter()
        page.render()
        during.append(time.perf_counter() - t)
        time.sleep(0.2)
    after = []
    for _ in range(20):
        t = time.perf_counter()
        html = page.render()
        after.append(time.perf_counter() - t)
    if during:
        print(f"  while checking: median {statistics.median(during) * 1e3:.1f} ms, "
              f"max {max(during) * 1e3:.1f} ms ({len(during)} requests)")
    print(f"  after: median {statistics.median(after) * 1e3:.1f} ms, max "
          f"{max(after) * 1e3:.1f} ms ({len(html) // 1024} KB page)")
    t = time.perf_counter()
    checks.report(service.corpus, dt.datetime.now(dt.UTC), config.max_file_bytes)
    print(f"  one checks.report (what a request cost before): {time.perf_counter() - t:.2f} s")
    service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="coldserve-"))
    try:
        data = tmp / "data"
        subprocess.run([sys.executable, str(GEN), "--out", str(data), "--n", str(args.size)],
                       check=True, stdout=subprocess.DEVNULL)
        (data / "site.yml").write_text(SITE_YML)
        restart(data, tmp / "state", args.workers, tmp / "serve.log")
        status_page(data, tmp / "state")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
