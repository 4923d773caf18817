"""The hub's store, one suite for both (SQLite in the state directory, PostgreSQL):
each change queued once, never older bytes, one claim per delivery or intent, one rate
limit, across two connections to one store (two workers, or two instances)."""
from __future__ import annotations

import pytest
from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures)

from feedsvc.pgwebsub import PgSubscriptions
from feedsvc.websubstore import (
    CLAIM_SECONDS,
    Intent,
    SqliteStore,
    Subscription,
    SubscriptionStore,
    TopicBytes,
)

TOPIC = "https://news.example.com/feeds/all.atom"


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path):
    """A factory of stores on one shared state: each call is another worker or instance."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    made: list[SubscriptionStore] = []

    def make() -> SubscriptionStore:
        store = PgSubscriptions(url) if url else SqliteStore(str(tmp_path))
        made.append(store)
        return store
    yield make
    for store in made:
        store.close()


def bytes_of(etag: str) -> TopicBytes:
    import gzip
    return TopicBytes(TOPIC, etag, "application/atom+xml", gzip.compress(etag.encode()))


def two_workers(open_store):
    one, two = open_store(), open_store()
    one.subscribe(Subscription(TOPIC, "https://cb.example/1", b"k", 3600), "cb.example", 0)
    return one, two


def test_a_change_reported_by_every_worker_is_queued_once(open_store):
    one, two = two_workers(open_store)
    assert one.record([bytes_of('"a"')], 1.0, (), 10) == 0      # first sight: no change
    assert one.record([bytes_of('"b"')], 2.0, (), 10) == 1
    assert two.record([bytes_of('"b"')], 2.1, (), 10) == 0      # the same change, later
    jobs = one.claim(10, 10) + two.claim(10, 10)
    assert len(jobs) == 1 and jobs[0].version == 2


def test_a_slow_worker_never_brings_back_older_bytes(open_store):
    one, two = two_workers(open_store)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"c"')], 3.0, (), 10)
    assert two.record([bytes_of('"b"')], 2.0, (), 10) == 0      # scanned before "c" was
    job = one.claim(10, 10)[0]
    assert job.gzip == bytes_of('"c"').gzip


def test_a_claimed_delivery_is_not_claimed_again_until_released(open_store):
    one, two = two_workers(open_store)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    job = one.claim(10, 10)[0]
    assert two.claim(11, 10) == []
    assert one.failed(job, 12, retry_seconds=100)               # retried after a back-off
    assert two.claim(12, 10) == []
    assert len(two.claim(13, 10)) == 1


def test_a_newer_version_queued_while_sending_is_sent_after(open_store):
    one, two = two_workers(open_store)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    job = one.claim(10, 10)[0]
    two.record([bytes_of('"c"')], 3.0, (), 10)                  # while job is in flight
    one.done(job)
    again = two.claim(10, 10)
    assert [j.version for j in again] == [3]
    two.done(again[0])
    assert one.claim(20, 10) == [] and two.claim(20, 10) == []


def test_retries_end_after_the_retry_time_and_the_subscription_stays(open_store):
    one, _ = two_workers(open_store)
    one.record([bytes_of('"a"')], 1.0, (), 10)
    one.record([bytes_of('"b"')], 2.0, (), 10)
    job = one.claim(10, 10)[0]
    assert not one.failed(job, 10 + 3600, retry_seconds=3600)
    assert one.claim(10_000, 10) == []
    assert one.counts(TOPIC, "cb.example", 11) == (1, 1)


def test_expired_and_unsubscribed_get_nothing(open_store):
    one, _ = two_workers(open_store)
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


def intent(n: int, mode: str = "subscribe") -> Intent:
    return Intent(mode, f"https://cb.example/{n}", TOPIC, 3600, b"k")


def test_an_accepted_intent_is_claimed_once_and_free_again_when_its_claimer_dies(
        open_store):
    one, two = open_store(), open_store()
    assert one.intend(intent(1), 10)
    held = one.claim_intents(10, 10)
    assert [h.intent for h in held] == [intent(1)]
    assert two.claim_intents(11, 10) == []                      # held by one
    again = two.claim_intents(10 + CLAIM_SECONDS + 1, 10)       # one died meanwhile
    assert [h.intent for h in again] == [intent(1)]
    two.settle(again[0])
    assert one.claim_intents(10_000, 10) == []


def test_intents_survive_a_new_connection_and_a_newer_one_outlives_the_settled_one(
        open_store):
    one = open_store()
    one.intend(intent(1), 10)
    one.intend(intent(2), 11)
    one.close()
    two = open_store()                                          # a restart, or another instance
    held = two.claim_intents(12, 1)
    assert [h.intent for h in held] == [intent(1)]              # oldest first
    two.intend(intent(1, "unsubscribe"), 13)                    # asked again while verifying
    two.settle(held[0])
    left = two.claim_intents(14, 10)
    assert sorted(h.intent.mode for h in left) == ["subscribe", "unsubscribe"]
    assert {h.intent.callback for h in left} == {"https://cb.example/1",
                                                 "https://cb.example/2"}


def test_the_rate_limit_is_one_count_for_every_worker_and_a_fixed_minute(open_store):
    one, two = open_store(), open_store()
    answers = [store.allow("client-a", 100, 3) for store in (one, two, one, two, one)]
    assert answers == [True, True, True, False, False]
    assert two.allow("client-b", 100, 3)                        # another client
    assert one.allow("client-a", 101, 3)                        # the next minute


def test_active_subscriptions_per_topic(open_store):
    one, two = two_workers(open_store)
    other = TOPIC.replace("atom", "rss")
    two.subscribe(Subscription(other, "https://cb.example/2", None, 100), "cb.example", 0)
    two.subscribe(Subscription(other, "https://cb.example/3", None, 3600), "cb.example", 0)
    assert one.active(50) == {TOPIC: 1, other: 2}
    assert two.active(200) == {TOPIC: 1, other: 1}
    assert one.active(5000) == {}


def test_work_queued_by_one_instance_wakes_the_others_at_once(open_store):
    """PostgreSQL: a change or an intent queued through one store sets the wake event of
    another store's dispatcher by NOTIFY, though its own look is seconds away; SQLite:
    workers look four times a second."""
    import threading

    from feedsvc.pgwebsub import IDLE_SECONDS
    from feedsvc.websubstore import POLL_SECONDS
    one, two = two_workers(open_store)
    wake = threading.Event()
    pause = two.watch(wake)
    if isinstance(two, SqliteStore):
        assert pause == POLL_SECONDS
        return
    assert pause == IDLE_SECONDS
    assert wake.wait(5)                                         # listening: look once now
    wake.clear()
    assert one.record([bytes_of('"a"')], 1.0, (), 10) == 0      # nothing queued: no word
    assert not wake.wait(0.5)
    assert one.record([bytes_of('"b"')], 2.0, (), 10) == 1
    assert wake.wait(1.0), "no NOTIFY reached the other instance's listener"
    wake.clear()
    assert one.intend(Intent("subscribe", "https://cb.example/2", TOPIC, 3600, None), 10)
    assert wake.wait(1.0)


def test_without_its_listening_connection_a_dispatcher_polls_as_before():
    import threading

    from feedsvc.websubstore import POLL_SECONDS
    lost = PgSubscriptions("postgresql://postgres@127.0.0.1:1/lost")    # nothing listens
    wake = threading.Event()
    try:
        lost.watch(wake)
        for _ in range(3):                              # woken every POLL_SECONDS
            assert wake.wait(POLL_SECONDS * 8)
            wake.clear()
    finally:
        lost.close()


class RarelyLooking(SqliteStore):
    """A store whose dispatcher looks once a minute unless woken (as with PostgreSQL's
    notifications): a retry must not wait for that look."""

    def watch(self, wake):
        return 60.0


def test_a_retry_comes_on_time_when_the_store_looks_rarely(tmp_path):
    import time

    from websub_subscriber import start_subscriber, wait_until

    from feedsvc.deliver import Dispatcher, Sender
    from feedsvc.netpolicy import NetPolicy
    subscriber, server = start_subscriber()
    store = RarelyLooking(str(tmp_path))
    store.subscribe(Subscription(TOPIC, subscriber.callback("flaky"), None, 3600),
                    "127.0.0.1", time.time())
    store.record([bytes_of('"a"')], 1.0, (), time.time())
    sender = Sender(NetPolicy(allow_private=True))
    dispatcher = Dispatcher(store, sender, 60.0, lambda topic: "", lambda held: None,
                            lambda: None)
    try:
        subscriber.fail = 1
        assert store.record([bytes_of('"b"')], 2.0, (), time.time()) == 1
        dispatcher.start()
        dispatcher.wake.set()                   # as the hub does after recording
        assert wait_until(lambda: subscriber.failures == 1, timeout=10)
        failed_at = time.monotonic()
        assert wait_until(lambda: len(subscriber.delivered("flaky")) == 1, timeout=10)
        assert time.monotonic() - failed_at < 5     # retry_delay(0) = 0.5 s, not the 60
    finally:
        dispatcher.stop()
        sender.close()
        store.close()
        server.shutdown()
        server.server_close()
