"""Hostile input (issue 11): YAML alias bombs, over-long messages, file names that are
not UTF-8, folders nested a thousand deep.  Through the real parts: `feedsvc check` in a
subprocess, the app from make_app (with its watcher where it matters), the Library."""
from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DataDir

from feedsvc.corpus import MAX_DEPTH, Library
from feedsvc.model import MESSAGE_LIMIT, DataError

HOSTILE = Path(__file__).resolve().parent / "hostile"


def check(data_dir: Path) -> tuple[int, str]:
    """`feedsvc check DATA_DIR`: (exit status, output).  The output must be UTF-8."""
    run = subprocess.run([sys.executable, "-m", "feedsvc", "check", str(data_dir)],
                         capture_output=True, timeout=120, check=False)
    out = (run.stdout + run.stderr).decode("utf-8")
    assert "Traceback" not in out, out[-3000:]
    return run.returncode, out


def problems(out: str) -> list[str]:
    """The problem lines of `check`'s output as `path: message` (no line and column, no
    blank lines between files, no count at the end)."""
    lines = [line for line in out.splitlines() if line][:-1]
    return [re.sub(r"^(.*?):\d+(?::\d+)?: ", r"\1: ", line) for line in lines]


def the_error(errors: list[DataError], path: str) -> DataError:
    found = [e for e in errors if e.path == path]
    assert len(found) == 1, [e.as_dict() for e in errors]
    return found[0]


def bomb(level: int, key: str = "date") -> str:
    """Front matter lines: ten "lol"s, aliases of those ten times over `level` times,
    and `key` set to the last (10**(level+1) strings once expanded)."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
              for i in range(1, level + 1)]
    return "\n".join([*lines, f"{key}: *a{level}"]) + "\n"


def wait_until(predicate, seconds: float) -> bool:
    """Whether `predicate()` comes true within `seconds` (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- YAML aliases and anchors ---------------------------------------------------------

ALIAS_MESSAGE = ("invalid YAML at line {line}, column 5: YAML aliases (*name) and anchors "
                 "(&name) are not allowed (found &a0); write the value out in full")


def test_the_hostile_corpus_is_reported_in_short_lines(tmp_path):
    """The level-6 bomb (10**7 strings, about 1 GB and 7 s per load before) is refused
    before anything is built; the article whose error quotes a 20,000-character date
    gets a message cut to MESSAGE_LIMIT that says so."""
    shutil.copytree(HOSTILE, tmp_path / "data")
    status, out = check(tmp_path / "data")
    assert status == 1
    lines = problems(out)
    assert "articles/input/alias-bomb.md: " + ALIAS_MESSAGE.format(line=3) in lines
    long = next(line for line in lines if line.startswith("articles/input/long-error.md: "))
    message = long.split(": ", 1)[1]
    assert message.startswith("'date' is not an ISO 8601 datetime (got 'xxx")
    assert re.search(r"xxx\u2026 \(\d+ characters cut\) \u2026xxx+'\)$", message)
    assert len(message) <= MESSAGE_LIMIT
    for line in lines:                      # every message, whoever wrote the file
        assert len(line.split(": ", 1)[-1]) <= MESSAGE_LIMIT, line[:200]


@pytest.mark.parametrize("key", ["date", "updated", "draft", "unused"])
def test_an_alias_bomb_is_refused_through_any_key(data, make_app, key):
    """Level 3 (10,000 strings) keeps this test cheap before the fix too, where the
    bomb was expanded into the error message (date, updated, draft) or by cleaning
    the escapes of a file with a backslash anywhere (an unused key)."""
    data.article("good")
    escape = 'note: "tab\\there"\n' if key == "unused" else ""
    data.write("articles/bomb.md", "---\ntitle: Bomb\n" + escape +
               ("date: 2024-10-28T13:00:00Z\n" if key != "date" else "") +
               bomb(3, key) + "---\nBody.\n")
    line = 3 + bool(escape) + (key != "date")
    corpus = Library(str(data.root)).load()
    assert the_error(corpus.errors, "articles/bomb.md").message == \
        ALIAS_MESSAGE.format(line=line)
    assert [a.path for a in corpus.articles] == ["articles/good.md"]

    client = make_app(data.root).test_client()
    health = client.get("/healthz")
    assert len(health.data) < 4000
    assert {"path": "articles/bomb.md", "message": ALIAS_MESSAGE.format(line=line),
            "level": "error"} in health.get_json()["errors"]


@pytest.mark.parametrize("text, line, found", [
    ("x: &keep Hard News\n", 1, "&keep"),
    ("x: Hard News\ny: *nowhere\n", 2, "*nowhere"),
    ("x: &loop [*loop]\n", 1, "&loop")])
def test_aliases_and_anchors_are_refused_in_every_yaml_file(data, text, line, found):
    """site.yml, categories.yml and author files go through the same refusal as front
    matter (a bad site.yml at start stops the load: nothing can be published)."""
    def message(first: int) -> str:
        return (f"invalid YAML at line {first + line}, column 4: YAML aliases (*name) and "
                f"anchors (&name) are not allowed (found {found}); write the value out in full")

    data.article("good")
    data.write("categories.yml", text)
    data.write("authors/jane-doe.yml", "name: Jane Doe\n" + text)
    corpus = Library(str(data.root)).load()
    assert the_error(corpus.errors, "categories.yml").message == message(0)
    assert the_error(corpus.errors, "authors/jane-doe.yml").message == message(1)

    site = (HOSTILE / "site.yml").read_text()
    data.write("site.yml", site + text)
    with pytest.raises(DataError) as caught:
        Library(str(data.root)).load()
    assert (caught.value.path, caught.value.message) == ("site.yml", message(site.count("\n")))


def test_ampersands_and_asterisks_in_values_are_fine(data):
    data.article("q-and-a", title="Q&A: *the* deal", summary="AT&T & co. ** 2")
    corpus = Library(str(data.root)).load()
    assert not corpus.errors
    assert (corpus.articles[0].title, corpus.articles[0].summary) == \
        ("Q&A: *the* deal", "AT&T & co. ** 2")


def test_values_nested_past_the_cleaning_limit_are_an_error_not_a_crash(data):
    """libyaml lets 1,000 levels through; cleaning escapes goes into each of them."""
    data.article("good")
    data.write("articles/deep.md", '---\ntitle: "tab\\t"\ndate: 2024-10-28T13:00:00Z\n'
               "x: " + "[" * 900 + "]" * 900 + "\n---\nBody.\n")
    corpus = Library(str(data.root)).load()
    assert the_error(corpus.errors, "articles/deep.md").message == \
        "invalid YAML: values are nested more than 100 levels deep"


# -- every message is short -------------------------------------------------------------

def test_a_long_message_is_cut_in_one_place_with_its_end_kept():
    message = "'date' is not an ISO 8601 datetime (got '" + "x" * 100_000 + \
        "'); write it with an offset"
    e = DataError("articles/a.md", message)
    assert len(e.message) <= MESSAGE_LIMIT and str(e) == f"articles/a.md: {e.message}"
    assert e.message.startswith("'date' is not an ISO 8601 datetime (got 'xxx")
    assert e.message.endswith("xxx'); write it with an offset")
    cut = int(re.search(r"\u2026 \((\d+) characters cut\) \u2026", e.message)[1])
    assert len(e.message) - len(f"\u2026 ({cut} characters cut) \u2026") + cut == len(message)
    assert DataError("articles/a.md", e.message) == e        # cut once, and only once
    assert pickle.loads(pickle.dumps(e)) == e                 # as worker processes send it
    assert DataError("p", "y" * MESSAGE_LIMIT).message == "y" * MESSAGE_LIMIT


# -- file names that are not UTF-8 -----------------------------------------------------

def _make(root: Path, rel: bytes, text: str = "") -> None:
    path = os.fsencode(root) + b"/" + rel
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


ARTICLE = "---\ntitle: {}\ndate: 2024-10-28T13:00:00Z\n---\nBody.\n"
BAD_NAMES = {   # what the walk reports, for each name it is given
    b"articles/caf\xe9.md": "articles/caf\\xe9.md: the file name is not valid UTF-8; "
                            "rename it (it is skipped)",
    b"articles/\xfe/inner.md": "articles/\\xfe: the folder name is not valid UTF-8; "
                               "rename it (its files are skipped)",
    b"authors/b\xff.yml": "authors/b\\xff.yml: the file name is not valid UTF-8; "
                          "rename it (it is skipped)",
    b"articles/two\nlines.md": "articles/two\\nlines.md: the file name holds control "
                               "characters; rename it (it is skipped)",
    b"media/\xfd.png": "media/\\xfd.png: warning: the file name is not valid UTF-8; "
                       "rename it (it is skipped)",
}


def test_file_names_that_are_not_utf8_are_reported_and_skipped(data, make_app):
    """Before, one such name under articles/ or authors/ made every load fail with a
    UnicodeEncodeError (hashing, SQLite): nothing published, check crashed."""
    data.article("good")
    for rel in BAD_NAMES:
        _make(data.root, rel, ARTICLE.format("Bad") if rel.endswith(b".md") else "name: B\n")
    status, out = check(data.root)
    assert status == 1
    assert sorted(problems(out)) == sorted(BAD_NAMES.values())

    app = make_app(data.root)
    client = app.test_client()
    assert b"Good" in client.get("/feeds/all.atom").data
    reported = {f"{e['path']}: {'warning: ' if e['level'] == 'warning' else ''}{e['message']}"
                for e in client.get("/healthz").get_json()["errors"]}
    assert reported == set(BAD_NAMES.values())
    service = app.extensions["feedsvc"]
    service.checkpoint()
    service.close()

    os.unlink(os.fsencode(data.root) + b"/media/\xfd.png")   # deleted: as harmless
    data.article("later")
    again = make_app(data.root)                 # a restart, from the checkpoint
    feed = again.test_client().get("/feeds/all.atom").data
    assert b"Good" in feed and b"Later" in feed
    assert len(again.extensions["feedsvc"].errors) == len(BAD_NAMES) - 1
    again.extensions["feedsvc"].close()


def test_a_file_name_that_is_not_utf8_arriving_while_watched(data, make_app):
    """The watcher names it in an event; the refresh that follows reports it and goes
    on publishing (before, every refresh failed from then on)."""
    data.article("good")
    app = make_app(data.root, watch=True, poll_seconds=60)     # events only
    service = app.extensions["feedsvc"]
    try:
        _make(data.root, b"articles/caf\xe9.md", ARTICLE.format("Bad"))
        assert wait_until(lambda: service.errors, 15)
        data.article("after")
        assert wait_until(lambda: any(a.slug == "after" for a in service.corpus.articles), 15)
        assert [str(e) for e in service.errors] == [
            "articles/caf\\xe9.md: the file name is not valid UTF-8; rename it (it is skipped)"]
        service.checkpoint()
    finally:
        service.close()


# -- folders nested a thousand deep ----------------------------------------------------

def nest(top: Path, depth: int) -> Path:
    """`depth` folders `d` inside each other below `top` (os.makedirs recurses too)."""
    path = top
    for _ in range(depth):
        path = path / "d"
        path.mkdir(parents=path.parent == top)
    return path


def unnest(top: Path) -> None:
    """Remove what `nest` made (shutil.rmtree recurses: pytest's clean-up would fail)."""
    chain = [top]
    while (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain[1:]):
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def test_folders_nested_a_thousand_deep_are_reported_and_skipped(data):
    """Before, the recursive walk raised RecursionError: check crashed, nothing loaded."""
    top = data.root / "articles"
    try:
        bottom = nest(top, 1000)
        (bottom / "lost.md").write_text(ARTICLE.format("Lost"))
        (top / "d" / "d" / "near.md").write_text(ARTICLE.format("Near"))
        deepest_kept = top.joinpath(*["d"] * (MAX_DEPTH - 1))
        (deepest_kept / "kept.md").write_text(ARTICLE.format("Kept"))
        (deepest_kept / "d" / "skipped.md").write_text(ARTICLE.format("Skipped"))
        too_deep = "articles/" + "/".join(["d"] * MAX_DEPTH)
        status, out = check(data.root)
        assert status == 1
        assert problems(out) == [f"{too_deep}: is nested more than {MAX_DEPTH} folders "
                                    "deep; its files are skipped (move them up)"]
        library = Library(str(data.root))
        corpus = library.load()
        assert {a.title for a in corpus.articles} == {"Near", "Kept"}
        # a file event from below the limit is not taken in either
        sigs = library.scan()
        assert library.rescan(sigs, {str(deepest_kept / "d" / "skipped.md"),
                                     str(bottom / "lost.md")}) == sigs
    finally:
        unnest(top)


# watchdog's thread dies with a RecursionError: the very failure this test survives
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_new_article_goes_live_after_a_thousand_nested_folders_arrive(data, make_app,
                                                                       tmp_path):
    """The tree is moved in whole, as a copy from elsewhere arrives: watchdog's reader
    thread walks it recursively and dies.  The service notices, falls back to scanning
    (with a warning), still reports the folder and publishes the next article; a
    restart with the tree in place (watchdog's start walks it too) works as well."""
    data.article("good")
    app = make_app(data.root, watch=True, poll_seconds=60)     # events, not the safety walk
    service = app.extensions["feedsvc"]
    outside = tmp_path / "elsewhere"
    try:
        nest(outside, 1000)
        os.rename(outside / "d", data.root / "articles" / "d")
        data.article("after")
        # the article may go out on its own event before the scan reports the folder
        assert wait_until(lambda: any(a.slug == "after" for a in service.corpus.articles)
                          and service.errors, 20)
        assert service._thread is not None and service._thread.is_alive()
        assert [e.message for e in service.errors] == [
            f"is nested more than {MAX_DEPTH} folders deep; its files are skipped (move them up)"]
        service.close()

        again = make_app(data.root, watch=True, poll_seconds=60)
        service = again.extensions["feedsvc"]
        data.article("third")
        assert wait_until(lambda: any(a.slug == "third" for a in service.corpus.articles), 20)
    finally:
        service.close()
        unnest(data.root / "articles")


def test_build_copies_the_media_the_walk_keeps(data, tmp_path):
    """`feedsvc build` copied data/media with os.walk: a name that is not UTF-8 stopped
    the build (UnicodeEncodeError), a thousand nested folders crashed it."""
    data.article("good")
    data.write("media/2024/ok.png", b"png")
    _make(data.root, b"media/\xfd.png", "png")
    top = data.root / "media"
    try:
        (nest(top, 1000) / "deep.png").write_bytes(b"png")
        run = subprocess.run(
            [sys.executable, "-m", "feedsvc", "build", str(tmp_path / "out"), "--data-dir",
             str(data.root), "--state-dir", str(tmp_path / "state")],
            capture_output=True, timeout=120, check=False)
        out = (run.stdout + run.stderr).decode("utf-8")
        assert "Traceback" not in out and "feedsvc build: " in out, out[-3000:]
        assert sorted(p.relative_to(tmp_path / "out").as_posix()
                      for p in (tmp_path / "out" / "media").rglob("*")) == \
            ["media/2024", "media/2024/ok.png"]
    finally:
        unnest(top)


def test_a_data_directory_whose_own_path_is_not_utf8(tmp_path, monkeypatch, make_app):
    """A data directory at a path with a \\xff byte (Python sees it as a surrogate escape)
    starts, publishes, keeps a bad edit's last good version, writes its checkpoint and
    restarts from it, and serves the last published version once it is gone; the default
    state directory is derived from it too."""
    root = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/d\xffta"))
    data = DataDir(root)
    data.site()
    data.article("hello", title="Hello")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    app = make_app(root, state_dir="")
    client = app.test_client()
    assert b"Hello" in client.get("/feeds/all.rss").data
    assert client.get("/articles/hello/").status_code == 200
    service = app.extensions["feedsvc"]
    assert service.config.state_dir.startswith(str(tmp_path / "xdg"))
    data.write("articles/hello.md", "---\ntitle: [\n---\n")      # bad: the last good stays
    service.refresh()
    assert [e.path for e in service.errors] == ["articles/hello.md"]
    service.close()
    assert os.path.isfile(service._checkpoint_path)
    again = make_app(root, state_dir="")
    assert b"Hello" in again.test_client().get("/feeds/all.rss").data
    again.extensions["feedsvc"].close()
    os.unlink(service._checkpoint_path)     # without it, the last good record from the cache
    cold = make_app(root, state_dir="")
    assert b"Hello" in cold.test_client().get("/feeds/all.rss").data
    cold.extensions["feedsvc"].close()
    status, out = check(root)
    assert status == 1 and "articles/hello.md" in out, out
    root.rename(tmp_path / "moved")         # gone: the last published version, from the state
    gone = make_app(root, state_dir="")
    assert b"Hello" in gone.test_client().get("/feeds/all.rss").data
    gone.extensions["feedsvc"].close()
