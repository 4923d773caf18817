"""The built-in WebSub hub end to end: a real `feedsvc serve` and a real subscriber, both
on 127.0.0.1 (allowed by FEEDSVC_WEBSUB_ALLOW_PRIVATE).  No request leaves 127.0.0.0/8."""
from __future__ import annotations

import hashlib
import hmac
import time

import feedparser
import pytest
import requests
from websub_subscriber import hub_request, wait_until

pytestmark = pytest.mark.e2e
SITE = "https://news.example.com/"
FORMATS = ("atom", "rss", "json")


def start(serve, data, **env):
    env.setdefault("feedsvc_websub_allow_private", "true")
    return serve(data.root, **env)


def current(srv, path: str) -> bytes:
    return requests.get(f"{srv.url}/{path}", headers={"Accept-Encoding": "identity"},
                        timeout=10).content


def serves(srv, path: str, body: bytes) -> bool:
    """Whether every worker comes to serve `body` at `path` (a worker may refresh a moment
    after the one whose change was delivered; bytes older than served never match)."""
    return wait_until(lambda: all(current(srv, path) == body for _ in range(4)), timeout=10)


def subscribe(srv, sub, name: str, topic_path: str, **extra: str) -> None:
    r = hub_request(f"{srv.url}/websub", "subscribe", SITE + topic_path, sub.callback(name),
                    **extra)
    assert r.status_code == 202, r.text
    assert wait_until(lambda: sub.verified(name)), sub.verifications


def settle(seconds: float = 2.0) -> None:
    """Time for refreshes (poll 0.5 s) and deliveries that should NOT happen to happen."""
    time.sleep(seconds)


def test_discovery_links_in_headers_on_200_and_304_and_in_every_format(serve, data):
    data.article("first")
    srv = start(serve, data)
    for fmt in FORMATS:
        r = requests.get(f"{srv.url}/feeds/all.{fmt}", timeout=10)
        want = f'<{SITE}websub>; rel="hub", <{SITE}feeds/all.{fmt}>; rel="self"'
        assert r.headers["Link"] == want
        again = requests.get(f"{srv.url}/feeds/all.{fmt}", timeout=10,
                             headers={"If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304 and again.headers["Link"] == want
        if fmt == "json":
            assert r.json()["hubs"] == [{"type": "WebSub", "url": SITE + "websub"}]
        else:
            links = feedparser.parse(r.content).feed.links
            assert {"rel": "hub", "href": SITE + "websub"} in \
                [{"rel": ln.get("rel"), "href": ln.get("href")} for ln in links]
    assert "Link" not in requests.get(srv.url + "/", timeout=10).headers


def test_signed_delivery_after_add_edit_delete_for_each_format(serve, data, subscriber):
    data.article("first")
    srv = start(serve, data)
    for fmt in FORMATS:
        subscribe(srv, subscriber, fmt, f"feeds/all.{fmt}", secret=f"s3cret-{fmt}")
    query = subscriber.verifications[0]
    assert query["hub.lease_seconds"] == "864000" and query["hub.challenge"]
    for step, change in enumerate([lambda: data.article("second", title="Second"),
                                   lambda: data.article("second", title="Second, edited"),
                                   lambda: data.remove("articles/second.md")], start=1):
        change()
        for fmt in FORMATS:
            assert wait_until(lambda fmt=fmt, step=step:
                              len(subscriber.delivered(fmt)) >= step), (fmt, step)
        settle(1.0)
        for fmt in FORMATS:
            got = subscriber.delivered(fmt)
            assert len(got) == step, (fmt, step)        # once per change, two workers
            last = got[-1]
            assert serves(srv, f"feeds/all.{fmt}", last.body)
            secret = f"s3cret-{fmt}".encode()
            assert last.headers["X-Hub-Signature"] == \
                "sha256=" + hmac.new(secret, last.body, hashlib.sha256).hexdigest()
            assert last.headers["Content-Type"].startswith(
                {"atom": "application/atom+xml", "rss": "application/rss+xml",
                 "json": "application/feed+json"}[fmt])
            assert f'<{SITE}feeds/all.{fmt}>; rel="self"' in last.headers["Link"]
            assert f'<{SITE}websub>; rel="hub"' in last.headers["Link"]
    assert b"Second, edited" in subscriber.delivered("atom")[1].body
    assert b"<title>Second" not in subscriber.delivered("atom")[2].body


def test_unsubscribe_stops_deliveries_and_unchanged_refresh_delivers_nothing(
        serve, data, subscriber):
    data.article("first")
    srv = start(serve, data)
    subscribe(srv, subscriber, "a", "feeds/all.atom")
    subscribe(srv, subscriber, "b", "feeds/all.atom")
    path = data.article("first")                # the same bytes again: a refresh, no change
    path.touch()
    settle()
    assert subscriber.delivered("a") == [] and subscriber.delivered("b") == []
    r = hub_request(f"{srv.url}/websub", "unsubscribe", SITE + "feeds/all.atom",
                    subscriber.callback("b"))
    assert r.status_code == 202
    assert wait_until(lambda: subscriber.verified("b", "unsubscribe"))
    data.article("second")
    assert wait_until(lambda: len(subscriber.delivered("a")) == 1)
    settle(1.0)
    assert subscriber.delivered("b") == []
    assert len(subscriber.delivered("a")) == 1


def test_a_short_lease_expires(serve, data, subscriber):
    data.article("first")
    srv = start(serve, data, feedsvc_websub_lease_min="1")
    subscribe(srv, subscriber, "short", "feeds/all.json", lease_seconds="1")
    subscribe(srv, subscriber, "long", "feeds/all.json")
    assert any(v.get("hub.lease_seconds") == "1" for v in subscriber.verifications)
    time.sleep(1.5)
    data.article("second")
    assert wait_until(lambda: len(subscriber.delivered("long")) == 1)
    settle(1.0)
    assert subscriber.delivered("short") == []


def test_a_callback_failing_three_times_then_gets_the_latest_bytes(serve, data, subscriber):
    data.article("first")
    srv = start(serve, data)
    subscribe(srv, subscriber, "flaky", "feeds/all.rss")
    subscriber.fail = 3
    data.article("second", title="Second")
    assert wait_until(lambda: subscriber.failures >= 1)
    data.article("third", title="Third")            # a newer version while retrying
    assert wait_until(lambda: len(subscriber.delivered("flaky")) >= 1, timeout=40)
    settle(1.0)
    got = subscriber.delivered("flaky")
    assert subscriber.failures == 3
    assert serves(srv, "feeds/all.rss", got[-1].body)
    assert b"<title>Third" in got[-1].body
    assert len(got) <= 2        # each delivered body at most once; never an older one last


def test_a_restart_between_change_and_delivery_still_delivers(serve, data, subscriber,
                                                               tmp_path):
    data.article("first")
    srv = start(serve, data)
    subscribe(srv, subscriber, "later", "feeds/all.atom")
    subscriber.down = True
    data.article("second", title="Second")
    assert wait_until(lambda: subscriber.failures >= 1)
    srv.stop()
    subscriber.down = False
    srv = start(serve, data)                        # the same state directory
    assert wait_until(lambda: len(subscriber.delivered("later")) == 1)
    settle(1.0)
    got = subscriber.delivered("later")
    assert len(got) == 1 and serves(srv, "feeds/all.atom", got[0].body)


@pytest.mark.slow                   # waits out the hub's 10 s send timeout
def test_a_delivery_in_flight_at_a_clean_stop_is_made_by_the_next_start(serve, data,
                                                                          subscriber):
    """The stopping worker finishes what it sent (the send times out after 10 s and
    frees the claim), so the next start sends it at once, not at the claim's 60 s
    deadline."""
    data.article("first")
    srv = start(serve, data, workers=1)
    subscribe(srv, subscriber, "slow", "feeds/all.atom")
    subscriber.hang = 1
    data.article("second", title="Second")
    assert wait_until(lambda: subscriber.hung == 1)     # sent, waiting for the answer
    srv.stop()
    srv = start(serve, data, workers=1)                 # the same state directory
    restarted = time.monotonic()
    assert wait_until(lambda: len(subscriber.delivered("slow")) == 1, timeout=40)
    assert time.monotonic() - restarted < 20, "the delivery waited for the claim deadline"
    assert serves(srv, "feeds/all.atom", subscriber.delivered("slow")[0].body)


def test_a_topic_that_is_not_a_feed_of_the_site_is_denied(serve, data, subscriber):
    data.article("first")
    srv = start(serve, data)
    for topic in ("https://elsewhere.example/feed", SITE + "articles/first/",
                  f"{srv.url}/feeds/all.atom"):
        r = hub_request(f"{srv.url}/websub", "subscribe", topic, subscriber.callback("x"))
        assert r.status_code == 202
    assert wait_until(lambda: sum(v.get("hub.mode") == "denied"
                                  for v in subscriber.verifications) == 3)
    assert not subscriber.verified("x")


def test_bad_requests_are_refused_at_once(serve, data, subscriber):
    data.article("first")
    srv = start(serve, data, feedsvc_websub_rate="5")
    hub = f"{srv.url}/websub"
    if time.time() % 60 > 52:       # one clock minute for all requests (they take ~1 s)
        time.sleep(61 - time.time() % 60)
    topic, cb = SITE + "feeds/all.atom", subscriber.callback("bad")
    assert hub_request(hub, "subscribe", topic, cb, secret="x" * 200).status_code == 400
    assert hub_request(hub, "follow", topic, cb).status_code == 400
    assert hub_request(hub, "subscribe", topic, "ftp://127.0.0.1/").status_code == 400
    assert requests.post(hub, json={"hub.mode": "subscribe"}, timeout=10).status_code == 400
    codes = [hub_request(hub, "subscribe", topic, cb).status_code for _ in range(12)]
    # 5 a minute per client, one count for both workers (the 3 refused forms counted)
    assert codes == [202] * 2 + [429] * 10
    assert requests.get(hub, timeout=10).status_code == 405
    assert requests.put(hub, timeout=10).status_code == 405
    assert requests.post(f"{srv.url}/feeds/all.atom", timeout=10).status_code == 405


def test_without_allow_private_a_loopback_callback_is_never_verified(serve, data,
                                                                    subscriber):
    data.article("first")
    srv = serve(data.root)
    r = hub_request(f"{srv.url}/websub", "subscribe", SITE + "feeds/all.atom",
                    subscriber.callback("local"))
    assert r.status_code == 202
    settle(1.5)
    assert subscriber.verifications == []



def test_flask_websub_subscriber_discovers_subscribes_and_receives(serve, data, tmp_path):
    """An independent subscriber implementation (Flask-WebSub's, a test extra): it finds
    hub and topic in our Link header, subscribes, verifies, and is notified."""
    import threading

    from flask import Flask
    from flask_websub.subscriber import (
        SQLite3SubscriberStorage,
        SQLite3TempSubscriberStorage,
        Subscriber,
        discover,
    )
    from werkzeug.serving import make_server

    data.article("first")
    srv = start(serve, data)
    app = Flask("subscriber")
    subscriber = Subscriber(SQLite3SubscriberStorage(str(tmp_path / "sub.sqlite")),
                            SQLite3TempSubscriberStorage(str(tmp_path / "tmp.sqlite")),
                            REQUEST_TIMEOUT=15)     # its default, 3 s, is short on a busy box
    app.register_blueprint(subscriber.build_blueprint(url_prefix="/callbacks"))
    received: list[tuple[str, bytes]] = []
    confirmed: list[str] = []
    subscriber.add_listener(lambda topic, callback_id, body: received.append((topic, body)))
    subscriber.add_success_handler(lambda topic, callback_id, mode: confirmed.append(mode))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["SERVER_NAME"] = f"127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        found = discover(f"{srv.url}/feeds/all.atom", timeout=15)
        assert found == {"hub_url": SITE + "websub", "topic_url": SITE + "feeds/all.atom"}
        with app.app_context():             # the public hub URL is not this test machine
            subscriber.subscribe(topic_url=found["topic_url"], hub_url=f"{srv.url}/websub")
        assert wait_until(lambda: confirmed == ["subscribe"])
        data.article("second", title="Second")
        assert wait_until(lambda: len(received) == 1)
        assert received[0][0] == SITE + "feeds/all.atom"
        assert serves(srv, "feeds/all.atom", received[0][1])
    finally:
        server.shutdown()


def test_external_hubs_are_pinged_and_alone_advertised_when_the_hub_is_off(
        serve, data, subscriber):
    data.article("first")
    external = subscriber.callback("hub")
    srv = serve(data.root, feedsvc_websub="false", feedsvc_websub_hubs=external)
    r = requests.get(f"{srv.url}/feeds/all.json", timeout=10)
    assert r.headers["Link"] == f'<{external}>; rel="hub", <{SITE}feeds/all.json>; rel="self"'
    assert r.json()["hubs"] == [{"type": "WebSub", "url": external}]
    assert requests.post(f"{srv.url}/websub", timeout=10).status_code == 405
    subscriber.fail = 1                         # a ping is retried too
    data.article("second")
    pinged = {f"{SITE}feeds/{p}" for p in
              ("all.rss", "all.atom", "all.json", "category/world.rss", "category/world.atom",
               "category/world.json", "author/jane-doe.rss", "author/jane-doe.atom",
               "author/jane-doe.json")}
    assert wait_until(lambda: len(subscriber.delivered("hub")) >= len(pinged))
    settle(1.0)
    got = [dict(x.split("=", 1) for x in d.body.decode().split("&"))
           for d in subscriber.delivered("hub")]
    from urllib.parse import unquote
    assert sorted(unquote(g["hub.url"]) for g in got) == sorted(pinged)
    assert {g["hub.mode"] for g in got} == {"publish"}


def test_with_no_hub_at_all_feeds_advertise_none(data, make_app):
    data.article("first")
    client = make_app(data.root, websub=False).test_client()
    for fmt in FORMATS:
        r = client.get(f"/feeds/all.{fmt}")
        assert r.status_code == 200 and "Link" not in r.headers
        assert b"websub" not in r.data and b'"hubs"' not in r.data
    assert client.post("/websub").status_code == 405
    on = make_app(data.root, state_dir=str(data.root.parent / "state-on")).test_client()
    assert on.get("/feeds/all.rss").headers["Link"].startswith(f'<{SITE}websub>; rel="hub"')


def test_a_subscriber_answering_410_gone_is_unsubscribed(serve, data, subscriber):
    data.article("first")
    srv = start(serve, data)
    subscribe(srv, subscriber, "gone", "feeds/all.atom")
    subscriber.gone = True
    data.article("second")
    assert wait_until(lambda: subscriber.failures == 1)
    subscriber.gone = False
    data.article("third")
    settle()
    assert subscriber.failures == 1 and subscriber.delivered("gone") == []
