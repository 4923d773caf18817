"""Child process for bench/run.py: build a feedsvc Service once and report, as JSON.

    python bench/coldstart.py --data DIR --state DIR [--profile FILE]
    python bench/coldstart.py --data DIR --state DIR --incremental N
    python bench/coldstart.py ... --off NAME [--off NAME ...]

Default mode: construct `feedsvc.live.Service` (watch off) on DIR and print one line
`READY` on stdout the moment every feed is servable (the parent times process start to
that line), then a JSON line with the details: import and build seconds, process CPU,
peak RSS at that moment, documents, renders, files read, and a breakdown of where the
build spent its time (wall seconds in nested phases, measured by wrapping feedsvc's
functions; see PHASES).

--incremental N: after the build (and its background cache writes), N times: edit the
title of the newest article (atomic write), time `service.refresh(paths={that file})`
(what the watcher calls when inotify names the file) and its cache writes (CPU of this
process and its children, like the full build's, and wall), record what was rebuilt,
restore the file and refresh again (untimed).

--off NAME: run with one of feedsvc's speed tricks turned off (OFF names them), by
patching a module attribute before the build, so feedsvc's hot path carries no switch;
spawned workers apply the same patches (FEEDSVC_BENCH_OFF).  bench/tricks.py runs each
trick on and off, side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

T0 = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import importlib  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from feedsvc import live
# feedsvc itself is imported in main(), as `feedsvc serve` imports it only in the process
# that builds: the render pool's workers (spawned) import this script again, and they
# would import the whole service with it.

# (label, candidates "module:attr" or "module:Class.attr"): wall time spent inside the
# first candidate that exists, nested as in the code (two spaces per level).  Names that
# the code no longer has are skipped, so this follows feedsvc as it changes.
PHASES = [
    ("scan (stat every file)", ["feedsvc.corpus:Library.scan"]),
    ("load (read + parse changed files, on every core)", ["feedsvc.corpus:Library.load"]),
    ("  parse_article in this process (YAML + checks)", ["feedsvc.loader:parse_article"]),
    ("publish.build (recipes + documents)", ["feedsvc.publish:Publisher.build"]),
    ("  pages (Jinja: index, scope pages, OPML), while bodies render",
     ["feedsvc.htmlpages:_render", "feedsvc.publish:_render"]),
    ("  feed data (waits for the bodies)",
     ["feedsvc.feedmaker:feed", "feedsvc.publish:Publisher._feed"]),
    ("  feedgen + gzip of the feeds (on every core)", ["feedsvc.workers:map"]),
    ("  cache get (SQLite)", ["feedsvc.cache:Cache.get"]),
    ("restamp (validators + responses)", ["feedsvc.live:Service._restamp"]),
    ("  Validators.claim (SQLite)", ["feedsvc.validators:Validators.claim",
                                     "feedsvc.validators:Validators.stamp"]),
]
TIMES: dict[str, list] = {}


def _off_plain() -> None:           # every body through lxml (content._tree, _html)
    from feedsvc import content
    content._plain = lambda html, page_url, trusted=False: None


def _off_held() -> None:            # a first build's cache writes go out as they come
    from contextlib import nullcontext

    from feedsvc import cache
    cache.Cache.held = lambda self: nullcontext()       # type: ignore[method-assign]


def _off_freeze() -> None:          # forked workers may walk (and copy) inherited objects
    from feedsvc import workers
    workers.FREEZE_BEFORE_FORK = False


def _off_fork() -> None:            # the pool is always spawned
    from feedsvc import workers
    workers._one_thread = lambda: False


def _off_splice() -> None:          # every feed written whole, by the plain writers
    from feedsvc import splice
    splice._render = lambda feed, keys, last: splice._plain(feed)


def _off_kept() -> None:            # a feed spliced again is gunzipped and cut again
    from feedsvc import splice
    splice.HELD.max_items = 0


def _off_recent() -> None:          # every refresh reads its bodies from SQLite again
    from feedsvc import bodies
    bodies.RECENT_BODIES = 0


def _off_orjson() -> None:          # JSON Feed bytes by the standard library's json
    from types import SimpleNamespace

    from feedsvc import feeds
    feeds.orjson = SimpleNamespace(dumps=lambda doc: feeds.plain_json(doc)[:-1],
                                   JSONEncodeError=TypeError)


def _off_yaml() -> None:            # every front matter through PyYAML
    from feedsvc import safeyaml
    safeyaml.PLAIN_FIRST = False


# name -> the patch that turns the trick off
OFF = {"plain": _off_plain, "held": _off_held, "freeze": _off_freeze, "fork": _off_fork,
       "splice": _off_splice, "kept": _off_kept, "recent": _off_recent,
       "orjson": _off_orjson, "yaml": _off_yaml}
OFF_ENV = "FEEDSVC_BENCH_OFF"


def turn_off(names: list[str]) -> None:
    for name in names:
        OFF[name]()


if __name__ == "__mp_main__" and os.environ.get(OFF_ENV):     # a spawned pool worker
    turn_off(os.environ[OFF_ENV].split(","))


def _resolve(spec: str) -> tuple[object, str] | None:
    mod_name, _, attr = spec.partition(":")
    try:
        owner: object = importlib.import_module(mod_name)
    except ImportError:
        return None
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    if isinstance(owner, type) and name not in owner.__dict__:
        return None
    return (owner, name) if callable(getattr(owner, name, None)) else None


def _instrument() -> None:
    for label, candidates in PHASES:
        found = next((r for r in map(_resolve, candidates) if r), None)
        if not found:
            continue
        owner, attr = found
        fn = getattr(owner, attr)
        if isinstance(owner, type) and isinstance(owner.__dict__[attr], staticmethod):
            continue
        slot = TIMES.setdefault(label, [0.0, 0])

        def wrapper(*a, __fn=fn, __slot=slot, **kw):
            t = time.perf_counter()
            try:
                return __fn(*a, **kw)
            finally:
                __slot[0] += time.perf_counter() - t
                __slot[1] += 1
        setattr(owner, attr, wrapper)


def cpu() -> float:
    """CPU seconds of this process and of its finished children (a render pool), to the
    microsecond (os.times() counts 10 ms clock ticks: too coarse for one refresh)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _renders(service: "live.Service") -> int:
    return getattr(getattr(service.publisher, "cache", None), "renders", -1)


def _rss_kb() -> int:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".bench-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def retitle(text: bytes, mark: str) -> bytes:
    """Prefix the front matter title with a marker, keeping the YAML scalar valid."""
    lines = text.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"title:"):
            value = line[6:].strip()
            tag = f"Bench edit {mark} ".encode()
            if value[:1] in (b"'", b'"'):
                lines[i] = b"title: " + value[:1] + tag + value[1:]
            else:
                lines[i] = b"title: " + tag + value
            return b"\n".join(lines)
    raise ValueError("no title line")


def incremental(service: "live.Service", reps: int) -> dict:
    newest = service.corpus.articles[0]
    path = os.path.join(service.config.data_dir, newest.path)
    with open(path, "rb") as f:
        original = f.read()
    was = os.stat(path)
    # the cold build's cache writes go on in a background thread for a few seconds: they
    # are its cost, not an edit's, so they are done before the first edit is timed
    service.cache.flush()
    runs = []
    try:
        for i in range(reps):
            _atomic_write(path, retitle(original, f"{os.getpid()}-{i}"))
            reads, renders = service.library.reads, _renders(service)
            walks = service.library.walks
            c0, w0 = cpu(), time.perf_counter()
            # what the watcher does when inotify names the saved file, and its cache writes
            changed = service.refresh(paths={os.path.abspath(path)})
            service.cache.flush()
            cpu_s, wall = cpu() - c0, time.perf_counter() - w0
            runs.append({"cpu_s": cpu_s, "wall_s": wall, "changed": changed,
                         "walks": service.library.walks - walks,
                         "rebuilt": len(service.rebuilt), "rebuilt_paths": service.rebuilt,
                         "files_read": service.library.reads - reads,
                         "renders": _renders(service) - renders})
            _atomic_write(path, original)
            service.refresh()
    finally:
        _atomic_write(path, original)
        # its old time back: a cold start within scan.RACY_SECONDS of a save reads that
        # file again at its next (warm) restart, which would time a re-read, not a restart
        os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))
    return {"article": newest.path, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--profile", help="write cProfile stats of the build to this file")
    ap.add_argument("--incremental", type=int, default=0)
    ap.add_argument("--off", action="append", default=[], choices=sorted(OFF),
                    help="turn this speed trick off (repeatable)")
    a = ap.parse_args()
    if a.off:
        os.environ[OFF_ENV] = ",".join(a.off)
        turn_off(a.off)
    from feedsvc import live, settings
    t_import = time.perf_counter() - T0
    cfg = settings.resolve({"data_dir": a.data, "state_dir": a.state, "watch": False})
    if not a.profile and not a.incremental:   # the wrappers would be timed with each edit
        _instrument()
    c0, w0 = cpu(), time.perf_counter()
    if a.profile:
        import cProfile
        prof = cProfile.Profile()
        service = prof.runcall(live.Service, cfg)
        prof.dump_stats(a.profile)
    else:
        service = live.Service(cfg)
    build_wall, build_cpu = time.perf_counter() - w0, cpu() - c0
    print("READY", flush=True)
    ready_at, rss_at_ready, c1 = time.perf_counter() - T0, _rss_kb(), cpu()
    service.cache.flush()       # a first build's cache writes: held until it was done
    out = {
        "off": a.off,
        "import_s": t_import, "build_s": build_wall, "build_cpu_s": build_cpu,
        "since_interpreter_start_s": ready_at, "rss_kb_at_ready": rss_at_ready,
        "caches_written_s": time.perf_counter() - T0, "cache_write_cpu_s": cpu() - c1,
        "articles": len(service.corpus.articles), "documents": len(service.documents),
        "feeds": sum(1 for p in service.documents if p.startswith("feeds/")),
        "renders": _renders(service), "files_read": service.library.reads,
        "errors": len(service.errors),
        "phases": {k: {"s": v[0], "calls": v[1]} for k, v in TIMES.items()},
    }
    if a.incremental:
        out["incremental"] = incremental(service, a.incremental)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
