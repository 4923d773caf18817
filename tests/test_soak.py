"""Soak: an editor changes data/ while clients poll every feed with conditional GETs.

Bounded to about 45 seconds.  Required: no 5xx; every 200 body hashes to its
ETag; no 304 for a feed whose bytes changed since the client's copy (checked
in quiet moments, when every worker has settled); and the final state equals
a fresh start on the final data/.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import threading
import time

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

DURATION = 40.0          # seconds of editing
SETTLE = 2.0             # seconds for every worker to pick up a batch
FEEDS = ["/feeds/all.atom", "/feeds/all.rss", "/feeds/category/world.atom",
         "/feeds/category/sport.rss", "/feeds/author/jane-doe.atom",
         "/feeds/author/ann-other.rss", "/feeds.opml", "/"]


def body_etag(content: bytes) -> str:
    return '"%s"' % hashlib.sha256(content).hexdigest()[:32]


class Client(threading.Thread):
    def __init__(self, url: str, use_ims: bool, control: dict, problems: list):
        super().__init__(daemon=True)
        self.url, self.use_ims, self.control, self.problems = url, use_ims, control, problems
        self.session = requests.Session()
        self.copies: dict[str, tuple[str, str]] = {}       # path -> (etag, last-modified)
        self.done_round = 0
        self.requests = 0

    def fetch(self, path: str, conditional: bool) -> requests.Response | None:
        headers = {"Accept-Encoding": "identity"}
        copy = self.copies.get(path)
        if conditional and copy:
            if self.use_ims:
                headers["If-Modified-Since"] = copy[1]
            else:
                headers["If-None-Match"] = copy[0]
        try:
            r = self.session.get(self.url + path, headers=headers, timeout=10)
        except requests.RequestException as e:
            self.problems.append(f"{path}: {e}")
            return None
        self.requests += 1
        if r.status_code >= 500:
            self.problems.append(f"{path}: {r.status_code}")
        elif r.status_code == 200:
            if body_etag(r.content) != r.headers.get("ETag"):
                self.problems.append(f"{path}: body does not hash to its ETag")
            if conditional:
                self.copies[path] = (r.headers["ETag"], r.headers.get("Last-Modified", ""))
        elif r.status_code == 304 and not copy:
            self.problems.append(f"{path}: 304 to an unconditional request")
        return r

    def check_round(self) -> None:
        """Settled: a 304 now must mean our copy is the current bytes."""
        for path in FEEDS:
            copy = self.copies.get(path)
            cond = self.fetch(path, conditional=True)
            fresh = self.fetch(path, conditional=False)
            if cond is None or fresh is None or copy is None:
                continue
            if cond.status_code == 304 and fresh.headers.get("ETag") != copy[0]:
                how = "If-Modified-Since" if self.use_ims else "If-None-Match"
                self.problems.append(f"{path}: false 304 on {how}")

    def run(self) -> None:
        barrier = self.control["barrier"]
        while not self.control["stop"]:
            if self.control["round"] > self.done_round:
                self.done_round = self.control["round"]
                try:
                    barrier.wait(20)
                    self.check_round()
                    barrier.wait(20)
                except threading.BrokenBarrierError:
                    self.problems.append("barrier broken")
                    return
                continue
            for path in FEEDS:
                self.fetch(path, conditional=True)


def test_soak(serve, data, tmp_path):
    rng = random.Random(7)
    data.author("ann-other", name="Ann Other", bio="Ann covers sport.")
    base = dt.datetime(2024, 10, 1, 12, 0, tzinfo=dt.UTC)
    # Anchors keep every polled feed alive; they are edited but never deleted.
    data.article("anchor-world", title="Anchor world", categories=["World"], date=base.isoformat())
    data.article("anchor-sport", title="Anchor sport", categories=["Sport"], authors=["Ann Other"],
                 date=base.isoformat())
    names: list[str] = []
    for i in range(20):
        names.append(f"a{i:03d}")
        data.article(names[-1], title=f"Article {i}", categories=[rng.choice(["World", "Sport"])],
                     authors=[rng.choice(["Jane Doe", "Ann Other"])],
                     date=(base - dt.timedelta(hours=i)).isoformat())
    srv = serve(data.root, workers=2)

    problems: list[str] = []
    clients_n = 4
    control = {"stop": False, "round": 0, "barrier": threading.Barrier(clients_n + 1)}
    clients = [Client(srv.url, use_ims=i % 2 == 1, control=control, problems=problems)
               for i in range(clients_n)]
    for c in clients:
        c.start()

    broken: set[str] = set()
    counter = 100
    ops = 0
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(["add", "edit", "backdate", "schedule", "delete", "break", "fix"])
            ops += 1
            counter += 1
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            if op == "add" or (op == "delete" and len(names) < 5):
                names.append(f"n{counter}")
                data.article(names[-1], title=f"New {counter}", categories=["World"],
                             date=(now - dt.timedelta(minutes=rng.randint(1, 600))).isoformat())
            elif op == "edit":
                name = rng.choice(names + ["anchor-world", "anchor-sport"])
                data.article(name, title=f"Edited {counter}",
                             categories=[rng.choice(["World", "Sport"])],
                             authors=[rng.choice(["Jane Doe", "Ann Other"])],
                             date=(base - dt.timedelta(hours=rng.randint(0, 50))).isoformat())
                broken.discard(name)
            elif op == "backdate":
                names.append(f"b{counter}")
                data.article(names[-1], title=f"Backdated {counter}", categories=["Sport"],
                             date="2001-01-01T00:00:00+00:00")
            elif op == "schedule":
                names.append(f"s{counter}")
                # Goes live by itself, inside the settle time: the check rounds that follow
                # must not see feeds change under them.
                data.article(names[-1], title=f"Scheduled {counter}", categories=["World"],
                             date=(now + dt.timedelta(seconds=1)).isoformat())
            elif op == "delete":
                name = names.pop(rng.randrange(len(names)))
                data.remove(f"articles/{name}.md")
                broken.discard(name)
            elif op == "break":
                name = rng.choice(names)
                data.write(f"articles/{name}.md", "---\ntitle: [broken\n---\n")
                broken.add(name)
            elif op == "fix" and broken:
                name = broken.pop()
                data.article(name, title=f"Fixed {counter}", categories=["Sport"],
                             date=(base - dt.timedelta(hours=3)).isoformat())
        time.sleep(SETTLE)
        control["round"] += 1
        try:
            control["barrier"].wait(20)     # clients start checking ...
            control["barrier"].wait(30)     # ... and are done
        except threading.BrokenBarrierError:
            problems.append("a client did not finish its check round")
            break

    control["stop"] = True
    for c in clients:
        c.join(15)
    # Fix what is broken, let scheduled articles go live, then compare with a fresh start.
    for name in sorted(broken):
        data.article(name, title=f"Final {name}", categories=["World"], date=base.isoformat())
    time.sleep(5)
    fresh = serve(data.root, workers=1, state_dir=tmp_path / "fresh-state")
    opml = requests.get(fresh.url + "/feeds.opml", timeout=10).text
    paths = sorted(set(re.findall(r'xmlUrl="https://news\.example\.com(/[^"]+)"', opml))) + FEEDS
    mismatched = []
    for path in paths:
        for atom_or_rss in {path, path.replace(".rss", ".atom")}:
            a = requests.get(srv.url + atom_or_rss, headers={"Accept-Encoding": "identity"},
                             timeout=10)
            b = requests.get(fresh.url + atom_or_rss, headers={"Accept-Encoding": "identity"},
                             timeout=10)
            if (a.status_code, a.content) != (b.status_code, b.content):
                mismatched.append(atom_or_rss)

    total = sum(c.requests for c in clients)
    print(f"soak: {ops} edits, {control['round']} check rounds, {total} requests")
    assert problems == []
    assert total > 500, "clients barely polled"
    assert control["round"] >= 10
    assert mismatched == [], "the live state differs from a fresh start on the same data"
