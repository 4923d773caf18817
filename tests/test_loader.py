"""The loader, through Library(root).load() on real files: every bad input gets its own
clear `path: message` error, and dates are localized with the pytz rules of their day."""
from __future__ import annotations

import datetime as dt
import os
import threading

import pytest

from feedsvc import datafile, loader
from feedsvc.corpus import Library
from feedsvc.model import DataError

GOOD_DATE = "2024-10-28T13:00:00+03:30"


def load(data, **kw):
    return Library(str(data.root), **kw).load()


def paths(corpus) -> set[str]:
    return {a.path for a in corpus.articles}


def the_error(corpus, rel: str) -> DataError:
    """The one error reported for `rel`; the article is not published."""
    found = [e for e in corpus.errors if e.path == rel]
    assert len(found) == 1, [str(e) for e in corpus.errors]
    err = found[0]
    assert not err.warning
    assert str(err) == f"{rel}: {err.message}"
    assert err.as_dict() == {"path": rel, "message": err.message, "level": "error"}
    assert rel not in paths(corpus)
    return err


def raw_article(front: str, body: str = "Body.\n") -> str:
    return f"---\n{front}---\n{body}"


# -- bad article files: each has its own error --------------------------------------------

def _write(rel_text):
    return lambda data: data.write("articles/bad.md", rel_text)


def _symlink_outside(data):
    outside = data.root.parent / "outside.md"
    outside.write_text(raw_article(f"title: Secret\ndate: {GOOD_DATE}\n"))
    os.symlink(outside, data.root / "articles" / "bad.md")


def _dangling_symlink(data):
    os.symlink(data.root / "articles" / "nowhere.md", data.root / "articles" / "bad.md")


def _symlink_to_directory(data):
    (data.root / "media").mkdir()
    os.symlink(data.root / "media", data.root / "articles" / "bad.md")


def _new_york(date):
    def write(data):
        data.site(timezone="America/New_York")
        data.article("bad", date=date)
    return write


BAD_ARTICLES = {
    "invalid yaml": (_write(raw_article(f"title: ok\ndate: {GOOD_DATE}\nfoo: bar: baz\n")),
                     ["invalid YAML at line 4", "mapping values are not allowed"]),
    "unclosed list": (_write(raw_article(f"title: ok\ndate: {GOOD_DATE}\ncategories: [a, b\n"
                                         "summary: x\n")),
                      ["invalid YAML at line", "did not find expected"]),
    "front matter not a mapping": (_write(raw_article("- just\n- a list\n")),
                                   ["front matter must be a YAML mapping"]),
    "missing title": (lambda d: d.article("bad", title=None), ["'title' is required"]),
    "blank title": (lambda d: d.article("bad", title="   "),
                    ["'title' is required and must not be empty"]),
    "title not text": (lambda d: d.article("bad", title={"en": "x"}),
                       ["'title' must be text (got dict)"]),
    "missing date": (lambda d: d.article("bad", date=None), ["'date' is required"]),
    "empty date": (lambda d: d.article("bad", date=""), ["'date' is required"]),
    "invalid date": (lambda d: d.article("bad", date="yesterday"),
                     ["'date' is not an ISO 8601 datetime", "'yesterday'"]),
    "invalid updated": (lambda d: d.article("bad", updated="tomorrow"),
                        ["'updated' is not an ISO 8601 datetime", "'tomorrow'"]),
    "updated before date": (lambda d: d.article("bad", updated="2024-10-28T09:29:59Z"),
                            ["'updated' is earlier than 'date'"]),
    "dst gap": (_new_york("2024-03-10T02:30:00"),
                ["'date' '2024-03-10T02:30:00' does not exist in America/New_York",
                 "explicit offset"]),
    "dst ambiguous": (_new_york("2024-11-03T01:30:00"),
                      ["'date' '2024-11-03T01:30:00' happens twice in America/New_York",
                       "explicit offset"]),
    "not utf-8": (_write(raw_article(f"title: Caf\xe9\ndate: {GOOD_DATE}\n").encode("latin-1")),
                  ["is not valid UTF-8 (byte 14)"]),
    "lone surrogate bytes": (_write(b"---\ntitle: a\xed\xa0\x80b\n---\n"),
                             ["is not valid UTF-8 (byte 12)"]),
    "binary": (_write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ["is a binary file"]),
    "empty": (_write(b""), ["is empty"]),
    "only whitespace": (_write(b"  \n\n\t\n"), ["is empty"]),
    "no front matter": (_write("# Just a heading\n\nSome text.\n"),
                        ["has no front matter", "'---'"]),
    "unclosed front matter": (_write(f"---\ntitle: x\ndate: {GOOD_DATE}\nbody\n"),
                              ["has no front matter"]),
    "draft not boolean": (lambda d: d.article("bad", draft="maybe"),
                          ["'draft' must be true or false (got 'maybe')"]),
    "draft a number": (lambda d: d.article("bad", draft=1),
                       ["'draft' must be true or false (got 1)"]),
    "bad image extension": (lambda d: d.article("bad", image="media/photo.txt"),
                            ["'image' must end in one of", ".jpg", "'media/photo.txt'"]),
    "bad link": (lambda d: d.article("bad", link="ftp://example.com/a"),
                 ["'link' must be an absolute http(s) URL"]),
    "authors not names": (lambda d: d.article("bad", authors=[{"name": "x"}]),
                          ["'authors' must be a list of names"]),
    "unusable slug": (lambda d: d.article("bad", slug="!!!"), ["has no usable slug"]),
    "symlink outside": (_symlink_outside,
                        ["is a symlink pointing outside the data directory"]),
    "dangling symlink": (_dangling_symlink, ["cannot be read", "No such file or directory"]),
    "symlink to a directory": (_symlink_to_directory, ["cannot be read"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ARTICLES))
def test_bad_article_is_reported_and_skipped(data, case):
    write, expected = BAD_ARTICLES[case]
    data.article("good")
    write(data)
    corpus = load(data)
    err = the_error(corpus, "articles/bad.md")
    for text in expected:
        assert text in err.message
    assert paths(corpus) == {"articles/good.md"}          # the rest is served
    assert [e.path for e in corpus.errors] == ["articles/bad.md"]


def test_each_kind_of_bad_input_has_its_own_message(data):
    """All at once, in one directory: one distinct message per file, nothing else breaks."""
    kinds = {"yaml": _write(raw_article("title: [oops\n")),
             "title": lambda d: d.article("title", title=None),
             "date": lambda d: d.article("date", date=None),
             "yesterday": lambda d: d.article("yesterday", date="yesterday"),
             "updated": lambda d: d.article("updated", updated="2020-01-01T00:00:00Z"),
             "latin1": _write(b"---\ntitle: \xe9\n---\n"),
             "binary": _write(b"\x00\x01"),
             "empty": _write(b""),
             "nofm": _write("hello\n"),
             "draft": lambda d: d.article("draft", draft="no way"),
             "image": lambda d: d.article("image", image="x.bmp"),
             "outside": _symlink_outside,
             "dangling": _dangling_symlink}
    for name, write in kinds.items():
        write(data)
        bad = data.root / "articles" / "bad.md"
        if os.path.lexists(bad):
            os.rename(bad, data.root / "articles" / f"{name}.md")
    data.article("good")
    corpus = Library(str(data.root)).load()
    assert paths(corpus) == {"articles/good.md"}
    by_path = {e.path: e.message for e in corpus.errors}
    assert set(by_path) == {f"articles/{name}.md" for name in kinds}
    assert len(set(by_path.values())) == len(kinds), by_path


def test_invalid_yaml_names_the_line_of_the_file(data):
    text = ("---\n"
            "title: Broken\n"
            f"date: {GOOD_DATE}\n"
            "categories:\n"
            "  - World\n"
            "summary: \"unterminated\n"
            "---\n"
            "Body\n")
    data.write("articles/bad.md", text)
    err = the_error(load(data), "articles/bad.md")
    assert err.message.startswith("invalid YAML at line ")
    line = int(err.message.split("line ")[1].split(",")[0])
    # the problem is the quoted string opened on line 6 of the file, which runs into the
    # closing '---' on line 7: either line is a fair pointer, line 1-5 would mislead.
    assert line in (6, 7, 8), err.message


def test_invalid_yaml_line_is_counted_from_the_top_of_the_file(data):
    data.write("articles/bad.md", "---\ntitle: ok\n\n\nfoo: bar: baz\ndate: x\n---\n")
    err = the_error(load(data), "articles/bad.md")
    assert "at line 5, column 9" in err.message, err.message


def test_file_over_the_size_limit(data):
    data.article("good")
    data.article("big", body="x" * 5000)
    corpus = load(data, max_file_bytes=4096)
    err = the_error(corpus, "articles/big.md")
    assert err.message == "is larger than the 4096-byte limit (FEEDSVC_MAX_FILE_BYTES)"
    assert paths(corpus) == {"articles/good.md"}


def test_file_exactly_at_the_size_limit_is_fine(data):
    path = data.article("edge", body="x" * 2000)      # larger than every other file
    size = path.stat().st_size
    corpus = load(data, max_file_bytes=size)
    assert paths(corpus) == {"articles/edge.md"}
    assert corpus.errors == []


def test_bytes_written_after_the_size_was_read_are_read_too(data, monkeypatch):
    """read_bytes reads what fstat reported, then what a writer added since, in steps (a
    buffer sized to the limit costs a page mapping per file); the limit still holds."""
    path = data.article("growing", body="x" * 300_000)
    whole = path.read_bytes()
    real_fstat = os.fstat

    def stale_fstat(fd):            # the size as it was before the writer went on
        st = real_fstat(fd)
        return os.stat_result((*st[:6], 10, *st[7:]))
    monkeypatch.setattr(datafile.os, "fstat", stale_fstat)
    assert datafile.read_bytes(str(data.root), "articles/growing.md", 1 << 30) == whole
    with pytest.raises(DataError, match="larger than the 200000-byte limit"):
        datafile.read_bytes(str(data.root), "articles/growing.md", 200_000)
    assert datafile.read_bytes(str(data.root), "articles/growing.md", len(whole)) == whole


def test_unreadable_file_by_permissions(data):
    path = data.article("locked")
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: mode 000 does not stop reading")
        err = the_error(load(data), "articles/locked.md")
        assert "cannot be read" in err.message
        assert "Permission denied" in err.message
    finally:
        os.chmod(path, 0o644)


def test_fifo_is_reported_without_blocking(data):
    """A named pipe called x.md must not hang the loader (open() would wait for a writer)."""
    data.article("good")
    fifo = data.root / "articles" / "pipe.md"
    os.mkfifo(fifo)
    result: dict = {}

    def run():
        try:
            result["corpus"] = load(data)
        except Exception as e:   # pragma: no cover - reported below
            result["exc"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():                                   # unblock the reader, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(10)
        pytest.fail("loading a data directory holding a FIFO blocked")
    assert "exc" not in result, result.get("exc")
    corpus = result["corpus"]
    err = the_error(corpus, "articles/pipe.md")
    assert "cannot be read" in err.message
    assert paths(corpus) == {"articles/good.md"}


def test_symlink_inside_the_data_directory_is_followed(data):
    data.write(".shared/x.md", raw_article(f"title: Shared\ndate: {GOOD_DATE}\n"))
    os.symlink(data.root / ".shared" / "x.md", data.root / "articles" / "via.md")
    corpus = load(data)
    assert corpus.errors == []
    assert paths(corpus) == {"articles/via.md"}                 # dot folders are not scanned
    assert corpus.articles[0].title == "Shared"


def test_dot_files_and_backups_are_ignored(data):
    data.article("good")
    data.write("articles/.draft.md", b"\x00")
    data.write("articles/good.md~", b"\x00")
    data.write("articles/notes.txt", b"\x00")
    corpus = load(data)
    assert corpus.errors == []
    assert paths(corpus) == {"articles/good.md"}


# -- author and category files ---------------------------------------------------------------

def test_author_file_without_name(data):
    data.author("nameless", bio="Writes a lot.")
    data.article("good", authors=["Jane Doe"])
    corpus = load(data)
    err = the_error(corpus, "authors/nameless.yml")
    assert err.message == "'name' is required"
    assert "nameless" not in corpus.authors
    assert paths(corpus) == {"articles/good.md"}


def test_author_file_that_is_not_a_mapping(data):
    data.write("authors/listy.yml", "- Jane\n- Doe\n")
    err = the_error(load(data), "authors/listy.yml")
    assert "an author file must be a YAML mapping" in err.message


def test_author_file_with_invalid_yaml(data):
    data.write("authors/broken.yml", "name: Bob\nbio: bio: bio\n")
    err = the_error(load(data), "authors/broken.yml")
    assert "invalid YAML at line 2" in err.message


def test_categories_file_with_invalid_yaml(data):
    data.article("good")
    data.write("categories.yml", "World: fine\nSports: [oops\n")
    corpus = load(data)
    err = the_error(corpus, "categories.yml")
    assert err.message.startswith("invalid YAML at line")
    assert paths(corpus) == {"articles/good.md"}
    assert [c.name for c in corpus.categories.values()] == ["World"]


# -- site settings ----------------------------------------------------------------------------

BAD_SITES = {
    "bad timezone": ({"timezone": "Mars/Olympus_Mons"},
                     "'timezone' 'Mars/Olympus_Mons' is not an IANA time zone name"),
    "bad base_url": ({"base_url": "news.example.com"},
                     "'base_url' must be an absolute http(s) URL (got 'news.example.com')"),
    "ftp base_url": ({"base_url": "ftp://news.example.com/"},
                     "'base_url' must be an absolute http(s) URL"),
    "items zero": ({"items_per_feed": 0},
                   "'items_per_feed' must be a whole number from 1 to 1000 (got 0)"),
    "items too many": ({"items_per_feed": 1001},
                       "'items_per_feed' must be a whole number from 1 to 1000 (got 1001)"),
    "items text": ({"items_per_feed": "50"}, "'items_per_feed' must be a whole number"),
    "items bool": ({"items_per_feed": True}, "'items_per_feed' must be a whole number"),
    "no title": ({"title": None}, "'title' is required"),
}


@pytest.mark.parametrize("case", sorted(BAD_SITES))
def test_bad_site_settings_at_start_raise(data, case):
    overrides, expected = BAD_SITES[case]
    if overrides.get("title", "") is None:
        data.write("site.yml", "base_url: https://news.example.com/\n")
    else:
        data.site(**overrides)
    with pytest.raises(DataError) as info:
        load(data)
    assert info.value.path == "site.yml"
    assert expected in info.value.message


@pytest.mark.parametrize("case", sorted(BAD_SITES))
def test_bad_site_settings_later_keep_the_old_ones_and_stay_reported(data, case):
    overrides, expected = BAD_SITES[case]
    data.article("good")
    lib = Library(str(data.root))
    before = lib.load()
    if overrides.get("title", "") is None:
        data.write("site.yml", "base_url: https://news.example.com/\n")
    else:
        data.site(**overrides)
    for _ in range(2):                      # the error stays listed until site.yml is fixed
        corpus = lib.load()
        assert corpus.site == before.site
        assert paths(corpus) == {"articles/good.md"}
        site_errors = [e for e in corpus.errors if e.path == "site.yml"]
        assert len(site_errors) == 1, [str(e) for e in corpus.errors]
        assert expected in site_errors[0].message
    data.site()
    assert lib.load().errors == []


def test_missing_site_file(data):
    data.remove("site.yml")
    with pytest.raises(DataError) as info:
        load(data)
    assert info.value.path == "site.yml"
    assert "cannot be read" in info.value.message


def test_site_file_deleted_later_is_reported(data):
    data.article("good")
    lib = Library(str(data.root))
    site = lib.load().site
    data.remove("site.yml")
    for _ in range(2):
        corpus = lib.load()
        assert corpus.site == site
        assert paths(corpus) == {"articles/good.md"}
        assert [e.path for e in corpus.errors] == ["site.yml"]
    data.site()
    assert lib.load().errors == []


def test_site_defaults_and_base_url_override(data):
    data.write("site.yml", "title: T\nbase_url: https://news.example.com/sub\n")
    site = load(data).site
    assert (site.base_url, site.timezone, site.language, site.items_per_feed) == \
        ("https://news.example.com/sub/", "UTC", "en", 50)
    site = load(data, base_url="https://cdn.example.net").site
    assert site.base_url == "https://cdn.example.net/"


def test_missing_data_directory(tmp_path):
    with pytest.raises(DataError) as info:
        Library(str(tmp_path / "nope")).load()
    assert "missing or not a directory" in info.value.message


def _unlistable(monkeypatch, folder) -> None:
    """os.scandir fails for `folder` (chmod cannot do that to root)."""
    real_scandir = os.scandir

    def scandir(path):
        if os.path.abspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unlistable_data_directory_is_not_an_empty_one(data, monkeypatch):
    """An unreadable data/ must not unpublish everything: keep what we had, report it."""
    data.article("good")
    lib = Library(str(data.root))
    before = lib.load()
    _unlistable(monkeypatch, data.root)
    for _ in range(2):
        corpus = lib.load()
        assert corpus.articles == before.articles
        assert corpus.site == before.site
        assert [(e.path, e.warning) for e in corpus.errors] == [(".", False)]
        assert "cannot be listed (Permission denied)" in corpus.errors[0].message
    monkeypatch.undo()
    assert lib.load().errors == []


def test_unlistable_article_folder_keeps_its_articles_and_is_reported(data, monkeypatch):
    data.article("good")
    data.article("2024/x")
    lib = Library(str(data.root))
    assert paths(lib.load()) == {"articles/good.md", "articles/2024/x.md"}
    _unlistable(monkeypatch, data.root / "articles" / "2024")
    corpus = lib.load()
    assert paths(corpus) == {"articles/good.md", "articles/2024/x.md"}
    err = the_error(corpus, "articles/2024")
    assert "cannot be listed (Permission denied)" in err.message
    fresh = load(data)                          # nothing known yet: only the error
    assert paths(fresh) == {"articles/good.md"}
    assert [e.path for e in fresh.errors] == ["articles/2024"]


# -- dates: pytz rules of the day -------------------------------------------------------------

def published(data, date, **site):
    if site:
        data.site(**site)
    data.article("a", date=date)
    corpus = load(data)
    assert corpus.errors == [], [str(e) for e in corpus.errors]
    return corpus.articles[0].published


def hours(h, m=0):
    return dt.timedelta(hours=h, minutes=m)


@pytest.mark.parametrize("date, offset", [
    ("2015-08-26T10:30:00", hours(4, 30)),        # Iran observed DST until 2022
    ("2015-08-26 10:30", hours(4, 30)),
    ("2024-08-26T10:30:00", hours(3, 30)),        # ... and not since
    ("2015-01-10T10:30:00", hours(3, 30)),
    ("2022-03-21T12:00:00", hours(3, 30)),        # Iran's last DST year: not yet started
    ("2022-03-22T12:00:00", hours(4, 30)),        # started at midnight 22 March
    ("2022-09-21T12:00:00", hours(4, 30)),
    ("2022-09-22T12:00:00", hours(3, 30)),        # ended at midnight 22 September
    ("2023-03-22T12:00:00", hours(3, 30)),        # no DST in 2023
    ("2023-06-01", hours(3, 30)),                 # a bare date is local midnight
])
def test_naive_dates_in_tehran(data, date, offset):
    when = published(data, date)
    assert when.utcoffset() == offset
    naive = dt.datetime.fromisoformat(date)
    assert when.replace(tzinfo=None) == naive              # the wall time is kept


def test_tehran_2015_and_2024_same_wall_time(data):
    when = published(data, "2015-08-26T10:30:00")
    assert when.isoformat() == "2015-08-26T10:30:00+04:30"
    data.article("a", date="2024-08-26T10:30:00")
    # a fresh Library: same wall time, one hour apart in UTC offsets
    assert load(data).articles[0].published.isoformat() == "2024-08-26T10:30:00+03:30"


def test_unquoted_yaml_timestamps_are_localized_not_parsed_as_utc(data):
    """PyYAML would read an unquoted timestamp as naive UTC; we localize it ourselves."""
    data.write("articles/a.md", raw_article("title: A\ndate: 2015-08-26 10:30:00\n"
                                            "updated: 2024-08-26\n"))
    corpus = load(data)
    assert corpus.errors == []
    art = corpus.articles[0]
    assert art.published.isoformat() == "2015-08-26T10:30:00+04:30"
    assert art.updated.isoformat() == "2024-08-26T00:00:00+03:30"


@pytest.mark.parametrize("date, expected", [
    ("2024-10-28T13:00:00+05:00", "2024-10-28T13:00:00+05:00"),   # kept as written
    ("2024-10-28T13:00:00-07:00", "2024-10-28T13:00:00-07:00"),
    ("2015-08-26T10:30:00+03:30", "2015-08-26T10:30:00+03:30"),   # even if not Tehran's then
    ("2024-10-28T09:30:00Z", "2024-10-28T09:30:00+00:00"),
    ("2024-10-28T09:30:00z", "2024-10-28T09:30:00+00:00"),
    ("2024-10-28T13:00:00.123456+03:30", "2024-10-28T13:00:00+03:30"),  # microseconds dropped
    ("2024-10-28T13:00:00.999", "2024-10-28T13:00:00+03:30"),
])
def test_explicit_offsets_are_kept(data, date, expected):
    when = published(data, date)
    assert when.isoformat() == expected
    assert when.microsecond == 0


def test_dst_in_new_york(data):
    assert published(data, "2024-07-01T12:00:00", timezone="America/New_York").utcoffset() \
        == -hours(4)
    data.article("a", date="2024-01-15T12:00:00")
    assert load(data).articles[0].published.utcoffset() == -hours(5)
    data.article("a", date="2024-03-10T03:30:00")            # just after the gap
    assert load(data).articles[0].published.isoformat() == "2024-03-10T03:30:00-04:00"
    data.article("a", date="2024-03-10T02:30:00-05:00")       # the gap with an explicit offset
    assert load(data).articles[0].published.isoformat() == "2024-03-10T02:30:00-05:00"
    data.article("a", date="2024-11-03T01:30:00-04:00")       # the ambiguous hour, made explicit
    assert load(data).articles[0].published.isoformat() == "2024-11-03T01:30:00-04:00"


def test_updated_is_localized_by_its_own_date(data):
    data.article("a", date="2022-09-21T12:00:00", updated="2022-09-23T12:00:00")
    art = load(data).articles[0]
    assert art.published.isoformat() == "2022-09-21T12:00:00+04:30"
    assert art.updated.isoformat() == "2022-09-23T12:00:00+03:30"


def test_updated_defaults_to_date_and_may_equal_it(data):
    data.article("a", updated=GOOD_DATE)
    data.article("b")
    corpus = load(data)
    assert corpus.errors == []
    for art in corpus.articles:
        assert art.updated == art.published


def test_updated_compared_as_instants_not_wall_times(data):
    # 10:00+00:00 is later than 13:00+03:30 (09:30 UTC) although its wall time is earlier
    data.article("a", date="2024-10-28T13:00:00+03:30", updated="2024-10-28T10:00:00Z")
    corpus = load(data)
    assert corpus.errors == []
    assert corpus.articles[0].updated.isoformat() == "2024-10-28T10:00:00+00:00"


# -- what a valid file gives -------------------------------------------------------------------

def test_article_fields(data):
    (data.root / "media").mkdir()
    (data.root / "media" / "p.jpg").write_bytes(b"\xff\xd8" + b"0" * 98)
    data.article("2024/story", body="Hello *world*.\n", authors=None, author="Jane Doe",
                 categories=None, category="World", summary="  A   short\n summary ",
                 image="media/p.jpg", link="https://elsewhere.example.org/story")
    art = load(data).articles[0]
    assert art.path == "articles/2024/story.md"
    assert art.id == "tag:news.example.com,2000:2024/story"
    assert art.slug == "story"
    assert art.title == "2024/Story"
    assert art.authors == ("Jane Doe",)
    assert art.categories == ("World",)
    assert art.summary == "A short summary"
    assert loader.body_of(str(data.root), art) == "Hello *world*.\n"
    assert art.link == "https://elsewhere.example.org/story"
    assert (art.image, art.image_type, art.image_length) == \
        ("https://news.example.com/media/p.jpg", "image/jpeg", 100)
    assert art.draft is False
    assert len(art.digest) == 64


def test_absolute_image_and_uppercase_extension(data):
    data.article("a", image="https://img.example.org/x/photo.PNG?w=800")
    art = load(data).articles[0]
    assert (art.image, art.image_type, art.image_length) == \
        ("https://img.example.org/x/photo.PNG?w=800", "image/png", 0)


def test_byte_order_mark_and_crlf(data):
    data.write("articles/a.md", b"\xef\xbb\xbf---\r\ntitle: Windows\r\ndate: 2024-10-28\r\n"
                                b"---\r\nBody\r\n")
    corpus = load(data)
    assert corpus.errors == []
    assert corpus.articles[0].title == "Windows"


# -- characters XML forbids ---------------------------------------------------------------------

def test_forbidden_characters_in_raw_bytes_are_removed(data):
    raw = (b"---\ntitle: \"Vertical\x0btab, unit\x1fsep, non\xef\xbf\xbechar, "
           b"and\xef\xbf\xbfmore\"\ndate: 2024-10-28T13:00:00+03:30\n"
           b"categories: [\"Wor\x0bld\"]\nauthors: [\"Jane\x1f Doe\"]\n"
           b"summary: \"sum\x0bmary\"\n---\n"
           b"Body\x0b with\x1f bad\xef\xbf\xbe chars\x0c\x08.\n\tTab, newline and CR\r\n stay.\n")
    data.write("articles/a.md", raw)
    corpus = load(data)
    assert corpus.errors == []
    art = corpus.articles[0]
    assert art.title == "Verticaltab, unitsep, nonchar, andmore"
    assert art.categories == ("World",)
    assert art.authors == ("Jane Doe",)
    assert art.summary == "summary"
    assert loader.body_of(str(data.root), art) == \
        "Body with bad chars.\n\tTab, newline and CR\r\n stay.\n"


def test_forbidden_characters_written_as_yaml_escapes_are_removed(data):
    """YAML double-quoted escapes can produce the same characters after decoding."""
    data.write("articles/a.md", raw_article(
        'title: "Escaped\\vtab\\x1f\\uFFFE\\uFFFF\\x00 title"\n'
        'date: 2024-10-28T13:00:00+03:30\n'
        'categories: ["Wor\\x0bld"]\n'
        'authors: ["Jane\\x1f Doe"]\n'
        'summary: "sum\\x01mary"\n'
        'id: "urn:x\\x02y"\n'))
    data.write("categories.yml", 'World: "Des\\x0bcription"\n')
    corpus = load(data)
    assert corpus.errors == [], [str(e) for e in corpus.errors]
    art = corpus.articles[0]
    assert art.title == "Escapedtab title"
    assert art.categories == ("World",)
    assert art.authors == ("Jane Doe",)
    assert art.summary == "summary"
    assert art.id == "urn:xy"
    assert corpus.categories["world"].description == "Description"


def test_a_yaml_alias_inside_itself_is_a_data_error_not_a_crash(data):
    from feedsvc.corpus import Library

    data.write("articles/loop.md", '---\ntitle: "Loop \\u00e9"\nx: &a [*a]\n'
               'date: 2024-10-28T13:00:00+03:30\n---\nBody.\n')
    data.article("fine")
    corpus = Library(str(data.root)).load()
    assert [a.path for a in corpus.articles] == ["articles/fine.md"]
    assert any(e.path == "articles/loop.md" and "alias" in e.message for e in corpus.errors)


@pytest.mark.parametrize("base", ["https://news.example/", "https://news.example/site/"])
@pytest.mark.parametrize("image", [
    "/media/a.jpg", "media/2024/a.JPG", "a.png", "/media//a.jpg", "./a.jpg", "../a.jpg",
    "/media/./a.jpg", "/media/../a.jpg", "/media/a.jpg?v=2", "/media/a b.jpg", "/media/%C3%A9.jpg",
    "/media/.hidden.jpg", "https://cdn.example/a.jpg", "//cdn.example/a.jpg", "~/a.gif"])
def test_image_urls_and_slugs_taken_without_urljoin_or_slugify_are_the_same(base, image):
    """The shortcuts for plain image paths and plain slugs give what urljoin and slugify give."""
    import posixpath
    from urllib.parse import urljoin, urlsplit

    from slugify import slugify

    from feedsvc.model import Site

    site = Site(title="T", description="", base_url=base, language="en", timezone="UTC",
                items_per_feed=50)
    url = urljoin(base, image.lstrip("/")) if not urlsplit(image).scheme else image
    ext = posixpath.splitext(urlsplit(url).path)[1].lower()
    if ext in loader._IMAGE_TYPES:
        assert loader._image("articles/a.md", image, site, "")[:2] == \
            (url, loader._IMAGE_TYPES[ext])
    else:
        with pytest.raises(DataError):
            loader._image("articles/a.md", image, site, "")
    slug = posixpath.splitext(posixpath.basename(image))[0]
    text = f"---\ntitle: T\ndate: 2024-10-28T13:00:00Z\nslug: '{slug}'\n---\nbody\n"
    if slugify(slug):
        assert loader.parse_article("articles/a.md", text, "d", site).slug == slugify(slug)


def test_clean_removes_exactly_what_xml_forbids():
    """`clean` skips its regex when a text has nothing to remove: random mixes of allowed
    and forbidden characters (C0 controls, lone surrogates, U+FFFE/U+FFFF) and their
    neighbours must come out as the regex alone makes them."""
    import random

    rng = random.Random(7)
    alphabet = ["a", "é", "\t", "\n", "\r", "\x00", "\x01", "\x0b", "\x0c", "\x1f", " ",
                "\x7f", "\x85", "\ud800", "\udfff", "\ud7ff", "\ue000", "\ufffd", "\ufffe",
                "\uffff", "\U0001f600", "\u0654"]
    for _ in range(50_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        text = "plain " * rng.randint(0, 2) + text
        assert datafile.clean(text) == datafile.XML_FORBIDDEN.sub("", text), repr(text)
        if text.strip() and "\x00" not in text and not any(
                "\ud800" <= c <= "\udfff" for c in text):       # what a file can hold
            assert datafile.decode("f", text.encode()) == datafile.clean(text), repr(text)
    assert datafile.clean("a\x0bb\ud800c\ufffed") == "abcd"
    kept = "tab\tline\nreturn\r é \U0001f600"
    assert datafile.clean(kept) is kept


@pytest.mark.parametrize("value", ["!!int 'z'", "!!bool maybe", "!!float x"])
def test_a_tagged_value_pyyaml_cannot_read_is_a_data_error(data, value):
    """PyYAML raises ValueError or KeyError for these, not a YAMLError: one such file must
    be reported like any bad file, not stop the load."""
    data.article("good")
    data.write("articles/odd.md", f"---\ntitle: {value}\ndate: 2024-10-28T13:00:00Z\n---\nx\n")
    corpus = load(data)
    assert "invalid YAML: a tagged value cannot be read" in \
        the_error(corpus, "articles/odd.md").message
    assert paths(corpus) == {"articles/good.md"}
