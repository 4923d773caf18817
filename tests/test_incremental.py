"""Incremental refreshes: an article edited in place is swapped into the last corpus, and
only the scopes it is in get new recipes.  After every edit, what the incremental path
publishes must be byte for byte what a fresh library and publisher make of the files."""
from __future__ import annotations

import datetime as dt

import pytest

from feedsvc import publish
from feedsvc.cache import Cache
from feedsvc.corpus import Library

NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


class Live:
    """A library and a publisher kept across loads, as live.Service keeps them."""

    def __init__(self, root: str):
        self.root = root
        self.library = Library(root)
        self.publisher = publish.Publisher(Cache(None))
        self.documents: dict = {}
        self.corpus = None

    def refresh(self, now: dt.datetime = NOW):
        self.corpus = self.library.load()
        self.documents = self.publisher.build(self.corpus, now, self.documents)
        return self.corpus


def fresh(root: str, now: dt.datetime = NOW):
    """A fresh start, as another process would make it."""
    corpus = Library(root).load()
    return corpus, publish.Publisher(Cache(None)).build(corpus, now)


def assert_same_as_fresh(live: Live, now: dt.datetime = NOW) -> None:
    corpus, documents = fresh(live.root, now)
    assert live.corpus.articles == corpus.articles
    assert live.corpus.errors == corpus.errors
    assert (live.corpus.authors, live.corpus.categories) == (corpus.authors, corpus.categories)
    assert sorted(live.documents) == sorted(documents)
    for path, doc in documents.items():
        assert (live.documents[path].etag, live.documents[path].gzip) == \
            (doc.etag, doc.gzip), path


@pytest.fixture
def site(data):
    data.write("categories.yml", '"World": "The world."\n"Quiet": "Described, never used."\n')
    for i in range(24):
        day = 1 + i % 28
        data.article(f"a{i:02d}", title=f"Article {i}", date=f"2024-11-{day:02d}T10:{i:02d}:00Z",
                     categories=["World"] if i % 2 else ["Science", "World"],
                     authors=["Jane Doe"] if i % 3 else ["Omid Rahimi"],
                     slug=f"article-{i}")
    data.article("later", title="Scheduled", date="2025-03-01T00:00:00Z",
                 categories=["Embargoed"], slug="later")
    data.article("draft", title="Draft", draft=True, slug="draft")
    return data


def test_a_retitle_is_patched_and_publishes_what_a_fresh_start_does(site):
    live = Live(str(site.root))
    live.refresh()
    before = dict(live.documents)
    site.article("a06", title="Article 6, retitled", date="2024-11-07T10:06:00Z",
                 categories=["Science", "World"], authors=["Omid Rahimi"], slug="article-6")
    corpus = live.refresh()
    assert corpus.patched_from is not None and len(corpus.swaps) == 1      # the patch path
    assert live.publisher.recipes.last.affected == {("site", ""), ("category", "science"),
                                             ("category", "world"), ("author", "omid-rahimi")}
    assert_same_as_fresh(live)
    rebuilt = {p for p, d in live.documents.items() if before[p] is not d}
    scopes = ["all", "category/science", "category/world", "author/omid-rahimi"]
    # a page's recipe is what it lists: the subscribe pages preview five newer articles,
    # so none of them is made again (a fresh start gives the same bytes: checked above)
    assert rebuilt == {"", "category/science/", "category/world/", "author/omid-rahimi/"} | {
        f"feeds/{scope}.{fmt}" for scope in scopes for fmt in ("rss", "atom", "json")}


@pytest.mark.parametrize("edit, patched", [
    ({"date": "2024-10-01T09:00:00Z"}, True),                   # moves down the order
    ({"date": "2024-11-30T23:00:00Z"}, True),                   # moves to the top
    ({"updated": "2024-12-31T00:00:00Z"}, True),               # the newest update now
    ({"summary": "A new summary."}, True),
    ({"date": "2024-11-08T13:37:00+03:30"}, True),              # the same instant, new offset
    ({"categories": ["World", "Culture"]}, False),              # a new category
    ({"authors": ["Someone New"]}, False),
    ({"slug": "renamed"}, False),
    ({"draft": True}, False),
    ({"date": "2025-06-01T00:00:00Z"}, True),                   # scheduled: leaves the feeds
])
def test_every_kind_of_edit_publishes_what_a_fresh_start_does(site, edit, patched):
    live = Live(str(site.root))
    live.refresh()
    fields = {"title": "Article 7", "date": "2024-11-08T10:07:00Z", "categories": ["World"],
              "authors": ["Jane Doe"], "slug": "article-7", **edit}
    site.article("a07", **fields)
    corpus = live.refresh()
    assert (corpus.patched_from is not None) == patched
    assert_same_as_fresh(live)


def test_a_run_of_edits_stays_what_a_fresh_start_makes(site):
    """Patches on patches, two files at once, a scheduled article, a typo and its fix."""
    live = Live(str(site.root))
    live.refresh()
    steps = [
        lambda: site.article("a03", title="Three", date="2024-11-04T10:03:00Z",
                             categories=["World"], authors=["Omid Rahimi"], slug="article-3"),
        lambda: (site.article("a10", title="Ten", date="2024-09-01T00:00:00Z",
                              categories=["Science", "World"], authors=["Jane Doe"],
                              slug="article-10"),
                 site.article("a11", title="Eleven", date="2024-11-12T10:11:00Z",
                              categories=["World"], authors=["Jane Doe"], slug="article-11",
                              updated="2024-12-30T00:00:00Z")),
        lambda: site.article("later", title="Scheduled, edited", date="2025-03-01T00:00:00Z",
                             categories=["Embargoed"], slug="later"),
        lambda: site.write("articles/a03.md", "---\ntitle: [unclosed\n---\nbody\n"),
        lambda: site.article("a03", title="Three again", date="2024-11-04T10:03:00Z",
                             categories=["World"], authors=["Omid Rahimi"], slug="article-3"),
        lambda: site.article("a03", title="Three, once more", date="2024-11-04T10:03:00Z",
                             categories=["World"], authors=["Omid Rahimi"], slug="article-3"),
    ]
    patched = []
    for i, step in enumerate(steps):
        step()
        patched.append(live.refresh().patched_from is not None)
        if i == 3:      # a fresh start knows no last good version of the broken file
            assert [a.title for a in live.corpus.articles if a.slug == "article-3"] == ["Three"]
        else:
            assert_same_as_fresh(live)
    assert patched == [True, True, True, False, False, True]


def test_an_article_going_live_with_an_edit_rebuilds_in_full(site):
    live = Live(str(site.root))
    live.refresh()
    site.article("a01", title="Edited as the scheduled one goes live",
                 date="2024-11-02T10:01:00Z", categories=["World"], authors=["Jane Doe"],
                 slug="article-1")
    later = dt.datetime(2025, 3, 2, tzinfo=dt.UTC)
    live.corpus = live.library.load()
    assert live.corpus.patched_from is not None
    live.documents = live.publisher.build(live.corpus, later, live.documents)
    assert "feeds/category/embargoed.rss" in live.documents
    assert_same_as_fresh(live, later)


def test_a_checkpoint_does_not_carry_the_corpus_a_patch_came_from(site):
    import pickle

    live = Live(str(site.root))
    live.refresh()
    site.article("a02", title="Two", date="2024-11-03T10:02:00Z",
                 categories=["Science", "World"], authors=["Jane Doe"], slug="article-2")
    corpus = live.refresh()
    assert corpus.patched_from is not None
    again = pickle.loads(pickle.dumps(corpus))
    assert again.patched_from is None and again.swaps == () and again.serial != corpus.serial
    assert again.articles == corpus.articles


def test_new_site_settings_remake_listing_lines_and_body_keys(site, tmp_path):
    """Listing lines and body keys are kept with the values they are made from, not by
    article object: a new time zone or base URL (each article the same file with the
    same bytes) publishes what a fresh start does, and so does going back.  (A body
    cached under a stale key would keep links resolved against the old base URL.)"""
    site.article("linked", "See [the about page](/about/).\n", title="Linked",
                 date="2024-12-01T10:00:00Z", categories=["World"], slug="linked")
    live = Live(str(site.root))
    live.publisher = publish.Publisher(Cache(str(tmp_path / "state")))
    live.refresh()
    for settings in ({"timezone": "Europe/London"}, {"base_url": "https://other.example.org/"},
                     {}):
        site.site(**settings)
        live.refresh()
        assert_same_as_fresh(live)


def test_a_retitle_remakes_only_the_list_page_that_shows_it(data):
    data.site(page_size=2)
    for i in range(8):      # World, newest first: a07 a06 | a05 a04 | a03 a02 | a01 a00
        data.article(f"a{i:02d}", title=f"Article {i}", date=f"2024-11-0{i + 1}T10:00:00Z",
                     categories=["World"], slug=f"article-{i}")
    live = Live(str(data.root))
    live.refresh()
    before = dict(live.documents)
    data.article("a02", title="Article 2, retitled", date="2024-11-03T10:00:00Z",
                 categories=["World"], slug="article-2")
    live.refresh()
    assert_same_as_fresh(live)
    rebuilt = {p for p, d in live.documents.items() if before[p] is not d}
    assert "category/world/page/3/" in rebuilt
    assert not {"category/world/", "category/world/page/2/", "category/world/page/4/",
                "category/world/subscribe/"} & rebuilt          # (it previews a07-a03)


def test_a_slug_freed_by_a_deletion_reaches_the_feeds_of_the_article_keeping_it(data):
    """Two files ask for one slug; deleting the holder gives the other its plain slug, and
    so a new link in its feeds, though its own file did not change (an entry's recipe
    holds its slug)."""
    data.article("2015/roundup", title="A", date="2015-01-01T00:00:00Z", categories=["One"])
    data.article("2016/roundup", title="B", date="2016-01-01T00:00:00Z", categories=["Two"])
    live = Live(str(data.root))
    live.refresh()
    assert {a.slug for a in live.corpus.articles} == {"roundup", "2016-roundup"}
    data.remove("articles/2015/roundup.md")
    live.refresh()
    assert [a.slug for a in live.corpus.articles] == ["roundup"]
    assert_same_as_fresh(live)
