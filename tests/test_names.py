"""Issue 11, "nothing valid vanishes or merges": entry and feed ids from one parse of
base_url, names that differ by a meaningful symbol, and articles that ask for one slug."""
from __future__ import annotations

import re
from pathlib import Path

import feedparser
import pytest

from feedsvc import loader
from feedsvc.corpus import Library
from feedsvc.model import DataError

ROOT = Path(__file__).resolve().parent.parent

# RFC 4151: "tag:" DNS name (or e-mail) "," date ":" specific, the specific part URI text
DNS_NAME = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
TAG_URI = re.compile(rf"tag:{DNS_NAME},\d{{4}}(?:-\d\d(?:-\d\d)?)?:"
                     r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*")
LOOPBACK6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"


def feeds_of(app) -> dict[str, feedparser.FeedParserDict]:
    service = app.extensions["feedsvc"]
    client = app.test_client()
    out = {}
    for path in sorted(service.documents):
        if path.startswith("feeds/") and path.endswith((".rss", ".atom")):
            parsed = feedparser.parse(client.get("/" + path).data)
            assert parsed.bozo == 0, (path, getattr(parsed, "bozo_exception", None))
            out[path] = parsed
    return out


def ids_of(app) -> dict[str, tuple[str, list[str]]]:
    """Feed path -> (feed id, entry ids); RSS has no feed id."""
    return {path: (f.feed.get("id", ""), [e.id for e in f.entries])
            for path, f in feeds_of(app).items()}


# -- ids: the host of base_url --------------------------------------------------------------

@pytest.mark.parametrize("base_url, authority", [
    ("http://[::1]:8000/", LOOPBACK6),
    ("http://[0:0::1]/", LOOPBACK6),                    # one address, one name
    ("http://[::1]/", LOOPBACK6),                       # the port is not part of it
    ("http://[fe80::1%25eth0]:8000/", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
                                      ".0.0.0.8.e.f.ip6.arpa"),     # a zone is local
    ("http://[2001:DB8::AB]/", "b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0"
                               ".1.0.0.2.ip6.arpa"),
    ("http://127.0.0.1:8000/", "127.0.0.1"),
    ("https://bücher.example/", "xn--bcher-kva.example"),
    ("https://BÜCHER.Example:8443/news/", "xn--bcher-kva.example"),
    ("https://faß.de/", "xn--fa-hia.de"),               # IDNA 2008, as browsers do
    ("https://News.Example.COM:8443/", "news.example.com"),
    ("https://user:secret@news.example.com/", "news.example.com"),
    ("https://news.example.com./", "news.example.com"),
    ("https://news.example.com/", "news.example.com"),
])
def test_tag_authority(base_url, authority):
    assert loader.tag_authority(base_url) == authority
    assert TAG_URI.fullmatch(loader.tag_uri(base_url, "feeds/all"))


@pytest.mark.parametrize("base_url, reason", [
    ("http://[::1/", "must be an absolute http(s) URL"),
    ("http://[v1.fe]/", "[v1.fe] is not an IPv6 address"),
    ("http://[127.0.0.1]/", "must be an absolute http(s) URL"),     # urlsplit refuses it
    ("http://a..b.ü/", "is not a valid internationalized domain name"),
    ("http://:8000/", "no host"),
])
def test_base_url_without_a_usable_host_is_an_error_naming_site_yml(data, base_url, reason):
    data.site(base_url=base_url)
    with pytest.raises(DataError) as info:
        Library(str(data.root)).load()
    assert info.value.path == "site.yml" and "'base_url'" in info.value.message
    assert reason in info.value.message


@pytest.mark.parametrize("base_url, authority", [
    ("http://[::1]:8000/", LOOPBACK6),
    ("https://Bücher.example/", "xn--bcher-kva.example"),
    ("https://NEWS.example.com:8443/", "news.example.com"),
])
def test_feed_and_entry_ids_name_the_host_alike(make_app, data, base_url, authority):
    data.article("2024/story", title="Story", categories=["World"])
    data.article("other", title="Other", authors=["Someone Else"])
    app = make_app(data.root, base_url=base_url)
    ids = ids_of(app)
    assert ids["feeds/all.atom"] == (f"tag:{authority},2000:feeds/all",
                                     [f"tag:{authority},2000:2024/story",
                                      f"tag:{authority},2000:other"])
    for path, (feed_id, entry_ids) in ids.items():
        if path.endswith(".atom"):
            assert feed_id == f"tag:{authority},2000:{path[:-len('.atom')]}"
        for i in [feed_id, *entry_ids] if feed_id else entry_ids:
            assert TAG_URI.fullmatch(i), (path, i)
            assert i.startswith(f"tag:{authority},2000:")


@pytest.mark.parametrize("base_url, host", [
    (None, "127.0.0.1"),                                # the bundled site.yml
    ("https://ifpnews.example/", "ifpnews.example"),
    ("https://news.example.com:8443/sub/", "news.example.com"),
    ("http://localhost:8000/", "localhost"),
])
def test_bundled_ids_are_unchanged(make_app, base_url, host):
    """Ids of existing sites must not move: they are what readers tell entries apart by.
    Entry ids are tag:<host>,2000:<path below articles/ without .md>, feed ids
    tag:<host>,2000:<feed path without extension>, as every release made them."""
    app = make_app(ROOT / "data", **({"base_url": base_url} if base_url else {}))
    ids = ids_of(app)
    stems = {str(p.relative_to(ROOT / "data/articles"))[:-3]
             for p in (ROOT / "data/articles").rglob("*.md")
             if b"draft: true" not in p.read_bytes()}
    seen = set()
    for path, (feed_id, entry_ids) in ids.items():
        if path.endswith(".atom"):
            assert feed_id == f"tag:{host},2000:{path[:-5]}"
        for i in entry_ids:
            assert i.startswith(f"tag:{host},2000:") and i[len(f"tag:{host},2000:"):] in stems
            seen.add(i)
    assert seen == {f"tag:{host},2000:{stem}" for stem in stems}
    if base_url is None:
        assert ids["feeds/all.atom"][1][-1] == ("tag:127.0.0.1,2000:2015/rouhani-urges-iran-"
                                                "turkey-cooperation-on-anti-terrorism-fight")


# -- category and author names ----------------------------------------------------------------

def load(data):
    return Library(str(data.root)).load()


def category_slugs(corpus) -> dict[str, str]:
    return {slug: c.name for slug, c in corpus.categories.items()}


def test_c_cpp_and_csharp_are_three_categories(data):
    data.article("c", categories=["C"])
    data.article("cpp", categories=["C++"])
    data.article("csharp", categories=["C#"])
    data.article("both", categories=["c", "c ++"])
    corpus = load(data)
    assert category_slugs(corpus) == {"c": "C", "c-plus-plus": "C++", "c-sharp": "C#"}
    by_path = {a.path: [c.slug for c in corpus.categories_of(a)] for a in corpus.articles}
    assert by_path == {"articles/c.md": ["c"], "articles/cpp.md": ["c-plus-plus"],
                       "articles/csharp.md": ["c-sharp"],
                       "articles/both.md": ["c", "c-plus-plus"]}
    warnings = sorted(e.message for e in corpus.errors if e.warning)
    assert warnings == [
        "category 'C#' and 'C' share the slug 'c'; 'C#' is published as 'c-sharp'",
        "category 'C++' and 'C' share the slug 'c'; 'C++' is published as 'c-plus-plus'"]
    assert not [e for e in corpus.errors if not e.warning]


@pytest.mark.parametrize("names", [
    ["Hard News", "hard-news", "HARD NEWS!", "hard_news", " Hard   News. "],
    ["Middle East", "middle-east", "Middle_East", "MIDDLE EAST?!", "Middle—East"],
    ["Café", "Cafe\u0301", "CAFÉ!"],            # composed or not, one name
    ["Women's Rights", "Womens Rights", "women’s rights"],
])
def test_names_differing_in_case_spacing_and_punctuation_stay_one(data, names):
    for i, name in enumerate(names):
        data.article(f"a{i}", categories=[name], authors=[name])
    corpus = load(data)
    assert len(corpus.categories) == 1 and corpus.errors == []
    assert len(corpus.authors) == 2                     # Jane Doe's file, and this one


@pytest.mark.parametrize("first, second", [
    ("C", "C++"), ("C", "C#"), ("AT&T", "ATT"), ("R&D", "R D"), ("100%", "100"),
    ("A*", "A"), ("$100", "100"), ("@home", "home"), ("a=b", "ab"), ("5€", "5"),
    ("1 + 1", "11"),
])
def test_a_meaningful_symbol_makes_another_category_and_author(data, first, second):
    data.article("a", categories=[first], authors=[first])
    data.article("b", categories=[second], authors=[second])
    corpus = load(data)
    assert sorted(c.name for c in corpus.categories.values()) == sorted([first, second])
    assert {first, second} <= {p.name for p in corpus.authors.values()}
    for a, name in (("articles/a.md", first), ("articles/b.md", second)):
        art = next(x for x in corpus.articles if x.path == a)
        assert [c.name for c in corpus.categories_of(art)] == [name]
        assert [p.name for p in corpus.authors_of(art)] == [name]
    slugs = list(corpus.categories)
    assert len(set(slugs)) == 2 and all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s)
                                        for s in slugs)


def test_a_symbol_name_keeps_its_plain_slug_while_no_other_name_asks_for_it(data):
    """The trade-off that keeps today's URLs: `C++` alone is /category/c/ as before; a
    `C` arriving later takes `c` and `C++` moves to `c-plus-plus` (with a warning)."""
    data.article("cpp", categories=["C++"])
    lib = Library(str(data.root))
    assert category_slugs(lib.load()) == {"c": "C++"}
    data.article("c", categories=["C"])
    assert category_slugs(lib.load()) == {"c": "C", "c-plus-plus": "C++"}


def test_spelled_out_slug_taken_too_falls_back_to_a_number(data):
    data.article("a", categories=["C", "C plus plus", "C++"])
    corpus = load(data)
    assert category_slugs(corpus) == {"c": "C", "c-plus-plus": "C plus plus", "c-2": "C++"}


def test_author_names_with_symbols(data):
    data.author("at-t", name="AT&T Newsroom")
    data.article("a", authors=["AT&T Newsroom"])
    data.article("b", authors=["ATT Newsroom"])
    data.article("c", authors=["at&t  newsroom!"])
    corpus = load(data)
    by_path = {a.path: [p.slug for p in corpus.authors_of(a)] for a in corpus.articles}
    assert by_path == {"articles/a.md": ["at-t"], "articles/b.md": ["att-newsroom"],
                       "articles/c.md": ["at-t"]}
