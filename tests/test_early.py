"""While `feedsvc serve` starts, the port serves the last published state (lastserved.py,
early.py): the same bytes and validators as before the restart, else 503."""
from __future__ import annotations

import os
import signal
import time

import requests
from conftest import spawn_serve
from werkzeug.test import Client

from feedsvc import early, published, settings
from feedsvc.http import FeedApp
from feedsvc.lastserved import LastServed
from feedsvc.live import Service

HEADERS = ("Content-Type", "Content-Encoding", "ETag", "Last-Modified", "Vary",
           "Cache-Control", "Link", "Content-Security-Policy", "X-Content-Type-Options")


def config(data, tmp_path, **more) -> settings.Settings:
    return settings.resolve({"data_dir": str(data.root), "state_dir": str(tmp_path / "state"),
                             "watch": False, **more})


def site(data, n: int = 3) -> None:
    for i in range(n):
        data.article(f"a{i}", title=f"Story {i}", date=f"2024-10-{1 + i % 28:02d}T13:00:00+03:30")


def client_of(source: LastServed | None) -> Client:
    return Client(FeedApp(source if source is not None else early._Nothing(), early.starting))


def test_the_last_published_documents_answer_as_the_service_did(data, tmp_path):
    site(data)
    service = Service(config(data, tmp_path))
    ready = Client(FeedApp(service, early.starting))
    service.close()
    source = LastServed.open(config(data, tmp_path))
    assert source is not None and len(source) == len(service.documents)
    cold = client_of(source)
    for path in ("/feeds/all.atom", "/feeds/all.rss", "/", "/feeds.opml"):
        for encoding in ("gzip", ""):
            then = ready.get(path, headers={"Accept-Encoding": encoding})
            now = cold.get(path, headers={"Accept-Encoding": encoding})
            assert now.status_code == 200 and now.data == then.data, path
            assert [now.headers.get(h) for h in HEADERS] == \
                [then.headers.get(h) for h in HEADERS], path
    feed = ready.get("/feeds/all.atom")
    assert feed.headers["Link"] and feed.headers["Last-Modified"]
    again = cold.get("/feeds/all.atom", headers={"If-None-Match": feed.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == feed.headers["ETag"]
    since = cold.get("/feeds/all.atom", headers={"If-Modified-Since":
                                                 feed.headers["Last-Modified"]})
    assert since.status_code == 304
    assert cold.head("/feeds/all.atom").data == b""
    gone = cold.get("/articles/a1/")            # made on request: not in the snapshot
    assert gone.status_code == 503 and gone.headers["Retry-After"] == "2"
    assert cold.get("/nope").status_code == 503
    source.close()
    assert cold.get("/feeds/all.atom").status_code == 503      # let go: nothing served


def test_the_recorded_snapshot_is_the_plain_one_after_every_change(data, tmp_path):
    """published.Recorder re-makes only the rows of rebuilt documents: after an edit, an
    article added, one removed and a base URL moved, what it stored is what a snapshot
    of every document made anew records."""
    site(data)
    service = Service(config(data, tmp_path))

    def stored_and_plain():
        service.cache.flush()
        links = service._links()
        plain = published.Snapshot(
            {p: published.Entry(d.recipe, d.content_type, links(p))
             for p, d in service.documents.items()}, service._next_go_live)
        return published.load(service.cache, service.config.data_dir), plain

    changes = [lambda: data.article("a1", title="Story one, edited"),
               lambda: data.article("a9", title="Story nine"),
               lambda: data.remove("articles/a0.md"),
               lambda: data.write("site.yml", "title: Moved\nbase_url: https://moved.example/\n")]
    for change in changes:
        change()
        assert service.refresh(force=True)
        stored, plain = stored_and_plain()
        assert stored == plain and stored.record() == plain.record()
        assert any(e.links for e in stored.documents.values())     # (feeds carry hubs)
    assert stored.documents["feeds/all.atom"].links[0][1].startswith(
        "<https://moved.example/websub>")
    service.close()


def test_bytes_the_validators_moved_past_are_never_served(data, tmp_path):
    """Another worker (the start-up build, another instance) published newer bytes of a
    document: the older ones this state had are not served, so no client goes back in
    time; the documents whose bytes did not change still are."""
    site(data)
    first = Service(config(data, tmp_path))
    old = {p: d.etag for p, d in first.documents.items()}
    first.close()
    source = LastServed.open(config(data, tmp_path))   # as `serve` reads it at its start
    assert source is not None
    data.article("a9", title="Newer", date="2024-10-20T13:00:00+03:30")
    newer = Service(config(data, tmp_path))             # the build that follows it
    cold = client_of(source)
    answers = {p: cold.get("/" + p).status_code for p in old}
    changed = {p for p in old if newer.documents[p].etag != old[p]}
    assert "feeds/all.atom" in changed and "favicon.ico" not in changed
    assert answers == {p: 503 if p in changed else 200 for p in old}
    newer.close()
    source.close()


def test_a_first_start_has_no_last_published_state(data, tmp_path):
    site(data)
    assert LastServed.open(config(data, tmp_path)) is None
    resp = client_of(None).get("/feeds/all.atom")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert resp.headers["Cache-Control"] == "no-store"


def test_a_restart_serves_the_old_bytes_while_it_starts(serve, data, tmp_path):
    """A real `feedsvc serve` restarted on its state: from the first answer on, the feed
    is served with the bytes and validators it had (by the start-up listener, then by the
    workers), a matching If-None-Match gets 304, and the port is never refused."""
    site(data, 300)                         # enough to take a moment to start
    srv = serve(data.root, workers=1)
    before = requests.get(srv.url + "/feeds/all.atom")
    assert before.headers["Server"] == "granian"
    srv.stop()
    log = open(tmp_path / "again.log", "w")  # noqa: SIM115
    proc, port = spawn_serve(data.root, tmp_path / "state", log)
    seen: list[tuple[str, int, int, bool]] = []
    url = f"http://127.0.0.1:{port}/feeds/all.atom"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and [s[0] for s in seen[-3:]] != ["granian"] * 3:
            try:
                plain = requests.get(url, timeout=10)
                cond = requests.get(url, headers={"If-None-Match": before.headers["ETag"]},
                                    timeout=10)
            except requests.ConnectionError:
                assert not seen, "refused after the first answer"
                time.sleep(0.01)
                continue
            same = plain.content == before.content and all(
                plain.headers.get(h) == before.headers.get(h) for h in HEADERS)
            seen.append((plain.headers.get("Server", ""), plain.status_code, cond.status_code,
                         same))
            if plain.headers.get("Server") != "granian":
                missing = requests.get(f"http://127.0.0.1:{port}/no/such/path", timeout=10)
                assert missing.status_code in (503, 404)    # (404: the workers took over)
        early_answers = [s for s in seen if s[0] != "granian"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert [s[0] for s in seen[-3:]] == ["granian"] * 3, (tmp_path / "again.log").read_text()
    assert early_answers, "no request reached the start-up listener"
    assert [(i, len(seen), s) for i, s in enumerate(seen) if s[1:] != (200, 304, True)] == [], seen
