"""Two `feedsvc serve` instances, each on its own copy of one data directory, one
PostgreSQL database: the same ETag and Last-Modified for every feed, and no false 304
for a client moving between them while the copies differ."""
from __future__ import annotations

import shutil
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests
from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures)

FEEDS = [f"/feeds/{scope}.{fmt}" for scope in ("all", "category/world", "author/jane-doe")
         for fmt in ("rss", "atom", "json")]


def validators(server) -> dict[str, tuple[str, str]]:
    out = {}
    for path in FEEDS:
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code)
        out[path] = (r.headers["ETag"], r.headers.get("Last-Modified", ""))
    return out


def agreed(a, b, timeout: float = 30) -> dict[str, tuple[str, str]]:
    """The validators both serve, once they agree (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        va, vb = validators(a), validators(b)
        if va == vb and all(lm for _, lm in va.values()) or time.monotonic() > deadline:
            assert va == vb
            return va
        time.sleep(0.2)


@pytest.mark.slow                   # five starts, and 3 s of safety walks watched
def test_two_instances_one_database_agree_and_never_send_a_false_304(
        data, tmp_path, serve, pg_url):  # noqa: F811
    for n in range(3):
        data.article(f"story-{n}", body=f"Body {n}.\n\nMore.\n")
    copy = tmp_path / "copy"
    shutil.copytree(data.root, copy)                # (like rsync -a: times kept)
    a = serve(data.root, workers=1, state_dir=tmp_path / "sa", FEEDSVC_DATABASE_URL=pg_url)
    b = serve(copy, workers=1, state_dir=tmp_path / "sb", FEEDSVC_DATABASE_URL=pg_url)
    before = agreed(a, b)

    # the same edit lands in one copy, then (a sync later) in the other; meanwhile
    # clients see both instances
    seen: dict[str, set[tuple[str, str]]] = {p: {v} for p, v in before.items()}

    def look() -> tuple[dict, dict]:
        va, vb = validators(a), validators(b)
        for v in (va, vb):
            for path, pair in v.items():
                seen[path].add(pair)
        return va, vb
    edited = data.article("story-1", body="Body 1, corrected.\n\nMore.\n")
    until = time.monotonic() + 3.0                  # several safety walks of both
    while time.monotonic() < until:
        look()
        time.sleep(0.05)
    shutil.copy2(edited, copy / "articles" / "story-1.md")
    old_etags = {etag for etag, _ in before.values()}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        va, vb = look()
        if va == vb and va != before and all(lm for _, lm in va.values()):
            break
        time.sleep(0.1)
    # If-Modified-Since carrying any time shown with the old bytes must find the new
    # bytes modified, on either instance (only the Last-Modified, or with the ETag)
    false_304 = []
    for server in (a, b):
        for path, pairs in seen.items():
            for etag, lm in pairs:
                if etag not in old_etags or not lm:
                    continue
                for headers in ({"If-Modified-Since": lm},
                                {"If-Modified-Since": lm, "If-None-Match": etag}):
                    r = requests.get(server.url + path, headers=headers, timeout=10)
                    if r.status_code == 304:
                        false_304.append((server.url, path, headers))
    # and no instance showed the old bytes with a time not before the new bytes' time
    for path, pairs in seen.items():
        old = [parsedate_to_datetime(lm) for e, lm in pairs if e in old_etags and lm]
        new = [parsedate_to_datetime(lm) for e, lm in pairs if e not in old_etags and lm]
        assert not new or max(old) < min(new), (path, sorted(pairs))
    assert false_304 == []
    after = agreed(a, b)
    assert after["/feeds/all.rss"][0] != before["/feeds/all.rss"][0]
    assert all(after[p][1] != before[p][1] for p in after if after[p][0] != before[p][0])

    b.stop()                                        # stopping and restarting one
    b = serve(copy, workers=1, state_dir=tmp_path / "sb", FEEDSVC_DATABASE_URL=pg_url)
    assert agreed(a, b) == after
    # a new instance with an empty state directory agrees too
    c = serve(copy, workers=1, state_dir=tmp_path / "sc", FEEDSVC_DATABASE_URL=pg_url)
    assert validators(c) == after


def test_a_database_lost_while_serving_never_costs_a_response(
        data, tmp_path, serve, pg_cluster, pg_url):  # noqa: F811
    data.article("story-0")
    server = serve(data.root, workers=1, FEEDSVC_DATABASE_URL=pg_url)
    before = validators(server)
    pg_cluster.stop()
    try:
        data.article("story-x", body="Written while the database is down.\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:      # (validators() asserts 200 for each)
            now = validators(server)
            if now["/feeds/all.rss"][0] != before["/feeds/all.rss"][0]:
                break
            time.sleep(0.2)
        # the new bytes are served, without a second nobody else could see
        assert now["/feeds/all.rss"][0] != before["/feeds/all.rss"][0]
        assert now["/feeds/all.rss"][1] == ""
        health = requests.get(server.url + "/healthz", timeout=10).json()
        assert any(e["path"] == "FEEDSVC_DATABASE_URL" and "unreachable" in e["message"]
                   for e in health["errors"]), health
        assert "127.0.0.1" not in str(health)     # (nothing about the database host)
    finally:
        pg_cluster.resume()
    deadline = time.monotonic() + 60                # backoff: at most 30 s between tries
    while time.monotonic() < deadline:
        now = validators(server)
        if now["/feeds/all.rss"][1]:
            break
        time.sleep(0.5)
    assert now["/feeds/all.rss"][1], "no Last-Modified once the database was back"
    assert requests.get(server.url + "/healthz", timeout=10).json()["errors"] == []
    log = Path(server.log.name).read_text()
    # logged once by each user of the database: validators, caches, the WebSub hub
    assert log.count("lost (") <= 3 and "reachable again" in log
