"""Restarts resume from the checkpoint: nothing unchanged is re-read or rebuilt, and what
changed while the service was down is still found."""
from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from feedsvc import settings
from feedsvc.live import Service


def settle(data) -> None:
    """Files saved a minute ago: their stat signatures can be trusted."""
    for f in data.root.rglob("*"):
        os.utime(f, (time.time() - 60,) * 2)


@pytest.fixture
def start(tmp_path):
    services = []

    def start(data, **config):
        service = Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                            "state_dir": str(tmp_path / "state"), **config}))
        services.append(service)
        return service
    yield start
    for s in services:
        s.close()


def published(service) -> dict:
    return {p: (r.identity.etag, r.last_modified, r.identity_body(), r.gzip.body)
            for p, r in service.resources.items()}


@pytest.fixture
def site(data):
    for n in range(4):
        data.article(f"a{n}", title=f"Story {n}", date=f"2024-10-2{n}T13:00:00")
    data.write("articles/bad.md", "---\ntitle: [unclosed\n---\n")
    settle(data)
    return data


def test_unchanged_data_is_served_from_the_checkpoint(site, start):
    first = start(site)
    first.checkpoint()
    again = start(site)
    assert again.library.reads == 0 and again.cache.renders == 0
    assert published(again) == published(first)
    assert [e.as_dict() for e in again.errors] == [e.as_dict() for e in first.errors]
    assert again.corpus.articles == first.corpus.articles
    assert not again.refresh()              # and it is up to date: nothing to do


def test_a_checkpoint_is_written_after_the_cached_documents_it_names(site, start,
                                                                    monkeypatch):
    """A restart (or a worker of `feedsvc serve`) that starts from a checkpoint finds its
    documents in the cache, however slow the cache's writer thread was."""
    import pickle
    import sqlite3

    from feedsvc.cache import Cache

    put = Cache.put

    def slow_put(self, table, rows):
        time.sleep(0.3)
        put(self, table, rows)
    monkeypatch.setattr(Cache, "put", slow_put)
    first = start(site)
    first.checkpoint()
    with open(first._checkpoint_path, "rb") as f:
        named = {recipe for recipe, _, _ in pickle.load(f)["documents"].values()}
    db = sqlite3.connect(os.path.join(os.path.dirname(first._checkpoint_path), "cache.sqlite"))
    stored = {k for (k,) in db.execute("SELECT key FROM gzdocs")}
    db.close()
    assert named and named <= stored


def test_a_file_changed_while_down_is_the_only_one_read_again(site, start):
    first = start(site)
    first.checkpoint()
    site.article("a1", title="Edited while down", date="2024-10-21T13:00:00")
    again = start(site)
    assert again.library.reads == 1
    assert "Edited while down" in again.documents["feeds/all.atom"].body.decode()
    fresh = start(site, state_dir=str(site.root.parent / "other-state"))  # no checkpoint
    assert {p: d.body for p, d in again.documents.items()} == \
        {p: d.body for p, d in fresh.documents.items()}


def test_a_scheduled_article_that_came_due_while_down_is_published(site, start):
    soon = time.time() + 1.5
    clock = [time.time()]
    when = dt.datetime.fromtimestamp(soon, dt.UTC).isoformat()
    site.article("later", title="Embargoed", date=when)
    settle(site)
    first = Service(settings.resolve({"data_dir": str(site.root), "watch": False,
                                      "state_dir": str(site.root.parent / "state")}),
                    clock=lambda: clock[0])
    first.checkpoint()
    assert "Embargoed" not in first.documents["feeds/all.atom"].body.decode()
    clock[0] = soon + 1
    again = Service(settings.resolve({"data_dir": str(site.root), "watch": False,
                                      "state_dir": str(site.root.parent / "state")}),
                    clock=lambda: clock[0])
    assert "Embargoed" in again.documents["feeds/all.atom"].body.decode()
    assert again.library.reads == 0         # nothing was re-read: only rebuilt


def test_a_checkpoint_for_other_settings_or_a_damaged_one_is_ignored(site, start, tmp_path):
    first = start(site)
    first.checkpoint()
    other = start(site, base_url="https://elsewhere.example.net/")
    assert other.library.reads > 0
    assert "elsewhere.example.net" in other.documents["feeds/all.atom"].body.decode()
    with open(first._checkpoint_path, "wb") as f:
        f.write(b"\x80\x05 not a pickle")
    again = start(site)
    assert again.library.reads > 0          # the other settings changed the validators:
    assert {p: v[0::2] for p, v in published(again).items()} == \
        {p: v[0::2] for p, v in published(first).items()}      # compare ETags and bytes


def test_a_save_is_picked_up_from_its_file_event_without_walking_the_tree(site, start):
    service = start(site, watch=True, poll_seconds=60)   # the safety walk stays out of the way
    service.start()
    if service._observer is None:       # (the limit of inotify instances, on a busy host)
        pytest.skip("inotify is not available here: the service polls instead")
    walks = service.library.walks
    site.article("a2", title="Seen through inotify", date="2024-10-22T13:00:00")
    deadline = time.monotonic() + 5
    while "Seen through inotify" not in service.documents["feeds/all.atom"].body.decode():
        assert time.monotonic() < deadline, "the edit never arrived"
        time.sleep(0.02)
    assert service.library.walks == walks
    (site.root / "articles" / "2025").mkdir()             # a new folder: that one is walked
    site.article("2025/b", title="In a new folder", date="2024-10-23T13:00:00")
    while "In a new folder" not in service.documents["feeds/all.atom"].body.decode():
        assert time.monotonic() < deadline + 5, "the new folder's file never arrived"
        time.sleep(0.02)
    assert service.library.walks > walks


def test_a_file_saved_just_before_the_checkpoint_and_deleted_while_down_is_gone(data, start):
    data.article("old", title="Old", date="2024-10-20T13:00:00")
    settle(data)
    data.article("fresh", title="Saved a moment ago", date="2024-10-21T13:00:00")
    first = start(data)
    first.checkpoint()              # "fresh" is too new for its signature to be trusted
    data.remove("articles/fresh.md")
    again = start(data)
    assert [a.title for a in again.corpus.articles] == ["Old"]
    assert "Saved a moment ago" not in again.documents["feeds/all.atom"].body.decode()


def test_a_listing_line_follows_a_new_time_zone_of_the_same_instant(data, start):
    data.article("a", title="A", date="2024-10-21T12:00:00+01:00")
    service = start(data)
    assert "2024-10-21T12:00:00+01:00" in service.documents[""].body.decode()
    data.article("a", title="A", date="2024-10-21T11:00:00+00:00")   # same instant
    service.refresh()
    page = service.documents[""].body.decode()
    assert "2024-10-21T11:00:00+00:00" in page and "+01:00" not in page


def test_a_checkpoint_that_cannot_be_used_costs_a_full_start_only(site, start):
    import pickle

    from feedsvc import versions

    first = start(site)
    first.checkpoint()
    with open(first._checkpoint_path, "rb") as f:
        state = pickle.load(f)
    state["library"] = {k: v for k, v in vars(state["library"]).items()    # another layout
                        if k != "walked_at"}
    with open(first._checkpoint_path, "wb") as f:
        pickle.dump({**state, "code": versions.version(versions.CHECKPOINT)}, f)
    again = start(site)
    assert again.library.reads > 0
    assert {p: d.body for p, d in again.documents.items()} == \
        {p: d.body for p, d in first.documents.items()}
