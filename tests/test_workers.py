"""The worker pool: forked when the process runs one thread, spawned otherwise, and
either way the same bytes as one process.  Each case runs in a fresh interpreter: the
test process itself may run threads left by other tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import ROOT

SCRIPT = textwrap.dedent('''
    import datetime as dt, json, os, sys, threading
    from feedsvc import content, publish, workers
    from feedsvc.corpus import Library
    from feedsvc.cache import Cache


    def pid(_):
        return os.getpid()


    def collecting(_):
        import gc
        return gc.isenabled()


    if __name__ == "__main__":
        root, threaded = sys.argv[1], sys.argv[2] == "threaded"
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        if threaded:                # a watcher-like thread, running while the pool starts
            stop = threading.Event()
            threading.Thread(target=stop.wait, daemon=True).start()
        workers.cores = lambda: 2
        content.PARALLEL_THRESHOLD = 1
        publish.PARALLEL_FEEDS = 1
        with workers.session():
            corpus = Library(root).load()
            cache = Cache(None)
            docs = publish.Publisher(cache).build(corpus, now)
            method = workers._pool._mp_context.get_start_method()
            pids = set(workers.map(pid, range(64), 1))
            collectors = {"build": __import__("gc").isenabled(),
                          "workers": sorted(set(workers.map(collecting, range(64), 1)))}
        collectors["after"] = __import__("gc").isenabled()
        if threaded:
            stop.set()
        print(json.dumps({"method": method, "renders": cache.renders, "pids": len(pids),
                          "main": os.getpid(), "workers": sorted(pids),
                          "collectors": collectors,
                          "docs": {p: d.etag + d.gzip.hex() for p, d in docs.items()}}))
''')


def _run(root, threaded: bool) -> dict:
    script = root.parent / "pool_case.py"       # a file: spawned workers import it again
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(root),
                          "threaded" if threaded else "alone"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pool_is_forked_only_when_the_process_runs_one_thread(bundled):
    alone = _run(bundled.root, threaded=False)
    threaded = _run(bundled.root, threaded=True)
    assert alone["method"] == "fork"
    assert threaded["method"] == "spawn"
    # both pools ran the work in their own processes (a spawned pool starts a second
    # worker only when the first is busy), and made the same documents
    assert 1 <= alone["pids"] <= 2 and 1 <= threaded["pids"] <= 2
    assert alone["main"] not in alone["workers"] and threaded["main"] not in threaded["workers"]
    assert alone["renders"] == threaded["renders"] > 0
    assert alone["docs"] == threaded["docs"]
    # the garbage collector runs during a build, here and in the workers (pausing it
    # saved nothing measurable: bench/README.md)
    for run in (alone, threaded):
        assert run["collectors"] == {"build": True, "workers": [True], "after": True}


def test_forked_workers_give_what_one_process_gives(bundled):
    import datetime as dt

    from feedsvc import publish
    from feedsvc.cache import Cache
    from feedsvc.corpus import Library

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    alone = publish.Publisher(Cache(None)).build(Library(str(bundled.root)).load(), now)
    forked = _run(bundled.root, threaded=False)
    assert forked["docs"] == {p: d.etag + d.gzip.hex() for p, d in alone.items()}
