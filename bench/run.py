"""feedsvc benchmark suite: one command, every number side by side, a Markdown report.

    python bench/run.py [--sizes 1000,10000,50000] [--quick]

See bench/README.md for what each number means.  Everything it writes goes to
bench/out/ (corpora, state dirs, Hugo and nginx output, report.md, results.json).
Every load loop is bounded in time and count, every server it starts is stopped
(its own process group), and all traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
GEN = Path(os.environ.get("BENCH_GEN", ROOT.parent / "shared" / "tools" / "gen_articles.py"))
PY = sys.executable
T_START = time.perf_counter()
SITE_YML = """title: "Bench News"
description: "Synthetic corpus for the feedsvc benchmarks."
base_url: "http://localhost:8000/"
language: "en"
timezone: "UTC"
items_per_feed: 50
"""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------
_LIVE: list[subprocess.Popen] = []


def _stop_all() -> None:
    for p in list(_LIVE):
        stop(p)


atexit.register(_stop_all)


def start(cmd: list[str], env: dict | None = None, cwd: Path | None = None,
          name: str = "server") -> subprocess.Popen:
    logf = open(OUT / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd or ROOT,
                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    p._bench_log = logf  # type: ignore[attr-defined]
    _LIVE.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    """Stop a server we started: SIGTERM to its own process group, SIGKILL after 10 s."""
    if p in _LIVE:
        _LIVE.remove(p)
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if p.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)        # stragglers (workers) in the same group
    p._bench_log.close()  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, path: str, headers: dict | None = None, method: str = "GET",
            timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def wait_ready(p: subprocess.Popen, port: int, path: str, timeout: float,
               workers: int = 1, healthz: bool = False) -> float:
    """Poll until `path` answers (and, with healthz, until `workers` distinct pids answered)."""
    t0 = time.perf_counter()
    pids: set = set()
    while time.perf_counter() - t0 < timeout:
        if p.poll() is not None:
            raise RuntimeError(f"server exited with {p.returncode}; see {p._bench_log.name}")  # type: ignore[attr-defined]
        try:
            if healthz:
                status, _, body = request(port, "/healthz", timeout=5)
                if status == 200:
                    pids.add(json.loads(body)["worker"])   # an opaque token per worker
                    if len(pids) >= workers:
                        return time.perf_counter() - t0
            else:
                status, _, _ = request(port, path, timeout=5)
                if status < 500:
                    return time.perf_counter() - t0
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s")


# -- process tree memory sampling ----------------------------------------------------------
class TreeRss:
    """Samples the memory of a process and its descendants (catches worker pools): RSS
    while it is alone, else the sum of PSS, so pages a fork shares count once."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every, self.peak_kb = pid, every, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _tree(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
        return out

    @staticmethod
    def _rss_kb(pid: int) -> int:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)

    @staticmethod
    def _pss_kb(pid: int) -> int:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = self._tree()
            total = 0
            for pid in pids:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += self._rss_kb(pid) if len(pids) == 1 else self._pss_kb(pid)
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.every if len(pids) == 1 else 0.05)

    def stop(self) -> int:
        self._stop.set()
        self._t.join(2)
        return self.peak_kb


def busy_cpu_s() -> float:
    """CPU seconds all cores have been busy since boot (to see what other processes used)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd: list[str], *, cwd: Path = ROOT, env: dict | None = None,
                 ready_line: str | None = None, timeout: float = 3600) -> dict:
    """Run a child; wall time to exit (or to `ready_line` on stdout), its own peak RSS."""
    busy0 = busy_cpu_s()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    _LIVE_CHILD.append(p)
    sampler = TreeRss(p.pid)
    ready_s = None
    lines: list[str] = []
    err_chunks: list[str] = []
    errt = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)  # type: ignore[union-attr]
    errt.start()
    timer = threading.Timer(timeout, lambda: os.killpg(p.pid, signal.SIGKILL))
    timer.start()
    try:
        for line in p.stdout:  # type: ignore[union-attr]
            if ready_line and ready_s is None and line.strip() == ready_line:
                ready_s = time.perf_counter() - t0
                tree_kb = sampler.stop()
                continue
            lines.append(line)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        _LIVE_CHILD.remove(p)
    wall = time.perf_counter() - t0
    others = busy_cpu_s() - busy0 - (ru.ru_utime + ru.ru_stime)
    if ready_s is None:
        tree_kb = sampler.stop()
    errt.join(5)
    return {"wall_s": wall, "ready_s": ready_s, "rc": p.returncode,
            "ru_maxrss_kb": ru.ru_maxrss, "tree_rss_kb": tree_kb,
            "cpu_s": ru.ru_utime + ru.ru_stime, "others_cpu_s": max(0.0, others),
            "stdout": "".join(lines),
            "stderr": "".join(err_chunks)[-4000:]}


_LIVE_CHILD: list[subprocess.Popen] = []
atexit.register(lambda: [os.killpg(p.pid, signal.SIGKILL) for p in _LIVE_CHILD
                         if p.poll() is None])


# -- corpora --------------------------------------------------------------------------------
def corpus(n: int) -> Path:
    """bench/out/corpus-N: generated once (deterministic), regenerated if unfinished or dirty."""
    d = OUT / f"corpus-{n}"
    marker = d / ".bench-corpus.json"
    want = {"n": n, "seed": 42, "generator": hashlib.sha256(GEN.read_bytes()).hexdigest()}
    if marker.exists() and not (d / ".bench-dirty").exists():
        try:
            if json.loads(marker.read_text()) == want:
                return d
        except ValueError:
            pass
    if d.exists():
        shutil.rmtree(d)
    log(f"generating {n} articles into {d.relative_to(ROOT)}")
    t = time.perf_counter()
    subprocess.run([PY, str(GEN), "--out", str(d), "--n", str(n), "--seed", "42"], check=True,
                   stderr=subprocess.DEVNULL)
    (d / "site.yml").write_text(SITE_YML)
    marker.write_text(json.dumps(want))
    log(f"  generated in {time.perf_counter() - t:.1f} s")
    return d


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def feedsvc_env(data: Path, state: Path, **extra: str) -> dict:
    env = {"FEEDSVC_DATA_DIR": str(data), "FEEDSVC_STATE_DIR": str(state)}
    env.update(extra)
    return env


# -- load generation ----------------------------------------------------------------------
WRK = shutil.which("wrk")
LUA = """wrk.method = "GET"
{headers}
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,' ..
    '"p90_us":%d,"p99_us":%d,"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
"""


def load(port: int, path: str, headers: dict, duration: float, conns: int, threads: int) -> dict:
    """Closed-loop keep-alive load for `duration` seconds: req/s and latency percentiles."""
    if WRK:
        script = OUT / "logs" / "wrk.lua"
        script.write_text(LUA.format(headers="\n".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())))
        cmd = [WRK, f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s",
               "--timeout", "2s",
               "-s", str(script), f"http://127.0.0.1:{port}{path}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        m = re.search(r"^WRKJSON (.*)$", r.stdout, re.M)
        if not m:
            raise RuntimeError(f"wrk failed: {r.stdout}\n{r.stderr}")
        res = json.loads(m.group(1))
        res["tool"] = "wrk"
    else:
        cmd = [PY, str(BENCH / "pyload.py"), "--port", str(port), "--path", path,
               "--duration", str(duration), "--connections", str(conns)]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["tool"] = "python"
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    res["errors"] = sum(res[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                          "err_timeout"))
    return res


CASES = ["304", "200 identity", "200 gzip"]


def case_headers(case: str, etag_gz: str) -> dict:
    if case == "304":
        return {"Accept-Encoding": "gzip", "If-None-Match": etag_gz}
    if case == "200 gzip":
        return {"Accept-Encoding": "gzip"}
    return {}


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all CPUs busy over `seconds` (what else is running on the machine)."""
    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(1, t1 - t0)


# the built-in hub's link in an RSS, Atom or JSON feed (`feedsvc serve` advertises it; a
# static export, which runs no hub, does not)
HUB_LINK = re.compile(rb'\n *<(?:atom:)?link href="[^"]*/websub" rel="hub"/>|'
                      rb'"hubs":\[\{"type":"WebSub","url":"[^"]*/websub"\}\],')


def same_bytes(name: str, case: str, body: bytes, expect: dict) -> bool:
    """Whether `body` is what feedsvc served; for the static export (nginx, build), once
    the built-in hub's link is left out of feedsvc's bytes."""
    want = expect["gzip" if "gzip" in case else "identity"]
    if body == want or not name.startswith("nginx (build)"):
        return body == want
    if "gzip" in case:
        body = gzip.decompress(body)
    return body == HUB_LINK.sub(b"", expect["identity"], count=1)


def check_cases(name: str, port: int, path: str, expect: dict | None,
                cases: list[str]) -> tuple[str, dict]:
    """The server's own gzip ETag, and whether each case answers as it should."""
    st, h, _ = request(port, path, {"Accept-Encoding": "gzip"})
    if st != 200:
        raise RuntimeError(f"{name}: GET {path} gave {st}")
    etag_gz = h.get("etag", "")
    checks = {}
    for case in cases:
        st, h, body = request(port, path, case_headers(case, etag_gz))
        want = 304 if case == "304" else 200
        c = {"status": st, "ok": st == want and bool(etag_gz), "wire_bytes": len(body),
             "content_encoding": h.get("content-encoding", ""), "vary": h.get("vary", "")}
        if expect and case != "304":
            c["same_bytes_as_feedsvc"] = same_bytes(name, case, body, expect)
        if case == "200 gzip":
            c["ok"] = c["ok"] and h.get("content-encoding") == "gzip"
        if not c["ok"]:
            log(f"  {name} {case}: unexpected answer {c}")
        checks[case] = c
    return etag_gz, checks


def bench_server(name: str, port: int, path: str, args, expect: dict | None, into: dict,
                 cases: list[str] = CASES) -> None:
    """One round: check the cases, then warm up and load each one; append to `into`."""
    busy = cpu_busy(0.5)
    etag_gz, checks = check_cases(name, port, path, expect, cases)
    for case in cases:
        hdrs = case_headers(case, etag_gz)
        load(port, path, hdrs, args.warmup, args.connections, args.threads)
        r = load(port, path, hdrs, args.duration, args.connections, args.threads)
        r["background_busy"] = busy
        slot = into.setdefault(case, {"rounds": [], "check": checks[case]})
        slot["rounds"].append(r)
        if not checks[case]["ok"]:
            slot["check"] = checks[case]
        wrong = "" if checks[case]["ok"] else f"  (WRONG ANSWER: {checks[case]['status']})"
        log(f"  {name:30s} {case:13s} {r['rps']:9.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms"
            f"  p99 {r['p99_us'] / 1000:6.2f} ms  errors {r['errors']}{wrong}")


def summarize(cases: dict) -> None:
    """Best round (highest req/s: other load on the machine only ever lowers it) and median."""
    for slot in cases.values():
        rounds = slot["rounds"]
        best = max(rounds, key=lambda r: r["rps"])
        slot.update(rps=best["rps"], p50_us=best["p50_us"], p99_us=best["p99_us"],
                    background_busy=best["background_busy"])
        slot["rps_median"] = statistics.median(r["rps"] for r in rounds)
        slot["rps_min"] = min(r["rps"] for r in rounds)
        slot["errors"] = sum(r["errors"] for r in rounds)
        slot["tool"] = rounds[0]["tool"]


# -- nginx ----------------------------------------------------------------------------------
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
PORT_MARK = "127.0.0.1:BENCHPORT"


def nginx_main_conf(prefix: Path, server_block: str, workers: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "\n".join(f"    {k}_temp_path {prefix / ('tmp-' + k)};"
                      for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes {workers};
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
{temps}
{server_block}
}}
"""


def feedsvc_build_help() -> str | None:
    r = subprocess.run([PY, "-m", "feedsvc", "build", "--help"], cwd=ROOT, capture_output=True,
                       text=True)
    return r.stdout if r.returncode == 0 else None


def nginx_from_build(data: Path, state: Path, help_text: str) -> tuple[str, str, float]:
    """Run `feedsvc build`; its server block (listening on PORT_MARK), a note, build seconds."""
    out = fresh(OUT / "serve" / "build")
    cmd = [PY, "-m", "feedsvc", "build", str(out)]
    if "--listen" in help_text:
        cmd[4:4] = ["--listen", PORT_MARK]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, **feedsvc_env(data, state)}, timeout=1800)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"feedsvc build failed: {r.stderr[-2000:]}")
    confs = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix == ".conf")
    confs = [p for p in confs if re.search(r"^\s*server\s*\{", p.read_text(errors="replace"), re.M)]
    if not confs:
        raise RuntimeError(f"feedsvc build wrote no nginx server block under {out}")
    text = confs[0].read_text()
    if re.search(r"^\s*http\s*\{", text, re.M):
        raise RuntimeError(f"{confs[0]} is a whole nginx.conf; expected a server block")
    text = re.sub(r"^(\s*)listen\s+[^;]*;", rf"\1listen {PORT_MARK};", text, flags=re.M)
    if not re.search(r"^\s*listen\s", text, re.M):
        text = re.sub(r"server\s*\{", f"server {{\n    listen {PORT_MARK};", text, count=1)
    if not re.search(r"^\s*root\s", text, re.M):
        text = re.sub(r"server\s*\{", f"server {{\n    root {out};", text, count=1)
    return text, f"`feedsvc build` output ({took:.1f} s to build), its server block " \
                 f"`{confs[0].relative_to(ROOT)}`", took


def nginx_static(path: str, payload: dict) -> tuple[str, str]:
    """The same bytes as plain files, gzip_static, etag on (the issue's nginx anchor)."""
    root = fresh(OUT / "serve" / "static")
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(payload["identity"])
    Path(str(f) + ".gz").write_bytes(payload["gzip"])
    block = f"""    types {{ application/rss+xml rss; application/atom+xml atom; }}
    server {{
        listen {PORT_MARK};
        root {root};
        charset utf-8;
        charset_types application/rss+xml application/atom+xml;
        etag on;
        gzip_static on;
        gzip_vary on;
        add_header Cache-Control "public, max-age=300";
        location / {{ try_files $uri =404; }}
    }}"""
    return block, "a static copy of the same bytes with a bench-made config " \
                  "(gzip_static, etag on, access_log off)"


def start_nginx(name: str, block: str, workers: int, port: int) -> subprocess.Popen:
    prefix = fresh(OUT / "serve" / f"nginx-{name}-w{workers}")
    prefix.mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_main_conf(prefix, block.replace(PORT_MARK, f"127.0.0.1:{port}"),
                                    workers))
    t = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True,
                       text=True)
    if t.returncode != 0:
        raise RuntimeError(f"nginx -t failed for {conf}: {t.stderr}")
    return start([NGINX, "-p", str(prefix), "-c", str(conf)], name=f"nginx-{name}-w{workers}")


# -- 1. serving -------------------------------------------------------------------------------
def pick_feed(port: int, target: int) -> tuple[str, int]:
    """The RSS feed whose identity size is closest to `target` bytes (from the OPML)."""
    st, _, body = request(port, "/feeds.opml")
    urls = [el.get("xmlUrl") for el in ElementTree.fromstring(body).iter("outline")
            if el.get("xmlUrl", "").endswith(".rss")]
    best = None
    for url in urls:
        path = "/" + url.split("/", 3)[3]
        st, h, _ = request(port, path, method="HEAD")
        size = int(h.get("content-length", 0))
        if best is None or abs(size - target) < abs(best[1] - target):
            best = (path, size)
    assert best
    return best


def serving(args, results: dict) -> None:
    data = corpus(1000)
    state = fresh(OUT / "state" / "serve-1000")
    res: dict = {"runs": {}, "gunicorn": {}, "notes": []}
    results["serving"] = res

    def feedsvc_serve(workers: int) -> tuple[subprocess.Popen, int]:
        port = free_port()
        p = start([PY, "-m", "feedsvc", "serve", "--port", str(port), "--workers", str(workers)],
                  env=feedsvc_env(data, state), name=f"feedsvc-w{workers}")
        wait_ready(p, port, "/", 600, workers=workers, healthz=True)
        return p, port

    # The payload: the feed's bytes and headers as feedsvc serves them (fills the state dir).
    log("serving: starting feedsvc serve on the 1k corpus to pick the feed")
    p, port = feedsvc_serve(1)
    try:
        if args.feed:
            path = args.feed
        else:
            path, _ = pick_feed(port, 65 * 1024)
        st, h_id, body_id = request(port, path)
        st2, h_gz, body_gz = request(port, path, {"Accept-Encoding": "gzip"})
        if st != 200 or st2 != 200:
            raise RuntimeError(f"feedsvc answered {st}/{st2} for {path}")
    finally:
        stop(p)
    payload = {"identity": body_id, "gzip": body_gz}
    pdir = fresh(OUT / "serve" / "payload")
    pdir.mkdir(parents=True)
    meta: dict = {"path": path}
    for name, hh, body in (("identity", h_id, body_id), ("gzip", h_gz, body_gz)):
        (pdir / f"{name}.bin").write_bytes(body)
        keep = [({"etag": "ETag"}.get(k) or "-".join(w.capitalize() for w in k.split("-")), v)
                for k, v in hh.items()
                if k in ("content-type", "content-length", "content-encoding", "etag",
                         "last-modified", "vary", "cache-control")]
        meta[name] = {"file": f"{name}.bin", "etag": hh["etag"], "headers": keep}
    (pdir / "meta.json").write_text(json.dumps(meta, indent=1))
    res.update(feed=path, identity_bytes=len(body_id), gzip_bytes=len(body_gz))
    log(f"  feed {path}: {len(body_id)} bytes, {len(body_gz)} gzipped")
    menv = {"BENCH_PAYLOAD": str(pdir)}

    # Every server to measure: name -> (label, workers, starter returning (proc, port)).
    def minimal(w: int):
        def go():
            port = free_port()
            p = start([PY, str(BENCH / "minimal_app.py"), "--port", str(port), "--workers",
                       str(w)], env=menv, name=f"minimal-w{w}")
            wait_ready(p, port, path, 60)
            time.sleep(0.5)                               # let every worker come up
            return p, port
        return go

    def nginx(kind: str, block: str, w: int):
        def go():
            port = free_port()
            p = start_nginx(kind, block, w, port)
            wait_ready(p, port, path, 30)
            return p, port
        return go

    servers: dict[str, tuple] = {}
    for w in (1, 2):
        servers[f"feedsvc w{w}"] = ("feedsvc (granian)", w, lambda w=w: feedsvc_serve(w))
        servers[f"minimal w{w}"] = ("minimal WSGI (granian)", w, minimal(w))
    if NGINX:
        kinds: list[tuple[str, str]] = []
        help_text = feedsvc_build_help() if args.nginx in ("auto", "both", "build") else None
        if help_text:
            try:
                block, note, took = nginx_from_build(data, state, help_text)
                kinds.append(("build", block))
                res["notes"].append(f"nginx-build: {note}.")
                res["build_s"] = took
            except Exception as e:  # noqa: BLE001 - report and go on with the static copy
                res["notes"].append(f"nginx-build failed: {e}")
                log(f"  nginx build: {e}")
        elif args.nginx in ("auto", "both", "build"):
            res["nginx_build_missing"] = True
            log("  `feedsvc build` is not available: nginx serves a static copy instead")
        if args.nginx in ("both", "static") or not kinds:
            block, note = nginx_static(path, payload)
            kinds.append(("static", block))
            res["notes"].append(f"nginx-static: {note}.")
        for kind, block in kinds:
            for w in (1, 2):
                servers[f"nginx-{kind} w{w}"] = (f"nginx ({kind})", w, nginx(kind, block, w))
    else:
        res["notes"].append("nginx is not installed: no nginx comparison.")

    # Rounds: each server in turn, alone on the machine, so drifting background load
    # (other processes) hits every server alike; the report takes the median round.
    for rnd in range(args.rounds):
        log(f"serving round {rnd + 1}/{args.rounds}")
        for name, (label, w, go) in servers.items():
            try:
                p, port = go()
            except Exception as e:  # noqa: BLE001
                res["notes"].append(f"{name}: could not start: {e}")
                log(f"  {name}: could not start: {e}")
                continue
            try:
                run = res["runs"].setdefault(name, {"label": label, "workers": w, "cases": {}})
                bench_server(f"{label} w{w}", port, path, args, payload, run["cases"])
            finally:
                stop(p)
    for run in res["runs"].values():
        summarize(run["cases"])

    # gunicorn sync workers, 304 only, one round: the server choice.
    if shutil.which("gunicorn") and not args.quick:
        for label, cmd, env, cwd in (
                ("feedsvc", ["gunicorn", "-w", "2", "-k", "sync", "-b", "127.0.0.1:{port}",
                             "wsgi:app"], feedsvc_env(data, state), ROOT),
                ("minimal", ["gunicorn", "-w", "2", "-k", "sync", "-b", "127.0.0.1:{port}",
                             "minimal_app:app"], menv, BENCH)):
            port = free_port()
            p = start([c.format(port=port) for c in cmd], env=env, cwd=cwd,
                      name=f"gunicorn-{label}")
            try:
                if label == "feedsvc":
                    wait_ready(p, port, path, 600, workers=2, healthz=True)
                else:
                    wait_ready(p, port, path, 60)
                    time.sleep(0.5)
                cases: dict = {}
                bench_server(f"{label} (gunicorn sync) w2", port, path, args, payload, cases,
                             cases=["304"])
                summarize(cases)
                res["gunicorn"][label] = {"cases": cases}
            finally:
                stop(p)


# -- 2, 3. cold start, warm restart, Hugo; 4b. incremental CPU -------------------------------
def warm_page_cache(data: Path) -> None:
    """Read every file of the corpus once, so each start below finds it in the page cache:
    otherwise the first program to run pays the disk reads for the ones after it."""
    for f in data.rglob("*"):
        if f.is_file():
            f.read_bytes()


def feedsvc_start(data: Path, state: Path, incremental: int = 0,
                  profile: Path | None = None, off: tuple[str, ...] = ()) -> dict:
    warm_page_cache(data)
    cmd = [PY, str(BENCH / "coldstart.py"), "--data", str(data), "--state", str(state)]
    for name in off:
        cmd += ["--off", name]
    if incremental:
        cmd += ["--incremental", str(incremental)]
    if profile:
        cmd += ["--profile", str(profile)]
    if incremental:
        (data / ".bench-dirty").write_text("an edit may be in progress\n")
    r = run_measured(cmd, ready_line="READY")
    if r["rc"] != 0 or r["ready_s"] is None:
        raise RuntimeError(f"coldstart.py failed ({r['rc']}): {r['stderr']}")
    (data / ".bench-dirty").unlink(missing_ok=True)
    detail = json.loads(r["stdout"].strip().splitlines()[-1])
    peak = max(detail["rss_kb_at_ready"], r["tree_rss_kb"])
    if not incremental and not profile:
        peak = max(peak, r["ru_maxrss_kb"])
    return {"ready_s": r["ready_s"], "peak_rss_kb": peak, "child_cpu_s": r["cpu_s"],
            "ru_maxrss_kb": r["ru_maxrss_kb"], "tree_rss_kb": r["tree_rss_kb"],
            "others_cpu_s": r["others_cpu_s"], "wall_s": r["wall_s"], **detail}


def hugo_build(data: Path, n: int) -> dict | None:
    hugo = shutil.which("hugo")
    if not hugo:
        return None
    dest, cache = fresh(OUT / f"hugo-public-{n}"), fresh(OUT / "hugo-cache")
    warm_page_cache(data)
    r = run_measured([hugo, "--quiet", "--noBuildLock", "-s", str(BENCH / "hugo"),
                      "--contentDir", str(data / "articles"), "--destination", str(dest),
                      "--cacheDir", str(cache)], cwd=BENCH / "hugo",
                     env={"HUGO_RESOURCEDIR": str(cache / "resources")})
    if r["rc"] != 0:
        log(f"  hugo failed: {r['stderr'][-1000:]}")
        return None
    feeds = sum(1 for _ in dest.rglob("index.xml"))
    return {"wall_s": r["wall_s"], "peak_rss_kb": max(r["ru_maxrss_kb"], r["tree_rss_kb"]),
            "cpu_s": r["cpu_s"], "feeds": feeds, "others_cpu_s": r["others_cpu_s"]}


def _median_run(runs: list[dict], time_key: str) -> dict:
    """The run with the median time, with the median peak memory of all runs and every
    run's time and memory beside it (the machine is noisy: one run proves little)."""
    ordered = sorted(runs, key=lambda r: r[time_key])
    peaks = sorted(r["peak_rss_kb"] for r in runs)
    return {**ordered[len(ordered) // 2], "peak_rss_kb": peaks[len(peaks) // 2],
            "all_s": [round(r[time_key], 3) for r in runs],
            "all_peak_kb": [r["peak_rss_kb"] for r in runs]}


def startup(args, results: dict) -> None:
    res = results.setdefault("startup", {})
    for n in args.sizes:
        data = corpus(n)
        colds, warms, hugos = [], [], []
        for i in range(args.startup_rounds):      # side by side, taking turns
            state = fresh(OUT / "state" / f"cold-{n}")
            log(f"cold start, {n} articles (fresh state dir), round {i + 1}")
            cold = feedsvc_start(data, state)
            log(f"  feedsvc cold: {cold['ready_s']:.2f} s, "
                f"peak RSS {cold['peak_rss_kb'] / 1024:.0f} MB,"
                f" {cold['renders']} renders, {cold['documents']} documents")
            log(f"warm restart, {n} articles (state dir of the cold run)")
            warm = feedsvc_start(data, state)
            log(f"  feedsvc warm: {warm['ready_s']:.2f} s, "
                f"peak RSS {warm['peak_rss_kb'] / 1024:.0f} MB,"
                f" {warm['renders']} renders")
            log(f"hugo, {n} articles")
            hugo = hugo_build(data, n)
            if hugo:
                log(f"  hugo: {hugo['wall_s']:.2f} s, peak RSS "
                    f"{hugo['peak_rss_kb'] / 1024:.0f} MB, {hugo['feeds']} feeds")
                hugos.append(hugo)
            colds.append(cold)
            warms.append(warm)
        res[str(n)] = {"cold": _median_run(colds, "ready_s"),
                       "warm": _median_run(warms, "ready_s"),
                       "hugo": _median_run(hugos, "wall_s") if hugos else None}
        if n == args.live_size:     # its own run: its edits must not touch the warm restart
            log(f"incremental refreshes, {n} articles (another cold start, fresh state dir)")
            res[str(n)]["incremental"] = feedsvc_start(
                data, fresh(OUT / "state" / f"incremental-{n}"), incremental=args.incremental_reps)
        if args.profile:
            prof = OUT / f"profile-cold-{n}.pstats"
            log(f"  profiling a cold start under cProfile -> {prof.relative_to(ROOT)}")
            feedsvc_start(data, fresh(OUT / "state" / f"profile-{n}"), profile=prof)
            import pstats
            txt = OUT / f"profile-cold-{n}.txt"
            with open(txt, "w") as f:
                st = pstats.Stats(str(prof), stream=f)
                st.sort_stats("cumulative").print_stats(45)
                st.sort_stats("tottime").print_stats(30)
            res[str(n)]["profile"] = str(txt.relative_to(ROOT))


# -- 4a. save-to-served latency under `feedsvc serve` -------------------------------------------
def newest_article(port: int, data: Path) -> Path:
    st, _, body = request(port, "/feeds/all.rss")
    link = ElementTree.fromstring(body).find("channel/item/link").text  # type: ignore[union-attr]
    slug = link.rstrip("/").rsplit("/", 1)[1]
    found = sorted((data / "articles").glob(f"*/{slug}.md"))
    if not found:
        raise RuntimeError(f"no article file for slug {slug}")
    return found[0]


class Pinned:
    """One keep-alive connection per server worker (a TCP connection stays with the worker
    that accepted it; /healthz tells its pid), to ask each worker what it serves."""

    def __init__(self, port: int, workers: int, timeout: float = 30):
        self.port, self.workers, self.timeout = port, workers, timeout
        self.conns: dict[int, http.client.HTTPConnection] = {}
        self.pin()

    def pin(self) -> None:
        self.close()
        t0 = time.perf_counter()
        while len(self.conns) < self.workers:
            if time.perf_counter() - t0 > self.timeout:
                raise RuntimeError(f"reached only {len(self.conns)} of {self.workers} workers")
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                c.request("GET", "/healthz")
                pid = json.loads(c.getresponse().read())["worker"]   # a token per worker
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                c.close()
                continue
            if pid in self.conns:
                c.close()
            else:
                self.conns[pid] = c

    def etags(self, path: str, inm: str | None = None) -> dict[int, tuple[int, str]]:
        """(status, ETag) of `path` from every worker."""
        for _attempt in range(3):
            try:
                out = {}
                for pid, c in self.conns.items():
                    c.request("GET", path, headers={"If-None-Match": inm} if inm else {})
                    r = c.getresponse()
                    r.read()
                    out[pid] = (r.status, r.getheader("etag") or "")
                return out
            except (OSError, http.client.HTTPException):
                self.pin()
        raise RuntimeError("lost the connections to the workers")

    def close(self) -> None:
        for c in self.conns.values():
            c.close()
        self.conns = {}


def live(args, results: dict) -> None:
    sys.path.insert(0, str(BENCH))
    from coldstart import retitle

    n = args.live_size
    data = corpus(n)
    state = fresh(OUT / "state" / f"live-{n}")
    port = free_port()
    log(f"live update, {n} articles: starting feedsvc serve (2 workers, fresh state dir)")
    p = start([PY, "-m", "feedsvc", "serve", "--port", str(port), "--workers", "2"],
              env=feedsvc_env(data, state), name="feedsvc-live")
    res: dict = {"size": n, "runs": []}
    results["live"] = res
    path = "/feeds/all.rss"
    target: Path | None = None
    original = b""
    try:
        res["startup_s"] = wait_ready(p, port, path, 1800, workers=2, healthz=True)
        log(f"  both workers serving after {res['startup_s']:.1f} s")
        target = newest_article(port, data)
        original, was = target.read_bytes(), target.stat()
        (data / ".bench-dirty").write_text("an edit may be in progress\n")
        pinned = Pinned(port, 2)
        for i in range(args.live_reps):
            t0 = time.perf_counter()
            while True:                                   # every worker serves the same bytes
                now = pinned.etags(path)
                if len({e for _, e in now.values()}) == 1:
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"workers disagree on {path}: {now}")
                time.sleep(0.05)
            old = next(iter(now.values()))[1]
            text = retitle(original, f"live-{i}")
            tmp = target.with_name("." + target.name + ".bench-tmp")
            tmp.write_bytes(text)
            os.replace(tmp, target)                       # the save
            t_save = time.perf_counter()
            seen: dict[int, float] = {}
            polls = 0
            while time.perf_counter() - t_save < 10 and polls < 20_000 and len(seen) < 2:
                polls += 1
                for pid, (st, etag) in pinned.etags(path, old).items():
                    if pid not in seen and st == 200 and etag != old:
                        seen[pid] = time.perf_counter() - t_save
                time.sleep(0.002)
            first = min(seen.values()) if seen else None
            every = max(seen.values()) if len(seen) == 2 else None
            run = {"first_new_etag_s": first, "all_workers_s": every, "polls": polls,
                   "per_worker_s": sorted(seen.values())}
            res["runs"].append(run)
            log(f"  edit {i + 1}: new ETag first served after "
                f"{'%.0f ms' % (first * 1000) if first is not None else 'never (10 s)'}, "
                f"by every worker after "
                f"{'%.0f ms' % (every * 1000) if every is not None else 'never (10 s)'}")
        pinned.close()
    finally:
        if target is not None and original:
            tmp = target.with_name("." + target.name + ".bench-tmp")
            tmp.write_bytes(original)
            os.replace(tmp, target)
            os.utime(target, ns=(was.st_atime_ns, was.st_mtime_ns))   # (see coldstart)
            (data / ".bench-dirty").unlink(missing_ok=True)
        stop(p)


# -- report ---------------------------------------------------------------------------------
def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def mb(kb: float) -> str:
    return f"{kb / 1024:.0f} MB"


def goal(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def versions() -> dict:
    def run(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"
    import importlib.metadata as md

    def pkg(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "not installed"
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "granian": pkg("granian"), "gunicorn": pkg("gunicorn"),
            "wrk": run([WRK, "-v"]) if WRK else "not installed (Python client used)",
            "nginx": run([NGINX, "-v"]) if NGINX else "not installed",
            "hugo": run(["hugo", "version"]) if shutil.which("hugo") else "not installed"}


def report(args, results: dict) -> str:
    L: list[str] = []
    v = results["versions"]
    L += ["# feedsvc benchmark report", "",
          f"Command: `python bench/run.py {' '.join(sys.argv[1:])}`".rstrip(), "",
          f"Machine: {v['cpus']} CPUs, Python {v['python']}; granian {v['granian']}, "
          f"gunicorn {v['gunicorn']}; {v['wrk']}; {v['nginx']}; {v['hugo']}.", "",
          f"Total run time: {results['elapsed_s']:.0f} s.", ""]

    s = results.get("serving")
    if s and s.get("runs"):
        first = next(iter(next(iter(s["runs"].values()))["cases"].values()))
        tool = first["tool"]
        busy = max(x["background_busy"] for r in s["runs"].values()
                   for c in r["cases"].values() for x in c["rounds"])
        L += ["## 1. Serving one feed (1k corpus)", "",
              f"Feed `{s['feed']}`: {s['identity_bytes']:,} bytes identity, "
              f"{s['gzip_bytes']:,} bytes gzip. Load: "
              + (f"`wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s`"
                 if tool == "wrk" else
                 f"Python client (bench/pyload.py, {args.connections} connections; wrk missing)")
              + f" after a {args.warmup:g} s warm-up, keep-alive, 127.0.0.1; {args.rounds} "
              f"round(s), each server alone on the machine in turn (rounds interleave the "
              f"servers); shown: the best round's req/s and latencies (other load only lowers "
              f"throughput) and the median and lowest req/s over rounds; ratios use the best "
              f"rounds. 304 = `Accept-Encoding: gzip` + `If-None-Match` with "
              f"the server's own gzip ETag; 200 identity = no Accept-Encoding; 200 gzip = "
              f"`Accept-Encoding: gzip`. Granian runs with `feedsvc serve`'s settings for both "
              f"feedsvc and the minimal app (bench/minimal_app.py); nginx with access_log off.",
              "", f"CPU busy (all cores) in the 0.5 s before a round while the server idled, "
              f"i.e. other processes on the machine: up to {busy * 100:.0f}%"
              + (" — **numbers disturbed by other load**" if busy > 0.15 else "") + ".", ""]
        L += [n for n in s.get("notes", [])]
        if s.get("nginx_build_missing"):
            L += ["**`feedsvc build` does not exist yet**: nginx serves a static copy of the same "
                  "bytes with a bench-made config instead; the suite uses the build "
                  "automatically once the command exists."]
        L += ["", "| server | workers | case | req/s (best) | median / lowest | p50 ms | p99 ms "
              "| errors | same bytes |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
        for name, run in s["runs"].items():
            for case, r in run["cases"].items():
                same = r["check"].get("same_bytes_as_feedsvc")
                flag = "" if r["check"]["ok"] else f" (got {r['check']['status']}!)"
                L.append(f"| {run['label']} | {run['workers']} | {case}{flag} | {r['rps']:,.0f} | "
                         f"{r['rps_median']:,.0f} / {r['rps_min']:,.0f} | "
                         f"{r['p50_us'] / 1000:.2f} | "
                         f"{r['p99_us'] / 1000:.2f} | {r['errors']} | "
                         f"{'-' if same is None else ('yes' if same else 'NO')} |")
        L += ["", "Ratios (best-round req/s):", "",
              "| workers | case | feedsvc/minimal | feedsvc/nginx | goal (issue 4) |",
              "|---|---|---:|---:|---|"]
        nginx_kind = "nginx-build" if any(k.startswith("nginx-build") for k in s["runs"]) \
            else "nginx-static"
        for w in (1, 2):
            f = s["runs"].get(f"feedsvc w{w}")
            m = s["runs"].get(f"minimal w{w}")
            n = s["runs"].get(f"{nginx_kind} w{w}")
            for case in CASES:
                fr = f["cases"][case]["rps"] if f and case in f["cases"] else None
                mr = m["cases"][case]["rps"] if m and case in m["cases"] else None
                nr = n["cases"][case]["rps"] if n and case in n["cases"] else None
                if case == "304":
                    g = "≥0.8x minimal and ≥0.5x nginx: " + goal(
                        None if not (fr and mr and nr) else fr >= 0.8 * mr and fr >= 0.5 * nr)
                elif case == "200 gzip":
                    g = "≥0.4x nginx: " + goal(None if not (fr and nr) else fr >= 0.4 * nr)
                else:
                    g = ""
                L.append(f"| {w} | {case} | {fmt_ratio(fr, mr)} | {fmt_ratio(fr, nr)} | {g} |")
        if s.get("gunicorn"):
            L += ["", "Server choice: 304 with 2 workers, gunicorn sync workers (no keep-alive) "
                  "vs granian (one round):", "",
                  "| app | gunicorn sync req/s | p99 ms | granian req/s | gunicorn/granian |",
                  "|---|---:|---:|---:|---:|"]
            for label, g in s["gunicorn"].items():
                gc = g["cases"]["304"]
                gran = s["runs"].get(f"{label} w2", {}).get("cases", {}).get("304", {}).get("rps")
                L.append(f"| {label} | {gc['rps']:,.0f} | {gc['p99_us'] / 1000:.2f} | "
                         f"{gran or 0:,.0f} | {fmt_ratio(gc['rps'], gran)} |")
        L.append("")

    st = results.get("startup")
    if st:
        L += ["## 2. Cold start and 3. warm restart vs Hugo", "",
              "feedsvc: process start to every feed servable (`feedsvc.live.Service`, watch off; "
              "cold = empty state dir, warm = the cold run's state dir). Hugo: `hugo --quiet` "
              "building the home, category and author RSS feeds (50 items, full content) of the "
              "same articles. Peak RSS: the child's own ru_maxrss (feedsvc: at the moment it is "
              "ready), or, if larger, the sampled sum over its process tree (PSS while it "
              "has children, e.g. a render pool). Each size runs feedsvc cold, feedsvc warm "
              f"and Hugo in turn, {args.startup_rounds} times: the table gives medians, the "
              "list below it every run.", "",
              "| articles | feedsvc cold | peak RSS | Hugo | Hugo RSS | cold/Hugo time | "
              "cold/Hugo memory | warm restart | warm/Hugo time | warm RSS |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, r in st.items():
            c, w, h = r["cold"], r["warm"], r["hugo"]
            L.append(f"| {int(n):,} | {c['ready_s']:.2f} s | {mb(c['peak_rss_kb'])} | "
                     f"{'%.2f s' % h['wall_s'] if h else 'n/a'} | "
                     f"{mb(h['peak_rss_kb']) if h else 'n/a'} | "
                     f"{fmt_ratio(c['ready_s'], h and h['wall_s'])} | "
                     f"{fmt_ratio(c['peak_rss_kb'], h and h['peak_rss_kb'])} | "
                     f"{w['ready_s']:.2f} s | "
                     f"{fmt_ratio(w['ready_s'], h and h['wall_s'])} | {mb(w['peak_rss_kb'])} |")
        L.append("")
        for n, r in st.items():
            c, w, h = r["cold"], r["warm"], r["hugo"]

            def runs(x: dict | None) -> str:
                if not x or "all_s" not in x:
                    return "n/a"
                return ", ".join(f"{t:.2f} s / {kb / 1024:.0f} MB"
                                 for t, kb in zip(x["all_s"], x["all_peak_kb"], strict=True))
            L.append(f"- {int(n):,} every run (time / peak memory): feedsvc cold {runs(c)}; "
                     f"warm {runs(w)}; Hugo {runs(h)}")
        L += ["", "Goals (issue 4): cold < 1x Hugo's time with < 0.25x its memory; warm < 0.2x "
              "Hugo's time.", ""]
        for n, r in st.items():
            c, w, h = r["cold"], r["warm"], r["hugo"]
            if h and int(n) < 10000:
                L.append(f"- {int(n):,}: no goal (issue 4 sets them at 10,000 and 50,000)")
            elif h:
                L.append(f"- {int(n):,}: cold time {goal(c['ready_s'] < h['wall_s'])}, cold memory "
                         f"{goal(c['peak_rss_kb'] < 0.25 * h['peak_rss_kb'])}, warm time "
                         f"{goal(w['ready_s'] < 0.2 * h['wall_s'])}")
        L += ["", "What each run did. CPU s: feedsvc's build, this process and its finished "
              "children (a render pool); Hugo's whole run (it uses every core); "
              "other load: CPU seconds that other processes on the machine used meanwhile "
              "(disturbs the wall times when large). A first build holds its cache writes "
              "(records, bodies, documents: what a restart without a checkpoint reads) until "
              "every feed is servable: caches written is when they were all in SQLite, since "
              "process start, and the CPU that took after ready.", "",
              "| articles | run | documents (feeds) | Markdown renders | files parsed | CPU s | "
              "import s | caches written s | their CPU s after ready | other load CPU s |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, r in st.items():
            h = r["hugo"]
            for kind in ("cold", "warm"):
                c = r[kind]
                L.append(f"| {int(n):,} | feedsvc {kind} | {c['documents']} ({c['feeds']}) | "
                         f"{c['renders']:,} | {c['files_read']:,} | {c['build_cpu_s']:.1f} | "
                         f"{c['import_s']:.2f} | {c.get('caches_written_s', 0):.2f} | "
                         f"{c.get('cache_write_cpu_s', 0):.2f} | {c['others_cpu_s']:.1f} |")
            if h:
                L.append(f"| {int(n):,} | Hugo | ({h['feeds']}) | all | | {h['cpu_s']:.1f} | | "
                         f"| | {h['others_cpu_s']:.1f} |")
        L += ["", "Where a feedsvc start spends its time (wall seconds inside each function, "
              "nested as indented; measured by wrapping them):", ""]
        sizes = list(st)
        hdr = "| phase | " + " | ".join(f"{int(n):,} cold | {int(n):,} warm" for n in sizes) + " |"
        L += [hdr, "|---|" + "---:|" * (2 * len(sizes))]
        labels = list(next(iter(st.values()))["cold"]["phases"])
        for lab in labels:
            cells = []
            for n in sizes:
                for kind in ("cold", "warm"):
                    ph = st[n][kind]["phases"].get(lab, {"s": 0, "calls": 0})
                    cells.append(f"{ph['s']:.2f} ({ph['calls']})")
            depth = (len(lab) - len(lab.lstrip())) // 2
            L.append(f"| {'· ' * depth}{lab.strip()} | " + " | ".join(cells) + " |")
        L += ["", "Throughput of the cold runs on all cores (issue 4's single-core floors: "
              "0.18 ms/file YAML front matter, 2 ms per 5 KB Markdown body): wall ms per "
              "file for the load (read, hash, parse), and per feed for feedgen + gzip:", ""]
        for n in sizes:
            c = st[n]["cold"]
            ph = c["phases"]

            def per(key: str, count: int, ph=ph) -> str:
                hits = [v for k, v in ph.items() if key in k and v["calls"]]
                return f"{sum(v['s'] for v in hits) / count * 1000:.3f}" if hits else "n/a"
            L.append(f"- {int(n):,}: load {per('load (', c['files_read'])} ms/file, "
                     f"feedgen + gzip {per('feedgen + gzip', c['feeds'])} ms/feed")
        for n, r in st.items():
            if r.get("profile"):
                L.append(f"- cProfile of the {int(n):,} cold start: `{r['profile']}`")
        L.append("")

    lv = results.get("live")
    inc = None
    if st and str(args.live_size) in st:
        run = st[str(args.live_size)].get("incremental")
        inc = run and run.get("incremental")
    if lv or inc:
        L += [f"## 4. Incremental update ({args.live_size:,} articles)", ""]
    if lv:
        firsts = [r["first_new_etag_s"] for r in lv["runs"] if r["first_new_etag_s"] is not None]
        alls = [r["all_workers_s"] for r in lv["runs"] if r["all_workers_s"] is not None]
        L += [f"`feedsvc serve --workers 2` (fresh state dir; both workers served after "
              f"{lv['startup_s']:.1f} s). Edit the title of the newest article (atomic write), "
              f"then poll `/feeds/all.rss` with If-None-Match on one keep-alive connection per "
              f"worker every ~2 ms (bounded to 10 s): time from the save to the first worker "
              f"answering 200 with a new ETag, and to the last one (every worker).", "",
              "| edit | first new ETag | every worker |", "|---:|---:|---:|"]
        for i, r in enumerate(lv["runs"], 1):
            f_, a_ = r["first_new_etag_s"], r["all_workers_s"]
            L.append(f"| {i} | {'%.0f ms' % (f_ * 1000) if f_ is not None else 'not in 10 s'} | "
                     f"{'%.0f ms' % (a_ * 1000) if a_ is not None else 'not in 10 s'} |")
        med_f = statistics.median(firsts) if firsts else None
        med_a = statistics.median(alls) if alls else None
        L += ["", "Median: first new ETag "
              f"{'%.0f ms' % (med_f * 1000) if med_f is not None else 'n/a'}, "
              f"every worker {'%.0f ms' % (med_a * 1000) if med_a is not None else 'n/a'} "
              f"(goal < 1 s: {goal(None if med_a is None else med_a < 1)}; "
              f"{len(firsts)}/{len(lv['runs'])} edits seen).", ""]
    if inc:
        runs = inc["runs"]
        cold = st[str(args.live_size)]["incremental"]
        cpu = statistics.median(r["cpu_s"] for r in runs)
        full = cold["build_cpu_s"] + cold.get("cache_write_cpu_s", 0)
        frac = cpu / full
        L += [f"In-process: `service.refresh(paths={{file}})` (what the watcher calls when "
              f"inotify names the saved file) after editing the title of `{inc['article']}`, "
              f"process CPU, its cache writes included, vs the initial full build with an "
              f"empty cache, its cache writes included ({full:.2f} s CPU).", "",
              "| refresh | CPU s | wall s | fraction of full build | documents rebuilt | "
              "files re-parsed | renders |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(runs, 1):
            L.append(f"| {i} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | "
                     f"{r['cpu_s'] / full * 100:.2f}% | {r['rebuilt']} | "
                     f"{r['files_read']} | {r['renders']} |")
        L += ["", f"Median fraction {frac * 100:.2f}% (goal < 1%: {goal(frac < 0.01)}). "
              f"Rebuilt: {', '.join('`/' + p + '`' for p in runs[0]['rebuilt_paths'])}.", ""]
    if results.get("tricks"):
        L += ["## 5. Speed tricks on and off (bench/tricks.py)", "",
              results["tricks"]["table"], ""]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000",
                    help="corpus sizes for cold/warm start (default 1000,10000; add 50000)")
    ap.add_argument("--quick", action="store_true",
                    help="one serving round, 3 live edits, no gunicorn comparison")
    ap.add_argument("--only", default="serving,startup,live",
                    help="comma list of parts to run: serving, startup, live, tricks "
                         "(each speed trick on and off: bench/tricks.py)")
    ap.add_argument("--duration", type=float, default=2.0,
                    help="seconds per load run (whole seconds with wrk; default 2)")
    ap.add_argument("--rounds", type=int,
                    help="serving rounds, median reported (default 3, quick 1)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--feed", help="feed path to serve (default: the RSS feed nearest 65 KB)")
    ap.add_argument("--nginx", choices=["auto", "build", "static", "both"], default="auto",
                    help="auto: `feedsvc build` output if the command exists, else a static copy")
    ap.add_argument("--startup-rounds", type=int, default=3,
                    help="cold start, warm restart and Hugo runs per size, taking turns; "
                         "medians reported (default 3)")
    ap.add_argument("--live-size", type=int, default=10000,
                    help="corpus size for the incremental update measurements")
    ap.add_argument("--live-reps", type=int, help="edits under `feedsvc serve` (default 5)")
    ap.add_argument("--profile", action="store_true",
                    help="also run each cold start under cProfile (bench/out/profile-cold-N.txt)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = 1.0
    args.live_reps = args.live_reps or (3 if args.quick else 5)
    args.incremental_reps = 9
    parts = set(args.only.split(","))

    for d in ("logs", "state", "serve"):
        (OUT / d).mkdir(parents=True, exist_ok=True)
    if not GEN.exists():
        sys.exit(f"corpus generator not found at {GEN} (set BENCH_GEN)")
    if "live" in parts and args.live_size not in args.sizes and "startup" in parts:
        log(f"note: --live-size {args.live_size} is not in --sizes: no in-process refresh figure")
    results: dict = {"versions": versions(), "args": {k: v for k, v in vars(args).items()}}
    try:
        if "serving" in parts:
            serving(args, results)
        if "startup" in parts:
            startup(args, results)
        if "live" in parts:
            live(args, results)
        if "tricks" in parts:       # its own command (it builds on this one's helpers)
            log("speed tricks on and off: bench/tricks.py")
            done = subprocess.run([PY, str(BENCH / "tricks.py"), "--size", str(args.live_size),
                                   "--rounds", str(args.startup_rounds), "--edits", "3"],
                                  check=True, capture_output=True, text=True)
            results["tricks"] = {**json.loads((OUT / "tricks.json").read_text()),
                                 "table": done.stdout.strip()}
    finally:
        results["elapsed_s"] = time.perf_counter() - T_START
        (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
        text = report(args, results)
        (OUT / "report.md").write_text(text)
        print(text)
        log(f"report written to {(OUT / 'report.md').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
