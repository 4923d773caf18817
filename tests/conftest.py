"""Shared fixtures: a temp data directory, factories that write valid files, the app."""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from feedsvc import early

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "data"


class DataDir:
    """A data directory in tmp_path with helpers to write articles, authors, settings."""

    def __init__(self, root: Path):
        self.root = root
        (root / "articles").mkdir(parents=True, exist_ok=True)
        (root / "authors").mkdir(exist_ok=True)

    def site(self, **overrides) -> Path:
        data = {"title": "Test Times", "description": "News for tests.",
                "base_url": "https://news.example.com/", "language": "en",
                "timezone": "Asia/Tehran", "items_per_feed": 50}
        data.update(overrides)
        return self.write("site.yml", yaml.safe_dump(data, allow_unicode=True))

    def author(self, slug: str, **fields) -> Path:
        return self.write(f"authors/{slug}.yml", yaml.safe_dump(fields, allow_unicode=True))

    def article(self, name: str, body: str = "First paragraph.\n\nSecond one.\n", **fm) -> Path:
        """Write articles/<name>.md; `fm` overrides a valid default front matter."""
        front = {"title": name.replace("-", " ").title(), "date": "2024-10-28T13:00:00+03:30",
                 "authors": ["Jane Doe"], "categories": ["World"]}
        front.update(fm)
        front = {k: v for k, v in front.items() if v is not None}
        text = "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n" + body
        return self.write(f"articles/{name}.md", text)

    def write(self, rel: str, text: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")       # atomic, like editors save
        tmp.write_bytes(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
        return path

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests test the code, not the shell they run in: no FEEDSVC_* or XDG_* setting of the
    developer's reaches a test (subprocesses inherit the cleaned environment)."""
    for name in list(os.environ):
        if name.startswith(("FEEDSVC_", "XDG_")):
            monkeypatch.delenv(name)


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.site()
    d.author("jane-doe", name="Jane Doe", bio="Jane covers the world.",
             url="https://jane.example.org/")
    return d


@pytest.fixture
def bundled(tmp_path: Path) -> DataDir:
    """A copy of the bundled data directory."""
    shutil.copytree(BUNDLED, tmp_path / "data")
    return DataDir(tmp_path / "data")


@pytest.fixture
def make_app(tmp_path: Path):
    from feedsvc.web import create_app

    def make(data_dir, **config):
        config.setdefault("state_dir", str(tmp_path / "state"))
        config.setdefault("watch", False)
        return create_app({"data_dir": str(data_dir), **config})
    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Captured output that names a non-UTF-8 path (tests use them on purpose) carries
    surrogate escapes, which pytest-xdist cannot send from a worker: escape them."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
                       for title, text in report.sections]


def free_port() -> int:
    """A port free now, for a server that binds it a second or two later.  Chosen below
    the kernel's ephemeral range, which every client connection (these tests make
    thousands) takes its local port from, so none of them can take it meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.SystemRandom().randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class Server:
    """`feedsvc serve` in a subprocess on 127.0.0.1; stopped by the fixture."""

    def __init__(self, data_dir: Path | None, state_dir: Path, workers: int = 2,
                 env: dict | None = None):
        """`data_dir` None serves the bundled site (no --data-dir)."""
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(state_dir.parent / f"serve-{self.port}.log", "w")  # noqa: SIM115
        environ = {**os.environ, "FEEDSVC_POLL_SECONDS": "0.5", **(env or {})}
        where = [] if data_dir is None else ["--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", "serve", "--port", str(self.port),
             "--workers", str(workers), *where, "--state-dir", str(state_dir)],
            stdout=self.log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()             # not yet in the fixture's list: nobody else would
            raise

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker has answered /healthz (fresh connections reach them all) and
        the start-up listener that answers 503 is closed (it says so in the log)."""
        deadline = time.monotonic() + timeout
        pids: set[str] = set()      # /healthz "worker": one per worker process
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"feedsvc serve exited: {Path(self.log.name).read_text()}")
            try:
                r = requests.get(self.url + "/healthz", timeout=2)
                if r.ok:
                    pids.add(r.json()["worker"])
                    if len(pids) >= self.workers and early.CLOSED in Path(
                            self.log.name).read_text(errors="replace"):
                        return
            except requests.RequestException:     # not listening yet, or still starting
                pass
            time.sleep(0.02)
        raise RuntimeError(f"feedsvc serve: {len(pids)} of {self.workers} workers answered")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.log.close()


def spawn_serve(data_root, state_dir, log) -> tuple[subprocess.Popen, int]:
    """`feedsvc serve` (one worker) started and not waited for: tests that watch the port
    while it starts.  Its own process group; stop it with `os.killpg(proc.pid, ...)`."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "feedsvc", "serve", "--port", str(port),
                             "--workers", "1", "--data-dir", str(data_root),
                             "--state-dir", str(state_dir)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


@pytest.fixture
def subscriber():
    """A real WebSub subscriber on 127.0.0.1 (tests/websub_subscriber.py)."""
    from websub_subscriber import start_subscriber
    sub, server = start_subscriber()
    yield sub
    server.shutdown()
    server.server_close()


@pytest.fixture
def serve(tmp_path: Path):
    servers: list[Server] = []

    def start(data_dir, workers: int = 2, state_dir: Path | None = None, **env) -> Server:
        srv = Server(None if data_dir is None else Path(data_dir), state_dir or tmp_path / "state",
                     workers,
                     {k.upper(): str(v) for k, v in env.items()})
        servers.append(srv)
        return srv
    yield start
    for srv in servers:
        srv.stop()


def run_feedsvc(*args: str, env: dict | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess:
    """`python -m feedsvc ARGS` to its end; on timeout its whole process group is killed
    (a `serve` that should have refused to start must not outlive the test)."""
    proc = subprocess.Popen([sys.executable, "-m", "feedsvc", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        err += f"\n[killed after {timeout} s]"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
