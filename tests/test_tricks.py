"""Speed tricks held to the plain path: with each one on and off, the same bytes and rows.

bench/tricks.py measures what each trick saves; bench/coldstart.py `--off NAME` turns
one off the way these tests do.  Spliced feeds (`splice.py`) against the plain writers
at the end.  The lxml-free body path (`content._plain`) has its
own differential tests in tests/test_content.py; forked workers (gc.freeze before the
fork) and spawned ones against one process in tests/test_workers.py.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import random
import sqlite3
from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml

from feedsvc import bodies, feeds, live, settings, splice
from feedsvc.cache import Cache
from feedsvc.documents import compress, decompress, etag_of
from feedsvc.lru import LRU


def _rows(state_dir: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(state_dir / "cache.sqlite")
    try:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY key").fetchall()  # noqa: S608
                for table in Cache.TABLES}
    finally:
        db.close()


def _cold_start(data_dir: Path, state_dir: Path) -> None:
    service = live.Service(settings.resolve({"data_dir": str(data_dir), "watch": False,
                                             "state_dir": str(state_dir)}, environ={}))
    service.cache.flush()
    service.close()


def test_held_and_unheld_cache_writes_end_with_the_same_rows(bundled, tmp_path, monkeypatch):
    """A first build holds its cache writes until every feed is servable (Cache.held);
    written as they come instead, the cache ends with the same rows."""
    let_go: list[int] = []
    real_let_go = Cache._let_go

    def counting(self: Cache) -> None:
        let_go.append(len(self._held))
        real_let_go(self)
    monkeypatch.setattr(Cache, "_let_go", counting)
    _cold_start(bundled.root, tmp_path / "held")
    assert max(let_go) > 0                          # the build did hold its writes
    let_go.clear()
    monkeypatch.setattr(Cache, "held", lambda self: nullcontext())
    _cold_start(bundled.root, tmp_path / "unheld")
    assert not any(let_go)                          # and here it did not
    held, unheld = _rows(tmp_path / "held"), _rows(tmp_path / "unheld")
    assert all(held.values())
    assert held == unheld


# -- splice: a feed written again keeps the bytes of its unchanged entries ------------------
def _entry(i: int, **fields) -> feeds.Entry:
    when = dt.datetime(2024, 11, 1 + i % 28, 10, i % 60, tzinfo=dt.timezone(dt.timedelta(
        hours=3, minutes=30)))
    values = dict(id=f"tag:news.example.com,2000:a{i}", title=f"Article {i} & <co>",
                  link=f"https://news.example.com/articles/a{i}/", published=when,
                  updated=when, authors=(feeds.Author("Jane Doe", "https://jane.example/"),),
                  categories=("World", "سیاست"), summary=f"Summary {i}.",
                  content=f"<p>Body {i}, é.</p>\n<p>Two.</p>",
                  enclosure=(f"https://news.example.com/media/{i}.jpg", "image/jpeg", 10 + i)
                  if i % 3 == 0 else None, enclosure_title="An image" if i % 6 == 0 else "",
                  language="fa" if i % 5 == 0 else "")
    values.update(fields)
    return feeds.Entry(**values)


def _feed(entries: tuple[feeds.Entry, ...], hubs: tuple[str, ...] = ()) -> feeds.Feed:
    base = "https://news.example.com/"
    return feeds.Feed(id="tag:news.example.com,2000:feeds/all", title="Test Times",
                      subtitle="News.",
                      self_urls={w: f"{base}feeds/all.{w}" for w in feeds.WRITERS},
                      page_url=base, language="en", updated=max(e.updated for e in entries),
                      publisher="Test Times", entries=entries, hubs=hubs)


def _last(feed: feeds.Feed) -> splice.Last:
    docs = feeds.render(feed)
    return splice.Last(tuple(map(splice.key, feed.entries)),
                       {name: compress(doc) for name, doc in docs.items()},
                       {name: etag_of(doc) for name, doc in docs.items()})


# bodies that quote each writer's entry markers (raw HTML in RSS's CDATA, a JSON item)
MARKERS = ("<p>x</p>\n    <item>quoted</item>\n  </channel>",
           '<p>{"id":"x"},{"id":"y"}]}</p>', "<p>\n  <entry>not one</entry>\n</feed></p>")


@pytest.mark.parametrize("hubs", [(), ("https://hub.example/",)])
def test_spliced_feeds_are_the_plain_writers_bytes(hubs, monkeypatch):
    """Every kind of change between a feed's last version and the next (an entry edited,
    added, removed, moved; nothing changed; bodies quoting the markers the cut looks
    for): splice.packed gives feeds.render's bytes in every format, and writes only the
    entries the last version lacks (or, when the cut cannot be trusted, all of them)."""
    monkeypatch.setattr(splice, "HELD", _held(0))     # every last version cut from its bytes
    written: list[int] = []
    plain = feeds.render
    monkeypatch.setattr(feeds, "render", lambda feed: written.append(len(feed.entries)) or
                        plain(feed))
    rnd = random.Random(7)
    entries = [_entry(i) for i in range(30)]
    for step in range(60):
        old = tuple(entries)
        kind = step % 5
        if kind == 0:
            i = rnd.randrange(len(entries))
            entries[i] = dataclasses.replace(entries[i], title=f"Edited {step} ]]> &amp;")
        elif kind == 1:
            entries.insert(rnd.randrange(len(entries) + 1), _entry(100 + step))
        elif kind == 2 and len(entries) > 2:
            del entries[rnd.randrange(len(entries))]
        elif kind == 3:
            rnd.shuffle(entries)
        if step in (20, 40):
            i = rnd.randrange(len(entries))
            entries[i] = dataclasses.replace(entries[i], content=MARKERS[step // 20])
        feed, last = _feed(tuple(entries), hubs), _last(_feed(old, hubs))
        written.clear()
        got = splice.packed(feed, tuple(map(splice.key, feed.entries)), last)
        assert {n: decompress(gz) for n, (_, gz) in zip(feed.self_urls, got, strict=True)} \
            == plain(feed), step
        assert written, step
        quoted = any(e.content in MARKERS for e in entries)
        assert written[0] < len(entries) or quoted, (step, written)


def test_entries_that_differ_in_any_field_have_other_keys():
    """splice.key tells apart entries that differ only in one field, numbers too (Python
    hashes 5 and 5 + 2**61 - 1 alike), and dates at one instant with other offsets."""
    base = _entry(3)
    url, media_type, length = base.enclosure
    when = base.published.astimezone(dt.UTC)
    others = [dataclasses.replace(base, enclosure=(url, media_type, length + 2**61 - 1)),
              dataclasses.replace(base, enclosure=(url, media_type, length + 1)),
              dataclasses.replace(base, published=when), dataclasses.replace(base, updated=when),
              dataclasses.replace(base, categories=base.categories[::-1]),
              dataclasses.replace(base, authors=(feeds.Author("Jane Doe", ""),)),
              dataclasses.replace(base, enclosure=None), dataclasses.replace(base, language="en")]
    assert when == base.published
    keys = [splice.key(e) for e in [base, *others]]
    assert len(set(keys)) == len(keys)
    assert splice.key(dataclasses.replace(base)) == keys[0]


def _held(items: int, max_bytes: int = 32 << 20) -> LRU[str, list[bytes]]:
    """A fresh splice.HELD, of other bounds."""
    return LRU(items, max_bytes, splice.HELD.size_of)


def test_feeds_spliced_from_held_entries_are_the_plain_writers_bytes(monkeypatch):
    """splice.HELD: a chain of edits, each spliced from the version before (whose
    entries are held: no gunzip, no cut), and a splice from a version cut earlier, give
    feeds.render's bytes and ETags; with nothing held, every version is gunzipped."""
    monkeypatch.setattr(splice, "HELD", _held(32))
    gunzipped: list[bytes] = []
    real = splice.decompress
    monkeypatch.setattr(splice, "decompress", lambda gz: gunzipped.append(gz) or real(gz))

    def packed(entries: list[feeds.Entry], last: splice.Last) -> splice.Last:
        feed = _feed(tuple(entries))
        keys = tuple(map(splice.key, feed.entries))
        got, plain = splice.packed(feed, keys, last), feeds.render(feed)
        assert [decompress(gz) for _, gz in got] == list(plain.values())
        assert [etag for etag, _ in got] == [etag_of(doc) for doc in plain.values()]
        return splice.Last(keys, {n: gz for n, (_, gz) in zip(plain, got, strict=True)},
                           {n: etag for n, (etag, _) in zip(plain, got, strict=True)})

    entries = [_entry(i) for i in range(20)]
    first = last = _last(_feed(tuple(entries)))
    for step in range(6):
        entries[step] = dataclasses.replace(entries[step], title=f"Edited {step} ]]>")
        last = packed(entries, last)
    assert len(gunzipped) == len(feeds.WRITERS)     # the first version only, cut once
    packed(entries, first)                          # back from the first version: held
    assert len(gunzipped) == len(feeds.WRITERS)
    monkeypatch.setattr(splice, "HELD", _held(0))   # off: every version gunzipped
    last = packed(entries[:-1], last)
    assert len(gunzipped) == 2 * len(feeds.WRITERS)
    small = _held(32, max_bytes=20_000)             # a few documents' worth only
    monkeypatch.setattr(splice, "HELD", small)
    for step in range(4):
        entries[step] = dataclasses.replace(entries[step], title=f"Again {step}")
        last = packed(entries[:-1], last)
    assert 0 < small.size <= 20_000 and len(small) < 2 * len(feeds.WRITERS)


@pytest.mark.parametrize("recent, chars", [(bodies.RECENT_BODIES, bodies.RECENT_CHARS),
                                           (3, bodies.RECENT_CHARS), (512, 300), (0, 0)])
def test_bodies_held_in_memory_are_the_cached_ones(data, tmp_path, monkeypatch, recent,
                                                   chars):
    """bodies.RECENT_BODIES: a refresh after an edit reads the bodies it held from memory,
    not from SQLite, and every document equals a fresh start's, with few bodies held
    (by count or by size: a body is about 60 characters here), or none (the trick off)."""
    monkeypatch.setattr(bodies, "RECENT_BODIES", recent)
    monkeypatch.setattr(bodies, "RECENT_CHARS", chars)
    for i in range(8):
        data.article(f"a{i}", title=f"Article {i}", date=f"2024-11-{1 + i:02d}T10:00:00Z")
    service = live.Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                             "state_dir": str(tmp_path / "s1")}, environ={}))
    asked: list[int] = []
    real = service.cache.get
    monkeypatch.setattr(service.cache, "get", lambda table, keys: (
        asked.append(len(keys)) if table == "html" else None) or real(table, keys))
    for step in range(3):
        data.article("a3", title=f"Article 3, edit {step}", date="2024-11-04T10:00:00Z")
        assert service.refresh()
    fresh = live.Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                           "state_dir": str(tmp_path / "s2")}, environ={}))
    assert {p: d.etag for p, d in service.documents.items()} == \
        {p: d.etag for p, d in fresh.documents.items()}
    if recent >= 8 and chars > 8 * 200:
        assert asked == [1, 1, 1]           # only the edited body: the others were held
    else:
        assert sum(asked) >= 3 * (8 - min(recent, chars // 50) - 1)
    held = service.publisher.bodies._recent
    assert len(held) <= recent and sum(len(h) + len(s) for h, s in held.values()) <= chars
    service.close()
    fresh.close()


def test_a_refresh_splices_and_publishes_what_a_fresh_start_does(data, tmp_path, monkeypatch):
    """Through the service: after a cold build, a retitle rewrites only the entry it
    changed (of each feed holding it), and every document equals a fresh start's."""
    for i in range(12):
        data.article(f"a{i:02d}", title=f"Article {i}", date=f"2024-11-{1 + i:02d}T10:00:00Z",
                     categories=["World"] if i % 2 else ["Science", "World"])
    service = live.Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                             "state_dir": str(tmp_path / "s1")}, environ={}))
    written: list[int] = []
    plain = feeds.render
    monkeypatch.setattr(feeds, "render", lambda feed: written.append(len(feed.entries)) or
                        plain(feed))
    data.article("a05", title="Article 5, retitled", date="2024-11-06T10:00:00Z",
                 categories=["World"])
    assert service.refresh()
    assert written and max(written) == 1               # one entry written per feed
    fresh = live.Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                           "state_dir": str(tmp_path / "s2")}, environ={}))
    assert {p: d.etag for p, d in service.documents.items()} == \
        {p: d.etag for p, d in fresh.documents.items()}
    assert any("retitled" in decompress(d.gzip).decode() for p, d in
               service.documents.items() if p == "feeds/all.json")
    service.close()
    fresh.close()


# -- safeyaml.plain_mapping: plain front matter read without PyYAML ------------------------
_KEYS = ("title", "date", "authors", "categories", "summary", "slug", "yes", "On", "null",
         "draft", "_x", "a-b", "x y", " title", "title ", "k1")
_VALUES = ("", " ", "plain", "two words", "Économie", "سیاست خارجی", "C# and C++",
           "a: b", "a:b", "a #b", "a#b", "trailing ", " leading", "2019-04-10T18:09:14+09:00",
           "2024-10-28", "12", "1_000", "0x1F", "1:20", "1.5", ".5", ".inf", "-1", "+1",
           "yes", "No", "off", "ON", "~", "null", "Null", "=", "<<", "&a x", "*a", "!!str x",
           "|", ">", "[a, b]", "{a: b}", "'quoted'", "'it''s'", '"double"', '"say \\"hi\\""',
           '"a" # c', "'a' b", "\"'\"", "'\"'", "- x", "-x", "? x", "%x", "@x", "`x`",
           "...", "---", "x:", "Q&A", "a * b", "tab\there", "nbsp\u00a0end", "bom\ufeffx",
           "nel\x85x", "sep\u2028x", "del\x7fx", "https://example.org/a?b=c#d", "<b>x</b>",
           "\\back", "100%", "a, b", "x]", "{", "}", "a\u00a0")


def _value(rnd: random.Random) -> str:
    return rnd.choice(_VALUES) if rnd.random() < 0.4 else rnd.choice(_VALUES[2:7])


def _front_matter(rnd: random.Random) -> str:
    lines = []
    for _ in range(rnd.randint(1, 7)):
        key = rnd.choice(_KEYS) if rnd.random() < 0.3 else rnd.choice(_KEYS[:6])
        if rnd.random() < 0.3:
            lines.append(f"{key}:")
            indent = rnd.choice(["", "  ", " "])
            for _ in range(rnd.randint(0, 3)):
                lines.append(f"{rnd.choice([indent, indent, indent, ' '])}- {_value(rnd)}")
        else:
            lines.append(f"{key}: {_value(rnd)}")
        if rnd.random() < 0.05:
            lines.append(rnd.choice(["", "# comment", "  continued", "---", "\tx: y"]))
    return "\n".join(lines) + rnd.choice(["\n", "\n", "", "\n\n"])


def test_plain_front_matter_is_what_pyyaml_reads():
    """Wherever plain_mapping reads a front matter it gives what yaml.load gives (keys,
    order, values and their types); it reads the usual ones, and gives up on the rest."""
    from feedsvc import safeyaml
    rnd = random.Random(12)
    read = 0
    for _ in range(20_000):
        text = _front_matter(rnd)
        plain = safeyaml.plain_mapping(text)
        if plain is None:
            continue
        read += 1
        loaded = yaml.load(text, Loader=safeyaml._Loader)   # noqa: S506 (a SafeLoader)
        assert plain == loaded and list(plain) == list(loaded), text
        assert all(type(v) is type(loaded[k]) for k, v in plain.items()), text
    assert read > 1000
    usual = ("title: Rouhani urges cooperation <b>\nslug: rouhani\ndate: 2015-08-26 10:30\n"
             "authors:\n- Emad Askarieh\ncategories:\n  - Hard News\n  - Économie\n"
             "summary: 'The Iranian president: more cooperation.'\n"
             "image: /media/2015/x.jpg\n")
    assert safeyaml.plain_mapping(usual) == yaml.load(usual, Loader=safeyaml._Loader)  # noqa: S506
