"""Editors' checks: every problem of every data file, as typed `Problem` values.

The loader stops at a file's first error (that is what keeps it out); this module looks
further, for `feedsvc check` and the status page: misspelt front matter keys (with a
"did you mean"), authors without a file, a comma where a list was meant, images that do
not exist, and every field error of a file, each at its line and column.  Warnings
never block publishing.  Reads files, never writes; no Flask, no feedgen.
"""
from __future__ import annotations

import datetime as dt
import difflib
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import yaml

from . import datafile, loader, names, safeyaml, scan
from .corpus import Corpus
from .model import DataError, Site

ERROR, WARNING = "error", "warning"

ARTICLE_KEYS = ("title", "date", "updated", "slug", "id", "draft", "link", "summary",
                "authors", "author", "categories", "category", "image", "image_alt",
                "image_caption", "language")
SITE_KEYS = ("title", "description", "base_url", "language", "timezone", "items_per_feed",
             "trusted_html", "page_size")
AUTHOR_KEYS = ("name", "bio", "email", "url")
# names editors reach for that difflib cannot tell apart from nothing
SYNONYMS = {"tags": "categories", "tag": "category", "keywords": "categories",
            "writer": "authors", "writers": "authors", "byline": "authors",
            "published": "date", "modified": "updated", "pubdate": "date",
            "biography": "bio", "website": "url", "homepage": "url"}
# the warnings of these checks, by code: what a long list of one kind is summed up as
KINDS = {"unknown-key": "unknown front matter keys", "new-author": "authors without a file",
         "comma": "names with a comma", "missing-image": "images that do not exist"}
STILL_PUBLISHED = "; its last good version is still published"

_WHERE = re.compile(r" at line (\d+), column (\d+)")
_BODY_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)|<img\b[^>]*\bsrc=[\"']([^\"']+)", re.I)
Keys = dict[str, tuple[int, int]]         # key -> (line, column) in its file
_MINIMAL = {"title": "x", "date": "2000-01-01T00:00:00+00:00"}


@dataclass(frozen=True, order=True)
class Problem:
    """One problem of one data file; `line` and `col` are 1-based, 0 when not known."""
    file: str
    line: int
    col: int
    severity: str           # ERROR or WARNING
    message: str
    code: str = ""          # the kind of a check's warning (see KINDS); "" for the loader's

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def where(self) -> str:
        """`file:line:col`, as far as it is known."""
        return self.file + (f":{self.line}" if self.line else "") + \
            (f":{self.col}" if self.line and self.col else "")

    def __str__(self) -> str:
        return f"{self.where()}: {'warning: ' if not self.is_error else ''}{self.message}"

    @classmethod
    def of(cls, error: DataError) -> Problem:
        """The problem a loader's DataError reports (its line and column if it names them)."""
        m = _WHERE.search(error.message)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        return cls(error.path, line, col, WARNING if error.warning else ERROR, error.message)


@dataclass(frozen=True)
class Scheduled:
    """An article that is published but not yet visible: when it goes live."""
    file: str
    title: str
    goes_live: dt.datetime


@dataclass(frozen=True)
class Report:
    """Everything `feedsvc check` and the status page say about a data directory."""
    problems: tuple[Problem, ...]
    scheduled: tuple[Scheduled, ...]
    articles: int

    @property
    def errors(self) -> int:
        return sum(p.is_error for p in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    def by_file(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = {}
        for p in self.problems:
            out.setdefault(p.file, []).append(p)
        return out


def report(corpus: Corpus, now: dt.datetime, max_file_bytes: int = 1 << 20) -> Report:
    """The problems of `corpus`'s data directory (the loader's and these checks'), and its
    scheduled articles as of `now`."""
    found = [Problem.of(e) for e in still_published(corpus.errors, corpus)]
    found += Checker(corpus, max_file_bytes).run()
    problems = _merge(found)
    live = corpus.visible(now)
    scheduled = tuple(Scheduled(a.path, a.title, a.published)
                      for a in reversed(corpus.articles[:len(corpus.articles) - len(live)]))
    return Report(problems, scheduled, len(corpus.articles))


def still_published(errors: Iterable[DataError], corpus: Corpus) -> list[DataError]:
    """`errors`, those of files whose last good version is still published saying so."""
    errors = list(errors)
    if all(e.warning for e in errors):      # (every refresh: no set of every path then)
        return errors
    live = {a.path for a in corpus.articles}
    return [DataError(e.path, e.message + STILL_PUBLISHED)
            if not e.warning and e.path in live and not e.message.endswith(STILL_PUBLISHED)
            else e for e in errors]


def _merge(found: list[Problem]) -> tuple[Problem, ...]:
    """One problem per file and message (the one with a position), sorted by file."""
    best: dict[tuple[str, str], Problem] = {}
    for p in found:
        key = (p.file, p.message.removesuffix(STILL_PUBLISHED))
        old = best.get(key)
        if old is None or (not old.line and p.line) or p.message.endswith(STILL_PUBLISHED):
            best[key] = p if old is None or p.line or not old.line else \
                Problem(p.file, old.line, old.col, p.severity, p.message)
    return tuple(sorted(best.values(), key=lambda p: (p.file, p.line, p.col, p.message)))


def suggest(word: str, known: Iterable[str]) -> str:
    """The known word `word` most likely means, or ""."""
    choices = list(known)
    if word.lower() in SYNONYMS and SYNONYMS[word.lower()] in choices:
        return SYNONYMS[word.lower()]
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return close[0] if close else ""


class Checker:
    """Runs every check over the files of one loaded corpus's data directory."""

    def __init__(self, corpus: Corpus, max_file_bytes: int = 1 << 20):
        self.corpus = corpus
        self.root = corpus.root
        self.max_bytes = max_file_bytes
        self.errors = {e.path for e in corpus.errors if not e.warning}
        self._walked: list[str] | None = None
        self._author_key: dict[str, tuple[int, int]] = {}  # article -> its authors: key

    def run(self) -> list[Problem]:
        out = self._keys_of("site.yml", SITE_KEYS)
        authors: dict[str, str] = {}            # name key -> the name in the author file
        for rel in self._files("authors", (".yml", ".yaml")):
            out += self._keys_of(rel, AUTHOR_KEYS)
        for person in self.corpus.authors.values():
            if self._author_file(person.slug):
                authors[names.name_key(person.name)] = person.name
        for rel in self._files("articles", (".md", ".markdown")):
            out += self.article(rel)
        out += self._unknown_authors(authors)
        return out

    def _files(self, folder: str, exts: tuple[str, ...]) -> list[str]:
        """The files under `folder` the loader reads (scan.walk: the same names, depths
        and skips; what it skips the loader reports)."""
        if self._walked is None:
            self._walked = sorted(scan.walk(self.root, {}).sigs)
        return [rel for rel in self._walked if rel.startswith(folder + "/") and
                rel.endswith(exts)]

    def _author_file(self, slug: str) -> bool:
        return any(os.path.isfile(os.path.join(self.root, "authors", slug + ext))
                   for ext in (".yml", ".yaml"))

    def _read(self, rel: str) -> str | None:
        try:
            return datafile.read_text(self.root, rel, self.max_bytes)[0]
        except DataError:
            return None                         # the loader reports it

    def _keys_of(self, rel: str, known: tuple[str, ...]) -> list[Problem]:
        """Unknown keys of a YAML file (site.yml, an author file)."""
        text = self._read(rel)
        if text is None:
            return []
        nodes, problem = _key_nodes(rel, text, 1)
        return [problem] if problem else _unknown_keys(rel, nodes, known)

    def article(self, rel: str) -> list[Problem]:
        """Every problem of the article file `rel`."""
        text = self._read(rel)
        if text is None:
            return []
        m = datafile.FRONT_MATTER.match(text)
        if not m:
            return []                           # the loader says how to start one
        first = text.count("\n", 0, max(m.start(1), 0)) + 1
        nodes, problem = _key_nodes(rel, m.group(1) or "", first)
        if problem:
            return [problem]
        out = _unknown_keys(rel, nodes, ARTICLE_KEYS)
        try:
            data = safeyaml.load_yaml(rel, m.group(1) or "", first)
        except DataError as e:
            return [*out, Problem.of(e)]
        if not isinstance(data, dict):
            return out
        if rel in self.errors:
            out += self._field_errors(rel, data, nodes)
        out += self._names(rel, data, nodes)
        where = nodes.get("authors", nodes.get("author"))
        if where:
            self._author_key[rel] = where
        out += self._images(rel, data, nodes, text[m.end():], text.count("\n", 0, m.end()) + 1)
        return out

    def _field_errors(self, rel: str, data: dict, nodes: Keys) -> list[Problem]:
        """Each field of a bad file checked alone, by the loader itself: every error."""
        trials = [(str(key), {**_MINIMAL, key: data[key]}) for key in sorted(data, key=str)]
        trials += [(key, {k: v for k, v in _MINIMAL.items() if k != key})
                   for key in _MINIMAL if data.get(key) in (None, "")]
        out = []
        for key, front in trials:
            try:
                text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n"
                loader.parse_article(rel, text, "", self.corpus.site, self.root)
            except DataError as e:
                out.append(_at(rel, nodes.get(key), ERROR, e.message))
            except yaml.YAMLError:
                continue
        return out

    def _names(self, rel: str, data: dict, nodes: Keys) -> list[Problem]:
        out = []
        for plural, singular, what in (("authors", "author", "author"),
                                       ("categories", "category", "category")):
            key = plural if plural in data else singular
            value = data.get(key)
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and "," in name:
                    parts = ", ".join(n.strip() for n in name.split(",") if n.strip())
                    out.append(_at(rel, nodes.get(key), WARNING,
                                   f"{what} {name!r} has a comma: for several, write a list "
                                   f"({plural}: [{parts}])", "comma"))
        return out

    def _unknown_authors(self, known: dict[str, str]) -> list[Problem]:
        """One warning per author name with no authors/<slug>.yml, at its first article."""
        first: dict[str, tuple[str, str, int]] = {}     # key -> (name, first file, uses)
        for a in sorted(self.corpus.articles, key=lambda a: a.path):
            for name in a.authors:
                key = names.name_key(name)
                if key not in known:
                    n, path, uses = first.get(key, (name, a.path, 0))
                    first[key] = (n, path, uses + 1)
        out = []
        for key, (name, path, uses) in sorted(first.items()):
            slug = self.corpus.author_slugs.get(key, key)
            close = difflib.get_close_matches(name, sorted(known.values()), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f"; add authors/{slug}.yml to give them a bio"
            more = f" (and {uses - 1} more articles)" if uses > 1 else ""
            out.append(_at(path, self._author_key.get(path), WARNING,
                           f"author {name!r}{more} has no authors/{slug}.yml{hint}",
                           "new-author"))
        return out

    def _images(self, rel: str, data: dict, nodes: Keys, body: str,
                body_line: int) -> list[Problem]:
        out = []
        image = data.get("image")
        if isinstance(image, str) and image.strip():
            missing = self._missing(image.strip())
            if missing:
                out.append(_at(rel, nodes.get("image"), WARNING,
                                f"'image' {image.strip()!r} does not exist ({missing}); "
                                "the article goes out without an image", "missing-image"))
        for m in _BODY_IMAGE.finditer(body):
            src = m.group(1) or m.group(2)
            missing = self._missing(src)
            if missing:
                line = body_line + body.count("\n", 0, m.start())
                col = m.start() - body.rfind("\n", 0, m.start())
                out.append(Problem(rel, line, col, WARNING,
                                   f"the body's image {src!r} does not exist ({missing})",
                                   "missing-image"))
        return out

    def _missing(self, src: str) -> str:
        """The data-directory path of a local image `src` that is not there, else ""."""
        site: Site = self.corpus.site
        if src.startswith(site.base_url):
            path = src[len(site.base_url):]
        elif urlsplit(src).scheme or src.startswith("//") or not src.startswith("/"):
            return ""                           # another site's, or relative to the page
        else:
            path = src.lstrip("/")
        path = posixpath.normpath(unquote(urlsplit(path).path))
        if path.startswith("..") or os.path.isfile(os.path.join(self.root, path)):
            return ""
        return path


def _key_nodes(rel: str, text: str, first_line: int
               ) -> tuple[Keys, Problem | None]:
    """Where each key of a YAML mapping is, or the YAML error (as the loader words it)."""
    try:
        root = yaml.compose(text, Loader=safeyaml.BaseLoader)
    except yaml.YAMLError as e:
        return {}, Problem.of(DataError(rel, safeyaml.yaml_problem(e, first_line)))
    if not isinstance(root, yaml.MappingNode):
        return {}, None
    return {str(key.value): (key.start_mark.line + first_line, key.start_mark.column + 1)
            for key, _ in root.value if isinstance(key, yaml.ScalarNode)}, None


def _at(rel: str, node: tuple[int, int] | None, severity: str, message: str,
        code: str = "") -> Problem:
    line, col = node or (0, 0)
    return Problem(rel, line, col, severity, message, code)


def _unknown_keys(rel: str, nodes: Keys, known: tuple[str, ...]) -> list[Problem]:
    out = []
    for key, node in nodes.items():
        if key in known:
            continue
        guess = suggest(key, known)
        hint = f"; did you mean {guess!r}?" if guess else f" (known keys: {', '.join(known)})"
        out.append(_at(rel, node, WARNING, f"unknown key {key!r} is ignored{hint}",
                       "unknown-key"))
    return out
