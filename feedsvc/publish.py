"""Turn a Corpus into every published document: feeds, pages and the OPML.

A document is rebuilt only when its recipe (a hash of exactly what it is made
from, see recipes) changed, so an edit to one article re-renders only the
documents that hold it, and every other document keeps its bytes.  The steps:
`Recipes` plans every document, `Bodies` renders the article bodies the new
feeds need, `feedmaker` writes those feeds, `htmlpages` and `Views` render the pages.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial

from . import feedmaker, splice
from .assembly import Corpus
from .bodies import Bodies, Body
from .cache import Cache
from .documents import (  # noqa: F401 - read from here by tests, pages and callers
    GZIP_LEVEL,
    OPML_TYPE,
    PAGE_TYPE,
    Document,
    compress,
    decompress,
    etag_of,
    pack,
)
from .hubs import Hubs
from .model import Article
from .recipes import Plan, Recipes, tops
from .scopes import published, scopes_of
from .views import Views


class Publisher:
    """Builds every document of a corpus, re-making only those whose recipe changed."""

    def __init__(self, cache: Cache | None = None, hubs: Hubs = Hubs()):
        self.cache = cache or Cache(None)
        self.hubs = hubs                # advertised in every feed (part of its recipe)
        self.bodies = Bodies(self.cache)
        self.recipes = Recipes(hubs)
        self.views = Views(self.bodies)
        # recipes of feeds made with a body missing (a file changed under us, or a last good
        # version whose file holds other bytes): never cached, made again by every build
        self.incomplete: set[str] = set()
        # of those, the ones first found incomplete by the last build: worth a quick retry
        self.partial: set[str] = set()
        # a feed's identity ETag -> the keys of its entries: what splice keeps of it
        self.entry_keys: dict[str, tuple[splice.Key, ...]] = {}

    def build(self, corpus: Corpus, now: dt.datetime,
              previous: dict[str, Document] | None = None) -> dict[str, Document]:
        """Every document as of `now`; those whose recipe is unchanged are reused."""
        previous = previous or {}
        visible = corpus.visible(now)
        shape = self.recipes.shape(corpus, visible, now)
        scopes = published(scopes_of(corpus), shape.held, shape.pending)
        limit = 2 * len(corpus.articles) + 1000 if previous else 0
        self.bodies.trim(limit)                     # what was kept of articles long gone
        self.views.trim(limit)
        # A full build needs the bodies of (nearly) every feed: they start rendering on every
        # core now, while this process works out the recipes (a restart that has lost its
        # checkpoint but kept the caches reads them from the cache, unused, and no more).
        early = None if previous else self.bodies.start(corpus, tops(
            shape.held[s.key][:corpus.site.items_per_feed] for s in scopes))
        plan = self.recipes.plan(corpus, shape, scopes, visible,
                                 partial(self.views.listing, corpus.site))
        out = self._reused(plan, previous)
        todo = [p for p in sorted(plan.recipes) if p not in out]
        stored = self.cache.get("gzdocs", [plan.recipes[p][0] for p in todo])   # (gz, ETag)
        packed = self._make(corpus, plan, [p for p in todo if plan.recipes[p][0] not in stored],
                            early, shape.updated_all, previous)
        for path in todo:
            recipe, ctype = plan.recipes[path]
            etag, gz = packed[recipe] if recipe in packed else stored[recipe][::-1]
            out[path] = Document(path, recipe, ctype, etag, gz)
        self._trim_entry_keys(out)
        if not previous:                  # a full build knows everything still in use
            self.forget(corpus, {r for r, _ in plan.recipes.values()})
        return dict(sorted(out.items()))

    def _reused(self, plan: Plan, previous: dict[str, Document]) -> dict[str, Document]:
        """The documents of `previous` made by the recipes they would be made by now (but
        those made with a body missing)."""
        return {p: previous[p] for p, (r, _) in plan.recipes.items()
                if p in previous and previous[p].recipe == r and r not in self.incomplete}

    def _make(self, corpus: Corpus, plan: Plan, missing: list[str],
              early: Callable[[], dict[str, Body]] | None,
              updated_all: dt.datetime, previous: dict[str, Document]
              ) -> dict[str, tuple[str, bytes]]:
        """recipe -> (ETag, gzip bytes) of the documents at `missing`, made anew; what
        may be cached is, later."""
        groups = _feed_groups(plan, [p for p in missing if p in plan.feed_of])
        # The bodies render on every core while this process renders and compresses the
        # pages (it has time to spare while they do: not a step of its own at the end) ...
        rendering = early or self.bodies.start(corpus, tops(g.entries for g in groups))
        pages = {plan.recipes[p][0]: pack(plan.pages[p]()) for p in missing if p in plan.pages}
        # ... then the writers and gzip run there too, one job per scope (every format)
        rendered = rendering()
        key = self._body_key(corpus)
        partial_feeds = feedmaker.bodiless(groups, rendered, key)
        written = feedmaker.make(corpus, groups, rendered, key, updated_all,
                                 self.hubs.urls(corpus.site.base_url),
                                 self._last(groups, previous))
        packed = written.packed
        self.entry_keys.update(written.entry_keys)
        packed.update(pages)
        self._keep(packed, partial_feeds)
        return packed

    def _trim_entry_keys(self, documents: dict[str, Document]) -> None:
        """Keep the entry keys of feeds no longer published (a cache may bring their bytes
        back: an edit undone), up to a bound."""
        if len(self.entry_keys) > 4 * len(documents) + 1000:
            self.entry_keys = {d.etag: self.entry_keys[d.etag] for d in documents.values()
                               if d.etag in self.entry_keys}

    def _last(self, groups: list[feedmaker.FeedGroup], previous: dict[str, Document]
              ) -> dict[str, splice.Last]:
        """The feeds of `groups` as `previous` holds them, by feed base, where this process
        knows their entries (made here, in every format from the same entries)."""
        out = {}
        for g in groups:
            docs = [previous.get(f"{g.scope.feed_base}.{fmt}") for fmt in g.formats]
            keys = {self.entry_keys.get(d.etag) if d else None for d in docs}
            known = keys.pop() if len(keys) == 1 else None
            if known is not None:
                pairs = [(fmt, d) for fmt, d in zip(g.formats, docs, strict=True) if d]
                out[g.scope.feed_base] = splice.Last(known, {fmt: d.gzip for fmt, d in pairs},
                                                     {fmt: d.etag for fmt, d in pairs})
        return out

    def _body_key(self, corpus: Corpus) -> Callable[[Article], str]:
        site = corpus.site
        return lambda a: self.bodies.key(site, a)

    def _keep(self, packed: dict[str, tuple[str, bytes]], partial_feeds: set[str]) -> None:
        """Cache what was made, but feeds made with a body missing.  A quick retry once;
        incomplete again right away, the body cannot be had for now (a last good version
        whose file holds other bytes): made again by every later build, which only a
        change of the data starts, until the body is back."""
        self.cache.put_later("gzdocs", {
            recipe: (gz, etag) for recipe, (etag, gz) in packed.items()
            if recipe not in partial_feeds})
        self.partial = partial_feeds - self.incomplete
        self.incomplete = partial_feeds

    def forget(self, corpus: Corpus, recipes: set[str]) -> None:
        """Let the cache drop documents not made by `recipes` and bodies of articles gone
        (every article's body stays: its page renders it)."""
        self.cache.prune_later("gzdocs", recipes)
        self.bodies.forget(corpus)

    def article_page(self, corpus: Corpus, article: Article) -> bytes:
        return self.views.article_page(corpus, article)


def _feed_groups(plan: Plan, paths: list[str]) -> list[feedmaker.FeedGroup]:
    """The feeds at `paths` by scope, in the order of their first path: one job each."""
    by_base: dict[str, list[str]] = {}
    for p in paths:
        by_base.setdefault(plan.feed_of[p].scope.feed_base, []).append(p)
    return [feedmaker.FeedGroup(plan.feed_of[group[0]].scope, plan.feed_of[group[0]].entries,
                                [plan.feed_of[p].format for p in group],
                                [plan.recipes[p][0] for p in group])
            for group in by_base.values()]
