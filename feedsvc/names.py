"""Names to slugs: categories and authors, merged and disambiguated deterministically;
and the slugs an article falls back on when another article holds its own.

Names that differ only in case, spacing, hyphens, underscores or punctuation are one
category or author (`Hard News`, `hard-news`, `HARD NEWS!`, `hard_news`).  A symbol
that carries meaning keeps names apart: `C`, `C++` and `C#` are three categories.
Different names that python-slugify turns into the same slug are all kept: names
without such symbols take the plain slugs first, in sorted order; a name with a
symbol then takes its slug with the symbols spelled out (`c-plus-plus`, `c-sharp`),
and what is still taken gets `slug-2`, `slug-3`, ... with a warning.
"""
from __future__ import annotations

import hashlib
import posixpath
import unicodedata
from collections import Counter
from functools import lru_cache

from slugify import slugify

from .model import Article, Category, DataError, Person

CATEGORIES_FILE = "categories.yml"     # where warnings about the names it holds point

# Symbols that make a name another name (`C++`, `C#`, `AT&T`, `100%`), spelled out in a
# slug when the slug without them is taken.  Beside these, every character Unicode
# calls a math, currency or other symbol (`=`, `<`, `|`, `~`, `€`, `©`) tells names apart.
SPELLED = (("+", "plus"), ("#", "sharp"), ("&", "and"), ("@", "at"), ("%", "percent"),
           ("$", "dollar"), ("*", "star"), ("=", "equals"))
_REPLACEMENTS = tuple((sign, f" {word} ") for sign, word in SPELLED)
_MEANINGFUL = frozenset(sign for sign, _ in SPELLED)
_SYMBOL_CATEGORIES = frozenset(("Sm", "Sc", "So"))


@lru_cache(maxsize=65536)
def name_key(name: str) -> str:
    """What makes two names the same category or author: their letters and digits, case
    folded, and the symbols that carry meaning; not spacing, hyphens, underscores or other
    punctuation (`HARD NEWS!` is `Hard News`, `C++` is not `C`)."""
    return "".join(ch for ch in unicodedata.normalize("NFC", name).casefold()
                   if ch.isalnum() or _meaningful(ch))


def _meaningful(ch: str) -> bool:
    return ch in _MEANINGFUL or unicodedata.category(ch) in _SYMBOL_CATEGORIES


def _has_symbols(name: str) -> bool:
    return any(_meaningful(ch) for ch in name)


def assign_slugs(keys: list[tuple[str, str]], errors: list[DataError], what: str,
                  where: dict[str, str]) -> dict[str, str]:
    """(name key, display name) pairs -> slug per key.  Names without symbols come
    first, in sorted order; a taken slug is tried with the name's symbols spelled out,
    then with -2, -3 ... (see the module docstring).  A warning about a name points at
    `where[key]`, the file that brought the name in."""
    slugs: dict[str, str] = {}
    taken: dict[str, str] = {}
    for key, name in sorted(keys, key=lambda kn: (_has_symbols(kn[1]), kn)):
        base = slugify(name) or "x"
        slug, n = base, 2
        if slug in taken and _has_symbols(name):
            slug = slugify(name, replacements=_REPLACEMENTS) or base
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        if slug != base:
            errors.append(DataError(where[key], f"{what} {name!r} and {taken[base]!r} share "
                                                f"the slug {base!r}; {name!r} is published "
                                                f"as {slug!r}", warning=True))
        taken[slug] = name
        slugs[key] = slug
    return slugs


def people(people: list[tuple[str, Person]], articles: list[Article],
            errors: list[DataError]) -> tuple[dict[str, Person], dict[str, str]]:
    by_key: dict[str, Person] = {}
    files: dict[str, str] = {}
    for rel, p in people:                          # author files: the file name is the slug
        key = name_key(p.name)
        if key in by_key:
            errors.append(DataError(rel, f"author {p.name!r} is also defined "
                                    f"in {files[key]}; this file is ignored"))
            continue
        by_key[key] = p
        files[key] = rel
    spelled = _spellings(Counter(name for a in articles for name in a.authors))
    for key in by_key:
        spelled.pop(key, None)
    names = {key: _display(c) for key, c in spelled.items()}
    taken = {p.slug for p in by_key.values()}
    slugs = assign_slugs(sorted(names.items()), errors, "author",
                         _first_uses(names, articles, "authors"))
    out = {p.slug: p for p in by_key.values()}
    keys = {key: p.slug for key, p in by_key.items()}
    for key, slug in slugs.items():
        while slug in taken:                       # an implicit author clashing with a file
            slug += "-2"
        out[slug] = Person(name=names[key], slug=slug)
        keys[key] = slug
        taken.add(slug)
    return dict(sorted(out.items())), keys


def categories(described: dict[str, str], articles: list[Article],
                errors: list[DataError]) -> tuple[dict[str, Category], dict[str, str]]:
    spelled = _spellings(Counter(name for a in articles for name in a.categories))
    names = {key: _display(c) for key, c in spelled.items()}
    descriptions: dict[str, str] = {}
    for name, text in described.items():           # categories.yml spells the name
        key = name_key(name)
        names[key] = name
        descriptions[key] = text
    names.pop("", None)
    where = {**_first_uses(names, articles, "categories"),
             **dict.fromkeys(descriptions, CATEGORIES_FILE)}
    slugs = assign_slugs(sorted(names.items()), errors, "category", where)
    out = {slug: Category(name=names[key], slug=slug, description=descriptions.get(key, ""))
           for key, slug in slugs.items()}
    return dict(sorted(out.items())), slugs


def _spellings(uses: Counter) -> dict[str, Counter]:
    """Name key -> how often each spelling of it is used (counted per spelling first:
    a corpus has a few hundred names and tens of thousands of uses)."""
    spelled: dict[str, Counter] = {}
    for name, n in uses.items():
        spelled.setdefault(name_key(name), Counter())[name] += n
    return spelled


def _first_uses(names: dict[str, str], articles: list[Article], field: str) -> dict[str, str]:
    """Name key -> the path of the first article, in path order, that uses the name as
    `names` spells it (its `authors` or `categories`, per `field`)."""
    wanted = {name: key for key, name in names.items()}
    out: dict[str, str] = {}
    for a in articles:
        for name in getattr(a, field):
            key = wanted.get(name)
            if key is not None and (key not in out or a.path < out[key]):
                out[key] = a.path
    return out


def _display(spellings: Counter) -> str:
    """The most used spelling of a name; ties go to the first in sorted order."""
    return sorted(spellings.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def fallback_slugs(path: str, slug: str) -> list[str]:
    """The slugs the article at `path` (`articles/...`) takes, in this order, when another
    article holds `slug`: its folder's name before it (`articles/2016/weekly-roundup.md`
    gives `2016-weekly-roundup`), then one more folder up at a time
    (`articles/names/2016/...` gives `names-2016-weekly-roundup` next), then `slug` with
    six hex digits of a hash of the path.  They depend on the file's own path alone: no
    other file changes them."""
    folders = posixpath.dirname(path).split("/")[1:]        # below articles/
    out: list[str] = []
    for i in range(len(folders) - 1, -1, -1):
        candidate = slugify(" ".join([*folders[i:], slug]))
        if candidate and candidate != slug and candidate not in out:
            out.append(candidate)
    out.append(f"{slug}-{hashlib.sha256(path.encode()).hexdigest()[:6]}")
    return out
