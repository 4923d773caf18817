"""`feedsvc` as an operator runs it: every mistake is one line and a non-zero exit, found
before any long work; the server survives its workers' deaths and they do not survive it."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import ROOT, free_port, run_feedsvc

from feedsvc import cli


def one_line(result: subprocess.CompletedProcess) -> str:
    """The whole of stderr: one line, no traceback."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    """XDG_STATE_HOME of the subprocesses: where a default state directory would go."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_a_bad_base_url_is_named_and_nothing_starts(data, tmp_path):
    state = str(tmp_path / "state")
    built = run_feedsvc("build", str(tmp_path / "out"), "--data-dir", str(data.root),
                        "--state-dir", state)
    assert built.returncode == 0, built.stderr          # earlier state exists
    for args, env, name in (((), {"FEEDSVC_BASE_URL": "garbage"}, "FEEDSVC_BASE_URL"),
                            (("--base-url", "garbage"), {}, "--base-url")):
        result = run_feedsvc("serve", "--port", str(free_port()), "--data-dir", str(data.root),
                             "--state-dir", state, *args, env=env)
        assert result.returncode == 1
        assert one_line(result) == (f"feedsvc: {name} must be an absolute http or https URL "
                                    "with a host, like https://news.example.com/ "
                                    "(got 'garbage')")
    result = run_feedsvc("build", str(tmp_path / "out"), "--data-dir", str(data.root),
                         env={"FEEDSVC_BASE_URL": "garbage"})
    assert result.returncode == 1 and "FEEDSVC_BASE_URL" in one_line(result)


def test_zero_workers_is_refused(data):
    result = run_feedsvc("serve", "--data-dir", str(data.root), env={"FEEDSVC_WORKERS": "0"})
    assert result.returncode == 1
    assert one_line(result) == "feedsvc: FEEDSVC_WORKERS must be at least 1 (got 0)"


def test_a_missing_data_dir_creates_no_state(tmp_path, xdg):
    missing = tmp_path / "missing"
    for command in (["serve", "--port", str(free_port())], ["build", str(tmp_path / "out")]):
        result = run_feedsvc(*command, "--data-dir", str(missing))
        assert result.returncode == 1
        assert one_line(result) == (f"feedsvc: data directory {missing} does not exist or is "
                                    "not a directory; check --data-dir")
        assert not xdg.exists()
    result = run_feedsvc("check", env={"FEEDSVC_DATA_DIR": str(missing)})
    assert result.returncode == 1 and one_line(result).endswith("check FEEDSVC_DATA_DIR")


def test_an_unwritable_state_dir_is_one_line_naming_its_setting(data, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    state = tmp_path / "file" / "state"
    result = run_feedsvc("serve", "--port", str(free_port()), "--data-dir", str(data.root),
                         env={"FEEDSVC_STATE_DIR": str(state)})
    assert result.returncode == 1
    assert one_line(result) == (f"feedsvc: state directory {state} cannot be created or "
                                "written (Not a directory); fix its permissions or choose "
                                "another with FEEDSVC_STATE_DIR")
    result = run_feedsvc("build", str(tmp_path / "out"), "--data-dir", str(data.root),
                         "--state-dir", str(state))
    assert result.returncode == 1 and one_line(result).endswith("choose another with --state-dir")


def test_a_port_held_by_another_program_is_refused_before_the_build(data, tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_feedsvc("serve", "--port", str(port), "--data-dir", str(data.root),
                             "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1
    assert one_line(result).startswith(f"feedsvc: port {port} is in use on 127.0.0.1")
    assert not (tmp_path / "state").exists()            # nothing was built


def test_build_into_a_folder_that_cannot_exist(data, tmp_path, xdg):
    result = run_feedsvc("build", "/proc/nope", "--data-dir", str(data.root))
    assert result.returncode == 1
    assert one_line(result) == ("feedsvc: output directory /proc/nope cannot be created or "
                                "written (No such file or directory)")
    assert not xdg.exists()


def test_build_with_rejected_files_exits_2_unless_allowed(data, tmp_path):
    data.article("good")
    data.article("bad", date="yesterday")
    out, state = str(tmp_path / "out"), str(tmp_path / "state")
    result = run_feedsvc("build", out, "--data-dir", str(data.root), "--state-dir", state)
    assert result.returncode == 2
    assert "articles/bad.md: 'date' is not an ISO 8601 datetime" in result.stderr
    assert "1 data file(s) rejected" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "out" / "feeds" / "all.atom").is_file()       # the rest was built
    allowed = run_feedsvc("build", out, "--data-dir", str(data.root), "--state-dir", state,
                          "--allow-errors")
    assert allowed.returncode == 0, allowed.stderr
    data.remove("articles/bad.md")
    clean = run_feedsvc("build", out, "--data-dir", str(data.root), "--state-dir", state)
    assert clean.returncode == 0, clean.stderr


def test_check_takes_the_data_dir_as_an_option_or_an_argument(data):
    data.article("bad", date="yesterday")
    for args in (["--data-dir", str(data.root)], [str(data.root)]):
        result = run_feedsvc("check", *args)
        assert result.returncode == 1
        assert result.stdout.startswith("articles/bad.md:3:1: 'date' is not an ISO 8601")
    both = run_feedsvc("check", str(data.root), "--data-dir", str(data.root))
    assert both.returncode == 1 and "once" in one_line(both)


def test_help_texts_are_whole():
    top = run_feedsvc("--help")
    assert "..." not in top.stdout.split("Commands:")[1]      # no summary cut short
    for command in ("serve", "check", "build"):
        assert command in top.stdout
        text = run_feedsvc(command, "--help").stdout
        assert "`feedsvc serve`" not in text and "default ''" not in text


def test_served_url_follows_the_address():
    assert cli.served_url("127.0.0.1", 8050) == "http://127.0.0.1:8050/"
    assert cli.served_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert cli.served_url("::", 8050) == "http://[::1]:8050/"
    assert cli.served_url("example.org", 8050) == "http://example.org:8050/"


def test_the_wheel_carries_the_bundled_site(tmp_path):
    """A non-editable install: the default data directory is inside the package."""
    source = tmp_path / "source"                # setuptools writes build/ into the source
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for name in ("feedsvc", "data"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source),
                            "-w", str(tmp_path / "wheel")], capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("feedsvc-*.whl")
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    assert (target / "feedsvc" / "bundled" / "media").is_dir()
    code = "from feedsvc import settings; print(settings.BUNDLED_DATA)"
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, cwd=tmp_path, check=True).stdout.strip()
    assert where == str(target / "feedsvc" / "bundled")
    check = subprocess.run([sys.executable, "-m", "feedsvc", "check"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout == f"{where}: 12 articles, no problems\n"


# --- a real server -------------------------------------------------------------------------

def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def worker_pids(srv) -> set[int]:
    """The pids answering /healthz, once every one of srv.workers has answered."""
    srv.wait_ready()
    return {p for p in children(srv.proc.pid)
            if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes().decode()}


def until(condition, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # as a restarted server binds: TIME_WAIT does not block it, a listener does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.e2e
def test_a_second_serve_on_a_port_feedsvc_holds_is_refused(serve, data, tmp_path):
    srv = serve(data.root, workers=1)
    result = run_feedsvc("serve", "--port", str(srv.port), "--data-dir", str(data.root),
                         "--state-dir", str(tmp_path / "other-state"))
    assert result.returncode == 1
    assert one_line(result).startswith(f"feedsvc: port {srv.port} is in use on 127.0.0.1")
    assert srv.proc.poll() is None


@pytest.mark.e2e
def test_the_bundled_site_links_to_the_port_served(serve, tmp_path):
    srv = serve(None, workers=1)                       # the bundled data/, no base URL
    feed = requests.get(srv.url + "/feeds/all.rss", timeout=10).text
    assert f"<link>http://127.0.0.1:{srv.port}/</link>" in feed
    assert "127.0.0.1:8000" not in feed


@pytest.mark.e2e
def test_a_worker_killed_twice_in_a_row_is_started_again(serve, data):
    srv = serve(data.root, workers=2)
    first = worker_pids(srv)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    until(lambda: len(children(srv.proc.pid) - first) >= 1, what="a new worker")
    (second,) = children(srv.proc.pid) - first
    os.kill(second, signal.SIGKILL)                    # at once: granian calls it a crash loop
    until(lambda: len(children(srv.proc.pid) - first - {second}) >= 1, what="a third worker")
    assert srv.proc.poll() is None
    srv.wait_ready()                                    # both workers answer again
    assert "crash loop" not in Path(srv.log.name).read_text()


@pytest.mark.e2e
def test_workers_end_when_the_server_is_killed(serve, data):
    srv = serve(data.root, workers=2)
    workers = worker_pids(srv)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    try:
        until(lambda: port_free(srv.port), timeout=10, what=f"port {srv.port} free")
        until(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), timeout=10,
              what="workers gone")
    finally:
        for pid in workers:                     # no orphan outlives a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.e2e
def test_ctrl_c_while_serving_is_quiet(serve, data):
    srv = serve(data.root, workers=2)
    workers = worker_pids(srv)
    os.killpg(srv.proc.pid, signal.SIGINT)             # what the terminal does
    assert srv.proc.wait(30) == 0
    log = Path(srv.log.name).read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    until(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), timeout=10,
          what="workers gone")


def _interrupt_while_building(data, args: list[str], building) -> tuple[int, str, str]:
    """Start `feedsvc ARGS` on 1,500 articles, Ctrl-C its process group (as a terminal
    does) once `building(pid)` says the build's pool runs; (exit status, stdout, stderr)."""
    for i in range(1500):
        data.article(f"a{i:04}", body=f"Article {i}.\n\n" + "Words and more words. " * 40)
    proc = subprocess.Popen([sys.executable, "-m", "feedsvc", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        until(lambda: building(proc.pid), what="the build's pool")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


@pytest.mark.e2e
def test_ctrl_c_during_the_start_up_build_is_one_line(data, tmp_path):
    started: set[int] = set()

    def building(pid: int) -> bool:
        # the build is a child process; its pool's workers are its children
        build = {p for p in children(pid) if children(p)}
        started.update(build, *(children(p) for p in build))
        return bool(build)

    status, out, err = _interrupt_while_building(
        data, ["serve", "--port", str(free_port()), "--data-dir", str(data.root),
               "--state-dir", str(tmp_path / "state")], building)
    assert status == 130, err
    assert err.strip() == "feedsvc: interrupted before serving"
    assert "serving" not in out
    until(lambda: not any(Path(f"/proc/{p}").exists() for p in started), timeout=10,
          what="the build and its pool gone")


@pytest.mark.e2e
def test_ctrl_c_during_build_is_one_line(data, tmp_path):
    status, _, err = _interrupt_while_building(
        data, ["build", str(tmp_path / "out"), "--data-dir", str(data.root),
               "--state-dir", str(tmp_path / "state")], lambda pid: bool(children(pid)))
    assert status == 130, err
    assert err.strip() == "feedsvc: build: interrupted"


def test_the_respawn_hook_is_granians_or_granians_own_rule_applies(monkeypatch):
    """server_class overrides a private granian hook: on the pinned granian it is there
    with the signature it was written for; on any other, the plain server is used."""
    from granian.server import Server

    from feedsvc import server

    assert server._knows_respawn(Server)
    assert server.server_class() is not Server and issubclass(server.server_class(), Server)

    class Other:
        def _respawn_workers(self, workers, spawn_target):
            pass
    assert not server._knows_respawn(Other) and not server._knows_respawn(object)
    monkeypatch.setattr(server, "_knows_respawn", lambda server: False)
    assert server.server_class() is Server


def test_a_copy_of_the_bundled_site_served_elsewhere_is_told_where_links_lead():
    """The bundled site.yml links to http://127.0.0.1:8000/; a copy served with --port
    8050 would publish links to a port nobody listens on: serve says so before it builds."""
    from feedsvc.cli import local_link_hint

    hint = local_link_hint("http://127.0.0.1:8000/", "127.0.0.1", 8050)
    assert "http://127.0.0.1:8000/" in hint and "http://127.0.0.1:8050/" in hint
    assert "FEEDSVC_BASE_URL" in hint
    assert local_link_hint("http://localhost:8000/", "0.0.0.0", 8000) == ""  # noqa: S104
    assert local_link_hint("http://[::1]:8000/", "::1", 9000) != ""
    assert local_link_hint("https://news.example.com/", "127.0.0.1", 8050) == ""
    assert local_link_hint("http://127.0.0.1/", "127.0.0.1", 80) == ""
