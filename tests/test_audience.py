"""User-Agent classification against real strings, the tally, and the store's merging."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from feedsvc import audience, statsreport
from feedsvc.audience import Client, Counter, classify
from feedsvc.statsstore import SQLiteStats, day_of

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


def test_reported_counts_keep_the_latest_of_the_day_per_feed_id(tmp_path):
    store = SQLiteStats(str(tmp_path))
    a, b = Counter(store), Counter(store)         # two workers
    _record(a, "Feedbin feed-id:1 - 10 subscribers", when=NOON)
    _record(b, "Feedbin feed-id:1 - 12 subscribers", when=NOON + 60)
    _record(a, "Feedbin feed-id:2 - 5 subscribers", when=NOON + 30)
    b.flush()
    a.flush()                                   # the older report arrives last: not taken
    assert [tuple(c) for c in store.reported(DAY, DAY)] == [(DAY, "feeds/all.rss", "Feedbin", 17)]


def test_distinct_pollers_are_merged_across_workers_and_hashed(tmp_path):
    store = SQLiteStats(str(tmp_path))
    a, b = Counter(store), Counter(store)
    for counter in (a, b):
        for n in range(3):
            _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", address=f"198.51.100.{n}")
    _record(a, "Tiny Tiny RSS/21.06-7bd9572aa (http://tt-rss.org/)", 304)
    a.flush()
    b.flush()
    pollers = {c.client: c.subscribers for c in store.pollers(DAY, DAY)}
    assert pollers == {"Miniflux": 3, "Tiny Tiny RSS": 1}
    dump = "\n".join(store.db.iterdump())
    assert "198.51.100" not in dump and "192.0.2.1" not in dump


def test_a_day_ends_hashes_become_counts_and_old_days_go(tmp_path):
    store = SQLiteStats(str(tmp_path))
    counter = Counter(store)
    old = NOON - 500 * 86400
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", when=old)
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", address="192.0.2.9")
    counter.flush()
    store.keep("2026-12-02", 400)
    assert store.db.execute("SELECT count(*) FROM poller_hashes").fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM salts").fetchone()[0] == 0
    assert [tuple(c) for c in store.pollers("2000-01-01", "2030-01-01")] == \
        [(DAY, "feeds/all.rss", "Miniflux", 1)]
    assert {t.day for t in store.totals("2000-01-01", "2030-01-01")} == {DAY}


def test_two_state_writers_merge_into_one_report(tmp_path):
    """Two instances on one state directory: each its own store connection and counter."""
    one, two = SQLiteStats(str(tmp_path)), SQLiteStats(str(tmp_path))
    a, b = Counter(one), Counter(two)
    _record(a, "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 40 subscribers; )")
    _record(b, "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 41 subscribers; )", 304,
            when=NOON + 5)
    _record(a, "NetNewsWire (RSS Reader; https://netnewswire.com/)", path="/feeds/all.atom")
    _record(b, "NetNewsWire (RSS Reader; https://netnewswire.com/)", path="/feeds/all.atom")
    a.flush()
    b.flush()
    got = statsreport.report(one, dt.date(2026, 12, 1), 7, "feeds/all")
    assert got.subscribers == {"Feedly": [0] * 6 + [41], "NetNewsWire": [0] * 6 + [1]}
    assert got.answered == {"200": [0] * 6 + [3], "304": [0] * 6 + [1]}
    assert got.bytes_saved == 1000 and got.bytes_sent == 3000
    assert got.ranking[0].scope == "feeds/all" and got.ranking[0].subscribers == 42


def test_csv_cells_cannot_become_formulas(tmp_path):
    store = SQLiteStats(str(tmp_path))
    counter = Counter(store)
    _record(counter, "=HYPERLINK(\"http://evil.example\")")
    counter.flush()
    text = statsreport.as_csv(statsreport.rows(store, DAY, DAY))
    assert "\n'=HYPERLINK" not in text and ",=" not in text
    assert day_of(NOON) == DAY


def test_the_flusher_ends_the_day_at_its_first_flush_after_midnight(tmp_path):
    store = SQLiteStats(str(tmp_path))
    counter = Counter(store)
    flusher = audience.Flusher(counter, 5.0, 400)
    late = NOON + 11.5 * 3600                           # 23:30
    _record(counter, "Miniflux/2.0 (+https://miniflux.app/)", when=late)
    flusher.once(late)
    assert store.db.execute("SELECT count(*) FROM poller_hashes").fetchone()[0] == 1
    flusher.once(late + 600)                            # same day, within the hour: kept
    assert store.db.execute("SELECT count(*) FROM poller_hashes").fetchone()[0] == 1
    flusher.once(late + 1801)                           # the next day, 00:00:01
    assert store.db.execute("SELECT count(*) FROM poller_hashes").fetchone()[0] == 0
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
