"""A replay of real User-Agents against two real `feedsvc serve` instances (one with two
workers) on one state directory, read back through the logged-in statistics page; and
`feedsvc stats import-log` on an nginx log, twice."""
from __future__ import annotations

import datetime as dt
import gzip
import re
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from conftest import run_feedsvc
from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures)
from statsdb import Stats

from feedsvc import admin
from feedsvc.store import open_admin, open_stats

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; )"
FEEDBIN = "Feedbin feed-id:{} - {} subscribers"
MINIFLUX = "Mozilla/5.0 (compatible; Miniflux/2.0.50; +https://miniflux.app)"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def replay(url: str, plan: list[tuple[str, str, dict]]) -> None:
    """GET each (path, User-Agent, extra headers), a new connection every 25 requests so
    both workers get some."""
    session = requests.Session()
    for n, (path, ua, extra) in enumerate(plan):
        if n % 25 == 0:
            session.close()
            session = requests.Session()
        resp = session.get(url + path, headers={"User-Agent": ua, **extra}, timeout=10)
        assert resp.status_code in (200, 304), (path, resp.status_code)
    session.close()


def wait_for(store, requests_expected: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        today = dt.datetime.now(dt.UTC).date().isoformat()
        if sum(t.requests for t in store.totals(today, today)) >= requests_expected:
            return
        time.sleep(0.2)
    raise AssertionError("the counts did not reach the stats store within 30 s")


def log_in(url: str) -> requests.Session:
    client = requests.Session()
    form = client.get(url + "/admin/login")
    token = re.search(r'name="csrf" value="([^"]*)"', form.text).group(1)
    assert client.post(url + "/admin/login", data={"password": PASSWORD, "csrf": token},
                       allow_redirects=False).status_code == 303
    return client


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """"" (statistics in stats.sqlite, instances sharing one state directory), or a new
    PostgreSQL database (instances each with their own state directory, as on two
    machines)."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else ""


@pytest.mark.slow                   # two servers on one database (5-6 s each way)
def test_a_replay_on_two_instances_gives_the_expected_numbers(serve, data, tmp_path,
                                                              database_url):
    states = [tmp_path / "state", tmp_path / ("state2" if database_url else "state")]
    env = {"feedsvc_stats_flush_seconds": "0.3", "feedsvc_stats_forwarded_for": "1",
           "feedsvc_database_url": database_url}
    one = serve(data.root, workers=2, state_dir=states[0], **env)
    head = requests.get(one.url + "/feeds/all.rss", headers={"User-Agent": "curl/8.5.0"})
    etag, size = head.headers["ETag"], int(head.headers["Content-Length"])
    fresh = {"If-None-Match": etag}
    plan = [("/feeds/all.rss", FEEDLY.format(100 + n // 100), fresh if n % 2 else {})
            for n in range(400)]
    plan += [("/feeds/all.rss", FEEDBIN.format(1, 10), fresh) for _ in range(200)]
    plan += [("/feeds/all.rss", FEEDBIN.format(2, 5), {}) for _ in range(200)]
    plan += [("/feeds/all.atom", MINIFLUX, {"X-Forwarded-For": f"203.0.113.{n % 30}"})
             for n in range(600)]
    plan += [("/feeds/all.json", CHROME, {}) for _ in range(150)]
    plan += [("/feeds/all.rss", GOOGLEBOT, {}) for _ in range(150)]
    replay(one.url, plan)
    two = serve(data.root, workers=2, state_dir=states[1], **env)   # a second instance
    later = [("/feeds/all.rss", FEEDLY.format(130), fresh) for _ in range(100)]
    later += [("/feeds/all.atom", MINIFLUX, {"X-Forwarded-For": f"203.0.113.{25 + n % 10}"})
              for n in range(100)]
    replay(two.url, later)
    store = open_stats(str(states[0]), database_url)
    wait_for(store, 1 + len(plan) + len(later))

    # set once: in the shared state directory, or in the database both instances share
    with closing(open_admin(str(states[0]), database_url)) as admins:
        admin.set_password(admins, PASSWORD)
    page = log_in(two.url).get(two.url + "/admin/stats?days=7&feed=feeds/all")
    assert page.status_code == 200 and "<svg" in page.text
    rows = log_in(one.url).get(one.url + "/admin/stats.json?days=7").json()["rows"]
    got = {(r[1], r[2]): dict(zip(["requests", "ok", "nm", "sent", "saved", "subs"], r[4:]))
           for r in rows}
    assert got[("feeds/all.rss", "Feedly")] == {
        "requests": 500, "ok": 200, "nm": 300, "sent": 200 * size, "saved": 300 * size,
        "subs": 130}                             # the latest report of the day
    assert got[("feeds/all.rss", "Feedbin")]["subs"] == 15      # two feed ids
    assert got[("feeds/all.rss", "Feedbin")]["nm"] == 200
    assert got[("feeds/all.atom", "Miniflux")]["subs"] == 35    # distinct address + UA
    assert got[("feeds/all.atom", "Miniflux")]["requests"] == 700
    assert got[("feeds/all.json", "browser")]["requests"] == 150
    assert got[("feeds/all.json", "browser")]["subs"] == 0
    assert got[("feeds/all.rss", "Googlebot")] == {
        "requests": 150, "ok": 150, "nm": 0, "sent": 150 * size, "saved": 0, "subs": 0}
    assert got[("feeds/all.rss", "curl")]["requests"] == 1
    stored = Stats(tmp_path, database_url).dump()
    assert "Miniflux" in stored and "203.0.113" not in stored
    store.close()
    assert not any(state.joinpath("stats.sqlite").exists() for state in states[1:]
                   if database_url), "with a database, no statistics stay on the machine"


@pytest.mark.slow                   # a database stopped and started
def test_losing_the_database_costs_no_request_and_no_count(serve, data, tmp_path,
                                                           pg_cluster, pg_url):  # noqa: F811
    """PostgreSQL stopped under a counting server: every poll is answered, the counts
    wait in the workers and reach the database once it is back (without a restart)."""
    server = serve(data.root, workers=2, feedsvc_stats_flush_seconds="0.3",
                   feedsvc_database_url=pg_url)
    store = open_stats(str(tmp_path / "reader"), pg_url)
    replay(server.url, [("/feeds/all.rss", FEEDLY.format(7), {})] * 50)
    wait_for(store, 50)
    with closing(open_admin("", pg_url)) as admins:
        admin.set_password(admins, PASSWORD)
    editor = log_in(server.url)
    pg_cluster.stop()
    try:
        replay(server.url, [("/feeds/all.rss", FEEDLY.format(8), {})] * 200)   # no 5xx
        time.sleep(1)                                   # a few flushes that cannot write
        page = editor.get(server.url + "/admin/stats", allow_redirects=False)
        assert page.status_code == 503 and "database" in page.text
        assert "Retry-After" in page.headers and "127.0.0.1" not in page.text
    finally:
        pg_cluster.resume()
    deadline = time.monotonic() + 60                    # backoff: at most 30 s between tries
    while editor.get(server.url + "/admin/stats", allow_redirects=False).status_code == 503:
        assert time.monotonic() < deadline, "admin pages did not come back with the database"
        time.sleep(0.5)
    assert editor.get(server.url + "/admin/stats").status_code == 200     # still logged in
    store.close()
    store = open_stats(str(tmp_path / "reader"), pg_url)
    deadline = time.monotonic() + 60                    # backoff: at most 30 s between tries
    while time.monotonic() < deadline and sum(
            t.requests for t in store.totals("2000-01-01", "2100-01-01")) < 250:
        time.sleep(0.5)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert [(t.client, t.requests) for t in store.totals(today, today)] == [("Feedly", 250)]
    assert [c.subscribers for c in store.reported(today, today)] == [8]
    store.close()
    log = Path(server.log.name).read_text()
    assert log.count("statistics: could not write") <= 2     # once per worker


LOG = (
    '203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] "GET /feeds/all.rss HTTP/1.1" 200 5120 "-" '
    '"Feedly/1.0 (+http://www.feedly.com/fetcher.html; 134 subscribers; )"\n'
    '203.0.113.7 - - [01/Dec/2026:11:00:00 +0000] "GET /feeds/all.rss HTTP/1.1" 304 0 "-" '
    '"Feedbin feed-id:1306543 - 3 subscribers"\n'
    '198.51.100.2 - - [01/Dec/2026:12:00:00 +0100] "GET /feeds/all.atom?x=1 HTTP/1.1" 200 900 '
    '"-" "Tiny Tiny RSS/20.08-2b50aaed6 (http://tt-rss.org/)"\n'
    '198.51.100.3 - - [01/Dec/2026:12:30:00 +0000] "GET /index.html HTTP/1.1" 200 10 "-" "x"\n'
    'this line is not a log line\n'
)
APPENDED = ('198.51.100.4 - - [02/Dec/2026:08:00:00 +0000] "HEAD /feeds/all.atom HTTP/1.1" 200 '
            '0 "-" "Liferea/1.12.6 (Linux; https://lzone.de/liferea/) AppleWebKit (KHTML, like '
            'Gecko) \\x22quoted\\x22"\n')


def test_import_log_reads_nginx_logs_once_and_gzip_too(tmp_path, database_url):
    state = tmp_path / "state"
    log = tmp_path / "access.log"
    log.write_text(LOG)
    env = {"FEEDSVC_STATE_DIR": str(state), "FEEDSVC_DATABASE_URL": database_url}
    first = run_feedsvc("stats", "import-log", str(log), env=env)
    assert first.returncode == 0, first.stderr
    assert "5 new lines, 3 feed requests counted, 1 not in the combined format" in first.stdout
    again = run_feedsvc("stats", "import-log", str(log), env=env)
    assert "0 new lines" in again.stdout and "already imported" in again.stdout
    with log.open("a") as f:
        f.write(APPENDED)
    appended = run_feedsvc("stats", "import-log", str(log), env=env)
    assert "1 new lines, 1 feed requests counted" in appended.stdout
    packed = tmp_path / "access.log.1.gz"
    packed.write_bytes(gzip.compress(LOG.encode()))   # rotated: the same lines again
    assert "already imported" in run_feedsvc("stats", "import-log", str(packed),
                                             env=env).stdout
    store = open_stats(str(state), database_url)
    totals = {(t.day, t.path, t.client): t for t in store.totals("2026-01-01", "2026-12-31")}
    assert totals[("2026-12-01", "feeds/all.rss", "Feedly")].bytes_sent == 5120
    assert totals[("2026-12-01", "feeds/all.rss", "Feedbin")].bytes_saved == 5120
    assert totals[("2026-12-01", "feeds/all.atom", "Tiny Tiny RSS")].requests == 1
    assert totals[("2026-12-02", "feeds/all.atom", "Liferea")].requests == 1
    reported = {(c.path, c.client): c.subscribers for c in store.reported("2026-12-01",
                                                                          "2026-12-01")}
    assert reported == {("feeds/all.rss", "Feedly"): 134, ("feeds/all.rss", "Feedbin"): 3}
    pollers = {c.client: c.subscribers for c in store.pollers("2026-12-01", "2026-12-02")}
    assert pollers == {"Tiny Tiny RSS": 1, "Liferea": 1}
    tables = Stats(tmp_path, database_url)
    assert tables.rows("poller_hashes") == 0
    assert "Liferea" in tables.dump() and "198.51.100" not in tables.dump()
    store.close()


def test_import_log_without_its_database_says_so_in_one_line(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(LOG)
    url = "postgresql://feeds:secret@127.0.0.1:1/stats"      # nothing listens on port 1
    done = run_feedsvc("stats", "import-log", str(log), "--state-dir", str(tmp_path / "s"),
                       "--database-url", url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "FEEDSVC_DATABASE_URL" in done.stderr
    assert "secret" not in done.stderr
