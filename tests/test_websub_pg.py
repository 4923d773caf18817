"""The WebSub hub on PostgreSQL end to end: two `feedsvc serve` instances (each its own
state directory and copy of the data, one database) and one real subscriber, all on
127.0.0.1.  A subscription made through one instance is the other's too, a change is
delivered once, and an intent one instance accepted is verified by the other."""
from __future__ import annotations

import os
import shutil
import time

import pytest
import requests
from conftest import DataDir
from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures)
from websub_subscriber import hub_request, wait_until

from feedsvc.pgwebsub import PgSubscriptions
from feedsvc.websubstore import Intent

pytestmark = pytest.mark.e2e
SITE = "https://news.example.com/"
TOPIC = SITE + "feeds/all.atom"


def served(srv) -> bytes:
    return requests.get(f"{srv.url}/feeds/all.atom", headers={"Accept-Encoding": "identity"},
                        timeout=10).content


@pytest.mark.slow                   # two instances, one database
def test_two_instances_share_subscriptions_and_deliver_each_change_once(
        data, tmp_path, serve, pg_url, subscriber):  # noqa: F811
    data.article("first", title="First")
    copy = tmp_path / "copy"
    shutil.copytree(data.root, copy)                # (like rsync -a: times kept)
    env = {"FEEDSVC_DATABASE_URL": pg_url, "feedsvc_websub_allow_private": "true"}
    a = serve(data.root, workers=1, state_dir=tmp_path / "sa", **env)
    b = serve(copy, workers=1, state_dir=tmp_path / "sb", **env)

    r = hub_request(f"{a.url}/websub", "subscribe", TOPIC, subscriber.callback("one"))
    assert r.status_code == 202, r.text
    assert wait_until(lambda: subscriber.verified("one"))

    # an intent accepted (202) by a worker that died before verifying it: kept in the
    # database, so a live instance verifies it
    orphans = PgSubscriptions(pg_url)
    try:
        assert orphans.intend(Intent("subscribe", subscriber.callback("orphan"), TOPIC, 3600,
                                     None), time.time())
    finally:
        orphans.close()
    assert wait_until(lambda: subscriber.verified("orphan"))

    # the same edit reaches both copies (a sync): both instances see the change, one
    # delivery per subscriber
    edited = data.article("first", title="First, edited")
    shutil.copy2(edited, copy / "articles" / "first.md")
    for name in ("one", "orphan"):
        assert wait_until(lambda name=name: len(subscriber.delivered(name)) == 1), name
    assert wait_until(lambda: served(a) == served(b)
                      and served(a) == subscriber.delivered("one")[0].body)
    time.sleep(2.0)                                 # refreshes of both (poll 0.5 s)
    assert [len(subscriber.delivered(n)) for n in ("one", "orphan")] == [1, 1]
    assert b"First, edited" in subscriber.delivered("one")[0].body

    # A stops: B delivers the next change to the subscription A took
    a.stop()
    shutil.copy2(data.article("first", title="First, edited again"),
                 copy / "articles" / "first.md")
    assert wait_until(lambda: len(subscriber.delivered("one")) == 2)
    assert wait_until(lambda: served(b) == subscriber.delivered("one")[1].body)
    assert b"First, edited again" in subscriber.delivered("one")[1].body
    time.sleep(1.0)
    assert len(subscriber.delivered("one")) == 2


def test_the_rate_limit_is_shared_by_instances(data, tmp_path, serve, pg_url,  # noqa: F811
                                               subscriber):
    data.article("first")
    env = {"FEEDSVC_DATABASE_URL": pg_url, "feedsvc_websub_allow_private": "true",
           "feedsvc_websub_rate": "4"}
    a = serve(data.root, workers=1, state_dir=tmp_path / "sa", **env)
    b = serve(data.root, workers=1, state_dir=tmp_path / "sb", **env)
    if time.time() % 60 > 50:                       # one clock minute for all requests
        time.sleep(61 - time.time() % 60)
    codes = [hub_request(f"{srv.url}/websub", "subscribe", TOPIC,
                         subscriber.callback("x")).status_code for srv in (a, b) * 4]
    assert codes == [202] * 4 + [429] * 4


@pytest.mark.slow                   # two instances, one database
def test_a_lagging_copy_never_delivers_bytes_older_than_delivered(
        data, tmp_path, serve, pg_url, subscriber):  # noqa: F811
    data.article("first", title="Version 1")
    copy = tmp_path / "copy"
    shutil.copytree(data.root, copy)
    env = {"FEEDSVC_DATABASE_URL": pg_url, "feedsvc_websub_allow_private": "true"}
    a = serve(data.root, workers=1, state_dir=tmp_path / "sa", **env)
    b = serve(copy, workers=1, state_dir=tmp_path / "sb", **env)
    r = hub_request(f"{a.url}/websub", "subscribe", TOPIC, subscriber.callback("one"))
    assert r.status_code == 202
    assert wait_until(lambda: subscriber.verified("one"))
    # A's copy gets version 3; B's copy, synced later from a lagging source, version 2
    # (older files, scanned later)
    newer = data.article("first", title="Version 3")
    later = time.time() + 100
    os.utime(newer, (later, later))
    assert wait_until(lambda: len(subscriber.delivered("one")) == 1)
    lagging = DataDir(tmp_path / "scratch").article("first", title="Version 2").read_bytes()
    (copy / "articles" / "first.md").write_bytes(lagging)
    earlier = time.time() - 100
    os.utime(copy / "articles" / "first.md", (earlier, earlier))
    assert wait_until(lambda: b"Version 2" in served(b))
    time.sleep(2.0)                                 # refreshes of B (poll 0.5 s)
    got = subscriber.delivered("one")
    assert len(got) == 1 and b"Version 3" in got[0].body


@pytest.mark.slow                   # a database stopped and started
def test_a_change_made_while_the_database_is_lost_is_delivered_once_it_is_back(
        data, tmp_path, serve, pg_cluster, pg_url, subscriber):  # noqa: F811
    data.article("first", title="Before")
    srv = serve(data.root, workers=1, FEEDSVC_DATABASE_URL=pg_url,
                feedsvc_websub_allow_private="true")
    r = hub_request(f"{srv.url}/websub", "subscribe", TOPIC, subscriber.callback("one"))
    assert r.status_code == 202
    assert wait_until(lambda: subscriber.verified("one"))
    pg_cluster.stop()
    try:
        data.article("first", title="While the database was down")
        assert wait_until(lambda: b"was down" in served(srv))
        time.sleep(1.0)                             # the hub tried, and kept it
        assert subscriber.delivered("one") == []
    finally:
        pg_cluster.resume()
    assert wait_until(lambda: len(subscriber.delivered("one")) == 1, timeout=60)
    assert subscriber.delivered("one")[0].body == served(srv)
    time.sleep(1.0)
    assert len(subscriber.delivered("one")) == 1
