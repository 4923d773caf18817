"""The hub's store: each change queued once, never older bytes, one claim per delivery,
across two connections to one file (two workers)."""
from __future__ import annotations

from feedsvc.websubstore import SqliteStore, Subscription, TopicBytes

TOPIC = "https://news.example.com/feeds/all.atom"


def bytes_of(etag: str) -> TopicBytes:
    import gzip
    return TopicBytes(TOPIC, etag, "application/atom+xml", gzip.compress(etag.encode()))


def two_workers(tmp_path):
    one, two = SqliteStore(str(tmp_path)), SqliteStore(str(tmp_path))
    one.subscribe(Subscription(TOPIC, "https://cb.example/1", b"k", 3600), "cb.example", 0)
    return one, two


def test_a_change_reported_by_every_worker_is_queued_once(tmp_path):
    one, two = two_workers(tmp_path)
    assert one.record([bytes_of('"a"')], 1.0, (), 10) == 0      # first sight: no change
    assert one.record([bytes_of('"b"')], 2.0, (), 10) == 1
    assert two.record([bytes_of('"b"')], 2.1, (), 10) == 0      # the same change, later
    jobs = one.claim(10, 10) + two.claim(10, 10)
    assert len(jobs) == 1 and jobs[0].version == 2


def test_a_slow_worker_never_brings_back_older_bytes(tmp_path):
    one, two = two_workers(tmp_path)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"c"')], 3.0, (), 10)
    assert two.record([bytes_of('"b"')], 2.0, (), 10) == 0      # scanned before "c" was
    job = one.claim(10, 10)[0]
    assert job.gzip == bytes_of('"c"').gzip


def test_a_claimed_delivery_is_not_claimed_again_until_released(tmp_path):
    one, two = two_workers(tmp_path)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    job = one.claim(10, 10)[0]
    assert two.claim(11, 10) == []
    assert one.failed(job, 12, retry_seconds=100)               # retried after a back-off
    assert two.claim(12, 10) == []
    assert len(two.claim(13, 10)) == 1


def test_a_newer_version_queued_while_sending_is_sent_after(tmp_path):
    one, two = two_workers(tmp_path)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    job = one.claim(10, 10)[0]
    two.record([bytes_of('"c"')], 3.0, (), 10)                  # while job is in flight
    one.done(job)
    again = two.claim(10, 10)
    assert [j.version for j in again] == [3]
    two.done(again[0])
    assert one.claim(20, 10) == [] and two.claim(20, 10) == []


def test_retries_end_after_the_retry_time_and_the_subscription_stays(tmp_path):
    one, _ = two_workers(tmp_path)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    job = one.claim(10, 10)[0]
    assert not one.failed(job, 10 + 3600, retry_seconds=3600)
    assert one.claim(10_000, 10) == []
    assert one.counts(TOPIC, "cb.example", 11) == (1, 1)


def test_expired_and_unsubscribed_get_nothing(tmp_path):
    one, _ = two_workers(tmp_path)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    assert one.claim(5000, 10) == []                            # the lease ended at 3600
    one.subscribe(Subscription(TOPIC, "https://cb.example/2", None, 3600), "cb.example", 0)
    one.unsubscribe(TOPIC, "https://cb.example/2")
    one.record([bytes_of('"c"')], 3.0, ("https://hub.example/",), 10)
    assert sorted((j.kind, j.callback) for j in one.claim(10, 10)) == [
        ("ping", "https://hub.example/"), ("sub", "https://cb.example/1")]
    assert one.expire(5000) == 1


def test_a_damaged_file_is_set_aside_and_started_afresh(tmp_path):
    (tmp_path / "websub.sqlite").write_bytes(b"not a database at all, " * 200)
    store = SqliteStore(str(tmp_path))
    assert store.counts(TOPIC, "cb.example", 0) == (0, 0)
    assert [p.name for p in tmp_path.glob("websub.sqlite.damaged-*")]
