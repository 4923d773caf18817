"""WebSub subscribers are readers: the hub's live subscriptions in the subscriber estimate
of the statistics page (chart, top readers, ranking) and its exports."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from websub_subscriber import hub_request, start_subscriber, wait_until

from feedsvc import admin, statsreport
from feedsvc.statsstore import SQLiteStats
from feedsvc.store import open_admin

SITE = "https://news.example.com/"
PASSWORD = "correct horse battery"
ACTIVE = {"feeds/all.atom": 2, "feeds/all.rss": 1, "feeds/category/world.json": 4}


def test_websub_subscriptions_join_the_estimate_as_a_reader_on_the_last_day(tmp_path):
    store = SQLiteStats(str(tmp_path))
    today = dt.date(2026, 12, 1)
    site = statsreport.with_websub(statsreport.report(store, today, 7, ""), ACTIVE)
    assert site.subscribers == {"WebSub": [0] * 6 + [7]}
    assert [(r.client, r.subscribers) for r in site.top] == [("WebSub", 7)]
    assert [(r.scope, r.subscribers) for r in site.ranking] == [
        ("feeds/category/world", 4), ("feeds/all", 3)]
    assert site.scopes == ["feeds/all", "feeds/category/world"]
    one = statsreport.with_websub(statsreport.report(store, today, 7, "feeds/all"), ACTIVE)
    assert one.subscribers == {"WebSub": [0] * 6 + [3]}
    none = statsreport.with_websub(statsreport.report(store, today, 7, ""), {})
    assert none.subscribers == {} and none.top == [] and none.ranking == []
    rows = statsreport.websub_rows(ACTIVE, "2026-12-01")
    assert [(r.feed, r.client, r.kind, r.subscribers) for r in rows] == [
        ("feeds/all.atom", "WebSub", "websub", 2), ("feeds/all.rss", "WebSub", "websub", 1),
        ("feeds/category/world.json", "WebSub", "websub", 4)]


@pytest.mark.e2e
def test_the_statistics_page_counts_live_websub_subscriptions(serve, data, tmp_path):
    data.article("first")
    state = tmp_path / "state"
    srv = serve(data.root, state_dir=state, feedsvc_websub_allow_private="true")
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
    page = client.get(srv.url + "/admin/stats?days=7", timeout=10).text
    assert "<td>WebSub</td><td>websub</td><td class=\"n\">2</td>" in page
    rows = client.get(srv.url + "/admin/stats.json?days=7", timeout=10).json()["rows"]
    assert [r for r in rows if r[2] == "WebSub"] == [
        [dt.datetime.now(dt.UTC).date().isoformat(), "feeds/all.atom", "WebSub", "websub",
         0, 0, 0, 0, 0, 2]]
    csv = client.get(srv.url + "/admin/stats.csv?days=7", timeout=10).text
    assert ",feeds/all.atom,WebSub,websub,0,0,0,0,0,2" in csv
