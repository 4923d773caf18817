"""The data feedsvc publishes: plain frozen records, no I/O, no Flask, no feedgen.

Datetimes are always aware and keep the offset the article was written in
(or the site's zone at that date): readers see the true local time.
"""
from __future__ import annotations

import datetime as dt
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from operator import attrgetter

MESSAGE_LIMIT = 500    # characters of a DataError message; a longer one is cut to this


def _cut(message: str) -> str:
    """`message`, or its start, a note of how much is cut and its end (where a message
    says what to do), in at most MESSAGE_LIMIT characters: a value quoted in a message
    may be megabytes long, and every log line and /healthz answer would carry it.
    Cutting a cut message again changes nothing."""
    if len(message) <= MESSAGE_LIMIT:
        return message
    room = MESSAGE_LIMIT - len(f"\u2026 ({len(message)} characters cut) \u2026")
    head, tail = room - room // 3, room // 3
    return (f"{message[:head]}\u2026 ({len(message) - head - tail} characters cut) "
            f"\u2026{message[len(message) - tail:]}")


class DataError(Exception):
    """A problem with one input file, reported as ``path: message``."""

    def __init__(self, path: str, message: str, *, warning: bool = False):
        message = _cut(message)
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.warning = warning

    def __reduce__(self):       # pickled to and from worker processes
        return self.__class__, (self.path, self.message), self.__dict__

    def __eq__(self, other: object) -> bool:  # the same problem found again is not news
        return isinstance(other, DataError) and \
            (self.path, self.message, self.warning) == (other.path, other.message, other.warning)

    def __hash__(self) -> int:
        return hash((self.path, self.message))

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message,
                "level": "warning" if self.warning else "error"}


@dataclass(frozen=True)
class Site:
    """The site's settings from `site.yml`, with their defaults."""
    title: str
    description: str
    base_url: str          # always ends with "/"
    language: str
    timezone: str
    items_per_feed: int = 50
    trusted_html: bool = False  # publish bodies' raw HTML unsanitized (see content.py)
    page_size: int = 50         # articles per category or author page (htmlpages.py)


@dataclass(frozen=True)
class Person:
    """An author, from `authors/<slug>.yml` or named only in an article."""
    name: str
    slug: str
    bio: str = ""
    email: str = ""
    url: str = ""


@dataclass(frozen=True)
class Category:
    """A category, named by articles, its description from `categories.yml`."""
    name: str
    slug: str
    description: str = ""


@dataclass(frozen=True)
class Article:
    """One article file, parsed and checked (its body is rendered apart: bodies.py)."""
    path: str                       # relative to the data directory, "/"-separated
    id: str
    slug: str
    title: str
    published: dt.datetime
    updated: dt.datetime
    authors: tuple[str, ...]        # names as written; resolved to Person by the corpus
    categories: tuple[str, ...]
    summary: str                    # plain text; "" means "first paragraph of the body"
    link: str = ""                  # canonical URL; "" means our own article page
    image: str = ""
    image_type: str = ""
    image_length: int = 0
    draft: bool = False
    language: str = ""              # BCP 47 tag from front matter; "" means the site's
    image_alt: str = ""             # the image's text alternative ("" : decorative)
    image_caption: str = ""
    digest: str = ""                # sha256 of the file's bytes; the body is read again from
                                    # the file only to render it (loader.body_of)
    # newest first, ties broken by path so every process agrees: worked out once, as
    # sorting and bisecting tens of thousands of articles asks for it again and again
    sort_key: tuple[float, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sort_key", (-self.published.timestamp(), self.path))


# key= for sorting and bisecting articles newest first (ties by path)
newest_first = attrgetter("sort_key")


def swap_sorted(articles: list[Article], was: Article, new: Article) -> bool:
    """Replace `was` by `new` in a newest-first list, each at its sorted place (in place);
    False, the list untouched, when `was` is not in it."""
    i = bisect_left(articles, was.sort_key, key=newest_first)
    if i == len(articles) or articles[i] != was:
        return False
    del articles[i]
    insort(articles, new, key=newest_first)
    return True
