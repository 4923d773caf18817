"""Article pages (pages.py) and one HTTP behaviour for ready documents and Flask pages."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from werkzeug.http import http_date, parse_date

from feedsvc import pages as pages_module
from feedsvc import publish, settings

ARTICLE = "/articles/rouhani-urges-iran-turkey-cooperation-on-anti-terrorism-fight/"
# a path of each kind: ready documents (a feed, a page, the OPML), an article page, and
# what Flask answers (a media file, with werkzeug's send_file)
KINDS = {"feed": "/feeds/all.atom", "page": "/category/politics/", "opml": "/feeds.opml",
         "article": ARTICLE, "media": "/media/2015/rouhani-erdogan-phone-call.jpg"}
MISSING = {"missing": "/nope/", "missing article": "/articles/nope/",
           "missing media": "/media/nope.png", "missing feed": "/feeds/nope.rss"}
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"]
DAY = dt.timedelta(days=1)


def conditionals(etag: str, modified: dt.datetime) -> dict[str, dict[str, str]]:
    """Each conditional request worth telling apart, for a document with these validators."""
    lm, before = http_date(modified), http_date(modified - DAY)
    return {
        "none": {},
        "INM same": {"If-None-Match": etag},
        "INM weak same": {"If-None-Match": "W/" + etag},
        "INM list": {"If-None-Match": f'"x", {etag}'},
        "INM other": {"If-None-Match": '"other"'},
        "INM *": {"If-None-Match": "*"},
        "IMS same": {"If-Modified-Since": lm},
        "IMS before": {"If-Modified-Since": before},
        "IMS bad": {"If-Modified-Since": "yesterday"},
        "IMS overflow": {"If-Modified-Since": "Sun, 06 Nov 99999999999 08:49:37 GMT"},
        "INM other + IMS same": {"If-None-Match": '"other"', "If-Modified-Since": lm},
        "IM other": {"If-Match": '"other"'},
        "IM same": {"If-Match": etag},
        "IM *": {"If-Match": "*"},
        "IUS before": {"If-Unmodified-Since": before},
        "IUS same": {"If-Unmodified-Since": lm},
        "IM same + INM same": {"If-Match": etag, "If-None-Match": etag},
    }


def shape(resp) -> tuple:
    """What must be the same between the stacks: status, Allow, the body's shape, which
    validators and caching headers are sent."""
    body = resp.get_data()
    if not body:
        kind = "empty"
    elif resp.mimetype == "text/plain":
        kind = body.decode().split(":")[0].strip()      # "405 method not allowed", ...
    else:
        kind = "document"
    return (resp.status_code, resp.headers.get("Allow"), kind,
            "ETag" in resp.headers, "Last-Modified" in resp.headers,
            "Cache-Control" in resp.headers, resp.headers.get("X-Content-Type-Options"))


@pytest.fixture
def client(make_app, bundled):
    return make_app(bundled.root).test_client()


def test_every_kind_of_path_answers_every_method_and_conditional_alike(client):
    """(path kind x method x conditional header) through FeedApp's ready documents
    (feeds, pages, OPML, article pages) and Flask (media through send_file): the same
    status, Allow, body shape and validator headers for every combination."""
    table: dict[tuple[str, str], dict[str, tuple]] = {}
    for kind, path in KINDS.items():
        first = client.get(path)
        assert first.status_code == 200, kind
        etag, modified = first.headers["ETag"], parse_date(first.headers["Last-Modified"])
        for method in METHODS:
            for name, headers in conditionals(etag, modified).items():
                resp = client.open(path, method=method, headers=headers)
                table.setdefault((method, name), {})[kind] = shape(resp)
    differ = {key: kinds for key, kinds in table.items() if len(set(kinds.values())) > 1}
    assert differ == {}, "\n".join(f"{k}: {v}" for k, v in differ.items())
    # and what they all answer is right
    assert table[("GET", "none")]["feed"][:3] == (200, None, "document")
    assert table[("HEAD", "none")]["feed"][:3] == (200, None, "empty")
    assert table[("GET", "INM same")]["feed"][:3] == (304, None, "empty")
    assert table[("GET", "INM other + IMS same")]["feed"][:3] == (200, None, "document")
    assert table[("GET", "IUS before")]["feed"][:3] == (412, None, "412 precondition failed")
    assert table[("POST", "none")]["feed"][:3] == (405, "GET, HEAD", "405 method not allowed")


def test_missing_paths_answer_alike_for_every_method(client):
    table = {(method, kind): shape(client.open(path, method=method))
             for kind, path in MISSING.items() for method in METHODS}
    for method in METHODS:
        assert len({table[(method, kind)] for kind in MISSING}) == 1, method
    assert table[("GET", "missing article")][:3] == (404, None, "document")   # the 404 page
    assert table[("HEAD", "missing article")][:3] == (404, None, "empty")
    assert table[("DELETE", "missing article")][:3] == (405, "GET, HEAD",
                                                         "405 method not allowed")


def test_an_article_page_has_the_last_modified_feedsvc_build_gives_it(make_app, bundled,
                                                                        tmp_path):
    from feedsvc.export import export
    state = str(tmp_path / "state")
    out = tmp_path / "out"
    config = settings.resolve({"data_dir": str(bundled.root), "state_dir": state}, environ={})
    export(config, str(out))
    client = make_app(bundled.root, state_dir=state).test_client()
    resp = client.get(ARTICLE)
    assert resp.status_code == 200
    built = out / ARTICLE.strip("/") / "index.html"
    assert resp.get_data() == built.read_bytes()
    assert resp.headers["Last-Modified"] == http_date(int(built.stat().st_mtime))
    assert resp.headers["ETag"] == publish.etag_of(built.read_bytes())
    gz = client.get(ARTICLE, headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip"
    assert publish.decompress(gz.get_data()) == built.read_bytes()


def test_an_article_page_whose_bytes_change_gets_a_later_last_modified(make_app, bundled):
    """Never a false 304: a page's bytes change with its author's name (not its file), and
    a client holding the old page's Last-Modified gets the new page."""
    app = make_app(bundled.root)
    client, service = app.test_client(), app.extensions["feedsvc"]
    first = client.get(ARTICLE)
    lm = first.headers["Last-Modified"]
    author = bundled.root / "authors" / "emad-askarieh.yml"     # who wrote ARTICLE
    page = first.get_data()
    bundled.write(f"authors/{author.name}", author.read_text().replace("name:", "name: Dr.", 1))
    service.refresh(force=True)
    again = client.get(ARTICLE, headers={"If-Modified-Since": lm})
    assert again.status_code == 200 and again.get_data() != page
    # a later second, or none yet (the old bytes' second is never shown for the new ones)
    shown = again.headers.get("Last-Modified")
    assert shown is None or parse_date(shown) > parse_date(lm)


def test_looking_up_an_article_is_a_dict_lookup(make_app, bundled):
    """Once the index of a corpus is made, a request reads no list of articles."""
    app = make_app(bundled.root)
    client, service = app.test_client(), app.extensions["feedsvc"]

    class Counted(list):
        reads = 0

        def __iter__(self):
            Counted.reads += 1
            return super().__iter__()
    articles = service.corpus.articles
    service.corpus.articles = Counted(articles)
    try:
        assert client.get(ARTICLE).status_code == 200
        made = Counted.reads
        for _ in range(3):
            assert client.get(ARTICLE).status_code == 200
            assert client.get("/articles/nope/").status_code == 404
        assert Counted.reads == made
    finally:
        service.corpus.articles = articles      # the checkpoint at exit pickles it


def test_pages_held_stay_within_their_budget(make_app, bundled, monkeypatch):
    monkeypatch.setattr(pages_module, "PAGE_CACHE_BYTES", 6000)
    app = make_app(bundled.root)
    client, service = app.test_client(), app.extensions["feedsvc"]
    paths = [f"/articles/{a.slug}/" for a in service.corpus.articles][:20]
    bodies = {p: client.get(p).get_data() for p in paths}
    held = app.wsgi_app.pages.__self__
    assert 0 < held._size <= 6000 or len(held._held) == 1
    assert {p: client.get(p).get_data() for p in paths} == bodies


def test_a_page_changed_within_its_second_gets_one_when_the_next_begins(make_app, bundled):
    """New bytes in the second the old ones showed go out with their ETag only; once the
    next second has begun, the page claims one (and a client's old date gets the page)."""
    app = make_app(bundled.root)
    client, service = app.test_client(), app.extensions["feedsvc"]
    now = [float(int(time.time()) - 1000)]      # in the past: FeedApp shows no future date
    service.clock = service.validators.clock = lambda: now[0]
    first = client.get(ARTICLE)
    lm = first.headers["Last-Modified"]
    author = bundled.root / "authors" / "emad-askarieh.yml"
    bundled.write("authors/emad-askarieh.yml", author.read_text().replace("name:", "name: Dr.", 1))
    service.refresh(force=True)
    second = client.get(ARTICLE, headers={"If-Modified-Since": lm})
    assert second.status_code == 200 and second.get_data() != first.get_data()
    assert "Last-Modified" not in second.headers        # that second showed other bytes
    now[0] += 5
    third = client.get(ARTICLE, headers={"If-Modified-Since": lm})
    assert third.status_code == 200 and third.headers["ETag"] == second.headers["ETag"]
    assert parse_date(third.headers["Last-Modified"]) > parse_date(lm)
