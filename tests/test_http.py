"""HTTP: headers, gzip, the conditional matrix of RFC 9110 section 13, errors and pages."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
import time

import lxml.etree as ET
import lxml.html
import pytest
from conftest import BUNDLED, run_feedsvc
from werkzeug.http import http_date, parse_date

from feedsvc.corpus import LARGE_MEDIA_BYTES

BASE = "http://127.0.0.1:8000/"
FEEDS = ["feeds/all.rss", "feeds/all.atom", "feeds/all.json", "feeds/category/middle-east.rss",
         "feeds/category/syst-khrjy.atom", "feeds/category/politics.json",
         "feeds/author/emad-askarieh.atom", "feeds/author/ifp-editorial-staff.rss",
         "feeds/author/emad-askarieh.json"]
# every format: its Content-Type, and how its documents start
FORMATS = {"rss": ("application/rss+xml; charset=utf-8", b"<?xml"),
           "atom": ("application/atom+xml; charset=utf-8", b"<?xml"),
           "json": ("application/feed+json", b'{"version":"https://jsonfeed.org/version/1.1"')}
ARTICLE = "articles/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight/"


@pytest.fixture
def app(make_app, bundled):
    return make_app(bundled.root)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def site_app(tmp_path_factory):
    """One app on one copy of the bundled site, shared by the tests that only make
    requests (most of this module's parametrized cases): building it for each of them
    took most of this module's time.  A response never depends on the requests before
    it; the tests that change data or settings build their own (`app`)."""
    from feedsvc.web import create_app

    root = tmp_path_factory.mktemp("site-app")
    shutil.copytree(BUNDLED, root / "data")
    with pytest.MonkeyPatch.context() as env:   # as `clean_environment`, which runs later
        for name in [n for n in os.environ if n.startswith(("FEEDSVC_", "XDG_"))]:
            env.delenv(name)
        return create_app({"data_dir": str(root / "data"), "state_dir": str(root / "state"),
                           "watch": False})


@pytest.fixture
def reader(site_app):
    return site_app.test_client()


def service_of(app):
    return app.extensions["feedsvc"]


def max_age(resp) -> int:
    cc = resp.headers["Cache-Control"]
    m = re.fullmatch(r"public, max-age=(\d+)", cc)
    assert m, cc
    return int(m.group(1))


def iso_in(seconds: float) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return when.replace(microsecond=0).isoformat()


# -- plain GET -------------------------------------------------------------------------

@pytest.mark.parametrize("path", FEEDS)
def test_feed_headers(site_app, reader, path):
    resp = reader.get("/" + path)
    assert resp.status_code == 200
    ctype, start = FORMATS[path.rsplit(".", 1)[1]]
    assert resp.headers["Content-Type"] == ctype
    etag = resp.headers["ETag"]
    assert re.fullmatch(r'"[^"]+"', etag), etag                     # strong, quoted
    assert etag == service_of(site_app).documents[path].etag
    assert etag.strip('"') == hashlib.sha256(resp.data).hexdigest()[:32]   # from the bytes
    assert parse_date(resp.headers["Last-Modified"]) is not None
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in resp.headers
    assert int(resp.headers["Content-Length"]) == len(resp.data)
    assert resp.data.startswith(start)


def test_every_feed_format_is_tested():
    from feedsvc import feeds
    assert set(FORMATS) == set(feeds.WRITERS)
    assert {f: w.content_type for f, w in feeds.WRITERS.items()} == {
        f: ctype for f, (ctype, _) in FORMATS.items()}


def test_last_modified_is_stable_between_requests(client):
    one = client.get("/feeds/all.rss").headers["Last-Modified"]
    time.sleep(1.1)
    two = client.get("/feeds/all.rss").headers["Last-Modified"]
    assert one == two


def test_configured_max_age(make_app, bundled):
    client = make_app(bundled.root, max_age=60).test_client()
    for path in FEEDS + ["", "feeds.opml", "category/politics/"]:
        assert client.get("/" + path).headers["Cache-Control"] == "public, max-age=60", path


@pytest.mark.parametrize(("accept", "gzipped"), [
    ("gzip", True),
    ("gzip, deflate, br", True),
    ("x-gzip", True),
    ("GZIP", True),
    ("br;q=1.0, gzip;q=0.5", True),
    ("*", True),
    ("gzip;q=0", False),
    ("gzip;q=0, *", False),          # an explicit refusal wins over the wildcard
    ("*;q=0", False),
    ("identity", False),
    ("deflate, br", False),
    ("", False),
    (None, False),
])
def test_gzip_negotiation(reader, accept, gzipped):
    headers = {} if accept is None else {"Accept-Encoding": accept}
    plain = reader.get("/feeds/all.atom")
    resp = reader.get("/feeds/all.atom", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["Vary"] == "Accept-Encoding"
    if gzipped:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(resp.data) == plain.data
        assert resp.headers["ETag"] != plain.headers["ETag"]
        assert re.fullmatch(r'"[^"]+"', resp.headers["ETag"])
        assert int(resp.headers["Content-Length"]) == len(resp.data)
        assert resp.headers["Content-Type"] == plain.headers["Content-Type"]
        assert resp.headers["Last-Modified"] == plain.headers["Last-Modified"]
    else:
        assert "Content-Encoding" not in resp.headers
        assert resp.data == plain.data
        assert resp.headers["ETag"] == plain.headers["ETag"]


def test_long_accept_encoding_values_are_not_memoized(client):
    """A request head may be hundreds of KB: the memo keeps only short header values."""
    from feedsvc import http

    plain = client.get("/feeds/all.atom")
    before = http.accepts_gzip.cache_info().currsize
    for i in range(20):
        value = f"x-{i}-" + "y" * 100_000 + ", gzip"
        resp = client.get("/feeds/all.atom", headers={"Accept-Encoding": value})
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(resp.data) == plain.data
        refused = client.get("/feeds/all.atom", headers={"Accept-Encoding": value + ";q=0"})
        assert "Content-Encoding" not in refused.headers
    assert http.accepts_gzip.cache_info().currsize <= before + 1


def test_gzip_is_compressed_once(app, client):
    one = client.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip"})
    two = client.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip"})
    assert one.data == two.data and one.headers["ETag"] == two.headers["ETag"]
    assert one.data == service_of(app).resources["feeds/all.rss"].gzip.body


# -- Cache-Control and scheduled articles ------------------------------------------------

def test_max_age_shortened_before_a_scheduled_article(make_app, bundled):
    bundled.article("2024/soon", title="Coming soon", date=iso_in(100),
                    authors=["Emad Askarieh"], categories=["Politics"])
    client = make_app(bundled.root).test_client()
    for path in FEEDS:
        age = max_age(client.get("/" + path))
        assert 0 < age <= 100, (path, age)
    resp = client.get("/feeds/all.atom", headers={"If-None-Match": "*"})
    assert resp.status_code == 304 and 0 < max_age(resp) <= 100
    assert b"Coming soon" not in client.get("/feeds/all.atom").data


def test_far_future_article_leaves_max_age_alone(make_app, bundled):
    bundled.article("2024/later", title="Later", date=iso_in(86400),
                    authors=["Emad Askarieh"], categories=["Politics"])
    client = make_app(bundled.root).test_client()
    assert max_age(client.get("/feeds/all.rss")) == 300


def test_max_age_shortened_when_an_article_is_scheduled_while_running(make_app, bundled):
    app = make_app(bundled.root)
    client = app.test_client()
    assert max_age(client.get("/feeds/all.rss")) == 300
    bundled.article("2024/soon", title="Coming soon", date=iso_in(100),
                    authors=["Emad Askarieh"], categories=["Politics"])
    service_of(app).refresh()
    age = max_age(client.get("/feeds/all.rss"))
    assert 0 < age <= 100


# -- conditional requests ----------------------------------------------------------------

def _validators(client, path="/feeds/all.rss", **headers):
    resp = client.get(path, headers=headers)
    assert resp.status_code == 200
    return resp.headers["ETag"], resp.headers["Last-Modified"]


def _shift(http_date_value: str, seconds: int) -> str:
    return http_date(parse_date(http_date_value) + dt.timedelta(seconds=seconds))


CASES = [
    # (name, headers from (etag, last_modified), expected status)
    ("inm exact", lambda e, lm: {"If-None-Match": e}, 304),
    ("inm weak", lambda e, lm: {"If-None-Match": "W/" + e}, 304),
    ("inm list", lambda e, lm: {"If-None-Match": f'"other", W/"x", {e}'}, 304),
    ("inm list no spaces", lambda e, lm: {"If-None-Match": f'"other",{e}'}, 304),
    ("inm star", lambda e, lm: {"If-None-Match": "*"}, 304),
    ("inm other", lambda e, lm: {"If-None-Match": '"0123456789abcdef"'}, 200),
    ("inm weak other", lambda e, lm: {"If-None-Match": 'W/"0123456789abcdef"'}, 200),
    ("inm unquoted", lambda e, lm: {"If-None-Match": e.strip('"') + "x"}, 200),
    ("inm other, ims future", lambda e, lm: {"If-None-Match": '"nope"',
                                             "If-Modified-Since": _shift(lm, 86400)}, 200),
    ("inm other, ims equal", lambda e, lm: {"If-None-Match": '"nope"',
                                            "If-Modified-Since": lm}, 200),
    ("inm match, ims earlier", lambda e, lm: {"If-None-Match": e,
                                              "If-Modified-Since": _shift(lm, -86400)}, 304),
    ("ims equal", lambda e, lm: {"If-Modified-Since": lm}, 304),
    ("ims later", lambda e, lm: {"If-Modified-Since": _shift(lm, 10)}, 304),
    ("ims earlier", lambda e, lm: {"If-Modified-Since": _shift(lm, -1)}, 200),
    ("ims unparseable", lambda e, lm: {"If-Modified-Since": "yesterday-ish"}, 200),
    ("ims empty", lambda e, lm: {"If-Modified-Since": ""}, 200),
]


# RFC 9110 13.2.2: If-Match (strong comparison), else If-Unmodified-Since, come first;
# a false one means the method is not performed (412); a true one goes on to INM / IMS.
PRECONDITIONS = [
    ("im exact", lambda e, lm: {"If-Match": e}, 200),
    ("im star", lambda e, lm: {"If-Match": "*"}, 200),
    ("im list", lambda e, lm: {"If-Match": f'"other", {e}'}, 200),
    ("im other", lambda e, lm: {"If-Match": '"other"'}, 412),
    ("im weak is never a strong match", lambda e, lm: {"If-Match": "W/" + e}, 412),
    ("im other, ims equal", lambda e, lm: {"If-Match": '"other"', "If-Modified-Since": lm}, 412),
    ("im other, inm match", lambda e, lm: {"If-Match": '"other"', "If-None-Match": e}, 412),
    ("im match, inm weak match", lambda e, lm: {"If-Match": e, "If-None-Match": "W/" + e}, 304),
    ("im match, inm match", lambda e, lm: {"If-Match": e, "If-None-Match": e}, 304),
    ("im match, ims equal", lambda e, lm: {"If-Match": e, "If-Modified-Since": lm}, 304),
    ("im match, ius earlier ignored", lambda e, lm: {"If-Match": e,
                                                     "If-Unmodified-Since": _shift(lm, -60)}, 200),
    ("ius equal", lambda e, lm: {"If-Unmodified-Since": lm}, 200),
    ("ius later", lambda e, lm: {"If-Unmodified-Since": _shift(lm, 60)}, 200),
    ("ius earlier", lambda e, lm: {"If-Unmodified-Since": _shift(lm, -60)}, 412),
    ("ius earlier, inm match", lambda e, lm: {"If-Unmodified-Since": _shift(lm, -60),
                                              "If-None-Match": e}, 412),
    ("ius unparseable", lambda e, lm: {"If-Unmodified-Since": "soon"}, 200),
    ("ius equal, inm match", lambda e, lm: {"If-Unmodified-Since": lm, "If-None-Match": e}, 304),
]


@pytest.mark.parametrize(("name", "make", "status"), PRECONDITIONS,
                         ids=[c[0] for c in PRECONDITIONS])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_preconditions(reader, name, make, status, method):
    etag, lm = _validators(reader)
    resp = reader.open("/feeds/all.rss", method=method, headers=make(etag, lm))
    assert resp.status_code == status, name
    if status == 200 and method == "GET":
        assert resp.data.startswith(b"<?xml")
    else:
        assert not resp.data.startswith(b"<?xml")
    if status == 304:
        assert resp.headers["ETag"] == etag and resp.data == b""


@pytest.mark.parametrize(("name", "make", "status"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", ["/feeds/all.rss", "/feeds/all.json"])
def test_conditional_matrix(reader, name, make, status, method, path):
    etag, lm = _validators(reader, path)
    resp = reader.open(path, method=method, headers=make(etag, lm))
    assert resp.status_code == status, name
    assert resp.headers["ETag"] == etag
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["Vary"] == "Accept-Encoding"
    if status == 304 or method == "HEAD":
        assert resp.data == b""
    else:
        assert resp.data.startswith(FORMATS[path.rsplit(".", 1)[1]][1])


def test_304_headers_and_empty_body(client):
    etag, lm = _validators(client, "/feeds/all.atom")
    resp = client.get("/feeds/all.atom", headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.data == b""
    assert resp.headers["ETag"] == etag
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert resp.headers.get("Content-Length") in (None, "0")
    assert "Content-Encoding" not in resp.headers


def test_head_gives_headers_without_body(client):
    get = client.get("/feeds/all.atom")
    head = client.head("/feeds/all.atom")
    assert head.status_code == 200 and head.data == b""
    for name in ("Content-Type", "ETag", "Last-Modified", "Cache-Control", "Vary",
                 "Content-Length"):
        assert head.headers[name] == get.headers[name], name
    gz = client.head("/feeds/all.atom", headers={"Accept-Encoding": "gzip"})
    assert gz.status_code == 200 and gz.data == b""
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gz.headers["ETag"] != get.headers["ETag"]
    cond = client.head("/feeds/all.atom", headers={"If-None-Match": get.headers["ETag"]})
    assert cond.status_code == 304 and cond.data == b""


def test_gzip_etag_revalidates(client):
    gz_etag, lm = _validators(client, "/feeds/all.rss", **{"Accept-Encoding": "gzip"})
    id_etag, _ = _validators(client, "/feeds/all.rss")
    assert gz_etag != id_etag
    resp = client.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip",
                                                 "If-None-Match": gz_etag})
    assert resp.status_code == 304 and resp.headers["ETag"] == gz_etag
    assert resp.data == b""
    weak = client.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip",
                                                 "If-None-Match": "W/" + gz_etag})
    assert weak.status_code == 304
    # the gzip ETag does not validate the identity representation, nor the reverse
    resp = client.get("/feeds/all.rss", headers={"If-None-Match": gz_etag})
    assert resp.status_code == 200 and resp.headers["ETag"] == id_etag
    resp = client.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip",
                                                 "If-None-Match": id_etag})
    assert resp.status_code == 200 and resp.headers["ETag"] == gz_etag
    assert gzip.decompress(resp.data).startswith(b"<?xml")


def test_gzip_etag_names_the_compressor(client, monkeypatch):
    """Strong ETags promise byte-identical representations: gzip bytes from another level
    or another ISA-L must not share an ETag with these."""
    import hashlib

    from isal import __version__ as isal_version

    from feedsvc import publish

    gz_etag, _ = _validators(client, "/feeds/all.rss", **{"Accept-Encoding": "gzip"})
    id_etag, _ = _validators(client, "/feeds/all.rss")
    tag = hashlib.sha256(f"isal {isal_version} {publish.GZIP_LEVEL}".encode()).hexdigest()[:6]
    assert gz_etag == f'{id_etag[:-1]}-gz{tag}"'
    # and gzip bytes cached by another ISA-L are not reused: recipes name it too
    from feedsvc import versions

    here = versions.version(versions.DOCUMENTS)
    real = versions.installed
    monkeypatch.setattr(versions, "installed",
                        lambda name: "0.0.0-other" if name == "isal" else real(name))
    versions.version.cache_clear()
    assert versions.version(versions.DOCUMENTS) != here
    versions.version.cache_clear()


def test_etag_changes_with_the_data(app, bundled, client):
    etag, _ = _validators(client, "/feeds/all.atom")
    bundled.article("2024/fresh", title="Fresh story", date="2024-10-29T10:00:00+03:30",
                    authors=["Emad Askarieh"], categories=["Politics"])
    service_of(app).refresh()
    resp = client.get("/feeds/all.atom", headers={"If-None-Match": etag})
    assert resp.status_code == 200 and resp.headers["ETag"] != etag
    assert b"Fresh story" in resp.data


# -- errors, methods, cookies, Host ------------------------------------------------------

@pytest.mark.parametrize("path", ["/feeds/nope.rss", "/feeds/category/nope.atom",
                                  "/feeds/author/nope.rss", "/feeds/all.txt",
                                  "/feeds/category/nope.json",
                                  "/category/nope/", "/articles/nope/"])
def test_unknown_is_404_with_the_helpful_page(reader, path):
    resp = reader.get(path)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    doc = lxml.html.fromstring(resp.data)
    assert doc.xpath("//h1")[0].text_content() == "Page not found"
    hrefs = doc.xpath("//main//a/@href")
    assert BASE in hrefs and BASE + "subscribe/" in hrefs


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/feeds/all.rss", "/feeds/category/politics.atom", "/",
                                  "/feeds.opml", "/feeds/all.json"])
def test_other_methods_are_405(reader, method, path):
    resp = reader.open(path, method=method, data=b"x")
    assert resp.status_code == 405
    allow = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert {"GET", "HEAD"} <= allow and method not in allow
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert int(resp.headers["Content-Length"]) == len(resp.data)


def test_no_cookies(client):
    paths = FEEDS + ["/", "/feeds.opml", "/category/politics/", "/author/emad-askarieh/",
                     "/" + ARTICLE, "/healthz", "/feeds/nope.rss"]
    for path in paths:
        path = path if path.startswith("/") else "/" + path
        for headers in ({}, {"Accept-Encoding": "gzip"}, {"If-None-Match": "*"}):
            resp = client.get(path, headers=headers)
            assert "Set-Cookie" not in resp.headers, path
        assert "Set-Cookie" not in client.post(path).headers, path


def test_links_never_come_from_the_host_header(app, client):
    paths = [p for p in service_of(app).documents] + [ARTICLE]
    for path in paths:
        for host in ("evil.example", "evil.example:8443"):
            resp = client.get("/" + path, headers={"Host": host,
                                                   "X-Forwarded-Host": "evil.example"})
            assert resp.status_code == 200, path
            assert b"evil.example" not in resp.data, path
            assert "evil.example" not in str(resp.headers), path
    body = client.get("/feeds/all.atom", headers={"Host": "evil.example"}).data
    assert b'<link href="http://127.0.0.1:8000/feeds/all.atom" rel="self"' in body


# -- pages for people --------------------------------------------------------------------

def test_opml_lists_every_feed(app, client):
    resp = client.get("/feeds.opml")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].split(";")[0] in ("text/x-opml", "application/xml",
                                                          "text/xml")
    assert resp.headers["ETag"] and resp.headers["Cache-Control"]
    root = ET.fromstring(resp.data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.find("head").findtext("title")
    outlines = list(root.find("body").iter("outline"))
    urls = {o.get("xmlUrl") for o in outlines}
    feeds = {p.rsplit(".", 1)[0] for p in service_of(app).documents
             if p.startswith("feeds/") and p.endswith(".rss")}
    assert len(feeds) == 8
    for base in feeds:
        assert BASE + base + ".rss" in urls or BASE + base + ".atom" in urls, base
    for o in outlines:
        assert o.get("title") and o.get("text") and o.get("type") == "rss"
        assert o.get("xmlUrl").startswith(BASE + "feeds/")
        assert client.get(o.get("xmlUrl")[len(BASE) - 1:]).status_code == 200
    titles = {o.get("title") for o in outlines}
    assert {"Hard News", "سیاست خارجی", "Emad Askarieh"} <= titles


def _page(client, path: str):
    resp = client.get(path)
    assert resp.status_code == 200, path
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    return resp, lxml.html.fromstring(resp.data)


def _advertised(feed: str) -> dict[str, str]:
    """The discovery links a page of the scope of `feed` carries: one per format."""
    return {f"{BASE}{feed}.{fmt}": ctype.split(";")[0] for fmt, (ctype, _) in FORMATS.items()}


def _alternates(doc) -> dict[str, str]:
    return {ln.get("href"): ln.get("type") for ln in doc.xpath("//head/link[@rel='alternate']")}


def test_index_lists_feeds_and_advertises_site_feeds(app, client):
    resp, doc = _page(client, "/")
    assert _alternates(doc) == _advertised("feeds/all")
    for ln in doc.xpath("//head/link[@rel='alternate']"):
        assert ln.get("title")
    hrefs = set(doc.xpath("//body//a/@href"))
    assert _subscribe_links("subscribe/") <= hrefs         # the site's feed buttons
    assert BASE + "feeds.opml" in hrefs
    assert doc.xpath("//meta[@name='viewport']")
    assert b"DRAFT-SHOULD-NOT-APPEAR" not in resp.data


@pytest.mark.parametrize(("path", "feed", "must_list", "must_not_list"), [
    ("/category/middle-east/", "feeds/category/middle-east",
     ["Rouhani urges Iran-Turkey cooperation on anti-terrorism fight"],
     ["Iran Judiciary chief orders review of pardon request for 2 detained journalists"]),
    ("/category/syst-khrjy/", "feeds/category/syst-khrjy",
     ["Tehran calls for dialogue among Persian Gulf neighbours"],
     ["Rouhani urges Iran-Turkey cooperation on anti-terrorism fight"]),
    ("/author/emad-askarieh/", "feeds/author/emad-askarieh",
     ["Rouhani urges Iran-Turkey cooperation on anti-terrorism fight"],
     ["Israeli PM considers offering millions to Hamas for release of hostages"]),
    ("/author/ifp-editorial-staff/", "feeds/author/ifp-editorial-staff",
     ["Israeli PM considers offering millions to Hamas for release of hostages"],
     ["Rouhani urges Iran-Turkey cooperation on anti-terrorism fight"]),
])
def test_scope_pages(reader, path, feed, must_list, must_not_list):
    resp, doc = _page(reader, path)
    assert _alternates(doc) == _advertised(feed)
    listed = [a.text_content() for a in doc.xpath("//body//li/a")]
    for title in must_list:
        assert title in listed
    for title in must_not_list:
        assert title not in listed
    hrefs = set(doc.xpath("//body//a/@href"))
    assert _subscribe_links(path[1:] + "subscribe/") <= hrefs
    for href in hrefs:
        if "/articles/" in href:
            assert reader.get(href[len(BASE) - 1:]).status_code == 200, href
    assert b"DRAFT-SHOULD-NOT-APPEAR" not in resp.data
    etag = resp.headers["ETag"]
    assert reader.get(path, headers={"If-None-Match": etag}).status_code == 304


def test_article_page_and_conditional_get(client):
    resp, doc = _page(client, "/" + ARTICLE)
    assert doc.xpath("//h1")[0].text_content() == \
        "Rouhani urges Iran-Turkey cooperation on anti-terrorism fight"
    text = doc.text_content()
    assert "Iranian President Hassan Rouhani says more cooperation" in text
    assert "26 August 2015, 10:30" in text           # the site's zone (Asia/Tehran)
    assert doc.xpath("//article//time/@datetime") == ["2015-08-26T10:30:00+04:30"]
    assert BASE + "category/middle-east/" in doc.xpath("//article//a/@href")
    assert BASE + "author/emad-askarieh/" in doc.xpath("//article//a/@href")
    assert BASE + "media/2015/rouhani-erdogan-phone-call.jpg" in doc.xpath("//img/@src")
    etag = resp.headers["ETag"]
    assert re.fullmatch(r'"[^"]+"', etag)
    assert resp.headers["Cache-Control"].startswith("public, max-age=")
    again = client.get("/" + ARTICLE, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    weak = client.get("/" + ARTICLE, headers={"If-None-Match": "W/" + etag})
    assert weak.status_code == 304
    other = client.get("/" + ARTICLE, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200 and other.data == resp.data
    head = client.head("/" + ARTICLE)
    assert head.status_code == 200 and head.data == b""


def test_every_feed_entry_link_opens_its_page(client):
    root = ET.fromstring(client.get("/feeds/all.rss").data)
    links = [i.findtext("link") for i in root.iter("item")]
    assert len(links) == 12
    for link in links:
        assert client.get(link[len(BASE) - 1:]).status_code == 200, link


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = json.loads(resp.data)
    assert body["status"] == "ok"
    assert isinstance(body["errors"], list) and body["errors"] == []


def test_healthz_reports_bad_files(make_app, bundled):
    bundled.write("articles/2024/broken.md", "no front matter here\n")
    client = make_app(bundled.root).test_client()
    body = json.loads(client.get("/healthz").data)
    assert body["status"] == "degraded"       # still 200: balancers keep routing
    assert [e["path"] for e in body["errors"]] == ["articles/2024/broken.md"]
    assert body["errors"][0]["message"]
    assert client.get("/feeds/all.rss").status_code == 200      # the rest is served


def test_a_last_modified_still_in_the_future_is_not_sent(make_app, data):
    """Several changes within one second push Last-Modified ahead; RFC 9110 8.8.2.1."""
    import time as _time

    from feedsvc.http import Resource

    data.article("one", title="One")
    app = make_app(data.root)
    service = app.extensions["feedsvc"]
    doc = service.documents["feeds/all.rss"]
    ahead = int(_time.time()) + 30
    service.resources = {**service.resources, "feeds/all.rss": Resource.make(
        doc.content_type, ahead, doc.etag, doc.gzip, doc.gzip_etag)}
    client = app.test_client()
    r = client.get("/feeds/all.rss")
    assert r.status_code == 200 and "Last-Modified" not in r.headers and r.headers["ETag"]
    r = client.get("/feeds/all.rss", headers={"If-None-Match": doc.etag})
    assert r.status_code == 304 and "Last-Modified" not in r.headers
    assert "Last-Modified" in client.get("/feeds/all.atom").headers


def test_identity_bytes_are_the_gunzipped_gzip_bytes_and_kept_within_a_budget(app, client):
    """Only gzip bytes are stored; an identity answer gunzips them, with the right length."""
    from feedsvc import http

    for path in FEEDS + ["", "feeds.opml"]:
        ident = client.get("/" + path, headers={"Accept-Encoding": "identity"})
        gz = client.get("/" + path, headers={"Accept-Encoding": "gzip"})
        assert ident.status_code == gz.status_code == 200, path
        assert ident.data == gzip.decompress(gz.data), path
        assert int(ident.headers["Content-Length"]) == len(ident.data), path
        assert ident.headers["ETag"] == service_of(app).documents[path].etag, path
        head = client.head("/" + path, headers={"Accept-Encoding": "identity"})
        assert head.headers["Content-Length"] == ident.headers["Content-Length"], path

    resources = sorted((service_of(app).resources[p] for p in FEEDS),   # largest first
                       key=lambda r: -len(r.identity_body()))
    sizes = [len(r.identity_body()) for r in resources]
    inflated = http.Inflated(budget=sizes[0] + sizes[1])
    first = inflated.get(resources[0].gzip.etag, resources[0].gzip.body)
    assert inflated.get(resources[0].gzip.etag, b"not read again") is first    # kept
    inflated.get(resources[1].gzip.etag, resources[1].gzip.body)
    inflated.get(resources[2].gzip.etag, resources[2].gzip.body)     # over budget: oldest out
    assert inflated.get(resources[1].gzip.etag, b"") == resources[1].identity_body()
    assert sum(map(len, inflated._held.values())) <= inflated.budget
    assert resources[0].gzip.etag not in inflated._held


# -- hostile and malformed requests (issue 11) --------------------------------------------

MEDIA = "/media/2015/rouhani-erdogan-phone-call.jpg"
# one URL of every kind: ready feed, ready page, scope page, OPML, article page (pages.py),
# media (Flask, send_file), health, unknown path
EVERY_KIND = ["/feeds/all.rss", "/", "/category/middle-east/", "/feeds.opml", "/" + ARTICLE,
              MEDIA, "/healthz", "/feeds/nope.rss"]


def run(app, method="GET", path="/", headers=None, host=True, protocol="HTTP/1.1"):
    """One request through the whole WSGI stack with an environ the test client would
    not build (no Host, a target that is not a path)."""
    from werkzeug.test import create_environ, run_wsgi_app
    from werkzeug.wrappers import Response as WResponse

    environ = create_environ("/", method=method, headers=headers or {})
    environ["PATH_INFO"], environ["SERVER_PROTOCOL"] = path, protocol
    if host is None:
        del environ["HTTP_HOST"]
    elif host is not True:
        environ["HTTP_HOST"] = host
    body, status, resp_headers = run_wsgi_app(app, environ, buffered=True)
    return WResponse(b"".join(body), status, resp_headers)


def _subscribe_links(page: str) -> set[str]:
    """A scope's format buttons: each leads to its subscribe page, at that format."""
    return {f"{BASE}{page}#{fmt}" for fmt in FORMATS}


def _csp(resp) -> dict[str, list[str]]:
    policy = resp.headers["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


@pytest.mark.parametrize("path", EVERY_KIND + ["/feeds/all.atom", "/author/emad-askarieh/"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_every_response_has_a_csp_without_script_and_nosniff(reader, path, encoding):
    for method in ("GET", "HEAD", "POST"):
        resp = reader.open(path, method=method, headers={"Accept-Encoding": encoding})
        assert resp.headers["X-Content-Type-Options"] == "nosniff", (path, method)
        csp = _csp(resp)
        assert csp["default-src"] == ["'none'"], (path, method)
        assert len(csp["script-src"]) == 1 and csp["script-src"][0].startswith("'sha256-")
        assert "'unsafe-inline'" not in str(csp)
        assert csp["img-src"] == ["*", "data:"]         # article images come from anywhere
    etag = reader.get(path, headers={"Accept-Encoding": encoding}).headers.get("ETag")
    if etag:
        resp = reader.get(path, headers={"Accept-Encoding": encoding, "If-None-Match": etag})
        assert resp.status_code == 304, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path


@pytest.mark.parametrize("path", ["/", "/category/middle-east/", "/author/emad-askarieh/",
                                  "/" + ARTICLE])
def test_pages_hold_under_their_csp(reader, path):
    """The policy allows exactly the pages' stylesheets (by hash) and no script at all."""
    import base64

    resp, doc = _page(reader, path)
    styles = doc.xpath("//style")
    assert styles
    allowed = _csp(resp)["style-src"]
    for style in styles:
        digest = base64.b64encode(hashlib.sha256(style.text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed, path
    assert not doc.xpath("//script | //*[@style] | //*[@*[starts-with(name(), 'on')]]")
    assert not doc.xpath("//link[@rel='stylesheet'] | //iframe | //object")


def test_healthz_says_nothing_about_the_host(make_app, bundled, tmp_path):
    bundled.write("articles/2024/broken.md", "no front matter here\n")
    app = make_app(bundled.root)
    client = app.test_client()
    resp = client.get("/healthz")
    body = json.loads(resp.data)
    assert resp.status_code == 200 and body["status"] == "degraded"
    assert "pid" not in body and "data_dir" not in body
    assert set(body) == {"status", "worker", "articles", "documents", "snapshot",
                         "refreshed_at", "errors"}
    assert [e["path"] for e in body["errors"]] == ["articles/2024/broken.md"]
    assert str(tmp_path) not in resp.get_data(as_text=True)
    # the data directory goes away: the error says so without saying where it was
    bundled.root.rename(tmp_path / "elsewhere")
    service_of(app).refresh()
    resp = client.get("/healthz")
    body = json.loads(resp.data)
    assert resp.status_code == 200 and body["status"] == "degraded"
    assert body["errors"] == [{"path": ".", "level": "error", "message":
                               "data directory FEEDSVC_DATA_DIR is missing or not a directory"}]
    assert str(tmp_path) not in resp.get_data(as_text=True)
    assert client.get("/feeds/all.rss").status_code == 200


def test_healthz_warnings_alone_are_ok_and_nothing_served_is_503(make_app, bundled, tmp_path):
    bundled.article("2024/cafe-one", categories=["Café"])
    bundled.article("2024/cafe-two", categories=["Cafe"])     # same slug: a warning
    body = json.loads(make_app(bundled.root).test_client().get("/healthz").data)
    assert body["errors"] and all(e["level"] == "warning" for e in body["errors"])
    assert body["status"] == "ok"
    empty = make_app(tmp_path / "missing", state_dir=str(tmp_path / "state2"))
    resp = empty.test_client().get("/healthz")
    assert resp.status_code == 503 and json.loads(resp.data)["status"] == "unavailable"


BAD_DATES = ["Fri, 31 Dec 2147483648 23:59:59 GMT",
             "Fri, 31 Dec 9999999999999999999999 23:59:59 GMT",
             "Fri, 31 Dec 2020 23:59:59 +9999999999999999"]


@pytest.mark.parametrize("path", EVERY_KIND)
@pytest.mark.parametrize("bad", BAD_DATES)
def test_dates_werkzeug_overflows_on_are_ignored(reader, path, bad):
    plain = reader.get(path)
    for name in ("If-Modified-Since", "If-Unmodified-Since", "If-Range"):
        headers = {name: bad}
        if name == "If-Range":
            headers["Range"] = "bytes=0-9"
        for method in ("GET", "HEAD"):
            resp = reader.open(path, method=method, headers=headers)
            # ignored: the answer is the plain one (a bad If-Range sends everything)
            assert resp.status_code == plain.status_code, (path, name, method)
            if method == "GET" and path != "/healthz":
                assert resp.data == plain.data, (path, name)
    etag = plain.headers.get("ETag")
    if etag:            # the other conditions still apply
        resp = reader.get(path, headers={"If-None-Match": etag, "If-Modified-Since": bad})
        assert resp.status_code == 304, path


def test_media_range_still_honours_a_valid_if_range(client):
    full = client.get(MEDIA)
    part = client.get(MEDIA, headers={"Range": "bytes=0-9",
                                      "If-Range": full.headers["Last-Modified"]})
    assert part.status_code == 206 and part.data == full.data[:10]


def test_media_links_leading_out_of_media_are_not_followed(make_app, bundled, tmp_path):
    media = bundled.root / "media"
    (tmp_path / "secret.txt").write_text("not for the web\n")
    (media / "root").symlink_to("/")
    (media / "secret.png").symlink_to(tmp_path / "secret.txt")
    (media / "site.png").symlink_to(bundled.root / "site.yml")      # in data/, not media/
    (media / "alias.png").symlink_to(media / "2015" / "rouhani-erdogan-phone-call.jpg")
    client = make_app(bundled.root).test_client()
    for path in ("/media/root/etc/passwd", "/media/root/", "/media/secret.png",
                 "/media/site.png", "/media/../site.yml", "/media/%2e%2e/site.yml",
                 "/media/", "/media/2015/"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert b"not for the web" not in resp.data and b"root:" not in resp.data
    alias = client.get("/media/alias.png")       # a link that stays inside is fine
    assert alias.status_code == 200 and alias.data == client.get(MEDIA).data
    assert alias.headers["Content-Type"] == "image/png"
    # and `feedsvc check`, the log and /healthz name them (the same Library reports them)
    errors = {e.path: e.message for e in service_of(client.application).errors}
    assert sorted(errors) == ["media/root", "media/secret.png", "media/site.png"]
    assert errors["media/root"] == ("is a symlink pointing outside media/: it is not served "
                                    "under /media/; copy the file in instead")


def test_media_get_answers_with_one_bytes_body(app):
    """A body granian can send without the WSGI thread: one chunk, not a file iterator."""
    from werkzeug.test import create_environ

    environ = create_environ(MEDIA)
    chunks = list(app.wsgi_app(environ, lambda status, headers: None))
    assert len(chunks) == 1 and chunks[0].startswith(b"\xff\xd8\xff")   # a JPEG


def test_large_media_files_are_served_and_reported(make_app, bundled):
    """`feedsvc serve` reads a media file whole for each GET (above): one past
    LARGE_MEDIA_BYTES is still served, and reported as a warning naming the fix, at start
    and when it arrives, grows or shrinks while the service runs (file events alone)."""
    big = bundled.root / "media" / "2015" / "talk.mp4"
    with open(big, "wb") as f:
        f.truncate(LARGE_MEDIA_BYTES + 1)               # sparse: no disk, no time
    warning = {"path": "media/2015/talk.mp4", "level": "warning",
               "message": "is 32.0 MB, over 32 MB: feedsvc serve reads a media file whole "
                          "into memory for each request; serve large files from nginx "
                          "(feedsvc build) or a CDN"}

    def reported(client) -> list[dict]:
        health = client.get("/healthz").get_json()
        assert health["status"] == "ok"                 # a warning: still ok
        return [e for e in health["errors"] if e["path"].startswith("media/")]

    app = make_app(bundled.root)
    client = app.test_client()
    assert reported(client) == [warning]
    resp = client.get("/media/2015/talk.mp4", headers={"Range": "bytes=0-9"})
    assert resp.status_code == 206 and resp.data == bytes(10)
    resp = client.head("/media/2015/talk.mp4")
    assert resp.status_code == 200 and resp.content_length == LARGE_MEDIA_BYTES + 1

    service = service_of(app)
    with open(big, "r+b") as f:
        f.truncate(1000)
    service.refresh(paths={str(big)})
    assert reported(client) == []
    with open(big, "r+b") as f:
        f.truncate(LARGE_MEDIA_BYTES + 1)
    service.refresh(paths={str(big)})
    assert reported(client) == [warning]
    check = run_feedsvc("check", str(bundled.root))
    assert check.returncode == 0, check.stderr          # warnings only
    assert f"media/2015/talk.mp4: warning: {warning['message']}\n" in check.stdout
    big.unlink()
    service.refresh(paths={str(big)})
    assert reported(client) == []


def test_article_pages_survive_a_restart_with_the_data_gone(make_app, bundled, tmp_path):
    app = make_app(bundled.root)
    before = app.test_client().get("/" + ARTICLE)
    assert before.status_code == 200
    service_of(app).close()                         # writes the checkpoint
    bundled.root.rename(tmp_path / "moved-away")
    again = make_app(bundled.root)
    client = again.test_client()
    assert client.get("/feeds/all.rss").status_code == 200
    resp = client.get("/" + ARTICLE)
    assert resp.status_code == 200 and resp.data == before.data
    assert b"Iranian President Hassan Rouhani says more cooperation" in resp.data
    assert client.get("/articles/nope/").status_code == 404


@pytest.mark.parametrize("checkpoint", ["none", "another version's"])
def test_article_pages_survive_a_restart_with_site_yml_broken(make_app, bundled, checkpoint):
    """site.yml broken at a restart and no checkpoint this version can use: the last good
    site.yml (kept in the state) still assembles the corpus, so article pages, feeds and
    pages are as last published, and the error is reported."""
    app = make_app(bundled.root)
    client = app.test_client()
    before = {url: client.get(url).data for url in ("/" + ARTICLE, "/feeds/all.rss", "/")}
    service = service_of(app)
    service.close()
    path = service._checkpoint_path
    if checkpoint == "none":
        os.unlink(path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"code": "an older feedsvc"}, f)
    bundled.write("site.yml", "title: [\n")
    again = make_app(bundled.root)
    client = again.test_client()
    for url, body in before.items():
        resp = client.get(url)
        assert resp.status_code == 200 and resp.data == body, url
    assert client.get("/articles/nope/").status_code == 404
    health = client.get("/healthz").get_json()
    assert health["status"] == "degraded" and health["articles"] == 12
    assert [e["path"] for e in health["errors"]] == ["site.yml"]


@pytest.mark.parametrize("method", ["get", "head", "OPTIONS", "Get", "FOO", "TRACE", "CONNECT"])
@pytest.mark.parametrize("path", EVERY_KIND + ["/media/nope.png", "/nope"])
def test_every_method_but_get_and_head_is_405_everywhere(reader, method, path):
    resp = reader.open(path, method=method)
    assert resp.status_code == 405, (method, path)
    assert resp.headers["Allow"] == "GET, HEAD"
    assert resp.data == b"405 method not allowed\n"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("target", ["*", "feeds/all.rss", "http://evil.example/"])
def test_a_target_that_is_not_a_path_is_400(site_app, method, target):
    resp = run(site_app, method, target)
    assert resp.status_code == 400 and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<html" not in resp.data
    assert run(site_app, "OPTIONS", "*").status_code == 405


@pytest.mark.parametrize("path", EVERY_KIND)
def test_http11_without_host_is_400(site_app, path):
    for host in (None, ""):                 # granian passes a missing Host as ""
        resp = run(site_app, "GET", path, host=host)
        assert resp.status_code == 400 and b"Host" in resp.data
        assert run(site_app, "GET", path, host=host, protocol="HTTP/1.0").status_code != 400
    assert run(site_app, "GET", path).status_code != 400


@pytest.mark.parametrize("raw", ["/nope%0D%0ASet-Cookie:%20x=1", "/a%00b", "/<script>x</script>",
                                 "/feeds/%0D%0A%0D%0AHTTP/1.1%20200%20OK", "/a\x00b"])
def test_404_never_echoes_control_characters(reader, raw):
    resp = reader.get(raw)
    assert resp.status_code == 404
    # the one 404 page, the path not echoed (the static export's page is the same file)
    assert resp.data == reader.get("/nope/").data
    assert b"Page not found" in resp.data and b"<script>x" not in resp.data


@pytest.mark.parametrize(("path", "location"), [
    ("/articles//" + ARTICLE[len("articles/"):], "/" + ARTICLE),
    ("/media//2015/x.png", "/media/2015/x.png"),
    ("/" + ARTICLE[:-1], "/" + ARTICLE),                    # strict slashes
])
def test_redirects_never_name_the_host_header(site_app, path, location):
    """Routing's redirects are path-only: an absolute Location built from Host would send
    a poisoned cache's readers to any site."""
    resp = run(site_app, "GET", path, headers={"Host": "evil.example"})
    assert resp.status_code in (301, 308), path
    assert resp.headers["Location"] == location
