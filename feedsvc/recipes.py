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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import NamedTuple

import pytz
from markupsafe import Markup

from . import feeds, htmlpages, versions, views
from .assembly import Corpus
from .documents import OPML_TYPE, PAGE_TYPE
from .hubs import Hubs
from .model import Article, Person, swap_sorted
from .scopes import Scope, ScopeKey, members, scope_keys

Listing = Callable[[Sequence[Article]], Markup]     # the <li> lines of a list

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


@dataclass
class Plan:
    """What a build makes: every document's recipe, and what each is made of."""
    recipes: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (recipe, type)
    pages: dict[str, Callable[[], bytes]] = field(default_factory=dict)     # but feeds
    feed_of: dict[str, FeedPlan] = field(default_factory=dict)  # path -> the feed it is


class _ScopeRecipes(NamedTuple):
    """A scope's part of the plan (its feeds and pages), and what it depends on besides
    the scope's articles: kept, as a refresh touches few scopes."""
    stamp: tuple
    part: Plan


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
            r = self.made[a.path] = repr((      # the slug: the entry's link and body URLs
                a.path, a.digest, a.slug, a.image_length,
                [(p.name, p.url, p.slug) for p in corpus.authors_of(a)],
                [c.name for c in corpus.categories_of(a)]))
        return r


class Recipes:
    """The shape and recipes of the last build, and those of the next one."""

    def __init__(self, hubs: Hubs = Hubs()) -> None:
        self.hubs = hubs                                # advertised in every feed
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
             visible: list[Article], listing: Listing) -> Plan:
        """The recipe of every document, what each feed is made of, and the maker of
        each page (`listing`: the lines of a list of articles)."""
        site = corpus.site
        limit = site.items_per_feed
        code = versions.version(versions.DOCUMENTS)     # part of every recipe
        plan = Plan()
        entry_recipe = _EntryRecipes(corpus)
        affected = shape.affected or set()
        known = self._known if shape.affected is not None else {}
        self._known = {}
        for scope in scopes:
            items = shape.held[scope.key]
            top = items[:limit]
            person = corpus.authors.get(scope.slug) if scope.kind == "author" else None
            stamp = (scope, None if top else shape.updated_all, person)
            memo = known.get(scope.key)
            if memo is None or memo.stamp != stamp or scope.key in affected:
                feed = _hash(code, site, scope, "\n".join(map(entry_recipe, top)),
                             "" if top else shape.updated_all, self.hubs)
                memo = _ScopeRecipes(stamp, _scope_plan(
                    corpus, scope, items, top, person, listing, feed,
                    partial(_hash, code, site, scope, person)))
            self._known[scope.key] = memo
            plan.recipes.update(memo.part.recipes)
            plan.feed_of.update(memo.part.feed_of)
            plan.pages.update(memo.part.pages)
        _site_pages(plan, corpus, shape, scopes, visible[:limit], code, listing)
        return plan


def _scope_plan(corpus: Corpus, scope: Scope, items: list[Article], top: list[Article],
                person: Person | None, listing: Listing, feed: str,
                page_recipe: Callable[..., str]) -> Plan:
    """A scope's feeds (of recipe `feed` and the format), its subscribe page and (but the
    site's) its paginated list pages, each of the recipe of what it lists."""
    site = corpus.site
    part = Plan()
    for fmt, writer in feeds.WRITERS.items():
        path = f"{scope.feed_base}.{fmt}"
        part.recipes[path] = (feed + fmt, writer.content_type)
        part.feed_of[path] = FeedPlan(scope, top, fmt)
    docs = [htmlpages.subscribe_page(site, scope, items, listing)]
    if scope.kind != "site":
        docs += htmlpages.scope_pages(site, scope, items, person, listing)
    for doc in docs:            # a page's recipe: what it lists, not the whole scope
        part.recipes[doc.path] = (page_recipe(doc.part, _listed(doc.lists)), PAGE_TYPE)
        part.pages[doc.path] = doc.make
    return part


def _site_pages(plan: Plan, corpus: Corpus, shape: Shape, scopes: list[Scope],
                recent: list[Article], code: str, listing: Listing) -> None:
    """The index, the directories, the 404 page, the favicon and the OPML."""
    site = corpus.site
    listed = [htmlpages.Listed(s, len(shape.held[s.key])) for s in scopes if s.kind != "site"]
    outline = _hash(code, site, [(s.kind, s.slug, s.name, s.description) for s in scopes])
    counted = _hash(outline, [x.articles for x in listed])
    plan.recipes[""] = (_hash(counted, [(a.path, a.digest) for a in recent]), PAGE_TYPE)
    plan.pages[""] = partial(htmlpages.index_page, site, scopes[0], listed, listing(recent))
    for kind, path in (("category", "categories/"), ("author", "authors/")):
        plan.recipes[path] = (_hash(counted, kind), PAGE_TYPE)
        plan.pages[path] = partial(htmlpages.directory_page, site, scopes[0], kind, listed)
    plan.recipes["favicon.ico"] = (_hash(htmlpages.FAVICON), "image/x-icon")
    plan.pages["favicon.ico"] = partial(bytes, htmlpages.FAVICON)
    plan.recipes[htmlpages.NOT_FOUND] = (_hash(code, site), PAGE_TYPE)
    plan.pages[htmlpages.NOT_FOUND] = partial(htmlpages.not_found_page, site)
    plan.recipes["feeds.opml"] = (outline, OPML_TYPE)
    plan.pages["feeds.opml"] = partial(views.render, "feeds.opml", site=site, scopes=scopes)


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


def _listed(articles: Sequence[Article]) -> str:
    """A hash of which files, with which bytes and slugs, a list holds in which order
    (joined, not repr'd as tuples, which cost five times as much)."""
    return hashlib.sha256("\0".join(chain.from_iterable(map(_PATH_AND_DIGEST, articles)))
                          .encode()).hexdigest()


_PATH_AND_DIGEST = attrgetter("path", "digest", "slug")
