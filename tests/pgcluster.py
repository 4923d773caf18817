"""A throwaway PostgreSQL cluster for tests: initdb into a temp dir, a free port on
127.0.0.1, one fresh database per test, stopped and removed at the end.

Without PostgreSQL's server binaries the tests that need it skip, saying why; with
FEEDSVC_REQUIRE_POSTGRES=1 (CI) they fail instead.
"""
from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import free_port

REQUIRED = os.environ.get("FEEDSVC_REQUIRE_POSTGRES") == "1"   # read before tests clean it
_names = itertools.count()


def _bin_dir() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return next((d for d in dirs if os.path.exists(os.path.join(d, "initdb"))), None)


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PostgreSQL is required (FEEDSVC_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"no PostgreSQL for the shared-state tests: {reason}")


class Cluster:
    """One postgres server in `root`, run as the `postgres` user when we are root."""

    def __init__(self, bindir: str, root: str):
        self.bindir, self.root = bindir, root
        self.port = free_port()
        self.data = os.path.join(root, "data")
        self.user: list[str] = []
        if os.geteuid() == 0:
            self.user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8")
        self.resume()

    def resume(self) -> None:
        """Start the server (again, after `stop`)."""
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-w", "-t", "60",
                  "-l", os.path.join(self.root, "log"), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                  "-c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        """Stop the server at once (every connection lost); `resume` starts it again."""
        subprocess.run([*self.user, os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)

    def url(self, db: str = "postgres", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # (a name we made)
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    bindir = _bin_dir()
    if bindir is None:
        _unavailable("initdb not found (Debian: apt-get install postgresql)")
    assert bindir is not None
    root = tempfile.mkdtemp(prefix="feedsvc-pg-")
    cluster = Cluster(bindir, root)
    try:
        cluster.start()
    except (subprocess.SubprocessError, OSError) as e:
        log = os.path.join(root, "log")
        detail = Path(log).read_text()[-500:] if os.path.exists(log) else ""
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"the cluster did not start ({e}) {detail}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a new, empty database on the test cluster."""
    return pg_cluster.new_database()


def for_bench(script: str) -> Cluster:
    """A started throwaway cluster for a benchmark, or exit naming what is missing."""
    bindir = _bin_dir()
    if bindir is None:
        sys.exit(f"{script}: no PostgreSQL (apt-get install postgresql), or give "
                 "--database-url")
    cluster = Cluster(bindir, tempfile.mkdtemp(prefix="feedsvc-bench-pg-"))
    cluster.start()
    return cluster
