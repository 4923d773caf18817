"""WebSub subscribers are readers: the hub's live subscriptions in the subscriber estimate
of the statistics page (chart, top readers, ranking) and its exports."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from pgcluster import pg_cluster  # noqa: F401  (a fixture)
from statsdb import stats_of
from websub_subscriber import hub_request, start_subscriber, wait_until

from feedsvc import admin, statsreport
from feedsvc.audience import Counter, Flusher
from feedsvc.store import open_admin

SITE = "https://news.example.com/"
PASSWORD = "correct horse battery"
ACTIVE = {"feeds/all.atom": 2, "feeds/all.rss": 1, "feeds/category/world.json": 4}


@pytest.fixture(params=["sqlite", "postgresql"])
def stats(request, tmp_path):
    yield from stats_of(request, tmp_path)


def test_websub_subscriptions_are_a_reader_with_a_history(stats):
    """The flusher writes the hub's subscriptions as WebSub's count of each day: the
    chart, the top readers, the ranking and the exports show them, day by day."""
    store = stats.open()
    live: dict[str, int] | None = dict(ACTIVE)
    flusher = Flusher(Counter(store), 5.0, 400, lambda: live)
    day1 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC).timestamp()
    flusher.once(day1)
    live = None                                         # the hub's store lost: nothing
    flusher.once(day1 + 5)
    live = {"feeds/all.atom": 5}                        # world's 4 left, all.atom grew
    flusher.once(day1 + 86400)
    flusher.once(day1 + 86405)                          # unchanged: nothing written
    today = dt.date(2026, 12, 1)
    site = statsreport.report(store, today, 7, "")
    assert site.subscribers == {"WebSub": [0] * 5 + [7, 5]}
    assert [(r.client, r.kind, r.subscribers) for r in site.top] == [("WebSub", "websub", 5)]
    assert [(r.scope, r.subscribers) for r in site.ranking] == [
        ("feeds/all", 5), ("feeds/category/world", 4)]  # each on its last day
    one = statsreport.report(store, today, 7, "feeds/all")
    assert one.subscribers == {"WebSub": [0] * 5 + [3, 5]}
    rows = statsreport.rows(store, "2026-11-30", "2026-12-01")
    assert [(r.day, r.feed, r.client, r.kind, r.subscribers) for r in rows] == [
        ("2026-11-30", "feeds/all.atom", "WebSub", "websub", 2),
        ("2026-11-30", "feeds/all.rss", "WebSub", "websub", 1),
        ("2026-11-30", "feeds/category/world.json", "WebSub", "websub", 4),
        ("2026-12-01", "feeds/all.atom", "WebSub", "websub", 5)]
    live = {}                                           # every subscription gone today
    flusher.once(day1 + 86410)
    assert statsreport.report(store, today, 7, "").subscribers == {"WebSub": [0] * 5 + [7, 0]}


@pytest.mark.e2e
def test_the_statistics_page_counts_live_websub_subscriptions(serve, data, tmp_path):
    data.article("first")
    state = tmp_path / "state"
    srv = serve(data.root, state_dir=state, feedsvc_websub_allow_private="true",
                feedsvc_stats_flush_seconds="0.2")
    sub, server = start_subscriber()
    try:
        for name in ("a", "b"):
            r = hub_request(f"{srv.url}/websub", "subscribe", SITE + "feeds/all.atom",
                            sub.callback(name))
            assert r.status_code == 202
            assert wait_until(lambda name=name: sub.verified(name))
    finally:
        server.shutdown()
        server.server_close()
    admin.set_password(open_admin(str(state)), PASSWORD)
    client = requests.Session()
    form = client.get(srv.url + "/admin/login", timeout=10)
    token = re.search(r'name="csrf" value="([^"]*)"', form.text).group(1)
    assert client.post(srv.url + "/admin/login", data={"password": PASSWORD, "csrf": token},
                       allow_redirects=False, timeout=10).status_code == 303
    shown = "<td>WebSub</td><td>websub</td><td class=\"n\">2</td>"
    assert wait_until(lambda: shown in client.get(srv.url + "/admin/stats?days=7",
                                                  timeout=10).text)
    rows = client.get(srv.url + "/admin/stats.json?days=7", timeout=10).json()["rows"]
    assert [r for r in rows if r[2] == "WebSub"] == [
        [dt.datetime.now(dt.UTC).date().isoformat(), "feeds/all.atom", "WebSub", "websub",
         0, 0, 0, 0, 0, 2]]
    csv = client.get(srv.url + "/admin/stats.csv?days=7", timeout=10).text
    assert ",feeds/all.atom,WebSub,websub,0,0,0,0,0,2" in csv
