"""Assembly of the Corpus: the articles, authors and categories the records make, either
anew or, when only articles changed in place, the last corpus with them swapped."""
from __future__ import annotations

import datetime as dt
import itertools
from bisect import bisect_left
from dataclasses import dataclass, field, replace

from . import names
from .model import Article, Category, DataError, Person, Site, newest_first, swap_sorted
from .names import name_key
from .records import Record, Records

_SERIALS = itertools.count(1)

Swap = tuple[Article, Article]      # (was, now) of an article edited in place


@dataclass
class Corpus:
    """One consistent view of the data directory: what every document is made from."""
    root: str                               # the data directory (bodies are read from it)
    site: Site
    articles: list[Article]                 # every non-draft article, newest first
    authors: dict[str, Person]              # slug -> person
    categories: dict[str, Category]         # slug -> category
    author_slugs: dict[str, str]            # name key -> slug
    category_slugs: dict[str, str]          # name key -> slug
    errors: list[DataError] = field(default_factory=list)
    # set when this corpus is the one of serial `patched_from` with articles swapped
    # (old, new) and nothing else changed (see `patched`): a build redoes only the
    # scopes those articles are in
    patched_from: int | None = field(default=None, repr=False, compare=False)
    swaps: tuple[Swap, ...] = field(default=(), repr=False, compare=False)
    # which corpus this is, unique in this process (a new one for every corpus made)
    serial: int = field(default_factory=lambda: next(_SERIALS), init=False, repr=False,
                        compare=False)
    _authors_by_names: dict = field(default_factory=dict, repr=False, compare=False)
    _categories_by_names: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        """A checkpoint keeps this corpus, not what it was patched from."""
        return {**self.__dict__, "patched_from": None, "swaps": ()}

    def __setstate__(self, state: dict) -> None:
        """Read back in another process: a serial of this one (none it has given out)."""
        self.__dict__.update(state, serial=next(_SERIALS))

    def visible(self, now: dt.datetime) -> list[Article]:
        return self.articles[self._first_visible(now):]

    def next_go_live(self, now: dt.datetime) -> dt.datetime | None:
        i = self._first_visible(now)        # newest first: the last future one comes next
        return self.articles[i - 1].published if i else None

    def _first_visible(self, now: dt.datetime) -> int:
        """Articles are sorted newest first: those published by `now` are a suffix."""
        return bisect_left(self.articles, (-now.timestamp(), ""), key=newest_first)

    def authors_of(self, article: Article) -> list[Person]:
        found = self._authors_by_names.get(article.authors)
        if found is None:                       # asked for every article in every build: kept
            slugs = [self.author_slugs.get(name_key(n)) for n in article.authors]
            found = self._authors_by_names[article.authors] = [
                self.authors[s] for s in dict.fromkeys(slugs) if s is not None]
        return found

    def categories_of(self, article: Article) -> list[Category]:
        found = self._categories_by_names.get(article.categories)
        if found is None:
            slugs = [self.category_slugs.get(name_key(n)) for n in article.categories]
            found = self._categories_by_names[article.categories] = [
                self.categories[s] for s in dict.fromkeys(slugs) if s is not None]
        return found



def assemble(root: str, site: Site, records: Records) -> Corpus:
    """The corpus the records make: a bad file publishes its last good version, ids and
    slugs that several files ask for are settled (see Records.unique)."""
    errors: list[DataError] = []
    described: dict[str, str] = {}
    people: list[tuple[str, Person]] = []
    candidates: list[Article] = []
    for rel in sorted(records.parsed):
        rec = records.parsed[rel]
        if isinstance(rec, DataError):
            errors.append(rec)
            rec = records.last_good.get(rel)     # a typo never unpublishes anything
        if isinstance(rec, dict):
            described = rec
        elif isinstance(rec, Person):
            people.append((rel, rec))
        elif isinstance(rec, Article):
            candidates.append(rec)

    articles = records.unique(candidates, errors, site)
    published = [a for a in articles if not a.draft]
    published.sort(key=newest_first)

    authors, author_slugs = names.people(people, published, errors)
    categories, category_slugs = names.categories(described, published, errors)
    return Corpus(root=root, site=site, articles=published, authors=authors,
                  categories=categories, author_slugs=author_slugs,
                  category_slugs=category_slugs,
                  errors=sorted(errors, key=lambda e: (e.path, e.message)))


def patched(old: Corpus, swaps: list[Swap], errors: list[DataError]) -> Corpus | None:
    """`old` with the articles of `swaps` swapped in (and `errors`, as assembled): what
    `assemble` would make when the edits change nothing another article or a name
    depends on.  None when an article was not published as it was read."""
    articles = list(old.articles)
    for was, new in swaps:
        if not swap_sorted(articles, was, new):
            return None
    return replace(old, articles=articles, errors=errors, patched_from=old.serial,
                   swaps=tuple(swaps))


def swaps(before: dict[str, Record], records: Records) -> list[Swap] | None:
    """(was, now) of every article whose record changed from `before`, when each was and
    is published and keeps what others depend on (id, slug, draft, authors,
    categories); else None."""
    out = []
    for rel, was in before.items():
        new = records.parsed.get(rel)
        if new == was:
            continue                    # read again (racy, touched), the same record
        if not (rel.startswith("articles/") and isinstance(was, Article)
                and isinstance(new, Article)) or was.draft or new.draft \
                or (was.id, was.slug, was.authors, was.categories) != \
                (new.id, new.slug, new.authors, new.categories):
            return None
        out.append((was, new))
    return out
