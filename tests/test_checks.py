"""Editors' checks: `feedsvc check` run for real, the status page, the shared log."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import requests
from conftest import run_feedsvc, spawn_serve

from feedsvc import admin, checks, checktext, settings
from feedsvc.live import Service
from feedsvc.progress import Progress
from feedsvc.store import open_admin

TYPOS = """---
title: Typos
date: yesterday
draft: maybe
auhtors: [Jane Doe]
catgories: [World]
tags: [x]
authors: Jane Doe, John Roe
categories: [World, "Politics, Iran"]
image: /media/nope.jpg
---
Body ![a picture](/media/none.png)
"""


def check(data, *args: str):
    return run_feedsvc("check", str(data.root), *args)


def test_every_problem_of_a_file_with_its_line_and_column(data):
    data.write("articles/typos.md", TYPOS)
    result = check(data)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:10] == [
        "articles/typos.md:3:1: 'date' is not an ISO 8601 datetime (got 'yesterday')",
        "articles/typos.md:4:1: 'draft' must be true or false (got 'maybe')",
        "articles/typos.md:5:1: warning: unknown key 'auhtors' is ignored; "
        "did you mean 'authors'?",
        "articles/typos.md:6:1: warning: unknown key 'catgories' is ignored; "
        "did you mean 'categories'?",
        "articles/typos.md:7:1: warning: unknown key 'tags' is ignored; "
        "did you mean 'categories'?",
        "articles/typos.md:8:1: warning: author 'Jane Doe, John Roe' has a comma: for "
        "several, write a list (authors: [Jane Doe, John Roe])",
        "articles/typos.md:9:1: warning: category 'Politics, Iran' has a comma: for several, "
        "write a list (categories: [Politics, Iran])",
        "articles/typos.md:10:1: warning: 'image' '/media/nope.jpg' does not exist "
        "(media/nope.jpg); the article goes out without an image",
        "articles/typos.md:12:6: warning: the body's image '/media/none.png' does not exist "
        "(media/none.png)",
        f"{data.root}: 0 articles, 2 errors, 7 warnings",
    ]


def test_an_unclosed_quote_is_reported_at_its_line(data):
    data.write("articles/quote.md", '---\ntitle: "Half a title\ndate: 2024-01-01\n---\nBody\n')
    result = check(data)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "articles/quote.md:2:8: invalid YAML at line 2, column 8: a quote is not closed "
        "(found unexpected end of stream)")


def test_a_new_author_names_the_closest_known_one(data):
    data.article("one", authors=["Jane Doee"])
    data.article("two", authors=["Jane Doee"], date="2024-10-29T13:00:00+03:30")
    result = check(data)
    assert result.returncode == 0           # warnings never block publishing
    assert result.stdout.splitlines()[0] == (
        "articles/one.md:4:1: warning: author 'Jane Doee' (and 1 more articles) has no "
        "authors/jane-doee.yml; did you mean 'Jane Doe'?")


def test_strict_makes_warnings_count(data):
    data.article("one", catgories=["World"])
    assert check(data).returncode == 0
    strict = check(data, "--strict")
    assert strict.returncode == 1
    assert "unknown key 'catgories'" in strict.stdout


def test_site_and_author_files_are_checked_too(data):
    data.site(page_size=20, pagesize=20)
    data.author("jane-doe", name="Jane Doe", biography="x")
    data.article("one")
    out = check(data).stdout
    assert "site.yml:6:1: warning: unknown key 'pagesize' is ignored; did you mean " \
           "'page_size'?" in out
    assert "authors/jane-doe.yml:1:1: warning: unknown key 'biography' is ignored; " \
           "did you mean 'bio'?" in out
    assert "unknown key 'page_size'" not in out


def test_scheduled_articles_are_listed_with_when_they_go_live(data):
    data.article("later", date="2099-01-01T08:00:00+03:30")
    data.article("now")
    result = check(data)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "scheduled (not in the feeds yet):",
        "  2099-01-01T08:00:00+03:30  articles/later.md  Later",
        f"{data.root}: 2 articles, 1 scheduled, no problems",
    ]


def test_many_missing_images_are_summed_up_unless_all(data):
    n = checktext.LIST_LIMIT + 1
    for i in range(n):
        data.article(f"a{i}", image=f"/media/a{i}.jpg")
    out = check(data).stdout.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"warning: {n} images that do not exist; the first: "
                             "articles/a0.md:")
    assert out[0].endswith("(--all lists every one)")
    every = check(data, "--all").stdout.splitlines()
    assert len(every) == n + (n - 1) + 1        # a line per file, blank lines between, total


def test_the_bundled_site_has_no_problems():
    result = run_feedsvc("check")
    assert result.returncode == 0
    assert result.stdout == f"{settings.BUNDLED_DATA}: 12 articles, no problems\n"


def test_version():
    result = run_feedsvc("--version")
    assert result.returncode == 0 and result.stdout.startswith("feedsvc 0.")


# -- the status page --------------------------------------------------------------------

def logged_in_client(make_app, data, tmp_path):
    admin.set_password(open_admin(str(tmp_path / "state")), "status page password")
    client = make_app(data.root).test_client()
    form = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]*)"', form)
    assert token, form
    resp = client.post("/admin/login",
                       data={"password": "status page password", "csrf": token.group(1)})
    assert resp.status_code == 303
    return client


def checked_page(client) -> str:
    """The status page once the background checks have reported (at most 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        page = client.get("/admin/status/").get_data(as_text=True)
        if "Checked at" in page and "checking again" not in page:
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.05)


def test_status_page_lists_problems_escaped_and_scheduled_articles(make_app, data, tmp_path):
    data.write("articles/typos.md", TYPOS.replace("title: Typos", "title: <b>x</b>"))
    data.article("later", date="2099-01-01T08:00:00+03:30", title="<script>alert(1)</script>")
    client = logged_in_client(make_app, data, tmp_path)
    resp = client.get("/admin/status/")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    page = checked_page(client)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "unknown key &#39;auhtors&#39; is ignored" in page
    assert "<h3>articles/typos.md</h3>" in page
    assert '<time datetime="2099-01-01T08:00:00+03:30">' in page
    assert "documents rebuilt" in page
    style = re.search(r"<style>(.*?)</style>", page, re.S)       # its CSP lets it be styled
    assert style, page
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in resp.headers["Content-Security-Policy"]


def test_status_page_never_runs_the_checks_in_the_request(make_app, data, tmp_path,
                                                          monkeypatch):
    """The checks run in the background; the page shows the last result with its time,
    and says when newer data is being checked."""
    data.article("one", auhtors=["Jane Doe"])
    release = threading.Event()
    ran: list[str] = []
    real = checks.report

    def held(corpus, now, max_file_bytes):
        ran.append(threading.current_thread().name)
        assert release.wait(60), "never released"
        return real(corpus, now, max_file_bytes)
    monkeypatch.setattr(checks, "report", held)
    client = logged_in_client(make_app, data, tmp_path)
    first = client.get("/admin/status/").get_data(as_text=True)   # the checks are held
    assert "Checking every file now" in first and "auhtors" not in first
    release.set()
    page = checked_page(client)
    assert "unknown key &#39;auhtors&#39; is ignored" in page
    assert ran == ["feedsvc-checks"]                    # one run, not in the request
    release.clear()
    data.article("two", catgories=["World"])
    client.application.extensions["feedsvc"].refresh()  # new data: checked in the background
    again = client.get("/admin/status/").get_data(as_text=True)
    assert "; checking again" in again and "auhtors" in again and "catgories" not in again
    release.set()
    assert "catgories" in checked_page(client)
    assert ran == ["feedsvc-checks"] * 2


def test_status_page_needs_the_admin_login_even_on_this_machine(make_app, data, tmp_path):
    data.article("one")
    admin.set_password(open_admin(str(tmp_path / "state")), "status page password")
    client = make_app(data.root).test_client()
    for remote in ("127.0.0.1", "::1", "203.0.113.9"):
        resp = client.get("/admin/status/", environ_base={"REMOTE_ADDR": remote})
        assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/login")
    assert client.get("/status/").status_code == 404


# -- the live service's log -------------------------------------------------------------

def service(data, tmp_path, **config) -> Service:
    return Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                     "state_dir": str(tmp_path / "state"), **config}))


def test_a_broken_live_article_says_its_last_good_version_is_published(data, tmp_path):
    data.article("one")
    svc = service(data, tmp_path)
    data.article("one", date="yesterday")
    svc.refresh()
    (error,) = svc.errors
    assert error.message.endswith("; its last good version is still published")


def test_problems_are_logged_once_across_services_and_fixes_too(data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="feedsvc")
    data.article("one", date="yesterday")
    first, second = service(data, tmp_path), service(data, tmp_path)
    said = [r.getMessage() for r in caplog.records if "articles/one.md" in r.getMessage()]
    assert said == ["articles/one.md: 'date' is not an ISO 8601 datetime (got 'yesterday')"]
    caplog.clear()
    data.article("one")
    first.refresh()
    second.refresh()
    said = [r.getMessage() for r in caplog.records if "articles/one.md" in r.getMessage()]
    assert said == ["articles/one.md: fixed, no problems left"]


def test_a_scheduled_article_going_live_is_logged_once(data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="feedsvc")
    data.article("later", date="2030-01-01T00:00:00+00:00")
    clock = [dt.datetime(2029, 12, 31, 23, 59, tzinfo=dt.UTC).timestamp()]
    made = [Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                      "state_dir": str(tmp_path / "state")}),
                    clock=lambda: clock[0]) for _ in range(2)]
    clock[0] += 120
    for svc in made:
        svc.refresh()
    said = [r.getMessage() for r in caplog.records if "went live" in r.getMessage()]
    assert said == ["articles/later.md: scheduled article 'Later' went live "
                    "(2030-01-01T00:00:00+00:00)"]


# -- operators: the port answers at once, problems logged once, progress --------------------

def test_the_port_answers_503_while_serve_warms_up(data, tmp_path):
    for i in range(300):                    # enough to take a moment to read and render
        data.article(f"a{i}", date=f"2024-10-{1 + i % 28:02d}T13:00:00+03:30")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc, port = spawn_serve(data.root, tmp_path / "state", log)
    seen: list[object] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and seen[-3:] != [200, 200, 200]:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                seen.append(r.status_code)
                if r.status_code == 503:
                    assert r.headers["Retry-After"] == "2"
            except requests.ConnectionError:
                seen.append("refused")
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert seen[-3:] == [200, 200, 200], (tmp_path / "serve.log").read_text()
    answered = seen[next(i for i, s in enumerate(seen) if s != "refused"):]
    assert answered[0] == 503                       # the warm-up: an answer, not a refusal
    assert "refused" not in answered               # from the first answer on, never again


def test_serve_logs_a_problem_once_not_once_per_worker(serve, data, tmp_path):
    data.article("good")
    data.article("bad", date="yesterday")
    srv = serve(data.root, workers=2)
    log = Path(srv.log.name)
    line = "articles/bad.md: 'date' is not an ISO 8601 datetime (got 'yesterday')"
    assert log.read_text().count(line) == 1, log.read_text()
    data.article("bad")                                 # fixed: every worker reloads
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "fixed" not in log.read_text():
        time.sleep(0.1)
    time.sleep(1.5)                                     # (three of the workers' polls)
    assert log.read_text().count("articles/bad.md: fixed, no problems left") == 1


def test_progress_in_a_log_is_a_few_lines(caplog):
    caplog.set_level(logging.INFO, logger="feedsvc")
    now = [0.0]
    report = Progress.to(io.StringIO(), clock=lambda: now[0])     # not a terminal: a log
    for done in range(0, 10001, 100):                   # 10,000 files over 25 s
        now[0] = done / 400
        report.update("_read_and_parse", done, 10000)
    report.update("_feeds_job", 5, None)                # a quick stage: not logged
    report.end()
    assert [r.getMessage() for r in caplog.records] == [
        "feedsvc: files read: 4000 of 10000 in 10.0 s (400/s)",
        "feedsvc: files read: 8000 of 10000 in 20.0 s (400/s)",
        "feedsvc: files read: 10000 of 10000 in 25.0 s (400/s)",
    ]


def test_progress_on_a_terminal_is_a_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    now = [0.0]
    report = Progress(screen, clock=lambda: now[0])
    now[0] = 1.0
    report.update("_feeds_job", 50, 100)
    now[0] = 2.0
    report.update("_feeds_job", 100, 100)
    drawn = screen.getvalue().split("\r\x1b[2K")
    assert drawn[1] == "feedsvc: [###############...............] feeds written: 50 of 100 " \
                       "in 1.0 s (50/s)"
    assert drawn[-1] == "feedsvc: feeds written: 100 of 100 in 2.0 s (50/s)\n"
