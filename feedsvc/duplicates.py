"""Settle ids and slugs that more than one article file asks for.

An id names an entry for feed readers, so one file keeps it and every other file asking
for it is left out (with an error) until its id is changed.  A slug only names a page:
every article is published, and those that cannot have theirs get a fallback
(`names.fallback_slugs`), with a warning.  Either way the file that was published with it
keeps it, so a new file never moves a published article; among others the earliest
`date` wins, ties broken by path.  Nothing here keeps state: what each file was published
with comes in as `published_with`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from . import names
from .model import Article, DataError

# the last good version of an article's file, the one its feeds hold now, if any
PublishedWith = Callable[[Article], Article | None]


def settle_ids(candidates: list[Article], published_with: PublishedWith,
               errors: list[DataError]) -> list[Article]:
    """The articles that keep their ids (or whose last good version does), in the order
    of `candidates` but those that hold an id first; an error for each one left out."""
    def holds(a: Article) -> bool:
        good = published_with(a)
        return good is not None and good.id == a.id

    if len({a.id for a in candidates}) == len(candidates):
        return candidates                   # the usual case: nothing to settle
    kept: list[Article] = []
    owner: dict[str, Article] = {}
    for a in sorted(candidates, key=lambda a: (not holds(a), *_oldest_first(a))):
        holder = owner.get(a.id)
        if holder is not None:
            good = published_with(a)
            stays = good is not None and good != a and good.id not in owner
            left = ("this edit is not published, its last good version stays," if stays
                    else "this file is left out of every feed")
            errors.append(DataError(a.path, f"duplicate id {a.id!r}: {holder.path} keeps "
                                    f"it ({_why(holder, a)}); {left} until you give it "
                                    "another 'id'"))
            if good is None or not stays:
                continue
            a = good                    # the edit is skipped; its last good version stays
        owner[a.id] = a
        kept.append(a)
    return kept


def settle_slugs(articles: list[Article], published_with: PublishedWith,
                 errors: list[DataError]) -> list[Article]:
    """Every article with a slug of its own, in the order of `articles` (a warning for
    each one published with another slug than it asks for)."""
    owner, given = _assign(articles, published_with)
    out: list[Article] = []
    for a in articles:
        slug = given.get(a.path, a.slug)
        if slug != a.slug:
            holder = owner[a.slug]
            errors.append(DataError(a.path, f"slug {a.slug!r} is also asked for by "
                                    f"{holder.path}, which keeps it ({_why(holder, a)}); "
                                    f"this article is published as {slug!r} (set 'slug' "
                                    "to choose another)", warning=True))
        out.append(a if slug == a.slug else replace(a, slug=slug))
    return out


def _assign(articles: list[Article], published_with: PublishedWith
            ) -> tuple[dict[str, Article], dict[str, str]]:
    """(slug -> the article that has it, path -> slug) where slugs are asked for more than
    once.  First the slug each was published with stays with it (a fallback slug only
    while another file asks for the slug it stands in for); then each takes the slug it
    asks for; then those left take their first free fallback.  Each round goes in the
    order of `date`, then path."""
    asked = Counter(a.slug for a in articles)
    owner: dict[str, Article] = {}
    given: dict[str, str] = {}              # path -> slug
    if len(asked) == len(articles):         # as usual, each has the slug it asks for
        return owner, given
    order = sorted(articles, key=_oldest_first)
    for a in order:
        good = published_with(a) if asked[a.slug] > 1 else None
        if good is not None and good.slug not in owner and (
                good.slug == a.slug or good.slug in names.fallback_slugs(a.path, a.slug)):
            owner[good.slug], given[a.path] = a, good.slug
    for a in order:
        if a.path not in given and a.slug not in owner:
            owner[a.slug], given[a.path] = a, a.slug
    for a in order:
        if a.path not in given:
            slug = _fallback(a, owner)
            owner[slug], given[a.path] = a, slug
    return owner, given


def _fallback(a: Article, owner: dict[str, Article]) -> str:
    """The first fallback slug of `a` nobody has."""
    fallbacks = names.fallback_slugs(a.path, a.slug)
    slug, n = next((s for s in fallbacks if s not in owner), ""), 2
    while not slug or slug in owner:    # only if other files ask for these too
        slug, n = f"{fallbacks[-1]}-{n}", n + 1
    return slug


def _oldest_first(a: Article) -> tuple[float, str]:
    return -a.sort_key[0], a.path


def _why(holder: Article, other: Article) -> str:
    """Why `holder` keeps an id or slug that `other` asks for too (the same words in every
    process, unless only this one's history explains it)."""
    if holder.published < other.published:
        return "its date is earlier"
    if holder.published == other.published and holder.path < other.path:
        return "the same date, and its path sorts first"
    return "it was published with it first"
