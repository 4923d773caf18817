"""What each document is made from: its recipe, a hash of exactly the values its bytes
depend on, so a build re-makes only the documents whose recipe changed.

`Recipes` keeps the last build's `Shape` (every scope's visible articles) and the
recipes it worked out.  For a corpus patched from the one the last build used
(articles edited in place, see corpus.Library), the last shape with those articles
swapped is the new one: only the scopes they are in are `affected`, and only those
get new recipes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import NamedTuple

import pytz

from . import feeds, versions
from .assembly import Corpus
from .documents import OPML_TYPE, PAGE_TYPE
from .model import Article, swap_sorted
from .scopes import Scope, ScopeKey, members, scope_keys

EPOCH = dt.datetime(2000, 1, 1, tzinfo=pytz.utc)


@dataclass(frozen=True)
class Shape:
    """Every scope's visible articles as of `now`, for the corpus of serial `serial`."""
    serial: int                                     # of the corpus it is the shape of
    now: dt.datetime
    visible: int                                    # how many articles were visible
    held: dict[ScopeKey, list[Article]]             # scope -> visible articles, newest first
    pending: set[ScopeKey]                          # scopes with scheduled articles
    updated_all: dt.datetime                        # the newest update of a visible article
    affected: set[ScopeKey] | None                  # scopes changed since the last (None: all)


class FeedPlan(NamedTuple):
    """One feed to make: its scope, the articles it holds, its format."""
    scope: Scope
    entries: list[Article]
    format: str


class PagePlan(NamedTuple):
    """One page (or the OPML) to make: its template, its scope, the articles it lists."""
    template: str           # "index.html", "scope.html" or "feeds.opml"
    scope: Scope | None
    articles: list[Article]


@dataclass
class Plan:
    """What a build makes: every document's recipe, and what each is made of."""
    scopes: list[Scope]                             # the published scopes
    recipes: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (recipe, type)
    pages: dict[str, PagePlan] = field(default_factory=dict)    # every document but feeds
    feed_of: dict[str, FeedPlan] = field(default_factory=dict)  # path -> the feed it is


class _ScopeRecipes(NamedTuple):
    """A scope's feed and page recipes, and what they depend on besides its articles."""
    stamp: tuple            # what they depend on besides the scope's articles
    feed: str
    page: str


class _EntryRecipes:
    """What an article's feed entry is made from (an article is in up to 7 feeds: worked
    out once each per build)."""

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.made: dict[str, str] = {}

    def __call__(self, a: Article) -> str:
        r = self.made.get(a.path)
        if r is None:
            corpus = self.corpus
            r = self.made[a.path] = repr((
                a.path, a.digest, a.image_length,
                [(p.name, p.url, p.slug) for p in corpus.authors_of(a)],
                [c.name for c in corpus.categories_of(a)]))
        return r


class Recipes:
    """The shape and recipes of the last build, and those of the next one."""

    def __init__(self) -> None:
        self.last: Shape | None = None                  # of the last build (see shape)
        self._known: dict[ScopeKey, _ScopeRecipes] = {}

    def shape(self, corpus: Corpus, visible: list[Article], now: dt.datetime) -> Shape:
        """Every scope's visible articles, the scopes with scheduled ones, the newest
        update: the last shape patched when the corpus is the last one's with articles
        swapped (see the module docstring), else worked out anew."""
        last, self.last = self.last, None
        shape = last and corpus.patched_from is not None and \
            corpus.patched_from == last.serial and len(visible) == last.visible and \
            _patch(last, corpus, now)
        if not shape:
            pending = members(corpus, corpus.articles[:len(corpus.articles) - len(visible)])
            shape = Shape(corpus.serial, now, len(visible), members(corpus, visible),
                          {key for key, items in pending.items() if items}, max(
                              (a.updated for a in visible), key=lambda d: d.timestamp(),
                              default=EPOCH), None)
        self.last = shape
        return shape

    def plan(self, corpus: Corpus, shape: Shape, scopes: list[Scope],
             visible: list[Article]) -> Plan:
        """The recipe of every document, and what each page and feed is made of."""
        site = corpus.site
        limit = site.items_per_feed
        code = versions.version(versions.DOCUMENTS)     # part of every recipe
        plan = Plan(scopes)
        entry_recipe = _EntryRecipes(corpus)
        affected = shape.affected or set()
        known = self._known if shape.affected is not None else {}
        self._known = {}
        for scope in scopes:
            items = shape.held[scope.key]
            top = items[:limit]
            stamp = (scope, None if top else shape.updated_all)
            memo = known.get(scope.key)
            if memo is None or memo.stamp != stamp or scope.key in affected:
                memo = _ScopeRecipes(stamp, _hash(
                    code, site, scope, "\n".join(map(entry_recipe, top)),
                    "" if top else shape.updated_all),
                    "" if scope.kind == "site" else _hash(code, site, scope, _listed(items)))
            self._known[scope.key] = memo
            for fmt, writer in feeds.WRITERS.items():
                path = f"{scope.feed_base}.{fmt}"
                plan.recipes[path] = (memo.feed + fmt, writer.content_type)
                plan.feed_of[path] = FeedPlan(scope, top, fmt)
            if scope.kind != "site":
                plan.recipes[scope.page] = (memo.page, PAGE_TYPE)
                plan.pages[scope.page] = PagePlan("scope.html", scope, items)
        outline = _hash(code, site, [(s.kind, s.slug, s.name, s.description)
                                     for s in scopes])
        recent = [(a.path, a.digest) for a in visible[:limit]]
        plan.recipes[""] = (_hash(outline, recent), PAGE_TYPE)
        plan.pages[""] = PagePlan("index.html", scopes[0], visible[:limit])
        plan.recipes["feeds.opml"] = (outline, OPML_TYPE)
        plan.pages["feeds.opml"] = PagePlan("feeds.opml", None, [])
        return plan


def _patch(last: Shape, corpus: Corpus, now: dt.datetime) -> Shape | None:
    """`last` with the corpus's swapped articles swapped in its scopes' lists; None when
    that is not the shape (an article went live or back, the newest update moved)."""
    held = dict(last.held)
    affected: set[ScopeKey] = set()
    updated_all = last.updated_all
    top = updated_all.timestamp()
    for was, new in corpus.swaps:
        if (was.published <= last.now) != (new.published <= now):
            return None                 # it went live, or back to scheduled
        if new.published > now:
            continue                    # scheduled: in no scope's list
        if was.updated.timestamp() >= top or new.updated.timestamp() == top:
            return None                 # the newest update may be another one's
        if new.updated.timestamp() > top:
            updated_all, top = new.updated, new.updated.timestamp()
        keys = scope_keys(corpus, new)
        for key in keys:
            items = held[key] = list(held[key]) if key not in affected else held[key]
            if not swap_sorted(items, was, new):
                return None
        affected.update(keys)
    return Shape(corpus.serial, now, last.visible, held, last.pending, updated_all, affected)


def tops(lists: Iterable[list[Article]]) -> list[Article]:
    """The articles of these lists, each once."""
    return list({a.path: a for items in lists for a in items}.values())


def _hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _listed(articles: list[Article]) -> str:
    """A hash of which files, with which bytes, a list holds in which order (a scope page
    lists thousands: joined, not repr'd as tuples, which cost five times as much)."""
    return hashlib.sha256("\0".join(chain.from_iterable(map(_PATH_AND_DIGEST, articles)))
                          .encode()).hexdigest()


_PATH_AND_DIGEST = attrgetter("path", "digest")
