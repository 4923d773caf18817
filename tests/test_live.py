"""Live data against a running `feedsvc serve`: edits, deletions, schedules, bad files, restarts."""
from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import time

import feedparser
import pytest
import requests

pytestmark = pytest.mark.e2e

FEEDS = ["/feeds/all.atom", "/feeds/all.rss", "/feeds/category/world.atom",
         "/feeds/category/sport.atom", "/feeds/author/jane-doe.rss"]


def get(srv, path, **headers):
    return requests.get(srv.url + path, headers={"Accept-Encoding": "identity", **headers},
                        timeout=10)


def wait_for(predicate, timeout: float = 2.0, step: float = 0.05, times: int = 4):
    """Poll until predicate() holds `times` calls in a row (each request is a new connection,
    so every worker gets asked); return (value, seconds until it first held for good)."""
    start = time.monotonic()
    streak, since = 0, 0.0
    while True:
        value = predicate()
        if value:
            if streak == 0:
                since = time.monotonic() - start
            streak += 1
            if streak >= times:
                return value, since
        else:
            streak = 0
        if time.monotonic() - start > timeout:
            return value, time.monotonic() - start
        time.sleep(step)


def titles(srv, path="/feeds/all.atom") -> list[str]:
    return [e.title for e in feedparser.parse(get(srv, path).content).entries]


def validators(srv) -> dict[str, tuple[str, str]]:
    out = {}
    for path in FEEDS:
        r = get(srv, path)
        out[path] = (r.headers.get("ETag"), r.headers.get("Last-Modified"))
    return out


@pytest.fixture
def site(data):
    data.article("first", title="First", categories=["World"], date="2024-10-01T10:00:00+03:30")
    data.article("second", title="Second", categories=["Sport"], date="2024-10-02T10:00:00+03:30")
    return data


def test_add_edit_delete_reach_every_feed_within_two_seconds(serve, site):
    srv = serve(site.root)
    before = validators(srv)

    site.article("third", title="Third", categories=["World"], date="2024-10-03T10:00:00+03:30")
    _, waited = wait_for(lambda: "Third" in titles(srv))
    assert "Third" in titles(srv), "added article did not appear"
    assert waited < 2.0
    assert wait_for(lambda: "Third" in titles(srv, "/feeds/category/world.atom"))[0]
    after = validators(srv)
    assert after["/feeds/category/world.atom"] != before["/feeds/category/world.atom"]
    # A feed that does not hold the new article keeps its bytes and validators.
    assert after["/feeds/category/sport.atom"] == before["/feeds/category/sport.atom"]

    site.article("third", title="Third, corrected", categories=["World"],
                 date="2024-10-03T10:00:00+03:30")
    value, waited = wait_for(lambda: "Third, corrected" in titles(srv))
    assert value and waited < 2.0

    site.remove("articles/third.md")
    value, waited = wait_for(lambda: "Third, corrected" not in titles(srv))
    assert value and waited < 2.0

    # A new category appears in the OPML, a new author gets a feed.
    site.article("fourth", title="Fourth", categories=["Science"], authors=["Ann Other"])
    assert wait_for(lambda: get(srv, "/feeds/category/science.rss").status_code == 200)[0]
    assert "/feeds/category/science.rss" in get(srv, "/feeds.opml").text
    assert get(srv, "/feeds/author/ann-other.atom").status_code == 200


def test_last_modified_advances_on_deletion_and_backdating(serve, site):
    srv = serve(site.root)
    first = get(srv, "/feeds/all.atom")
    lm = first.headers["Last-Modified"]
    time.sleep(1.1)                         # Last-Modified has one-second resolution

    # Backdated: older than everything in the feed, so the newest date does not move.
    site.article("old", title="Backdated", date="2001-01-01T00:00:00+00:00")
    assert wait_for(lambda: "Backdated" in titles(srv))[0]
    r = get(srv, "/feeds/all.atom", **{"If-Modified-Since": lm})
    assert r.status_code == 200, "false 304 after a backdated article"
    assert r.headers["Last-Modified"] != lm
    lm2 = r.headers["Last-Modified"]
    time.sleep(1.1)

    site.remove("articles/second.md")
    assert wait_for(lambda: "Second" not in titles(srv))[0]
    r = get(srv, "/feeds/all.atom", **{"If-Modified-Since": lm2})
    assert r.status_code == 200, "false 304 after a deletion"
    assert dt.datetime.strptime(r.headers["Last-Modified"], "%a, %d %b %Y %H:%M:%S GMT") > \
        dt.datetime.strptime(lm2, "%a, %d %b %Y %H:%M:%S GMT")


@pytest.mark.slow                   # an 8 s lead, for a slow start
def test_scheduled_article_goes_live_without_file_change(serve, site):
    """One article is scheduled before the server starts, another is saved while it runs;
    both go live at their time with no file changing then, and caches expire by then.
    The lead is long enough for a slow start: a start that ate it is reported as such."""
    lead = 8
    when = dt.datetime.fromtimestamp(math.ceil(time.time()) + lead, dt.UTC)
    site.article("scheduled", title="Scheduled", date=when.isoformat())
    srv = serve(site.root)
    site.article("later", title="Saved while running", date=when.isoformat())
    value, _ = wait_for(lambda: get(srv, "/healthz").json()["articles"] == 4, timeout=5)
    assert value, "the second scheduled file was not read"
    r = get(srv, "/feeds/all.atom")
    left = when.timestamp() - time.time()
    assert left > 0, f"the start took longer than the {lead} s lead; nothing was checked"
    assert {"Scheduled", "Saved while running"}.isdisjoint(titles(srv))
    max_age = int(r.headers["Cache-Control"].split("max-age=")[1])
    assert 0 <= max_age <= math.ceil(left) + 1, \
        "caches must expire when the scheduled article goes live"
    value, waited = wait_for(lambda: {"Scheduled", "Saved while running"} <= set(titles(srv)),
                             timeout=left + 5)
    assert value, "scheduled articles never went live"
    assert get(srv, "/feeds/category/world.atom").status_code == 200


def test_broken_edit_keeps_last_good_version_and_is_reported(serve, site):
    srv = serve(site.root)
    site.write("articles/first.md", "---\ntitle: [oops\ndate: 2024-10-01T10:00:00+03:30\n---\nx\n")
    site.write("articles/new-broken.md", b"\xff\xfe not utf-8")

    def reported():
        health = get(srv, "/healthz")
        assert health.status_code == 200
        messages = {e["path"]: e["message"] for e in health.json()["errors"]}
        return messages if {"articles/first.md", "articles/new-broken.md"} <= set(messages) \
            else None
    messages, _ = wait_for(reported)
    assert messages
    assert "invalid YAML" in messages["articles/first.md"]
    assert "not valid UTF-8" in messages["articles/new-broken.md"]
    assert "First" in titles(srv), "a typo made a published article vanish"
    srv.stop()                                      # nor does a restart while it is broken
    srv = serve(site.root)
    assert "First" in titles(srv), "a restart unpublished an article whose file is broken"

    site.article("first", title="First, fixed", date="2024-10-01T10:00:00+03:30")
    value, _ = wait_for(lambda: "First, fixed" in titles(srv))
    assert value
    assert "articles/first.md" not in {e["path"] for e in get(srv, "/healthz").json()["errors"]}


def test_data_dir_disappearing_keeps_serving(serve, site, tmp_path):
    srv = serve(site.root)
    etag = get(srv, "/feeds/all.atom").headers["ETag"]
    moved = tmp_path / "moved"
    shutil.move(str(site.root), moved)
    value, _ = wait_for(lambda: get(srv, "/healthz").json()["errors"])
    assert value and "missing" in value[0]["message"]
    r = get(srv, "/feeds/all.atom")
    assert r.status_code == 200 and r.headers["ETag"] == etag
    shutil.move(str(moved), site.root)
    value, _ = wait_for(lambda: not get(srv, "/healthz").json()["errors"], timeout=4)
    assert value
    assert get(srv, "/feeds/all.atom").headers["ETag"] == etag


def test_restart_while_data_dir_is_missing_serves_last_published_version(serve, site,
                                                                         tmp_path):
    srv = serve(site.root, workers=1)
    before = get(srv, "/feeds/all.atom")
    srv.stop()
    shutil.move(str(site.root), tmp_path / "moved")
    again = serve(site.root, workers=1)
    r = get(again, "/feeds/all.atom")
    assert (r.status_code, r.content, r.headers["ETag"]) == \
        (200, before.content, before.headers["ETag"])
    health = get(again, "/healthz")
    assert health.status_code == 200 and "missing" in health.json()["errors"][0]["message"]
    assert get(again, "/articles/first/").status_code == 200      # from the checkpoint


@pytest.mark.slow                   # two starts of two workers
def test_validators_survive_restart_and_workers_agree(serve, site, tmp_path):
    state = tmp_path / "shared-state"
    srv = serve(site.root, state_dir=state)
    site.article("third", title="Third", date="2024-10-03T10:00:00+03:30")
    assert wait_for(lambda: "Third" in titles(srv))[0]
    time.sleep(1.0)                                 # both workers pick the change up
    first = validators(srv)
    for _ in range(10):                             # fresh connections reach both workers
        assert validators(srv) == first
    srv.stop()
    again = serve(site.root, state_dir=state)
    assert validators(again) == first, "ETag or Last-Modified changed across a restart"
    # A lost state directory costs a download, never a false 304.
    fresh = serve(site.root, state_dir=tmp_path / "new-state")
    r = get(fresh, "/feeds/all.atom", **{"If-Modified-Since": first["/feeds/all.atom"][1]})
    assert r.headers["ETag"] == first["/feeds/all.atom"][0]
    assert r.status_code in (200, 304)
    if r.status_code == 304:                        # only when the bytes are really the same
        assert r.headers["ETag"] == first["/feeds/all.atom"][0]


def test_burst_of_saves_settles_to_one_consistent_state(serve, site, tmp_path):
    srv = serve(site.root)
    for i in range(200):
        site.article(f"burst-{i:03d}", title=f"Burst {i:03d}", categories=["World"],
                     date=f"2024-11-01T{i // 60:02d}:{i % 60:02d}:00+03:30")
    expected = [f"Burst {i:03d}" for i in range(199, 149, -1)]     # newest 50
    value, waited = wait_for(lambda: titles(srv) == expected, timeout=5)
    assert value, "the burst did not settle"
    fresh = serve(site.root, state_dir=tmp_path / "fresh-state", workers=1)
    for path in FEEDS + ["/", "/feeds.opml", "/category/world/"]:
        assert get(srv, path).headers.get("ETag") == get(fresh, path).headers.get("ETag"), path


def test_healthz_is_json_with_errors_list(serve, site):
    srv = serve(site.root, workers=1)
    doc = json.loads(get(srv, "/healthz").text)
    assert doc["status"] == "ok" and doc["errors"] == [] and doc["articles"] == 2


def test_two_instances_on_shared_data_and_state_agree(serve, site, tmp_path):
    """Scale-out: instances behind a load balancer give the same bytes and validators."""
    state = tmp_path / "shared-state"
    one = serve(site.root, workers=1, state_dir=state)
    two = serve(site.root, workers=1, state_dir=state)
    site.article("third", title="Third", date="2024-10-03T10:00:00+03:30")
    assert wait_for(lambda: "Third" in titles(one) and "Third" in titles(two))[0]
    for path in FEEDS + ["/", "/feeds.opml"]:
        a, b = get(one, path), get(two, path)
        assert a.status_code == b.status_code == 200, path
        assert a.content == b.content, path
        assert (a.headers["ETag"], a.headers["Last-Modified"]) == \
            (b.headers["ETag"], b.headers["Last-Modified"]), path
