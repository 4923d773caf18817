"""The corpus a Library assembles from real files: slugs, authors, last good versions,
duplicates, drafts, scheduling and stable ids."""
from __future__ import annotations

import datetime as dt
import os
import re
import time

import pytest

from feedsvc.corpus import Library, name_key
from feedsvc.model import DataError

UTC = dt.UTC


def load(data, **kw):
    return Library(str(data.root), **kw).load()


def paths(corpus) -> set[str]:
    return {a.path for a in corpus.articles}


def article(corpus, rel: str):
    found = [a for a in corpus.articles if a.path == rel]
    assert len(found) == 1, sorted(paths(corpus))
    return found[0]


def messages(corpus, rel: str) -> list[str]:
    return [e.message for e in corpus.errors if e.path == rel]


def real_errors(corpus) -> list[DataError]:
    return [e for e in corpus.errors if not e.warning]


# -- categories ---------------------------------------------------------------------------------

def test_names_differing_in_case_spacing_punctuation_are_one_category(data):
    data.article("a", categories=["Hard News"])
    data.article("b", categories=["hard-news"])
    data.article("c", categories=["HARD  NEWS!"])
    data.article("d", categories=["Hard News", "Middle East"])
    corpus = load(data)
    assert corpus.errors == []
    assert sorted(corpus.categories) == ["hard-news", "middle-east"]
    cat = corpus.categories["hard-news"]
    assert cat.name == "Hard News"                      # the most used spelling
    for a in corpus.articles:
        assert cat in corpus.categories_of(a)
    assert {name_key(n) for n in ("Hard News", "hard-news", "HARD  NEWS!")} == {"hardnews"}


def test_one_article_listing_two_spellings_has_the_category_once(data):
    data.article("a", categories=["Hard News", "hard-news", "World"], authors=["Jane Doe",
                                                                             "JANE  DOE"])
    corpus = load(data)
    art = corpus.articles[0]
    assert [c.slug for c in corpus.categories_of(art)] == ["hard-news", "world"]
    assert [p.slug for p in corpus.authors_of(art)] == ["jane-doe"]


def test_display_name_tie_is_deterministic_and_categories_file_spells_it(data):
    data.article("a", categories=["hard-news"])
    data.article("b", categories=["Hard News"])
    assert load(data).categories["hard-news"].name == "Hard News"   # tie: sorted order
    data.write("categories.yml", "HARD news:\n  description: Breaking stories.\n"
                                 "Empty Category: nobody uses it yet\n")
    corpus = load(data)
    assert corpus.categories["hard-news"].name == "HARD news"
    assert corpus.categories["hard-news"].description == "Breaking stories."
    assert corpus.categories["empty-category"].description == "nobody uses it yet"


def test_persian_category_gets_an_ascii_slug(data):
    data.article("a", categories=["اخبار سیاسی", "World"])
    data.article("b", categories=["اخبار  سیاسی"])
    corpus = load(data)
    assert corpus.errors == []
    persian = [c for c in corpus.categories.values() if c.name == "اخبار سیاسی"]
    assert len(persian) == 1
    slug = persian[0].slug
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug), slug
    assert corpus.categories[slug] is persian[0]
    for a in corpus.articles:
        assert persian[0] in corpus.categories_of(a)


@pytest.mark.parametrize("first, second", [("Café", "Cafe"), ("Cafe", "Café")])
def test_two_names_one_slug_are_disambiguated_with_a_warning(data, first, second):
    data.article("a", categories=[first])
    data.article("b", categories=[second])
    corpus = load(data)
    assert real_errors(corpus) == []
    assert {s: c.name for s, c in corpus.categories.items()} == {"cafe": "Cafe",
                                                                 "cafe-2": "Café"}
    warnings = [e for e in corpus.errors if e.warning]
    assert len(warnings) == 1
    w = warnings[0]
    assert w.as_dict()["level"] == "warning"
    assert "'Café'" in w.message and "'Cafe'" in w.message and "'cafe-2'" in w.message
    by_path = {a.path: [c.slug for c in corpus.categories_of(a)] for a in corpus.articles}
    assert by_path["articles/a.md"] == (["cafe-2"] if first == "Café" else ["cafe"])


def test_disambiguation_does_not_depend_on_load_history(data):
    data.article("a", categories=["Café"])
    lib = Library(str(data.root))
    assert list(lib.load().categories) == ["cafe"]       # alone it has the plain slug
    data.article("b", categories=["Cafe"])
    assert {s: c.name for s, c in lib.load().categories.items()} == \
        {s: c.name for s, c in load(data).categories.items()} == {"cafe": "Cafe",
                                                                  "cafe-2": "Café"}


def test_three_way_slug_collision(data):
    data.article("a", categories=["Café", "Cafe", "CAFÉ!", "Cafè"])
    corpus = load(data)
    assert sorted(corpus.categories) == ["cafe", "cafe-2", "cafe-3"]
    assert len([e for e in corpus.errors if e.warning]) == 2


# -- authors ------------------------------------------------------------------------------------

def test_author_names_resolve_to_author_files(data):
    data.author("jd", name="Jamshid Dehghan", bio="Tehran desk.", email="jd@example.com")
    data.article("a", authors=["Jane Doe", "Jamshid Dehghan"])
    data.article("b", author="jane doe")
    data.article("c", authors=["JAMSHID  DEHGHAN."])
    corpus = load(data)
    assert corpus.errors == []
    assert sorted(corpus.authors) == ["jane-doe", "jd"]
    jane, jd = corpus.authors["jane-doe"], corpus.authors["jd"]
    assert (jane.name, jane.bio, jane.url) == ("Jane Doe", "Jane covers the world.",
                                               "https://jane.example.org/")
    assert (jd.name, jd.slug, jd.email) == ("Jamshid Dehghan", "jd", "jd@example.com")
    assert corpus.authors_of(article(corpus, "articles/a.md")) == [jane, jd]
    assert corpus.authors_of(article(corpus, "articles/b.md")) == [jane]
    assert corpus.authors_of(article(corpus, "articles/c.md")) == [jd]


def test_unknown_author_names_become_implicit_authors(data):
    data.article("a", authors=["John Smith", "Jane Doe"])
    data.article("b", authors=["john smith"])
    data.article("c", authors=["John Smith"])
    data.article("d", authors=["مریم احمدی"])
    corpus = load(data)
    assert corpus.errors == []
    john = corpus.authors["john-smith"]
    assert (john.name, john.slug, john.bio) == ("John Smith", "john-smith", "")
    persian = [p for p in corpus.authors.values() if p.name == "مریم احمدی"]
    assert len(persian) == 1 and persian[0].slug.isascii() and persian[0].slug
    assert corpus.authors_of(article(corpus, "articles/b.md")) == [john]
    assert [p.slug for p in corpus.authors_of(article(corpus, "articles/a.md"))] == \
        ["john-smith", "jane-doe"]


def test_implicit_author_never_takes_an_author_files_slug(data):
    data.author("john-smith", name="Johnny S.")
    data.article("a", authors=["John Smith", "Johnny S."])
    corpus = load(data)
    assert corpus.authors["john-smith"].name == "Johnny S."
    implicit = [p for p in corpus.authors.values() if p.name == "John Smith"]
    assert len(implicit) == 1 and implicit[0].slug != "john-smith"
    assert [p.name for p in corpus.authors_of(corpus.articles[0])] == ["John Smith",
                                                                      "Johnny S."]


def test_implicit_authors_with_one_slug_are_disambiguated(data):
    data.article("a", authors=["Zoë Roe", "Zoe Roe"])
    corpus = load(data)
    assert {s: p.name for s, p in corpus.authors.items() if s != "jane-doe"} == \
        {"zoe-roe": "Zoe Roe", "zoe-roe-2": "Zoë Roe"}
    assert any(e.warning for e in corpus.errors)


def test_authors_only_from_published_articles(data):
    data.article("a", authors=["Draft Writer"], draft=True)
    corpus = load(data)
    assert sorted(corpus.authors) == ["jane-doe"]           # files always count


def test_two_author_files_with_one_name(data):
    data.write("authors/jane.yaml", "name: jane doe\n")
    data.article("a")
    corpus = load(data)
    assert corpus.authors["jane-doe"].bio == "Jane covers the world."
    assert "jane" not in corpus.authors
    msgs = messages(corpus, "authors/jane.yaml")           # the real file name, .yaml
    assert len(msgs) == 1 and "authors/jane-doe.yml" in msgs[0], \
        [str(e) for e in corpus.errors]


# -- last good version ----------------------------------------------------------------------------

def test_article_turning_invalid_keeps_its_last_good_version(data):
    data.article("story", title="Old Title")
    lib = Library(str(data.root))
    assert article(lib.load(), "articles/story.md").title == "Old Title"

    data.article("story", title="New Title")
    assert article(lib.load(), "articles/story.md").title == "New Title"

    data.write("articles/story.md", "---\ntitle: [Broken\n---\nBody\n")
    for _ in range(2):                                       # stays so on an idle rescan
        corpus = lib.load()
        assert article(corpus, "articles/story.md").title == "New Title"
        msgs = messages(corpus, "articles/story.md")
        assert len(msgs) == 1 and msgs[0].startswith("invalid YAML")

    data.article("story", title="Fixed Title")
    corpus = lib.load()
    assert article(corpus, "articles/story.md").title == "Fixed Title"
    assert corpus.errors == []

    data.remove("articles/story.md")
    corpus = lib.load()
    assert corpus.articles == [] and corpus.errors == []


@pytest.mark.parametrize("breakage", [
    lambda d: d.write("articles/story.md", b"\x00\x00"),
    lambda d: d.write("articles/story.md", b""),
    lambda d: d.article("story", date="yesterday"),
    lambda d: d.article("story", title=None),
    lambda d: d.write("articles/story.md", b"---\ntitle: caf\xe9\n---\n"),
])
def test_every_kind_of_breakage_keeps_the_last_good_version(data, breakage):
    data.article("story", title="Good")
    lib = Library(str(data.root))
    lib.load()
    breakage(data)
    corpus = lib.load()
    assert article(corpus, "articles/story.md").title == "Good"
    assert len(messages(corpus, "articles/story.md")) == 1


def test_deleting_a_broken_article_removes_it_and_its_error(data):
    data.article("story")
    lib = Library(str(data.root))
    lib.load()
    data.write("articles/story.md", b"\x00")
    assert paths(lib.load()) == {"articles/story.md"}
    data.remove("articles/story.md")
    corpus = lib.load()
    assert corpus.articles == [] and corpus.errors == []
    data.write("articles/story.md", b"\x00")                 # back, broken: nothing to keep
    corpus = lib.load()
    assert corpus.articles == [] and len(messages(corpus, "articles/story.md")) == 1


def test_new_invalid_file_is_skipped_then_published_when_fixed(data):
    data.article("good")
    lib = Library(str(data.root))
    lib.load()
    data.article("fresh", date="yesterday")
    corpus = lib.load()
    assert paths(corpus) == {"articles/good.md"}
    assert len(messages(corpus, "articles/fresh.md")) == 1
    data.article("fresh", title="Fresh")
    corpus = lib.load()
    assert paths(corpus) == {"articles/good.md", "articles/fresh.md"}
    assert corpus.errors == []


def test_a_fresh_library_has_no_last_good_version(data):
    data.article("story")
    Library(str(data.root)).load()
    data.write("articles/story.md", b"\x00")
    corpus = load(data)                                      # e.g. after a restart
    assert corpus.articles == []
    assert len(messages(corpus, "articles/story.md")) == 1


def test_unchanged_files_are_not_read_again(data):
    for n in range(3):
        data.article(f"a{n}")
    for f in data.root.rglob("*"):
        os.utime(f, (time.time() - 60,) * 2)      # settled: their signatures are trusted
    lib = Library(str(data.root))
    lib.load()
    reads = lib.reads
    lib.load()
    assert lib.reads == reads
    data.article("a1", title="Edited")
    corpus = lib.load()
    assert lib.reads == reads + 1
    assert article(corpus, "articles/a1.md").title == "Edited"


def test_site_change_reparses_every_article(data):
    data.article("a", date="2024-10-28T13:00:00")
    lib = Library(str(data.root))
    assert lib.load().articles[0].published.isoformat() == "2024-10-28T13:00:00+03:30"
    data.site(timezone="Europe/London", base_url="https://other.example.org/")
    art = lib.load().articles[0]
    assert art.published.isoformat() == "2024-10-28T13:00:00+00:00"
    assert art.id == "tag:other.example.org,2000:a"


# -- duplicates -----------------------------------------------------------------------------------

def test_duplicate_id_the_published_article_wins(data):
    data.article("zz-first", id="urn:uuid:1234")
    lib = Library(str(data.root))
    assert paths(lib.load()) == {"articles/zz-first.md"}
    data.article("aa-later", id="urn:uuid:1234")            # sorts first, but came later
    for _ in range(2):
        corpus = lib.load()
        assert paths(corpus) == {"articles/zz-first.md"}
        msgs = messages(corpus, "articles/aa-later.md")
        assert msgs == ["duplicate id 'urn:uuid:1234': articles/zz-first.md keeps it (it was "
                        "published with it first); this file is left out of every feed until "
                        "you give it another 'id'"]
    assert messages(corpus, "articles/zz-first.md") == []


def test_duplicate_slug_the_published_article_keeps_it(data):
    data.article("2024/zz", slug="the-story")
    lib = Library(str(data.root))
    lib.load()
    data.article("2023/aa", slug="The Story")              # sorts first, but came later
    corpus = lib.load()
    assert {a.path: a.slug for a in corpus.articles} == {"articles/2024/zz.md": "the-story",
                                                        "articles/2023/aa.md": "2023-the-story"}
    assert messages(corpus, "articles/2023/aa.md") == [
        "slug 'the-story' is also asked for by articles/2024/zz.md, which keeps it (it was "
        "published with it first); this article is published as '2023-the-story' (set 'slug' "
        "to choose another)"]
    assert real_errors(corpus) == []


def test_same_file_name_in_two_folders_publishes_both(data):
    data.article("2023/report")
    data.article("2024/report")
    corpus = load(data)
    # both new, the same date: the path decides
    assert {a.path: a.slug for a in corpus.articles} == {"articles/2023/report.md": "report",
                                                        "articles/2024/report.md": "2024-report"}
    assert len(messages(corpus, "articles/2024/report.md")) == 1


def test_skipped_duplicate_is_published_once_the_holder_is_gone(data):
    data.article("b", id="urn:x")
    lib = Library(str(data.root))
    lib.load()
    data.article("a", id="urn:x")
    assert paths(lib.load()) == {"articles/b.md"}
    data.remove("articles/b.md")
    corpus = lib.load()
    assert paths(corpus) == {"articles/a.md"} and corpus.errors == []


def test_editing_a_published_article_onto_anothers_slug_does_not_push_it_out(data):
    data.article("a", slug="alpha")
    data.article("b", slug="beta")
    lib = Library(str(data.root))
    assert paths(lib.load()) == {"articles/a.md", "articles/b.md"}
    data.article("a", slug="beta", title="Now Beta")          # a typo: a claims b's slug
    corpus = lib.load()
    assert article(corpus, "articles/b.md").slug == "beta"   # b, which held it, stays
    assert len(messages(corpus, "articles/a.md")) == 1
    edited = article(corpus, "articles/a.md")                # a is published, elsewhere
    assert edited.title == "Now Beta" and re.fullmatch(r"beta-[0-9a-f]{6}", edited.slug)
    data.article("a", slug="alpha", title="Fixed")
    corpus = lib.load()
    assert corpus.errors == []
    assert {(a.slug, a.title) for a in corpus.articles} == {("alpha", "Fixed"), ("beta", "B")}


def test_broken_holder_keeps_its_slug(data):
    data.article("b", slug="story")
    lib = Library(str(data.root))
    lib.load()
    data.write("articles/b.md", b"\x00")                      # broken: last good version holds
    data.article("a", slug="story")
    corpus = lib.load()
    assert paths(corpus) == {"articles/a.md", "articles/b.md"}
    assert article(corpus, "articles/b.md").slug == "story"
    assert article(corpus, "articles/a.md").slug != "story"
    assert len(messages(corpus, "articles/a.md")) == 1
    assert len(messages(corpus, "articles/b.md")) == 1


def test_draft_holds_its_slug_and_id(data):
    data.article("b", slug="story", draft=True)
    data.article("c", id="urn:c", draft=True)
    data.article("a", slug="story")
    data.article("d", id="urn:c")
    corpus = load(data)
    # both new: the date, then the path decides, whether or not the other is a draft
    assert paths(corpus) == {"articles/a.md"}
    assert article(corpus, "articles/a.md").slug == "story"
    assert len(messages(corpus, "articles/d.md")) == 1
    data.article("b", slug="story", draft=True, date="2024-10-27T13:00:00+03:30")
    corpus = load(data)                 # a fresh start: the draft is dated earlier
    assert article(corpus, "articles/a.md").slug != "story"


# -- drafts and scheduling ----------------------------------------------------------------------

def test_drafts_are_excluded(data):
    data.article("draft", draft=True, categories=["Secret"])
    data.article("public", draft=False)
    data.article("plain")
    lib = Library(str(data.root))
    corpus = lib.load()
    assert corpus.errors == []
    assert paths(corpus) == {"articles/public.md", "articles/plain.md"}
    assert "secret" not in corpus.categories
    data.article("draft", draft=False, categories=["Secret"])
    corpus = lib.load()
    assert "articles/draft.md" in paths(corpus) and "secret" in corpus.categories


def test_future_articles_are_loaded_but_not_visible(data):
    data.article("past", date="2024-10-28T13:00:00+03:30")
    data.article("soon", date="2030-01-01T00:00:00Z")
    data.article("later", date="2031-06-01T12:00:00+04:30")
    data.article("draft-soon", date="2029-01-01T00:00:00Z", draft=True)
    corpus = load(data)
    now = dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert paths(corpus) == {"articles/past.md", "articles/soon.md", "articles/later.md"}
    assert [a.path for a in corpus.articles] == ["articles/later.md", "articles/soon.md",
                                                 "articles/past.md"]   # newest first
    assert [a.path for a in corpus.visible(now)] == ["articles/past.md"]
    assert corpus.next_go_live(now) == dt.datetime(2030, 1, 1, tzinfo=UTC)
    soon = dt.datetime(2030, 1, 1, tzinfo=UTC)
    assert [a.path for a in corpus.visible(soon)] == ["articles/soon.md", "articles/past.md"]
    assert corpus.next_go_live(soon) == dt.datetime(2031, 6, 1, 7, 30, tzinfo=UTC)
    assert corpus.next_go_live(dt.datetime(2032, 1, 1, tzinfo=UTC)) is None
    assert len(corpus.visible(dt.datetime(2032, 1, 1, tzinfo=UTC))) == 3


def test_order_ties_are_broken_by_path(data):
    for name in ("c", "a", "b"):
        data.article(name, date="2024-10-28T13:00:00+03:30")
    data.article("d", date="2024-10-28T09:30:00Z")          # the same instant
    assert [a.path for a in load(data).articles] == \
        ["articles/a.md", "articles/b.md", "articles/c.md", "articles/d.md"]


# -- ids ------------------------------------------------------------------------------------------

def test_default_id_survives_edits(data):
    data.article("2024/story", title="First", categories=["World"], body="One.\n")
    lib = Library(str(data.root))
    original = lib.load().articles[0].id
    assert original == "tag:news.example.com,2000:2024/story"
    edits = [{"title": "Second"}, {"body": "Two.\n"}, {"categories": ["Sports", "Iran"]},
             {"slug": "a-new-slug"}, {"updated": "2024-11-01T10:00:00+03:30"},
             {"authors": ["Someone Else"]}, {"summary": "New summary"},
             {"date": "2024-10-29T10:00:00+03:30"}]
    fields: dict = {"title": "First", "categories": ["World"]}
    for edit in edits:
        fields.update(edit)
        body = fields.get("body", "One.\n")
        data.article("2024/story", body, **{k: v for k, v in fields.items() if k != "body"})
        corpus = lib.load()
        assert corpus.errors == []
        assert corpus.articles[0].id == original, edit
    assert corpus.articles[0].slug == "a-new-slug"


def test_explicit_id_is_used_as_written(data):
    data.article("story", id="  urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66 ")
    assert load(data).articles[0].id == "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"


def test_ids_are_the_same_in_a_fresh_library(data):
    data.article("a")
    data.article("2024/b")
    first = {a.path: a.id for a in load(data).articles}
    assert first == {a.path: a.id for a in load(data).articles}
    assert len(set(first.values())) == 2


def test_published_article_keeps_its_slug_across_a_restart(data, tmp_path):
    """A new file copying a published slug loses, even when the process starts afresh."""
    from feedsvc.cache import Cache

    state = str(tmp_path / "state")
    data.article("zeta", title="Zeta", slug="zeta")
    first = Cache(state)
    Library(str(data.root), cache=first).load()                   # zeta is published
    first.close()                   # as the process's exit does: its writer thread is done
    data.article("alpha", title="Alpha copy", slug="zeta")        # sorts first
    restarted = Library(str(data.root), cache=Cache(state)).load()
    assert {a.title: a.slug for a in restarted.articles}["Zeta"] == "zeta"
    assert any(e.path == "articles/alpha.md" and "slug 'zeta' is also asked for" in e.message
               for e in restarted.errors)


def test_parsing_on_every_core_gives_what_one_process_gives(data, tmp_path, monkeypatch):
    """A cold start parses in worker processes; records, errors and the record cache
    must be exactly those of the in-process path."""
    from feedsvc import records as records_module
    from feedsvc import workers
    from feedsvc.cache import Cache

    for n in range(6):
        data.article(f"a{n}", title=f"Story {n}", date=f"2024-10-2{n}T13:00:00")
    data.write("articles/broken.md", "---\ntitle: [unclosed\n---\nbody\n")
    data.write("articles/empty.md", "")
    for f in data.root.rglob("*"):
        os.utime(f, (time.time() - 60,) * 2)      # settled: the record cache may skip them
    one = Library(str(data.root))
    serial = one.load()
    monkeypatch.setattr(records_module, "PARALLEL_PARSE", 3)
    monkeypatch.setattr(workers, "cores", lambda: 2)
    cache = Cache(str(tmp_path / "state"))
    lib = Library(str(data.root), cache=cache)
    parallel = lib.load()
    assert lib.reads == one.reads == 10     # site, author, 8 articles
    assert parallel.articles == serial.articles
    assert [e.as_dict() for e in parallel.errors] == [e.as_dict() for e in serial.errors]
    monkeypatch.setattr(records_module, "PARALLEL_PARSE", 1000)
    again = Library(str(data.root), cache=cache)
    assert again.load().articles == serial.articles
    assert again.reads == 4     # the workers' records were cached: site, author, the 2 bad


def test_rescan_of_event_paths_agrees_with_a_walk(data):
    """A refresh woken by file events stats only the named paths; whatever it finds must
    be what a full walk finds, or it must ask for the walk."""
    for n in range(3):
        data.article(f"a{n}")
    lib = Library(str(data.root))
    before = lib.scan()
    root = data.root
    edited = data.article("a1", title="Edited")
    added = data.article("new")
    data.remove("articles/a2.md")
    (root / "articles" / "dangling.md").symlink_to(root / "nowhere.md")
    data.write("articles/.hidden.md", "x")
    data.write("articles/notes.txt", "x")
    data.write("elsewhere/x.md", "x")
    paths = {str(p) for p in (edited, added, root / "articles" / "a2.md",
                              root / "articles" / "dangling.md", root / "articles" / ".hidden.md",
                              root / "articles" / "notes.txt", root / "elsewhere" / "x.md",
                              root.parent / "outside.md")}
    assert lib.rescan(before, paths) == lib.scan()
    (root / "articles" / "2025").mkdir()
    assert lib.rescan(before, {str(root / "articles" / "2025")}) is None   # walk it
    assert lib.rescan(before, {str(root)}) is None


def test_a_rewrite_within_one_timestamp_tick_is_still_seen(data):
    """On a file system with coarse timestamps a same-size rewrite in the same tick keeps
    the signature: a file that recent is read again until it is older than a few seconds."""
    path = data.article("a", title="Version 1")
    lib = Library(str(data.root))
    assert lib.load().articles[0].title == "Version 1"
    st = path.stat()
    data.article("a", title="Version 2")                       # same length
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert lib.load().articles[0].title == "Version 2"
    for f in data.root.rglob("*"):
        os.utime(f, (time.time() - 60,) * 2)
    lib.load()
    assert not lib.racy                     # settled now: trusted from here on


@pytest.mark.parametrize("failing", ["put_records", "put_records_later"])
def test_a_load_that_fails_half_way_loses_nothing_next_time(data, tmp_path, monkeypatch,
                                                            failing):
    """A load can fail while it parses (storing the parsed records) or after it has read
    the files (queuing their last good versions). The next load, with nothing changed on
    disk, publishes what the failed one read (an edit, a new file, an old-dated one); and
    a file rewritten meanwhile with the same signature (a coarse clock) is read again."""
    from feedsvc.cache import Cache

    data.article("a", title="Version 1", date="2024-10-04T13:00:00Z")
    lib = Library(str(data.root), cache=Cache(str(tmp_path / "state")))
    lib.load()
    data.article("a", title="Version 2", date="2024-10-04T13:00:00Z")
    data.article("b", title="Draft 1", date="2024-10-05T13:00:00Z")
    data.article("c", title="Old C", date="2024-10-06T13:00:00Z")
    old = time.time() - 100
    os.utime(data.root / "articles/c.md", (old, old))

    def broken(*args, **kw):
        raise RuntimeError("disk full")
    monkeypatch.setattr(lib.cache, failing, broken)
    with pytest.raises(RuntimeError):
        lib.load()
    monkeypatch.undo()
    assert sorted(a.title for a in lib.load().articles) == ["Draft 1", "Old C", "Version 2"]
    path = data.root / "articles/b.md"
    st = os.stat(path)
    with open(path, "r+b") as f:                    # in place: same inode, size and time
        f.write(path.read_bytes().replace(b"Draft 1", b"Draft 2"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "Draft 2" in [a.title for a in lib.load().articles]        # it was racy


def test_a_time_in_the_future_is_no_reason_to_read_a_file_again_and_again(data):
    path = data.article("a")
    os.utime(path, (time.time() + 3600,) * 2)     # a tar extract, a clock that ran ahead
    lib = Library(str(data.root))
    lib.load()
    assert "articles/a.md" not in lib.racy
    assert DataError("a", "x") == DataError("a", "x")    # the same problem is not news


def test_a_last_good_version_pickled_by_an_older_feedsvc_is_published(data, tmp_path):
    """After an upgrade, a file that is broken at start falls back on the last good record
    an older version pickled: one without the fields newer versions work out after
    __init__ (Article.sort_key). It is made again from its fields and published."""
    import pickle

    from feedsvc import records as records_module
    from feedsvc.cache import Cache

    state = str(tmp_path / "state")
    data.article("a", title="Old A", date="2024-10-20T13:00:00Z")
    data.article("b", title="B", date="2024-10-21T13:00:00Z")
    first = Library(str(data.root), cache=Cache(state))
    published = first.load()
    first.cache.flush()                             # its writer thread stores the records
    a = next(x for x in published.articles if x.title == "Old A")
    cache = Cache(state)
    ref = cache.get_records([first.records.good_key(a.path)])[first.records.good_key(a.path)]
    assert ref == records_module.record_key(a.path, a.digest, published.site)
    older = object.__new__(type(a))                 # what an older version pickled
    older.__dict__.update({k: v for k, v in vars(a).items() if k != "sort_key"})
    cache.put_pickled({ref: pickle.dumps(older, protocol=5)})
    data.write("articles/a.md", "---\ntitle: [unclosed\n---\nbody\n")   # broken at restart

    restarted = Library(str(data.root), cache=Cache(state)).load()
    assert [x.title for x in restarted.articles] == ["B", "Old A"]
    assert restarted.articles[1].sort_key == a.sort_key
    assert any(e.path == "articles/a.md" for e in restarted.errors)


def test_a_load_after_rescan_compares_only_the_files_it_stat_ed(data, monkeypatch):
    """A refresh woken by file events loads what `rescan` made of the last load's
    signatures, and compares only the files it stat'ed.  Random edits, deletions, spurious
    events, links, and times old, recent (racy) and in the future: it re-reads, drops and
    watches exactly what a load comparing every file does."""
    import random

    rng = random.Random(7)
    real, clock = time.time, [time.time()]      # both loads of a step start at one time:
    monkeypatch.setattr(time, "time", lambda: clock[0])     # racy is decided to the ns
    for n in range(30):
        data.article(f"a{n}", title=f"A {n}", date=f"2024-10-{n % 28 + 1:02d}T13:00:00Z")
    fast, full = Library(str(data.root)), Library(str(data.root))
    sigs = fast.scan()
    fast.load(sigs)
    full.load(dict(sigs))
    hints = 0
    for step in range(60):
        events = set()
        for _ in range(rng.randint(1, 4)):
            rel = f"articles/a{rng.randrange(40)}.md"
            path = data.root / rel
            what = rng.random()
            if what < 0.35:
                data.article(rel[9:-3], title=f"Step {step}", date="2024-10-05T13:00:00Z")
            elif what < 0.45 and path.exists():
                data.remove(rel)
            elif what < 0.5 and not path.exists() and step >= 45:   # then it walks on
                os.symlink(data.root / "articles/a0.md", path)
            if path.exists() and not path.is_symlink():     # old, racy or in the future
                stamp = real() + rng.choice([-100, -1, 0.3, 1.5, 100])
                os.utime(path, (stamp, stamp))
            events.add(str(path))                           # (also when nothing changed)
        time.sleep(rng.choice([0, 0, 0.2]))
        clock[0] = real()
        before = fast.reads, full.reads
        new = fast.rescan(sigs, events)
        if new is None:                                     # a link: walk, as live does
            new = fast.scan()
        hints += fast._rescanned is not None and fast._rescanned.sigs == new
        got = fast.load(new)
        want = full.load(dict(new))
        assert fast.reads - before[0] == full.reads - before[1], step
        assert (fast.racy, fast.recency.future, fast.recency.links) == \
            (full.racy, full.recency.future, full.recency.links)
        assert got.articles == want.articles and \
            [e.as_dict() for e in got.errors] == [e.as_dict() for e in want.errors], step
        sigs = new
    assert hints > 20           # the compared path was taken, not only walks


def test_state_taken_before_the_first_load_after_adopt_can_be_adopted_again(data):
    """(Unsettled files carry a signature without a time then.)"""
    data.article("a", title="A")
    first = Library(str(data.root))
    first.load()
    second = Library(str(data.root))
    assert second.adopt(first.state())
    third = Library(str(data.root))
    assert third.adopt(second.state())
    assert [a.title for a in third.load().articles] == ["A"]
