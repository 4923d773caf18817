"""Feeds: every feed of the bundled data parsed back, and every field of issue 2 section 2.

feedparser checks that readers accept the documents (bozo 0); the raw XML is read
with lxml where feedparser would hide a mistake (it resolves relative URLs itself,
converts dates to UTC and merges repeated elements).
"""
from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
import lxml.etree as ET
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = "http://127.0.0.1:8000/"                     # base_url of the bundled data/site.yml
ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DRAFT_MARKER = b"DRAFT-SHOULD-NOT-APPEAR"

ROUHANI_ID = "tag:127.0.0.1,2000:2015/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight"
ROUHANI_LINK = BASE + "articles/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight/"
IMAGE_URL = BASE + "media/2015/rouhani-erdogan-phone-call.jpg"
IMAGE_SIZE = str(os.path.getsize(ROOT / "data/media/2015/rouhani-erdogan-phone-call.jpg"))

BUNDLED_CATEGORIES = {"hard-news": "Hard News", "judiciary": "Judiciary",
                      "middle-east": "Middle East", "politics": "Politics",
                      "syst-khrjy": "سیاست خارجی"}
BUNDLED_AUTHORS = {"emad-askarieh": "Emad Askarieh", "ifp-editorial-staff": "IFP Editorial Staff"}


# -- helpers ---------------------------------------------------------------------------

def service_of(app):
    return app.extensions["feedsvc"]


def feed_paths(app) -> list[str]:
    return sorted(p for p in service_of(app).documents
                  if p.startswith("feeds/") and p.endswith((".rss", ".atom")))


def get(app, path: str) -> bytes:
    resp = app.test_client().get("/" + path)
    assert resp.status_code == 200, path
    return resp.data


def fetch_feeds(app) -> dict[str, bytes]:
    return {p: get(app, p) for p in feed_paths(app)}


def parse_ok(body: bytes):
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, getattr(parsed, "bozo_exception", None)
    return parsed


def entries(body: bytes, fmt: str) -> list[dict]:
    """Format-neutral view of the raw XML entries, in document order."""
    root = ET.fromstring(body)
    out = []
    if fmt == "rss":
        for item in root.find("channel").findall("item"):
            enc = item.find("enclosure")
            content = item.find(CONTENT + "encoded")
            out.append({
                "id": item.findtext("guid"),
                "title": item.findtext("title"),
                "link": item.findtext("link"),
                "published": parsedate_to_datetime(item.findtext("pubDate")),
                "published_raw": item.findtext("pubDate"),
                "updated": None,
                "authors": [(e.text, None) for e in item.findall(DC + "creator")],
                "categories": [e.text for e in item.findall("category")],
                "summary": item.findtext("description"),
                "content": content.text if content is not None else None,
                "content_type": "html" if content is not None else None,
                "enclosure": (enc.get("url"), enc.get("type"), enc.get("length"))
                if enc is not None else None,
            })
    else:
        for entry in root.findall(ATOM + "entry"):
            links = entry.findall(ATOM + "link")
            alternate = [ln.get("href") for ln in links
                         if ln.get("rel", "alternate") == "alternate"]
            enclosures = [(ln.get("href"), ln.get("type"), ln.get("length"))
                          for ln in links if ln.get("rel") == "enclosure"]
            assert len(alternate) == 1 and len(enclosures) <= 1
            content = entry.find(ATOM + "content")
            out.append({
                "id": entry.findtext(ATOM + "id"),
                "title": entry.findtext(ATOM + "title"),
                "link": alternate[0],
                "published": dt.datetime.fromisoformat(entry.findtext(ATOM + "published")),
                "published_raw": entry.findtext(ATOM + "published"),
                "updated": dt.datetime.fromisoformat(entry.findtext(ATOM + "updated")),
                "authors": [(a.findtext(ATOM + "name"), a.findtext(ATOM + "uri"))
                            for a in entry.findall(ATOM + "author")],
                "categories": [c.get("term") for c in entry.findall(ATOM + "category")],
                "summary": entry.findtext(ATOM + "summary"),
                "content": content.text if content is not None else None,
                "content_type": content.get("type") if content is not None else None,
                "enclosure": enclosures[0] if enclosures else None,
            })
    return out


def channel(body: bytes, fmt: str) -> dict:
    """Format-neutral view of the feed-level elements."""
    root = ET.fromstring(body)
    if fmt == "rss":
        ch = root.find("channel")
        selfs = [ln.get("href") for ln in ch.findall(ATOM + "link") if ln.get("rel") == "self"]
        return {"title": ch.findtext("title"), "subtitle": ch.findtext("description"),
                "self": selfs, "alternate": ch.findtext("link"),
                "language": ch.findtext("language"),
                "updated": parsedate_to_datetime(ch.findtext("lastBuildDate"))}
    links = root.findall(ATOM + "link")
    return {"title": root.findtext(ATOM + "title"), "subtitle": root.findtext(ATOM + "subtitle"),
            "self": [ln.get("href") for ln in links if ln.get("rel") == "self"],
            "alternate": [ln.get("href") for ln in links
                          if ln.get("rel", "alternate") == "alternate"][0],
            "language": root.get("{http://www.w3.org/XML/1998/namespace}lang"),
            "updated": dt.datetime.fromisoformat(root.findtext(ATOM + "updated"))}


def fmt_of(path: str) -> str:
    return path.rsplit(".", 1)[1]


def iso_in(delta: dt.timedelta) -> str:
    return (dt.datetime.now(dt.UTC) + delta).replace(microsecond=0).isoformat()


def front_matter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.fixture
def app(make_app, bundled):
    return make_app(bundled.root)


@pytest.fixture
def feeds(app) -> dict[str, bytes]:
    return fetch_feeds(app)


# -- every feed parses -----------------------------------------------------------------

def test_every_scope_has_an_rss_and_an_atom_feed(app, feeds):
    expected = {"feeds/all"} | {f"feeds/category/{s}" for s in BUNDLED_CATEGORIES} \
        | {f"feeds/author/{s}" for s in BUNDLED_AUTHORS}
    assert set(feeds) == {f"{base}.{fmt}" for base in expected for fmt in ("rss", "atom")}
    opml = ET.fromstring(get(app, "feeds.opml"))
    listed = {o.get("xmlUrl") for o in opml.iter("outline")}
    assert {BASE + base + ".rss" for base in expected} <= listed


def test_every_feed_parses_with_feedparser(feeds):
    for path, body in feeds.items():
        parsed = parse_ok(body)
        assert parsed.version == ("rss20" if path.endswith(".rss") else "atom10"), path
        assert parsed.entries, path


def test_site_feed_holds_every_published_article(bundled, feeds):
    articles = sorted(bundled.root.glob("articles/**/*.md"))
    published = [p for p in articles if not front_matter(p).get("draft")]
    assert len(published) == len(articles) - 1 == 12
    for path in ("feeds/all.rss", "feeds/all.atom"):
        got = entries(feeds[path], fmt_of(path))
        want = sorted(front_matter(p)["title"] for p in published)
        assert sorted(e["title"] for e in got) == want


def test_scope_feeds_hold_exactly_their_articles(feeds):
    for fmt in ("rss", "atom"):
        site = entries(feeds[f"feeds/all.{fmt}"], fmt)
        for slug, name in BUNDLED_CATEGORIES.items():
            want = [e["id"] for e in site if name in e["categories"]]
            got = [e["id"] for e in entries(feeds[f"feeds/category/{slug}.{fmt}"], fmt)]
            assert got == want and got, (slug, fmt)
        for slug, name in BUNDLED_AUTHORS.items():
            want = [e["id"] for e in site if name in [a for a, _ in e["authors"]]]
            got = [e["id"] for e in entries(feeds[f"feeds/author/{slug}.{fmt}"], fmt)]
            assert got == want and got, (slug, fmt)


# -- selection: order, limit, drafts, future -------------------------------------------

def test_entries_newest_first(feeds):
    for path, body in feeds.items():
        parsed = parse_ok(body)
        stamps = [calendar.timegm(e.published_parsed) for e in parsed.entries]
        assert stamps == sorted(stamps, reverse=True), path
        raw = [e["published"] for e in entries(body, fmt_of(path))]
        assert raw == sorted(raw, reverse=True), path
    site = entries(feeds["feeds/all.atom"], "atom")
    assert site[0]["title"].startswith("Iran Judiciary chief orders review")
    assert site[-1]["id"] == ROUHANI_ID


def test_at_most_items_per_feed(make_app, data):
    data.site(items_per_feed=3)
    for day in range(1, 6):
        data.article(f"story-{day}", date=f"2024-03-0{day}T10:00:00+03:30")
    app = make_app(data.root)
    feeds = fetch_feeds(app)
    assert set(feeds) == {f"feeds/{s}.{f}" for s in ("all", "category/world", "author/jane-doe")
                          for f in ("rss", "atom")}
    for path, body in feeds.items():
        got = [e["title"] for e in entries(body, fmt_of(path))]
        assert got == ["Story 5", "Story 4", "Story 3"], path
        assert len(parse_ok(body).entries) == 3


def test_no_draft_in_any_document(app):
    docs = service_of(app).documents
    assert docs
    for path, doc in docs.items():
        assert DRAFT_MARKER not in doc.body, path
        assert b"Unpublished draft on regional diplomacy" not in doc.body, path
    client = app.test_client()
    for path in docs:
        assert DRAFT_MARKER not in client.get("/" + path).data, path
    assert client.get("/articles/unpublished-draft-on-regional-diplomacy/").status_code == 404


def test_future_article_hidden_until_its_time(make_app, bundled):
    bundled.article("2024/tomorrows-news", "FUTURE-MARKER body.\n", title="Tomorrow's news",
                    date=iso_in(dt.timedelta(days=1)), authors=["Emad Askarieh"],
                    categories=["Politics"])
    app = make_app(bundled.root)
    service = service_of(app)
    for path, doc in service.documents.items():
        assert b"FUTURE-MARKER" not in doc.body and b"Tomorrow" not in doc.body, path
    assert app.test_client().get("/articles/tomorrows-news/").status_code == 404
    assert len(entries(get(app, "feeds/all.atom"), "atom")) == 12

    # its time comes: no file change, no restart, just the service's clock moving on
    real = service.clock
    service.clock = lambda: real() + 2 * 86400
    service.refresh()
    for path in ("feeds/all.rss", "feeds/all.atom", "feeds/category/politics.atom",
                 "feeds/author/emad-askarieh.rss"):
        got = entries(get(app, path), fmt_of(path))
        assert got[0]["title"] == "Tomorrow's news", path
    assert app.test_client().get("/articles/tomorrows-news/").status_code == 200


def test_future_article_does_not_reveal_its_new_category_or_author(make_app, bundled):
    bundled.article("2024/embargoed", "Body.\n", title="Embargoed story",
                    date=iso_in(dt.timedelta(days=1)), authors=["New Hire"],
                    categories=["Secret Launch"])
    app = make_app(bundled.root)
    service = service_of(app)
    for path, doc in service.documents.items():
        for secret in (b"Secret Launch", b"secret-launch", b"New Hire", b"new-hire"):
            assert secret not in doc.body, (path, secret)
    client = app.test_client()
    for path in ("/feeds/category/secret-launch.rss", "/feeds/author/new-hire.atom",
                 "/category/secret-launch/", "/author/new-hire/"):
        assert client.get(path).status_code == 404, path
    assert len(feed_paths(app)) == 16

    real = service.clock
    service.clock = lambda: real() + 2 * 86400
    service.refresh()
    for path in ("feeds/category/secret-launch.rss", "feeds/author/new-hire.atom"):
        (e,) = entries(get(app, path), fmt_of(path))
        assert e["title"] == "Embargoed story"
    assert b"Secret Launch" in get(app, "feeds.opml") and b"New Hire" in get(app, "")


# -- entries ---------------------------------------------------------------------------

def test_entry_title_link_id_identical_everywhere(feeds):
    seen: dict[str, tuple[str, str]] = {}
    for path, body in feeds.items():
        parsed = parse_ok(body)
        raw = entries(body, fmt_of(path))
        assert [e.id for e in parsed.entries] == [e["id"] for e in raw]
        for e, p in zip(raw, parsed.entries):
            assert p.link == e["link"] and p.title == e["title"]
            assert e["id"] and e["title"] and e["link"].startswith(BASE + "articles/"), path
            assert e["link"].endswith("/")
            key = (e["title"], e["link"])
            assert seen.setdefault(e["id"], key) == key, (path, e["id"])
    assert len(seen) == 12
    assert len({link for _, link in seen.values()}) == 12
    assert seen[ROUHANI_ID] == ("Rouhani urges Iran-Turkey cooperation on anti-terrorism fight",
                                ROUHANI_LINK)


def test_id_stays_when_the_article_is_edited(make_app, data):
    data.article("2024/story", "Old body.\n", title="Old title", categories=["World"])
    app = make_app(data.root)
    before = {fmt: entries(get(app, f"feeds/all.{fmt}"), fmt)[0]["id"] for fmt in ("rss", "atom")}
    assert before["rss"] == before["atom"]
    data.article("2024/story", "New body.\n", title="New title", slug="renamed-story",
                 categories=["Economy"], updated="2024-10-29T10:00:00+03:30")
    service_of(app).refresh()
    for fmt in ("rss", "atom"):
        (e,) = entries(get(app, f"feeds/all.{fmt}"), fmt)
        assert e["title"] == "New title"
        assert e["link"] == "https://news.example.com/articles/renamed-story/"
        assert e["id"] == before[fmt]
        (c,) = entries(get(app, f"feeds/category/economy.{fmt}"), fmt)
        assert c["id"] == before[fmt]


def test_canonical_link_and_explicit_id(make_app, data):
    data.article("elsewhere", link="https://origin.example.net/2024/10/story.html",
                 id="urn:uuid:5f0c6a6e-3d2b-4c1e-9a57-1b2c3d4e5f60")
    app = make_app(data.root)
    for path in ("feeds/all.rss", "feeds/all.atom", "feeds/category/world.rss",
                 "feeds/author/jane-doe.atom"):
        (e,) = entries(get(app, path), fmt_of(path))
        assert e["link"] == "https://origin.example.net/2024/10/story.html"
        assert e["id"] == "urn:uuid:5f0c6a6e-3d2b-4c1e-9a57-1b2c3d4e5f60"
        parse_ok(get(app, path))


def test_rss_guid_is_not_a_permalink(feeds):
    root = ET.fromstring(feeds["feeds/all.rss"])
    for guid in root.iter("guid"):
        assert guid.get("isPermaLink") == "false"        # tag: ids are not URLs


def test_entries_match_their_front_matter(bundled, feeds):
    by_title = {}
    for p in bundled.root.glob("articles/**/*.md"):
        fm = front_matter(p)
        if not fm.get("draft"):
            by_title[fm["title"]] = fm
    for path, body in feeds.items():
        for e in entries(body, fmt_of(path)):
            fm = by_title[e["title"]]
            assert e["categories"] == fm["categories"], (path, e["title"])
            assert [a for a, _ in e["authors"]] == fm["authors"], (path, e["title"])
            assert e["summary"] == fm["summary"], (path, e["title"])


def test_published_and_updated_keep_their_true_offset(feeds):
    atom = feeds["feeds/all.atom"].decode()
    rss = feeds["feeds/all.rss"].decode()
    # 2015-08-26 10:30 in Asia/Tehran had daylight saving time: +04:30
    assert "<published>2015-08-26T10:30:00+04:30</published>" in atom
    assert "<updated>2015-08-26T10:30:00+04:30</updated>" in atom
    assert "<pubDate>Wed, 26 Aug 2015 10:30:00 +0430</pubDate>" in rss
    # the 2024 articles: Iran abolished DST in 2022, so +03:30
    assert "<published>2024-10-28T13:00:00+03:30</published>" in atom
    assert "<updated>2024-10-28T13:00:00+03:30</updated>" in atom
    assert "<pubDate>Mon, 28 Oct 2024 13:00:00 +0330</pubDate>" in rss
    # an explicit offset is kept as written
    assert "<published>2023-05-03T07:30:00+00:00</published>" in atom
    assert "<pubDate>Wed, 03 May 2023 07:30:00 +0000</pubDate>" in rss
    for fmt, body in (("atom", atom), ("rss", rss)):
        for e in entries(body.encode(), fmt):
            assert e["published"].utcoffset() is not None
            if e["published"].year == 2024:
                assert e["published"].utcoffset() == dt.timedelta(hours=3, minutes=30)
            if e["published"].year in (2015, 2019, 2020):
                assert e["published"].utcoffset() == dt.timedelta(hours=4, minutes=30)
    parsed = parse_ok(feeds["feeds/all.atom"])
    rouhani = next(e for e in parsed.entries if e.id == ROUHANI_ID)
    assert rouhani.published == rouhani.updated == "2015-08-26T10:30:00+04:30"
    assert calendar.timegm(rouhani.published_parsed) == \
        dt.datetime(2015, 8, 26, 6, 0, tzinfo=dt.UTC).timestamp()


def test_updated_is_separate_from_published(make_app, data):
    data.article("edited", date="2024-03-01T10:00:00+03:30", updated="2024-03-05T18:15:00+03:30")
    data.article("older", date="2024-03-02T10:00:00+03:30")
    app = make_app(data.root)
    atom = get(app, "feeds/all.atom").decode()
    assert "<published>2024-03-01T10:00:00+03:30</published>" in atom
    assert "<updated>2024-03-05T18:15:00+03:30</updated>" in atom
    got = entries(atom.encode(), "atom")
    assert [e["title"] for e in got] == ["Older", "Edited"]        # ordered by date
    # feed-level updated: the latest change in the data, not the newest entry's date
    assert channel(atom.encode(), "atom")["updated"].isoformat() == "2024-03-05T18:15:00+03:30"
    rss = get(app, "feeds/all.rss").decode()
    assert "<pubDate>Fri, 01 Mar 2024 10:00:00 +0330</pubDate>" in rss
    assert "<lastBuildDate>Tue, 05 Mar 2024 18:15:00 +0330</lastBuildDate>" in rss


def test_authors(feeds):
    for path, body in feeds.items():
        fmt = fmt_of(path)
        for e in entries(body, fmt):
            assert e["authors"], (path, e["id"])
            for name, uri in e["authors"]:
                if fmt == "rss":
                    continue
                want = {"Emad Askarieh": "https://ifpnews.com/author/emad-askarieh/",
                        "IFP Editorial Staff": BASE + "author/ifp-editorial-staff/"}[name]
                assert uri == want, (path, e["id"])
    rss = feeds["feeds/all.rss"].decode()
    assert "<dc:creator>Emad Askarieh</dc:creator>" in rss
    assert "<dc:creator>IFP Editorial Staff</dc:creator>" in rss
    parsed = parse_ok(feeds["feeds/all.atom"])
    rouhani = next(e for e in parsed.entries if e.id == ROUHANI_ID)
    assert rouhani.authors == [{"name": "Emad Askarieh",
                                "href": "https://ifpnews.com/author/emad-askarieh/"}]


def test_every_author_of_a_multi_author_article(make_app, data):
    data.author("ali-rezaei", name="Ali Rezaei")
    data.article("joint", authors=["Jane Doe", "Ali Rezaei", "Sara Karimi"])
    app = make_app(data.root)
    for fmt in ("rss", "atom"):
        for scope in ("all", "author/jane-doe", "author/ali-rezaei", "author/sara-karimi"):
            body = get(app, f"feeds/{scope}.{fmt}")
            parse_ok(body)
            (e,) = entries(body, fmt)
            assert [a for a, _ in e["authors"]] == ["Jane Doe", "Ali Rezaei", "Sara Karimi"]
            if fmt == "atom":
                assert [u for _, u in e["authors"]] == [
                    "https://jane.example.org/", "https://news.example.com/author/ali-rezaei/",
                    "https://news.example.com/author/sara-karimi/"]


def test_every_category(make_app, data):
    data.article("many", categories=["World", "Economy", "سیاست خارجی"])
    app = make_app(data.root)
    for fmt in ("rss", "atom"):
        body = get(app, f"feeds/all.{fmt}")
        (e,) = entries(body, fmt)
        assert e["categories"] == ["World", "Economy", "سیاست خارجی"]
        assert [t.term for t in parse_ok(body).entries[0].tags] == e["categories"]
    (e,) = entries(get(app, "feeds/category/syst-khrjy.atom"), "atom")
    assert e["title"] == "Many"


def test_summary(make_app, data):
    data.article("given", "Body text.\n", summary="A   summary\nover lines.")
    data.article("derived", "# Heading\n\nThe *first* paragraph\nwith `code` and a [link](x/).\n\n"
                            "Second paragraph.\n", date="2024-10-27T13:00:00+03:30")
    app = make_app(data.root)
    for fmt in ("rss", "atom"):
        got = {e["title"]: e["summary"] for e in entries(get(app, f"feeds/all.{fmt}"), fmt)}
        assert got == {"Given": "A summary over lines.",
                       "Derived": "The first paragraph with code and a link."}


def test_content_is_html_with_absolute_urls(feeds):
    for fmt in ("rss", "atom"):
        (e,) = [e for e in entries(feeds[f"feeds/all.{fmt}"], fmt) if e["id"] == ROUHANI_ID]
        assert e["content_type"] == "html"
        assert e["content"].startswith("<p>Iranian President Hassan Rouhani says")
        assert '<a href="http://127.0.0.1:8000/category/middle-east/">ISIL Takfiri group</a>' \
            in e["content"]
        assert 'href="/' not in e["content"]
    atom = feeds["feeds/all.atom"].decode()
    assert "&lt;a href=&quot;" not in atom and '&lt;a href="http://127.0.0.1:8000/category/' in atom
    parsed = parse_ok(feeds["feeds/all.atom"])
    rouhani = next(e for e in parsed.entries if e.id == ROUHANI_ID)
    assert rouhani.content[0].type == "text/html"


def test_content_relative_urls_made_absolute(make_app, data):
    body = textwrap.dedent("""\
        See [the archive](/archive/2024/) and [next door](../other-story/) or [here](notes.html).

        ![a chart](charts/c.png)

        <img src="/media/photo.jpg" srcset="/media/photo-2x.jpg 2x, small.jpg 480w">
        <a href="https://elsewhere.example/x">away</a> <a href="#top">top</a>
        <a href="mailto:desk@news.example.com">mail</a>
        """)
    data.article("links", body)
    app = make_app(data.root)
    page = "https://news.example.com/articles/links/"
    for fmt in ("rss", "atom"):
        (e,) = entries(get(app, f"feeds/all.{fmt}"), fmt)
        html = e["content"]
        root = ET.fromstring(f"<div>{html}</div>", ET.HTMLParser())
        hrefs = [a.get("href") for a in root.iter("a")]
        assert hrefs == ["https://news.example.com/archive/2024/",
                         "https://news.example.com/articles/other-story/",
                         page + "notes.html", "https://elsewhere.example/x", "#top",
                         "mailto:desk@news.example.com"]
        srcs = [i.get("src") for i in root.iter("img")]
        assert srcs == [page + "charts/c.png", "https://news.example.com/media/photo.jpg"]
        assert "https://news.example.com/media/photo-2x.jpg 2x" in html
        assert page + "small.jpg 480w" in html


def test_enclosure_for_the_image(feeds):
    rss = ET.fromstring(feeds["feeds/all.rss"])
    encs = [(i.findtext("guid"), i.find("enclosure")) for i in rss.iter("item")
            if i.find("enclosure") is not None]
    assert len(encs) == 1
    guid, enc = encs[0]
    assert guid == ROUHANI_ID
    assert enc.get("url") == IMAGE_URL and enc.get("length") == IMAGE_SIZE \
        and enc.get("type") == "image/jpeg"

    for path, body in feeds.items():
        for e in entries(body, fmt_of(path)):
            want = (IMAGE_URL, "image/jpeg", IMAGE_SIZE) if e["id"] == ROUHANI_ID else None
            assert e["enclosure"] == want, path
    atom = feeds["feeds/all.atom"].decode()
    assert f'<link href="{IMAGE_URL}" rel="enclosure" type="image/jpeg" length="{IMAGE_SIZE}" ' \
        'title="A cable-stayed bridge joins two hilly city shores across a strait at dusk."/>' \
        in atom
    for fmt in ("rss", "atom"):
        parsed = parse_ok(feeds[f"feeds/all.{fmt}"])
        rouhani = next(e for e in parsed.entries if e.id == ROUHANI_ID)
        assert [(x.href, x.type, x.length) for x in rouhani.enclosures] == \
            [(IMAGE_URL, "image/jpeg", IMAGE_SIZE)]


def test_image_url_absolute_without_local_file(make_app, data):
    data.article("pic", image="https://cdn.example.org/a/b.jpg")
    data.article("local", image="media/none.webp", date="2024-10-27T13:00:00+03:30")
    app = make_app(data.root)
    for fmt in ("rss", "atom"):
        body = get(app, f"feeds/all.{fmt}")
        parse_ok(body)
        got = {e["title"]: e["enclosure"] for e in entries(body, fmt)}
        assert got["Pic"][:2] == ("https://cdn.example.org/a/b.jpg", "image/jpeg")
        assert got["Local"] is None     # this site's own file is missing: no 404 enclosure
        _url, _type, length = got["Pic"]
        assert length is not None and length.isdigit()     # never length="None"
    data.write("media/none.webp", b"RIFF....WEBP")          # the file comes: so does the image
    app = make_app(data.root)
    got = {e["title"]: e["enclosure"] for e in entries(get(app, "feeds/all.rss"), "rss")}
    assert got["Local"] == ("https://news.example.com/media/none.webp", "image/webp", "12")


# -- feed level ------------------------------------------------------------------------

def test_feed_title_subtitle_links_language(feeds):
    site_title = "Iran Front Page"
    descriptions = yaml.safe_load((ROOT / "data/categories.yml").read_text(encoding="utf-8"))
    site_yml = yaml.safe_load((ROOT / "data/site.yml").read_text(encoding="utf-8"))
    for path, body in feeds.items():
        fmt = fmt_of(path)
        ch = channel(body, fmt)
        parsed = parse_ok(body)
        base = path.rsplit(".", 1)[0]
        assert ch["self"] == [BASE + path], path
        assert ch["language"] == "en" and parsed.feed.language == "en"
        assert ch["title"] == parsed.feed.title
        assert ch["title"].startswith(site_title)
        assert parsed.feed.subtitle == ch["subtitle"]
        if base == "feeds/all":
            assert ch["title"] == site_title
            assert ch["subtitle"] == site_yml["description"]
            assert ch["alternate"] == BASE
        elif base.startswith("feeds/category/"):
            slug = base.rsplit("/", 1)[1]
            name = BUNDLED_CATEGORIES[slug]
            assert ch["title"] == f"{site_title}: {name}"
            assert ch["subtitle"] == descriptions[name]
            assert ch["alternate"] == f"{BASE}category/{slug}/"
        else:
            slug = base.rsplit("/", 1)[1]
            name = BUNDLED_AUTHORS[slug]
            assert name in ch["title"]
            bio = yaml.safe_load((ROOT / f"data/authors/{slug}.yml").read_text())["bio"]
            assert ch["subtitle"] == bio
            assert ch["alternate"] == f"{BASE}author/{slug}/"
        assert parsed.feed.link == ch["alternate"]
        assert {ln.href for ln in parsed.feed.links if ln.rel == "self"} == {BASE + path}


def test_feed_updated_derived_from_data(feeds):
    for path, body in feeds.items():
        fmt = fmt_of(path)
        got = entries(body, fmt)
        newest = max((e["updated"] or e["published"]) for e in got)
        assert channel(body, fmt)["updated"] == newest, path
        assert channel(body, fmt)["updated"].utcoffset() == newest.utcoffset(), path
    assert b"<updated>2024-10-28T13:00:00+03:30</updated>\n  <author>" in feeds["feeds/all.atom"]
    assert b"<lastBuildDate>Mon, 28 Oct 2024 13:00:00 +0330</lastBuildDate>" \
        in feeds["feeds/all.rss"]
    assert b"<lastBuildDate>Mon, 28 Oct 2024 09:00:00 +0330</lastBuildDate>" \
        in feeds["feeds/author/emad-askarieh.rss"]


def test_forbidden_xml_characters_are_removed(make_app, data):
    # raw control characters in the file ...
    data.write("articles/raw.md", "---\ntitle: \"Raw\x0b title\x1f here\"\n"
                                  "date: 2024-10-28T13:00:00+03:30\nauthors: [Jane Doe]\n"
                                  "categories: [World]\n---\n"
                                  "Body\x0b with\x1f controls \ufffe and \uffff.\n")
    # ... and the same characters written as YAML escapes in the front matter
    data.write("articles/escaped.md", "---\ntitle: \"Escaped\\v title\\x1f here\\uFFFE\"\n"
                                      "date: 2024-10-27T13:00:00+03:30\n"
                                      "summary: \"A\\x0b summary\\x1f.\"\n"
                                      "authors: [\"Jane\\x0b Doe\"]\ncategories: [\"Wor\\x1fld\"]\n"
                                      "---\nPlain body.\n")
    app = make_app(data.root)
    for fmt in ("rss", "atom"):
        for scope in ("all", "category/world", "author/jane-doe"):
            body = get(app, f"feeds/{scope}.{fmt}")
            for bad in (b"\x0b", b"\x1f", "\ufffe".encode(), "\uffff".encode()):
                assert bad not in body
            parse_ok(body)
            ET.fromstring(body)
            got = {e["title"]: e for e in entries(body, fmt)}
            assert set(got) == {"Raw title here", "Escaped title here"}, scope
            assert "Body with controls" in got["Raw title here"]["content"]
            assert got["Escaped title here"]["summary"] == "A summary."
    opml = get(app, "feeds.opml")
    assert b"\x0b" not in opml and b"\x1f" not in opml
    ET.fromstring(opml)


# -- determinism -----------------------------------------------------------------------

def test_two_builds_are_byte_identical(make_app, bundled, tmp_path):
    one = make_app(bundled.root, state_dir=str(tmp_path / "state-one"))
    two = make_app(bundled.root, state_dir=str(tmp_path / "state-two"))
    docs1, docs2 = service_of(one).documents, service_of(two).documents
    assert sorted(docs1) == sorted(docs2)
    for path in docs1:
        assert docs1[path].body == docs2[path].body, path
        assert docs1[path].etag == docs2[path].etag, path
        r1, r2 = service_of(one).resources[path], service_of(two).resources[path]
        assert r1.gzip.body == r2.gzip.body and r1.gzip.etag == r2.gzip.etag, path
    assert fetch_feeds(one) == fetch_feeds(two)


BUILD_SCRIPT = """
import datetime as dt, hashlib, json, sys
import pytz
from feedsvc.corpus import Library
from feedsvc.publish import Publisher
corpus = Library(sys.argv[1]).load()
docs = Publisher().build(corpus, dt.datetime(2026, 1, 1, tzinfo=pytz.utc))
print(json.dumps({p: hashlib.sha256(d.body).hexdigest() for p, d in sorted(docs.items())}))
"""


def test_same_bytes_in_processes_with_different_hash_seeds(bundled, app):
    hashes = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(bundled.root)],
                             cwd=ROOT, env=env, capture_output=True, text=True, check=True,
                             timeout=120)
        hashes.append(json.loads(out.stdout))
    assert hashes[0] == hashes[1] == hashes[2]
    feeds = [p for p in hashes[0] if p.startswith("feeds/") and p != "feeds.opml"]
    assert len(feeds) == 24                      # 8 scopes, 3 formats
    # and the service in this process publishes the very same bytes
    here = {p: hashlib.sha256(d.body).hexdigest() for p, d in service_of(app).documents.items()}
    assert here == hashes[0]


# -- base URL --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["config", "env"])
def test_base_url_override(make_app, bundled, monkeypatch, how):
    base = "https://feeds.example.org/ifp/"
    if how == "env":
        monkeypatch.setenv("FEEDSVC_BASE_URL", base)
        app = make_app(bundled.root)
    else:
        app = make_app(bundled.root, base_url=base)
    feeds = fetch_feeds(app)
    for path, body in feeds.items():
        fmt = fmt_of(path)
        ch = channel(body, fmt)
        assert ch["self"] == [base + path]
        assert ch["alternate"].startswith(base)
        for e in entries(body, fmt):
            assert e["link"].startswith(base + "articles/")
        assert b"127.0.0.1:8000" not in body, path
    (e,) = [e for e in entries(feeds["feeds/all.rss"], "rss") if e["enclosure"]]
    assert e["enclosure"] == (base + "media/2015/rouhani-erdogan-phone-call.jpg",
                              "image/jpeg", IMAGE_SIZE)
    # a root-relative link in a body resolves against the new host (RFC 3986)
    assert b"https://feeds.example.org/category/middle-east/" in feeds["feeds/all.atom"]


def test_building_on_every_core_gives_the_same_bytes(bundled, tmp_path, monkeypatch):
    """A cold start renders bodies and makes feeds in worker processes: byte for byte
    what one process makes."""
    import datetime as dt

    from feedsvc import content, publish, workers
    from feedsvc.cache import Cache
    from feedsvc.corpus import Library

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    corpus = Library(str(bundled.root)).load()
    alone = publish.Publisher(Cache(None)).build(corpus, now)
    monkeypatch.setattr(workers, "cores", lambda: 2)
    monkeypatch.setattr(content, "PARALLEL_THRESHOLD", 1)
    monkeypatch.setattr(publish, "PARALLEL_FEEDS", 1)
    cache = Cache(str(tmp_path / "state"))
    with workers.session():
        shared = publish.Publisher(cache).build(corpus, now)
    assert cache.renders == len(corpus.visible(now)) == 12   # by the workers
    assert {p: (d.body, d.gzip, d.etag) for p, d in shared.items()} == \
        {p: (d.body, d.gzip, d.etag) for p, d in alone.items()}
    again = publish.Publisher(cache).build(corpus, now)  # and the cache got all of it
    assert {p: d.body for p, d in again.items()} == {p: d.body for p, d in alone.items()}
    assert cache.renders == 12


def test_a_feed_built_while_a_body_was_missing_is_made_again(bundled, monkeypatch):
    """A file rewritten while its feed is built leaves that body out for a moment: such a
    feed is neither cached nor reused, even if the file ends up with the same bytes."""
    import datetime as dt

    from feedsvc import content, publish
    from feedsvc.cache import Cache
    from feedsvc.corpus import Library

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    corpus = Library(str(bundled.root)).load()
    real = content.render_file
    monkeypatch.setattr(content, "render_file", lambda job: None)   # every file "changed"
    publisher = publish.Publisher(Cache(None))
    first = publisher.build(corpus, now)
    assert publisher.partial
    monkeypatch.setattr(content, "render_file", real)
    again = publisher.build(corpus, now, first)
    assert not publisher.partial
    whole = publish.Publisher(Cache(None)).build(corpus, now)
    assert {p: d.body for p, d in again.items()} == {p: d.body for p, d in whole.items()}


def test_a_body_that_cannot_be_had_is_tried_once_more_then_left_out(bundled, monkeypatch):
    import datetime as dt

    from feedsvc import content, publish
    from feedsvc.cache import Cache
    from feedsvc.corpus import Library

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    corpus = Library(str(bundled.root)).load()
    monkeypatch.setattr(content, "render_file", lambda job: None)   # never renderable
    publisher = publish.Publisher(Cache(None))
    first = publisher.build(corpus, now)
    assert publisher.partial
    second = publisher.build(corpus, now, first)
    assert not publisher.partial                    # no retry loop: kept until it changes
    assert publisher.build(corpus, now, second) == second


def test_undoing_a_typo_brings_back_the_body_a_feed_lacked(data, tmp_path):
    """A feed that needed a body while its file held a typo goes without it; when the file
    is put back to the very bytes of its last good version (same recipe), the next refresh
    makes that feed whole again instead of keeping the incomplete one."""
    import os
    import time

    from feedsvc import settings
    from feedsvc.live import Service

    def saved_long_ago(path):
        os.utime(path, (time.time() - 100,) * 2)    # a signature trusted at once

    data.site(items_per_feed=1)
    a = data.article("a", body="The body of A.\n", title="A", date="2024-11-01T10:00:00Z")
    good = a.read_bytes()
    data.article("b", title="B", date="2024-11-02T10:00:00Z")
    for f in data.root.rglob("*"):
        saved_long_ago(f)
    service = Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                        "state_dir": str(tmp_path / "state")}))
    try:
        def feed() -> bytes:
            return service.resources["feeds/all.atom"].identity_body()

        assert b"The body of A." not in feed()      # only B is in the feed of one
        saved_long_ago(data.write("articles/a.md", "---\ntitle: [unclosed\n---\nbody\n"))
        service.refresh()
        saved_long_ago(data.article("b", title="B", date="2024-11-02T10:00:00Z", draft=True))
        service.refresh()                           # A's last good version tops the feed
        service.refresh()                           # the quick retry: still no body
        assert b"<title>A</title>" in feed() and b"The body of A." not in feed()
        assert not service.publisher.partial        # no retry loop while the typo stays

        saved_long_ago(data.write("articles/a.md", good))
        service.refresh()
        assert b"The body of A." in feed()
        assert not service.publisher.incomplete
    finally:
        service.close()
