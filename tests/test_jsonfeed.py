"""JSON Feed 1.1: every feed passes the 1.1 schema, a real consumer (reader) reads it, and
it carries what the Atom feed of the same scope carries; a new format is one writer."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import lxml.html
import pytest
from jsonschema import Draft202012Validator
from reader import make_reader
from test_feeds import BASE, channel, entries, get, service_of

from feedsvc import settings

SCHEMA = json.loads((Path(__file__).parent / "jsonfeed-1.1.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture
def app(make_app, bundled):
    return make_app(bundled.root)


def scopes(app) -> list[str]:
    """Every scope's feed path without its extension."""
    return sorted(p[:-len(".atom")] for p in service_of(app).documents
                  if p.startswith("feeds/") and p.endswith(".atom"))


def json_feed(app, base: str) -> dict:
    resp = app.test_client().get(f"/{base}.json")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/feed+json"
    return json.loads(resp.data.decode("utf-8"))


def test_the_schema_is_a_valid_2020_12_schema_that_rejects_what_the_spec_forbids():
    Draft202012Validator.check_schema(SCHEMA)
    item = {"id": "1", "content_html": "<p>x</p>", "date_published": "2024-10-28T13:00:00+03:30",
            "authors": [{"name": "Ann"}],
            "attachments": [{"url": "https://a.example/x.png", "mime_type": "image/png"}]}
    good = {"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": [item]}
    assert VALIDATOR.is_valid(good)
    assert VALIDATOR.is_valid({**good, "_ext": {"about": "x"}})        # extensions are fine
    bad = [
        {k: v for k, v in good.items() if k != "version"},
        {**good, "version": "https://jsonfeed.org/version/1"},
        {**good, "items": [{"id": "1"}]},                               # no content
        {**good, "items": [{**item, "id": 1}]},
        {**good, "items": [{**item, "date_published": "2024-10-28T13:00:00"}]},   # no offset
        {**good, "items": [{**item, "date_published": "Mon, 28 Oct 2024 13:00:00 +0330"}]},
        {**good, "items": [{**item, "authors": [{}]}]},
        {**good, "items": [{**item, "attachments": [{"url": "https://a.example/x.png"}]}]},
        {**good, "items": [{**item, "attachments": [{**item["attachments"][0],
                                                     "size_in_bytes": "12"}]}]},
        {**good, "items": [{**item, "url": "/articles/relative/"}]},
        {**good, "items": [{**item, "categories": ["World"]}]},         # not a 1.1 member
        {**good, "feed_url": "feeds/all.json"},
    ]
    for doc in bad:
        assert not VALIDATOR.is_valid(doc), doc


def test_every_scope_has_a_json_feed_that_passes_the_schema(app):
    bases = scopes(app)
    assert len(bases) == 8
    for base in bases:
        doc = json_feed(app, base)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in VALIDATOR.iter_errors(doc)]
        assert not errors, (base, errors)
        assert doc["items"], base


def _same_as_atom(doc: dict, atom: bytes, base: str) -> None:
    """The JSON feed holds the Atom feed's data, as JSON Feed 1.1 names it."""
    feed = channel(atom, "atom")
    assert doc["title"] == feed["title"] and doc["description"] == feed["subtitle"]
    assert doc["home_page_url"] == feed["alternate"]
    assert doc["feed_url"] == f"{BASE}{base}.json"
    assert doc["language"] == feed["language"]
    assert doc["authors"] == [{"name": "Iran Front Page"}]
    want = entries(atom, "atom")
    assert len(doc["items"]) == len(want)
    for item, entry in zip(doc["items"], want, strict=True):
        assert item["id"] == entry["id"] and item["title"] == entry["title"]
        assert item["url"] == entry["link"]
        assert item["date_published"] == entry["published_raw"]      # the article's offset
        assert dt.datetime.fromisoformat(item["date_modified"]) == entry["updated"]
        assert item["date_modified"] == entry["updated"].isoformat()
        assert [(a["name"], a.get("url")) for a in item["authors"]] == entry["authors"]
        assert item.get("tags", []) == entry["categories"]
        assert item["summary"] == entry["summary"]
        assert item["content_html"] == entry["content"] and entry["content_type"] == "html"
        if entry["enclosure"] is None:
            assert "attachments" not in item and "image" not in item
        else:
            url, media_type, length = entry["enclosure"]
            size = {"size_in_bytes": int(length)} if int(length) else {}
            (attachment,) = item["attachments"]
            attachment.pop("title", None)       # the image's alt text: Atom's link title
            assert attachment == {"url": url, "mime_type": media_type, **size}
            assert item["image"] == url and media_type.startswith("image/")


def test_json_items_carry_what_the_atom_entries_carry(app):
    for base in scopes(app):
        _same_as_atom(json_feed(app, base), get(app, f"{base}.atom"), base)
    rouhani = json_feed(app, "feeds/all")["items"][-1]
    assert rouhani["date_published"] == "2015-08-26T10:30:00+04:30"
    assert rouhani["attachments"][0]["size_in_bytes"] > 0


def test_a_real_consumer_reads_every_json_feed(app, tmp_path):
    """reader (lemon24/reader) picks its JSON Feed parser by the file's type and reads
    the same entries, dates and enclosures as from the Atom feed."""
    for base in scopes(app):
        (tmp_path / (base.replace("/", "_") + ".json")).write_bytes(get(app, base + ".json"))
    feeds_reader = make_reader(":memory:", feed_root=str(tmp_path))
    try:
        for base in scopes(app):
            url = "file:" + base.replace("/", "_") + ".json"
            feeds_reader.add_feed(url)
            feeds_reader.update_feed(url)
            feed = feeds_reader.get_feed(url)
            assert feed.last_exception is None, (base, feed.last_exception)
            assert feed.version == "json11" and feed.title == channel(
                get(app, base + ".atom"), "atom")["title"]
            atom = entries(get(app, base + ".atom"), "atom")
            got = {e.id: e for e in feeds_reader.get_entries(feed=url)}
            assert set(got) == {e["id"] for e in atom}, base
            for want in atom:
                e = got[want["id"]]
                assert e.title == want["title"] and e.link == want["link"]
                assert e.published == want["published"] and e.updated == want["updated"]
                assert [a.name for a in e.authors] == [n for n, _ in want["authors"]]
                assert [(c.type, c.value) for c in e.content] == [("text/html", want["content"])]
                assert e.summary == want["summary"]
                if want["enclosure"]:
                    (enc,) = e.enclosures
                    assert (enc.href, enc.type) == want["enclosure"][:2]
    finally:
        feeds_reader.close()


def test_json_bytes_are_compact_utf8_with_no_floats(app):
    body = get(app, "feeds/category/syst-khrjy.json")
    assert body.startswith(b'{"version":"https://jsonfeed.org/version/1.1","title":')
    assert body.endswith(b"}\n") and b"\n" not in body[:-1]
    assert "سیاست خارجی".encode() in body                     # not \\u-escaped

    def walk(value: object) -> None:
        assert not isinstance(value, float)
        for child in (value.values() if isinstance(value, dict) else
                      value if isinstance(value, list) else ()):
            walk(child)
    walk(json.loads(body))


def test_every_page_that_advertises_a_scope_advertises_its_json_feed(app):
    client = app.test_client()
    docs = service_of(app).documents
    pages = [p for p in docs if p == "" or p.endswith("/")]
    pages.append("articles/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight/")
    for path in pages:
        doc = lxml.html.fromstring(client.get("/" + path).data)
        alternates = {ln.get("type"): ln.get("href")
                      for ln in doc.xpath("//head/link[@rel='alternate']")}
        rss = alternates["application/rss+xml"]
        assert alternates["application/feed+json"] == rss[:-len(".rss")] + ".json", path
        assert client.get(alternates["application/feed+json"][len(BASE) - 1:]).status_code == 200
    for base in scopes(app):        # each scope's subscribe page links its JSON Feed
        page = "subscribe/" if base == "feeds/all" else base[len("feeds/"):] + "/subscribe/"
        listed = lxml.html.fromstring(client.get("/" + page).data).xpath("//body//a/@href")
        assert f"{BASE}{base}.json" in listed, page


def test_the_opml_lists_one_outline_per_scope(app):
    """One outline per scope, the first format's URL: a reader importing the OPML would
    otherwise subscribe to every scope once per format."""
    import lxml.etree as ET
    outlines = list(ET.fromstring(get(app, "feeds.opml")).iter("outline"))
    assert sorted(o.get("xmlUrl") for o in outlines) == sorted(
        f"{BASE}{base}.rss" for base in scopes(app))


def test_a_new_format_is_one_writer_and_one_registration(make_app, data, monkeypatch, tmp_path):
    """Register a toy writer: its documents are published for every scope, with the
    content type, ETag and conditional GET of the others, pages advertise it, and the
    static export's nginx block serves it with its type."""
    from feedsvc import export, feeds

    class TitlesWriter(feeds.Writer):
        name, label, media_type = "txt", "Titles", "text/plain"

        def write(self, feed, url, shared):
            return "".join(f"{e.title}\n" for e in feed.entries).encode()

    monkeypatch.setitem(feeds.WRITERS, "txt", TitlesWriter())
    data.article("first-story")
    app = make_app(data.root)
    client = app.test_client()
    paths = sorted(p for p in service_of(app).documents if p.endswith(".txt"))
    assert paths == ["feeds/all.txt", "feeds/author/jane-doe.txt", "feeds/category/world.txt"]
    resp = client.get("/feeds/all.txt")
    assert resp.data == b"First Story\n"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert client.get("/feeds/all.txt", headers={"If-None-Match": resp.headers["ETag"]}
                      ).status_code == 304
    page = lxml.html.fromstring(client.get("/category/world/").data)
    assert page.xpath("//head/link[@rel='alternate'][@type='text/plain']/@href") == [
        "https://news.example.com/feeds/category/world.txt"]
    assert "text/plain               txt;" in export.nginx_conf(
        str(tmp_path), settings.resolve(environ={}))
    with pytest.raises(ValueError, match="already registered"):
        feeds.register(TitlesWriter())


def test_content_html_is_the_sanitized_body_the_atom_feed_carries(make_app, data):
    data.article("raw", body='<p onclick="x()">Hi <script>alert(1)</script><b>bold</b></p>\n')
    app = make_app(data.root)
    item = json_feed(app, "feeds/all")["items"][0]
    (entry,) = entries(get(app, "feeds/all.atom"), "atom")
    assert item["content_html"] == entry["content"]
    assert "<b>bold</b>" in item["content_html"]
    assert "script" not in item["content_html"] and "onclick" not in item["content_html"]


@pytest.mark.e2e
def test_json_feeds_over_sockets_conditional_gets_and_a_reader_fetching_them(serve, bundled,
                                                                             tmp_path):
    """The real server's ready-response path: the JSON feed's type, gzip variant and
    304s on both workers, and reader fetching it over HTTP (it picks its parser by the
    Content-Type the server sends)."""
    import gzip

    import requests
    srv = serve(bundled.root, workers=2)
    url = srv.url + "/feeds/category/politics.json"
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert plain.status_code == 200 and plain.headers["Content-Type"] == "application/feed+json"
    assert VALIDATOR.is_valid(plain.json())
    gz = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    assert gz.headers["Content-Encoding"] == "gzip" and gz.headers["ETag"] != plain.headers["ETag"]
    assert gzip.decompress(gz.raw.read()) == plain.content
    for headers in ({"If-None-Match": plain.headers["ETag"], "Accept-Encoding": "identity"},
                    {"If-None-Match": gz.headers["ETag"], "Accept-Encoding": "gzip"},
                    {"If-Modified-Since": plain.headers["Last-Modified"]}):
        for _ in range(4):                                  # reach both workers
            resp = requests.get(url, headers=headers, timeout=10)
            assert resp.status_code == 304 and resp.content == b"", headers
    feeds_reader = make_reader(str(tmp_path / "reader.sqlite"))
    try:
        feeds_reader.add_feed(url)
        feeds_reader.update_feed(url)
        feed = feeds_reader.get_feed(url)
        assert feed.last_exception is None and feed.version == "json11"
        assert {e.id for e in feeds_reader.get_entries(feed=url)} == {
            item["id"] for item in plain.json()["items"]}
    finally:
        feeds_reader.close()


# what a data file can put in a string: controls, quotes, backslashes, JSON's and
# JavaScript's line separators, a BOM, HTML, astral characters
_HOSTILE = ["\x00", "\x01", "\x08", "\t", "\n", "\x0c", "\r", "\x1f", "\x7f", '"', "\\", "/",
            "\u2028", "\u2029", "\ufeff", "</script>", "é", "سیاست", "😀", "a", " ", "&amp;"]


def test_json_feed_bytes_are_the_standard_librarys_for_hostile_strings_and_big_numbers():
    """The writer's bytes (orjson) are what json.dumps gives for the same document,
    whatever the strings hold; an integer past 64 bits, which orjson refuses, is written
    by json instead of failing the feed."""
    import random

    from test_tricks import _entry, _feed

    from feedsvc import feeds

    rnd = random.Random(11)

    def text() -> str:
        return "".join(rnd.choice(_HOSTILE) for _ in range(rnd.randrange(1, 40)))

    writer = feeds.WRITERS["json"]
    for i in range(200):
        entry = _entry(i, title=text(), summary=text(), content=f"<p>{text()}</p>",
                       categories=(text(), text()), authors=(feeds.Author(text(), ""),),
                       enclosure=("https://news.example.com/i.jpg", "image/jpeg",
                                  rnd.choice([0, 1, 2**31, 2**63 - 1])))
        feed = _feed((entry,))
        out = writer.write(feed, feed.self_urls["json"], {})
        assert out == feeds.plain_json(json.loads(out)), i
    huge = _feed((_entry(1, enclosure=("https://news.example.com/i.jpg", "image/jpeg", 2**70)),))
    out = writer.write(huge, huge.self_urls["json"], {})
    assert json.loads(out)["items"][0]["attachments"][0]["size_in_bytes"] == 2**70
    assert out == feeds.plain_json(json.loads(out))
