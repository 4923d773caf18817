"""User-Agent classification against real strings, the tally, and the store's merging."""
from __future__ import annotations

import datetime as dt
import re
import types

import pytest
from pgcluster import pg_cluster  # noqa: F401  (a fixture)
from statsdb import stats_of

from feedsvc import audience, statsreport
from feedsvc.audience import Client, Counter, classify
from feedsvc.pgstats import PgStats
from feedsvc.statsstore import SQLiteStats, StatsUnavailable, day_of

NOON = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()
DAY = "2026-12-01"

# Real User-Agents with what they say, from the sources cited in readers.toml
REPORTED = [
    ("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 462 subscribers; )",
     Client("aggregator", "Feedly", 462, "")),
    ("Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 3 subscribers; )",
     Client("aggregator", "Inoreader", 3, "")),
    ("Mozilla/5.0 (compatible; inoreader.com; 114 subscribers)",
     Client("aggregator", "Inoreader", 114, "")),
    ("NewsBlur Feed Fetcher - 27 subscribers - https://www.newsblur.com/site/7704055/"
     "rendezvous-with-cassidoo (\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
     "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.0.1 Safari/605.1.15\")",
     Client("aggregator", "NewsBlur", 27, "7704055")),
    ("Feedbin feed-id:1697787 - 102 subscribers", Client("aggregator", "Feedbin", 102, "1697787")),
    ("Mozilla/5.0 (compatible; theoldreader.com; 1 subscribers; "
     "feed-id=cead6c3a837650eeefd8fe4a)",
     Client("aggregator", "The Old Reader", 1, "cead6c3a837650eeefd8fe4a")),
    ("Mozilla/5.0 (compatible; BazQux/2.4; +https://bazqux.com/fetcher; 1 subscribers)",
     Client("aggregator", "BazQux", 1, "")),
    ("Dreamwidth Studios (webmaster@dreamwidth.org; for https://www.dreamwidth.org/users/"
     "vikingschoice_feed/; 2 readers)",
     Client("aggregator", "Dreamwidth", 2, "vikingschoice_feed")),
    ("Feedspot/1.0 (+https://www.feedspot.com/fs/fetcher; like FeedFetcher-Google)",
     Client("aggregator", "Feedspot", None, "")),
    ("Tiny Tiny RSS/21.06-7bd9572aa (http://tt-rss.org/)", Client("reader", "Tiny Tiny RSS")),
    ("Mozilla/5.0 (compatible; Miniflux/2.0.50; +https://miniflux.app)",
     Client("reader", "Miniflux")),
    ("NetNewsWire (RSS Reader; https://netnewswire.com/)", Client("reader", "NetNewsWire")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", Client("browser", "browser")),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     Client("crawler", "Googlebot")),
    ("curl/8.5.0", Client("crawler", "curl")),
    ("", Client("crawler", "(none)")),
    ("SomeNewReader/0.1", Client("reader", "other")),
]


@pytest.mark.parametrize(("ua", "expected"), REPORTED)
def test_real_user_agents_are_classified(ua, expected):
    assert classify(ua) == expected


def test_every_example_in_the_table_matches_its_own_row_first_and_has_a_source():
    for reader in audience.READERS:
        assert reader.source and reader.home.startswith("https://"), reader.name
        assert reader.examples, reader.name
        for ua in reader.examples:
            got = classify(ua)
            assert (got.kind, got.name) == (reader.kind, reader.name), ua
            if reader.subscribers is not None and re.search(r"\d+ (subscribers?|readers?)", ua):
                assert got.subscribers is not None, ua


def test_the_memo_is_bounded_under_a_flood_of_distinct_user_agents():
    classify.cache_clear()
    for n in range(audience.MEMO_SIZE * 2):
        classify(f"Flood/{n}")
    assert classify.cache_info().currsize == audience.MEMO_SIZE


def test_a_bad_readers_table_names_the_row(tmp_path):
    bad = tmp_path / "readers.toml"
    bad.write_text('[[reader]]\nname = "X"\nkind = "reader"\nmatch = "("\nsubscribers = ""\n'
                   'feed_id = ""\nhome = ""\nsource = ""\nexamples = []\n')
    with pytest.raises(ValueError, match="reader row 1"):
        audience.load_readers(bad)


def _record(counter, ua, status=200, address="192.0.2.1", path="/feeds/all.rss", when=NOON):
    counter.record(path, ua, address, status, 0 if status == 304 else 1000, 1000, when)


@pytest.fixture(params=["sqlite", "postgresql"])
def stats(request, tmp_path):
    yield from stats_of(request, tmp_path)


def test_reported_counts_keep_the_latest_of_the_day_per_feed_id(stats):
    store = stats.open()
    a, b = Counter(store), Counter(stats.open())         # two workers
    _record(a, "Feedbin feed-id:1 - 10 subscribers", when=NOON)
    _record(b, "Feedbin feed-id:1 - 12 subscribers", when=NOON + 60)
    _record(a, "Feedbin feed-id:2 - 5 subscribers", when=NOON + 30)
    b.flush()
    a.flush()                                   # the older report arrives last: not taken
    assert [tuple(c) for c in store.reported(DAY, DAY)] == [(DAY, "feeds/all.rss", "Feedbin", 17)]


def test_distinct_pollers_are_merged_across_workers_and_hashed(stats):
    store = stats.open()
    a, b = Counter(store), Counter(stats.open())
    for counter in (a, b):
        for n in range(3):
            _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", address=f"198.51.100.{n}")
    _record(a, "Tiny Tiny RSS/21.06-7bd9572aa (http://tt-rss.org/)", 304)
    a.flush()
    b.flush()
    pollers = {c.client: c.subscribers for c in store.pollers(DAY, DAY)}
    assert pollers == {"Miniflux": 3, "Tiny Tiny RSS": 1}
    dump = stats.dump()
    assert "Miniflux" in dump and "198.51.100" not in dump and "192.0.2.1" not in dump


def test_a_day_ends_hashes_become_counts_and_old_days_go(stats):
    store = stats.open()
    counter = Counter(store)
    old = NOON - 500 * 86400
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", when=old)
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", address="192.0.2.9")
    counter.flush()
    stats.open().keep("2026-12-02", 400)
    store.keep("2026-12-02", 400)                       # again, by another instance
    assert stats.rows("poller_hashes") == 0
    assert stats.rows("salts") == 0
    assert [tuple(c) for c in store.pollers("2000-01-01", "2030-01-01")] == \
        [(DAY, "feeds/all.rss", "Miniflux", 1)]
    assert {t.day for t in store.totals("2000-01-01", "2030-01-01")} == {DAY}


def test_two_state_writers_merge_into_one_report(stats):
    """Two instances: each its own store connection and counter."""
    one, two = stats.open(), stats.open()
    a, b = Counter(one), Counter(two)
    _record(a, "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 40 subscribers; )")
    _record(b, "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 41 subscribers; )", 304,
            when=NOON + 5)
    _record(a, "NetNewsWire (RSS Reader; https://netnewswire.com/)", path="/feeds/all.atom")
    _record(b, "NetNewsWire (RSS Reader; https://netnewswire.com/)", path="/feeds/all.atom")
    a.flush()
    b.flush()
    got = statsreport.report(two, dt.date(2026, 12, 1), 7, "feeds/all")
    assert got.subscribers == {"Feedly": [0] * 6 + [41], "NetNewsWire": [0] * 6 + [1]}
    assert got.answered == {"200": [0] * 6 + [3], "304": [0] * 6 + [1]}
    assert got.bytes_saved == 1000 and got.bytes_sent == 3000
    assert got.ranking[0].scope == "feeds/all" and got.ranking[0].subscribers == 42


def test_both_stores_give_the_same_numbers_for_the_same_batches(stats, tmp_path):
    """The store under test against a SQLite file fed the same batches: every read."""
    reference = SQLiteStats(str(tmp_path / "reference"))
    store = stats.open()
    plan = [("Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; )", 6),
            ("Feedbin feed-id:{} - 3 subscribers", 3), ("Miniflux/2.0 (+https://miniflux.app/)", 4),
            ("curl/8.5.0 {}", 2), ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google."
                                  "com/bot.html) {}", 2)]
    for target in (reference, store):
        counters = [Counter(target), Counter(target)]
        for n in range(60):
            ua, spread = plan[n % len(plan)]
            _record(counters[n % 2], ua.format(n % spread), status=(200, 304)[n % 3 == 0],
                    address=f"198.51.100.{n % 7}", path=("/feeds/all.rss", "/feeds/b.atom",
                                                          "/feeds/all.json")[n % 3],
                    when=NOON - (n % 3) * 86400 + n)
            if n % 17 == 0:
                counters[n % 2].flush()
        for counter in counters:
            counter.flush()
    first, last = "2026-11-28", DAY
    for name in ("totals", "reported", "pollers", "by_scope"):
        assert getattr(store, name)(first, last) == getattr(reference, name)(first, last), name
    for scope in ("", "feeds/all", "feeds/b"):
        assert store.by_client(first, last, scope) == reference.by_client(first, last, scope)
    for target in (reference, store):
        target.keep("2026-12-01", 400)
    assert store.pollers(first, last) == reference.pollers(first, last)
    assert store.by_scope(first, last) == reference.by_scope(first, last)
    reference.close()


def test_a_log_mark_is_kept_with_its_counts(stats):
    store = stats.open()
    counter = Counter(store)
    _record(counter, "curl/8.5.0")
    counter.flush(("log-a", 120))
    assert stats.open().imported("log-a") == 120 and store.imported("log-b") == 0
    counter.flush(("log-a", 300))
    assert store.imported("log-a") == 300
    assert sum(t.requests for t in store.totals(DAY, DAY)) == 1


def test_csv_cells_cannot_become_formulas(stats):
    store = stats.open()
    counter = Counter(store)
    _record(counter, "=HYPERLINK(\"http://evil.example\")")
    counter.flush()
    text = statsreport.as_csv(statsreport.rows(store, DAY, DAY))
    assert "\n'=HYPERLINK" not in text and ",=" not in text
    assert day_of(NOON) == DAY


def test_the_flusher_ends_the_day_at_its_first_flush_after_midnight(stats):
    store = stats.open()
    counter = Counter(store)
    flusher = audience.Flusher(counter, 5.0, 400)
    late = NOON + 11.5 * 3600                           # 23:30
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", when=late)
    flusher.once(late)
    assert stats.rows("poller_hashes") == 1
    flusher.once(late + 600)                            # same day, within the hour: kept
    assert stats.rows("poller_hashes") == 1
    flusher.once(late + 1801)                           # the next day, 00:00:01
    assert stats.rows("poller_hashes") == 0
    assert [tuple(c) for c in store.pollers(DAY, DAY)] == [(DAY, "feeds/all.rss", "Miniflux", 1)]


def test_a_damaged_stats_file_is_set_aside_and_counting_goes_on(tmp_path, make_app, data):
    state = tmp_path / "state"
    state.mkdir()
    (state / "stats.sqlite").write_bytes(b"this is not a database" * 100)
    app = make_app(data.root, stats_flush_seconds=3600)
    app.test_client().get("/feeds/all.rss", headers={"User-Agent": "curl/8.5.0"})
    app.extensions["feedsvc-stats"].counter.flush()
    assert list(state.glob("stats.sqlite.damaged-*"))
    assert [t.client for t in SQLiteStats(str(state)).totals("2000-01-01", "2100-01-01")] == \
        ["curl"]


def test_charts_stack_each_day_and_escape_names():
    from feedsvc.statspage import stacked_bars
    svg = stacked_bars(["2026-12-01", "2026-12-02"], {"<b>x</b>": [1, 2], "B": [0, 3]}, "t")
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert svg.count("<rect") == 3                      # a zero draws nothing
    assert ">5<" in svg                                 # the axis top: the tallest stack


LOST = "postgresql://postgres@127.0.0.1:1/lost"     # nothing listens on port 1


def test_counts_wait_in_memory_while_the_store_is_lost_and_arrive_once(stats, caplog):
    store = stats.open()
    lost = PgStats(LOST)
    counter = Counter(lost)
    flusher = audience.Flusher(counter, 5.0, 400)
    feedly = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; )"
    _record(counter, feedly.format(40))
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", address="192.0.2.1")
    flusher.once(NOON)                                   # no exception: logged, held
    _record(counter, feedly.format(41), 304, when=NOON + 5)
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", address="192.0.2.2")
    flusher.once(NOON + 10)
    assert flusher.failing
    assert len([r for r in caplog.records if "could not write" in r.message]) == 1
    counter.store = store                                # the database is back
    flusher.once(NOON + 20)
    flusher.once(NOON + 30)                              # nothing held twice
    assert not flusher.failing
    assert [(t.client, t.requests, t.ok, t.not_modified) for t in store.totals(DAY, DAY)] == \
        [("Feedly", 2, 1, 1), ("Miniflux", 2, 2, 0)]
    assert [c.subscribers for c in store.reported(DAY, DAY)] == [41]
    assert [c.subscribers for c in store.pollers(DAY, DAY)] == [2]
    lost.close()


def test_counts_held_for_a_lost_store_stay_bounded(stats, monkeypatch):
    monkeypatch.setattr(audience, "MAX_KEYS", 4)
    monkeypatch.setattr(audience, "MAX_POLLERS", 3)
    days = [NOON + d * 86400 for d in range(5)]
    # the counter's own clock starts on the first of these days, not on the real today
    monkeypatch.setattr(audience, "time", types.SimpleNamespace(time=lambda: days[0]))
    lost = PgStats(LOST)
    counter = Counter(lost)
    for when in days:
        for n in range(10):
            _record(counter, f"Reader{n}/1.0", address=f"192.0.2.{n}", when=when)
        with pytest.raises(StatsUnavailable):
            counter.flush()
    store = stats.open()
    counter.store = store
    counter.flush()
    totals = store.totals("2026-12-01", "2026-12-31")
    kept = sorted({t.day for t in totals})
    assert kept == [day_of(w) for w in days[-audience.MAX_HELD_DAYS:]]   # older: dropped
    for day in kept:
        named = [t for t in totals if t.day == day]
        assert sum(t.requests for t in named) == 10      # every request still counted
        # 4 User-Agents kept by name (unknown readers: "other"), the rest unnamed
        assert {t.client: t.requests for t in named} == {"other": 4, "(none)": 6}
        assert sum(c.subscribers for c in store.pollers(day, day)) == 3
    lost.close()


def test_late_hashes_of_an_ended_day_never_count_a_reader_twice(stats):
    """Worker B's last seconds of a day reach the store after worker A ended it (or a log
    is imported late): under a new salt they cannot be matched, so the day keeps the
    larger count, and that salt goes at once."""
    miniflux = "Miniflux/2.0 (+https://miniflux.app/)"
    a_store, b_store = stats.open(), stats.open()
    a, b = audience.Flusher(Counter(a_store), 5.0, 400), audience.Flusher(Counter(b_store),
                                                                          5.0, 400)
    _record(a.counter, miniflux, address="192.0.2.1", when=NOON)
    _record(a.counter, miniflux, address="192.0.2.2", when=NOON)
    a.once(NOON)
    _record(b.counter, miniflux, address="192.0.2.1", when=NOON + 11.9 * 3600)  # 23:54
    a.once(NOON + 12 * 3600 + 1)                        # 00:00:01: A ends the day
    b.once(NOON + 12 * 3600 + 3)                        # B's late tally of that day
    assert [tuple(c) for c in a_store.pollers(DAY, DAY)] == [
        (DAY, "feeds/all.rss", "Miniflux", 2)]          # not 3
    assert stats.rows("poller_hashes") == 0 and stats.rows("salts") == 0


@pytest.mark.parametrize(("reported", "taken"), [
    ("10000000", 10_000_000), ("10000001", None), ("999999999999", None),
    ("9" * 5000, None)])
def test_an_implausible_reported_count_is_not_taken(reported, taken):
    ua = f"Feedly/1.0 (+http://www.feedly.com/fetcher.html; {reported} subscribers; )"
    client = audience.classify(ua)
    assert client.name == "Feedly" and client.subscribers == taken


def test_a_log_import_counts_feed_urls_only(stats, tmp_path):
    from feedsvc.logimport import import_log
    line = ('203.0.113.9 - - [01/Dec/2026:12:00:00 +0000] "GET {} HTTP/1.1" 200 512 "-" '
            '"Feedly/1.0 (+http://www.feedly.com/fetcher.html; 5 subscribers; )"\n')
    paths = ["/feeds/all.rss", "/feeds/category/middle-east.atom", "/feeds/author/a-b2.json",
             "/feeds/nonexistent-does-not-exist.rss", "/feeds/<script>x</script>.rss",
             "/feeds/category/Middle-East.rss", "/feeds/category/.rss", "/feeds/all.rss.bak"]
    log = tmp_path / "access.log"
    log.write_text("".join(line.format(p) for p in paths))
    store = stats.open()
    done = import_log(str(log), store)
    assert (done.lines, done.counted) == (8, 3)
    assert [t.path for t in store.totals("2026-12-01", "2026-12-01")] == [
        "feeds/all.rss", "feeds/author/a-b2.json", "feeds/category/middle-east.atom"]
