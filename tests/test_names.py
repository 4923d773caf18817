"""Issue 11, "nothing valid vanishes or merges": entry and feed ids from one parse of
base_url, names that differ by a meaningful symbol, and articles that ask for one slug."""
from __future__ import annotations

import datetime as dt
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


# -- articles asking for one slug --------------------------------------------------------------

def slugs(corpus) -> dict[str, str]:
    return {a.path: a.slug for a in corpus.articles}


def warnings_of(corpus, rel: str) -> list[str]:
    return [e.message for e in corpus.errors if e.path == rel and e.warning]


def roundup(data, year: str, date: str, folder: str = "", **fm):
    fm.setdefault("title", f"Weekly roundup {year}")
    return data.article(f"{folder}{year}/weekly-roundup", date=date, **fm)


def test_same_name_in_two_year_folders_both_published(make_app, data):
    roundup(data, "2015", "2015-12-25T10:00:00Z")
    roundup(data, "2016", "2016-12-30T10:00:00Z")
    app = make_app(data.root)
    feed = feeds_of(app)["feeds/all.atom"]
    assert {(e.id, e.link, e.title) for e in feed.entries} == {
        ("tag:news.example.com,2000:2015/weekly-roundup",
         "https://news.example.com/articles/weekly-roundup/", "Weekly roundup 2015"),
        ("tag:news.example.com,2000:2016/weekly-roundup",
         "https://news.example.com/articles/2016-weekly-roundup/", "Weekly roundup 2016")}
    client = app.test_client()
    for page, title in (("weekly-roundup", b"Weekly roundup 2015"),
                        ("2016-weekly-roundup", b"Weekly roundup 2016")):
        resp = client.get(f"/articles/{page}/")
        assert resp.status_code == 200 and title in resp.data
    health = client.get("/healthz").get_json()
    assert health["errors"] == [{
        "path": "articles/2016/weekly-roundup.md", "level": "warning",
        "message": "slug 'weekly-roundup' is also asked for by articles/2015/weekly-roundup.md, "
                   "which keeps it (its date is earlier); this article is published as "
                   "'2016-weekly-roundup' (set 'slug' to choose another)"}]


def test_the_earliest_date_keeps_the_plain_slug_then_the_path(data):
    roundup(data, "2015", "2017-01-01T10:00:00Z")      # the 2015 folder, dated later
    roundup(data, "2016", "2016-12-30T10:00:00Z")
    assert slugs(load(data)) == {"articles/2016/weekly-roundup.md": "weekly-roundup",
                                 "articles/2015/weekly-roundup.md": "2015-weekly-roundup"}
    roundup(data, "2015", "2016-12-30T10:00:00Z")      # the same date: the path decides
    assert slugs(load(data)) == {"articles/2015/weekly-roundup.md": "weekly-roundup",
                                 "articles/2016/weekly-roundup.md": "2016-weekly-roundup"}


def test_a_file_arriving_later_never_moves_a_published_slug(data, tmp_path):
    """A backdated third file asks for the slug too: the articles already published keep
    theirs, in this process, after a restart from the record cache and from a checkpoint;
    the new one gets its own folder's slug."""
    from feedsvc.cache import Cache

    roundup(data, "2015", "2015-12-25T10:00:00Z")
    roundup(data, "2016", "2016-12-30T10:00:00Z")
    state = str(tmp_path / "state")
    cache = Cache(state)
    lib = Library(str(data.root), cache=cache)
    before = slugs(lib.load())
    roundup(data, "2014", "2014-12-26T10:00:00Z")      # earlier than both
    want = {**before, "articles/2014/weekly-roundup.md": "2014-weekly-roundup"}
    corpus = lib.load()
    assert slugs(corpus) == want
    assert warnings_of(corpus, "articles/2014/weekly-roundup.md") == [
        "slug 'weekly-roundup' is also asked for by articles/2015/weekly-roundup.md, which "
        "keeps it (it was published with it first); this article is published as "
        "'2014-weekly-roundup' (set 'slug' to choose another)"]
    state_of_lib = lib.state()
    cache.close()
    restarted = Library(str(data.root), cache=Cache(state))
    assert slugs(restarted.load()) == want
    resumed = Library(str(data.root), cache=Cache(state))
    assert resumed.adopt(state_of_lib)
    assert slugs(resumed.load()) == want
    # the trade-off: a fresh start with no state gives the plain slug to the earliest date
    assert slugs(load(data))["articles/2014/weekly-roundup.md"] == "weekly-roundup"


def test_a_fallback_slug_stays_when_a_file_asks_for_it_later(data, tmp_path):
    """2016's fallback is 2016-weekly-roundup; a new file named that way asks for it as its
    own slug later, dated earlier: 2016 keeps it, also after a restart from the cache."""
    from feedsvc.cache import Cache

    roundup(data, "2015", "2015-12-25T10:00:00Z")
    roundup(data, "2016", "2016-12-30T10:00:00Z")
    state = str(tmp_path / "state")
    cache = Cache(state)
    lib = Library(str(data.root), cache=cache)
    lib.load()
    data.article("2016-weekly-roundup", title="Squatter", date="2010-01-01T00:00:00Z")
    corpus = lib.load()
    got = slugs(corpus)
    assert got["articles/2016/weekly-roundup.md"] == "2016-weekly-roundup"
    assert got["articles/2015/weekly-roundup.md"] == "weekly-roundup"
    assert re.fullmatch(r"2016-weekly-roundup-[0-9a-f]{6}", got["articles/2016-weekly-roundup.md"])
    assert len(set(got.values())) == 3
    cache.close()
    assert slugs(Library(str(data.root), cache=Cache(state)).load()) == got


def test_fallbacks_go_up_the_folders_then_to_a_hash_of_the_path(data):
    for folder in ("", "desk/", "other/"):
        roundup(data, "2016", "2016-12-30T10:00:00Z", folder=folder)
    roundup(data, "2015", "2015-12-25T10:00:00Z")
    got = slugs(load(data))
    assert got["articles/2015/weekly-roundup.md"] == "weekly-roundup"
    assert got["articles/2016/weekly-roundup.md"] == "2016-weekly-roundup"
    assert got["articles/desk/2016/weekly-roundup.md"] == "desk-2016-weekly-roundup"
    assert got["articles/other/2016/weekly-roundup.md"] == "other-2016-weekly-roundup"
    data.article("a", slug="story")
    data.article("b", slug="Story")
    got = slugs(load(data))                             # no folder: a hash of the path
    assert got["articles/a.md"] == "story"
    assert re.fullmatch(r"story-[0-9a-f]{6}", got["articles/b.md"])
    assert got["articles/b.md"] == slugs(load(data))["articles/b.md"]


def test_when_the_holder_goes_the_other_takes_the_plain_slug(data):
    roundup(data, "2015", "2015-12-25T10:00:00Z")
    roundup(data, "2016", "2016-12-30T10:00:00Z")
    lib = Library(str(data.root))
    lib.load()
    data.remove("articles/2015/weekly-roundup.md")
    corpus = lib.load()                                 # as a fresh start makes it
    assert slugs(corpus) == {"articles/2016/weekly-roundup.md": "weekly-roundup"}
    assert corpus.errors == []


def test_duplicate_id_names_the_file_that_keeps_it(data):
    data.article("b", id="urn:x", date="2024-10-27T13:00:00Z")
    data.article("a", id="urn:x", date="2024-10-28T13:00:00Z")
    corpus = load(data)
    assert [a.path for a in corpus.articles] == ["articles/b.md"]
    assert [e.message for e in corpus.errors] == [
        "duplicate id 'urn:x': articles/b.md keeps it (its date is earlier); this file is "
        "left out of every feed until you give it another 'id'"]
    assert not corpus.errors[0].warning


def test_an_edit_onto_a_taken_id_keeps_the_last_good_version(data):
    data.article("a", id="urn:a", title="A")
    data.article("b", id="urn:b", title="B")
    lib = Library(str(data.root))
    lib.load()
    data.article("a", id="urn:b", title="A edited")
    corpus = lib.load()
    assert {a.path: a.title for a in corpus.articles} == {"articles/a.md": "A",
                                                         "articles/b.md": "B"}
    assert [e.message for e in corpus.errors] == [
        "duplicate id 'urn:b': articles/b.md keeps it (it was published with it first); this "
        "edit is not published, its last good version stays, until you give it another 'id'"]


def test_edits_to_articles_sharing_a_slug_publish_what_a_fresh_start_does(data):
    """The incremental path (Library._patched) swaps the holder's edits in; the renamed
    article's edits take the full path; both end where a fresh start does."""
    from feedsvc import publish
    from feedsvc.cache import Cache

    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    roundup(data, "2015", "2015-12-25T10:00:00Z", categories=["Weekly"])
    roundup(data, "2016", "2016-12-30T10:00:00Z", categories=["Weekly"])
    lib, publisher = Library(str(data.root)), publish.Publisher(Cache(None))
    documents = publisher.build(lib.load(), now)
    edits = [("2015", {"title": "Edited 2015"}, True),
             ("2016", {"title": "Edited 2016"}, False),
             ("2015", {"title": "Edited 2015 again", "date": "2016-01-01T00:00:00Z"}, True),
             ("2016", {"title": "Edited 2016 again", "summary": "New."}, False)]
    for year, fields, patched in edits:
        date = fields.pop("date", "2015-12-25T10:00:00Z" if year == "2015"
                          else "2016-12-30T10:00:00Z")
        roundup(data, year, date, categories=["Weekly"], **fields)
        corpus = lib.load()
        assert (corpus.patched_from is not None) == patched, year
        documents = publisher.build(corpus, now, documents)
        fresh = Library(str(data.root)).load()
        assert corpus.articles == fresh.articles and corpus.errors == fresh.errors
        made = publish.Publisher(Cache(None)).build(fresh, now)
        assert {p: d.etag for p, d in documents.items()} == {p: d.etag for p, d in made.items()}


def test_slug_clash_warnings_name_the_file_that_brought_the_name(data):
    """A category or author warning points at the first article (in path order) that uses
    the losing spelling, or at categories.yml when that file names it: never at a file
    that does not exist (no categories.yml here) or at a folder."""
    data.article("b-first", categories=["C"], authors=["Ann Lee"])
    data.article("a/z-cpp", categories=["C++"], authors=["Ann-Lee"])
    data.article("c-cpp", categories=["C++"], authors=["Ann Lee!"])
    data.article("a/y-cpp", categories=["C++", "World"], authors=["Ann+Lee"])
    data.article("d-csharp", categories=["C#"], authors=["Ann+Lee"])
    corpus = load(data)
    assert not (data.root / "categories.yml").exists()
    warnings = sorted((e.path, e.message) for e in corpus.errors if e.warning)
    assert warnings == [
        ("articles/a/y-cpp.md", "author 'Ann+Lee' and 'Ann Lee' share the slug 'ann-lee'; "
                                "'Ann+Lee' is published as 'ann-plus-lee'"),
        ("articles/a/y-cpp.md", "category 'C++' and 'C' share the slug 'c'; "
                                "'C++' is published as 'c-plus-plus'"),
        ("articles/d-csharp.md", "category 'C#' and 'C' share the slug 'c'; "
                                 "'C#' is published as 'c-sharp'")]
    for path, _ in warnings:
        assert (data.root / path).is_file()

    data.write("categories.yml", '"C#": "The language."\n')
    warnings = sorted((e.path, e.message) for e in load(data).errors if e.warning)
    assert [p for p, m in warnings if "'C#'" in m] == ["categories.yml"]
