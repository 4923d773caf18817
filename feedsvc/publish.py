"""Turn a Corpus into every published document: feeds, pages and the OPML.

A document is rebuilt only when its recipe (a hash of exactly what it is made
from) changed, so an edit to one article re-renders only the documents that
hold it, and every other document keeps its bytes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import NamedTuple

import jinja2
import pytz
from isal import __version__ as isal_version
from isal import igzip
from markupsafe import Markup

from . import content, feeds, htmlpages, loader, versions, workers
from .cache import Cache
from .corpus import Corpus
from .model import Article, Site, swap_sorted

EPOCH = dt.datetime(2000, 1, 1, tzinfo=pytz.utc)
PAGE_TYPE = "text/html; charset=utf-8"
OPML_TYPE = "text/x-opml; charset=utf-8"


PARALLEL_FEEDS = 40     # scopes whose feeds must be made before a build uses every core

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("feedsvc", "templates"),
    autoescape=jinja2.select_autoescape(("html", "xml", "opml")),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    auto_reload=False)      # package files: no stat of the template on every render


@dataclass(frozen=True)
class Scope:
    kind: str               # "site", "category" or "author"
    slug: str
    name: str
    description: str

    @property
    def feed_base(self) -> str:
        return "feeds/all" if self.kind == "site" else f"feeds/{self.kind}/{self.slug}"

    @property
    def page(self) -> str:
        return "" if self.kind == "site" else f"{self.kind}/{self.slug}/"


@dataclass(frozen=True)
class Document:
    path: str               # URL path without the leading "/"
    recipe: str
    content_type: str
    etag: str               # quoted strong ETag: a hash of the identity bytes
    gzip: bytes             # the only bytes kept (http.Inflated gunzips them when asked)

    @property
    def body(self) -> bytes:
        return decompress(self.gzip)

    @property
    def gzip_etag(self) -> str:
        """The gzip variant's strong ETag: the identity one and the compressor's tag (other
        settings or another ISA-L may give other gzip bytes, which get another ETag)."""
        return f'{self.etag[:-1]}-gz{GZIP_TAG}"'


def etag_of(body: bytes) -> str:
    return '"%s"' % hashlib.sha256(body).hexdigest()[:32]


# ISA-L's level 2: 0.25 s for a 10k cold start's 130 MB of feeds against 0.46 s at level
# 3, for gzip bytes 3% larger (both still about 5x faster than zlib's level 6, which makes
# them 10-13% smaller; see the README's design notes).  It releases the GIL.
GZIP_LEVEL = 2
GZIP_TAG = hashlib.sha256(f"isal {isal_version} {GZIP_LEVEL}".encode()).hexdigest()[:6]


def compress(body: bytes) -> bytes:
    """Deterministic gzip (no timestamp, no file name): same input, same bytes."""
    return igzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def decompress(gz: bytes) -> bytes:
    return igzip.decompress(gz)


def scopes_of(corpus: Corpus) -> list[Scope]:
    site = corpus.site
    out = [Scope("site", "", site.title, site.description)]
    out += [Scope("category", c.slug, c.name, c.description) for c in corpus.categories.values()]
    out += [Scope("author", p.slug, p.name, p.bio) for p in corpus.authors.values()]
    return out


def members(corpus: Corpus, visible: list[Article]) -> dict[tuple[str, str], list[Article]]:
    """Every scope's visible articles, newest first."""
    out: dict[tuple[str, str], list[Article]] = {("site", ""): visible}
    for s in corpus.categories:
        out[("category", s)] = []
    for s in corpus.authors:
        out[("author", s)] = []
    # the lists an article goes to, by its names (articles share a few hundred of them)
    lists: dict[tuple[tuple[str, ...], tuple[str, ...]], list[list[Article]]] = {}
    for a in visible:
        names = (a.categories, a.authors)
        to = lists.get(names)
        if to is None:
            to = lists[names] = [out[("category", c.slug)] for c in corpus.categories_of(a)] \
                + [out[("author", p.slug)] for p in corpus.authors_of(a)]
        for items in to:
            items.append(a)
    return out


@dataclass(frozen=True)
class _Shape:
    serial: int                                     # of the corpus it is the shape of
    now: dt.datetime
    visible: int                                    # how many articles were visible
    held: dict[tuple[str, str], list[Article]]      # scope -> visible articles, newest first
    pending: set[tuple[str, str]]                   # scopes with scheduled articles
    updated_all: dt.datetime                        # the newest update of a visible article
    affected: set[tuple[str, str]] | None           # scopes changed since the last (None: all)


class _FeedPlan(NamedTuple):
    """One feed to make: its scope, the articles it holds, its format."""
    scope: Scope
    entries: list[Article]
    format: str


@dataclass
class _Plan:
    """What a build makes: every document's recipe, and how to make those not at hand."""
    recipes: dict[str, tuple[str, str]]         # path -> (recipe, content type)
    pages: dict[str, Callable[[], bytes]]       # path -> its page (every document but feeds)
    feed_of: dict[str, _FeedPlan]               # path -> the feed it is


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


def _published(scopes: list[Scope], shape: _Shape) -> list[Scope]:
    """A scope whose only articles are still scheduled stays unpublished: its name, page
    and feeds would reveal an embargoed article before its time."""
    return [s for s in scopes if s.kind == "site" or shape.held[(s.kind, s.slug)]
            or (s.kind, s.slug) not in shape.pending]


def _tops(lists: Iterable[list[Article]]) -> list[Article]:
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


# every format, in the order pages list them; the first is the one the OPML lists
_templates.globals["writers"] = feeds.WRITERS


class Publisher:
    def __init__(self, cache: Cache | None = None):
        self.cache = cache or Cache(None)
        # per article path: (the article, the base URL, its listing line / its body key),
        # worked out once for each article object (see _per_article)
        self._items: dict[str, tuple[Article, str, str]] = {}
        self._body_keys: dict[str, tuple[Article, str, str]] = {}
        self._last: _Shape | None = None          # of the last build (see _shape)
        # scope -> (what its recipes depend on besides `affected`, feed recipe, page recipe)
        self._recipes: dict[tuple[str, str], tuple] = {}
        # recipes of feeds made with a body missing (a file changed under us, or a last good
        # version whose file holds other bytes): never cached, made again by every build
        self.incomplete: set[str] = set()
        # of those, the ones first found incomplete by the last build: worth a quick retry
        self.partial: set[str] = set()

    # -- article bodies -----------------------------------------------------
    def page_url(self, site: Site, article: Article) -> str:
        return f"{site.base_url}articles/{article.slug}/"

    def bodies(self, corpus: Corpus, articles: list[Article]) -> dict[str, tuple[str, str]]:
        """(html, summary) per article path; renders only what the cache does not hold."""
        rendered = self.start_bodies(corpus, articles)()
        return {a.path: rendered.get(self.body_key(corpus.site, a), ("", a.summary))
                for a in articles}

    def start_bodies(self, corpus: Corpus, articles: list[Article]
                     ) -> Callable[[], dict[str, tuple[str, str]]]:
        """Begin rendering the bodies of `articles` that the cache does not hold (on every
        core for a large batch); the function returned waits for them and gives every
        body by its key.  A body the file no longer has is missing (its reload is on the
        way)."""
        site = corpus.site
        keys = {a.path: self.body_key(site, a) for a in articles}
        known = self.cache.get("html", list(dict.fromkeys(keys.values())))
        jobs = {keys[a.path]: (corpus.root, a.path, a.digest, self.page_url(site, a), a.summary,
                               site.trusted_html)
                for a in articles if keys[a.path] not in known}
        rendering = content.start_rendering(list(jobs.values()))

        def finish() -> dict[str, tuple[str, str]]:
            fresh = {k: v for k, v in zip(jobs, rendering(), strict=True) if v is not None}
            self.cache.renders += len(fresh)
            self.cache.put_later("html", fresh)
            known.update(fresh)
            return known
        return finish

    # -- documents ----------------------------------------------------------
    def build(self, corpus: Corpus, now: dt.datetime,
              previous: dict[str, Document] | None = None) -> dict[str, Document]:
        """Every document as of `now`; those whose recipe is unchanged are reused."""
        previous = previous or {}
        visible = corpus.visible(now)
        shape = self._shape(corpus, visible, now)
        scopes = _published(scopes_of(corpus), shape)
        if not previous or max(len(self._items), len(self._body_keys)) > \
                2 * len(corpus.articles) + 1000:
            self._items, self._body_keys = {}, {}   # of articles long gone
        # A full build needs the bodies of (nearly) every feed: they start rendering on every
        # core now, while this process works out the recipes (a restart that has lost its
        # checkpoint but kept the caches reads them from the cache, unused, and no more).
        early = None if previous else self._start_every_body(corpus, shape, scopes)
        plan = self._plan(corpus, shape, scopes, visible)
        out = self._reused(plan, previous)
        todo = [p for p in sorted(plan.recipes) if p not in out]
        stored = self.cache.get("gzdocs", [plan.recipes[p][0] for p in todo])   # (gz, ETag)
        packed = self._make(corpus, plan, [p for p in todo if plan.recipes[p][0] not in stored],
                            early, shape.updated_all)
        for path in todo:
            recipe, ctype = plan.recipes[path]
            etag, gz = packed[recipe] if recipe in packed else stored[recipe][::-1]
            out[path] = Document(path, recipe, ctype, etag, gz)
        if not previous:                  # a full build knows everything still in use
            self.forget(corpus, {r for r, _ in plan.recipes.values()})
        return dict(sorted(out.items()))

    def _start_every_body(self, corpus: Corpus, shape: _Shape, scopes: list[Scope]
                          ) -> Callable[[], dict[str, tuple[str, str]]]:
        limit = corpus.site.items_per_feed
        return self.start_bodies(corpus, _tops(
            shape.held[(s.kind, s.slug)][:limit] for s in scopes))

    def _reused(self, plan: _Plan, previous: dict[str, Document]) -> dict[str, Document]:
        """The documents of `previous` made by the recipes they would be made by now (but
        those made with a body missing)."""
        return {p: previous[p] for p, (r, _) in plan.recipes.items()
                if p in previous and previous[p].recipe == r and r not in self.incomplete}

    def _make(self, corpus: Corpus, plan: _Plan, missing: list[str],
              early: Callable[[], dict[str, tuple[str, str]]] | None,
              updated_all: dt.datetime) -> dict[str, tuple[str, bytes]]:
        """recipe -> (ETag, gzip bytes) of the documents at `missing`, made anew; what
        may be cached is, later."""
        new_feeds = [p for p in missing if p in plan.feed_of]
        # The bodies render on every core while this process renders the pages ...
        rendering = early or self.start_bodies(corpus, _tops(
            plan.feed_of[p].entries for p in new_feeds))
        made = {plan.recipes[p][0]: plan.pages[p]() for p in missing if p in plan.pages}
        # ... then the writers and gzip run there too, one job per scope (every format)
        packed, partial_feeds = self._make_feeds(corpus, plan, new_feeds, rendering(),
                                                 updated_all)
        # ISA-L releases the GIL: compress the pages in threads.
        with ThreadPoolExecutor(workers.cores()) as pool:
            packed.update(zip(made, pool.map(_pack, made.values()), strict=True))
        self._keep(packed, partial_feeds)
        return packed

    def _plan(self, corpus: Corpus, shape: _Shape, scopes: list[Scope],
              visible: list[Article]) -> _Plan:
        """The recipe of every document, and how to make each page and feed."""
        site = corpus.site
        limit = site.items_per_feed
        code = versions.version(versions.DOCUMENTS)     # part of every recipe
        plan = _Plan({}, {}, {})
        entry_recipe = _EntryRecipes(corpus)
        affected = shape.affected or set()
        known = self._recipes if shape.affected is not None else {}
        self._recipes = {}
        for scope in scopes:
            key = (scope.kind, scope.slug)
            items = shape.held[key]
            top = items[:limit]
            stamp = (scope, None if top else shape.updated_all)
            memo = known.get(key)
            if memo is not None and memo[0] == stamp and key not in affected:
                recipe, page_recipe = memo[1:]      # nothing it is made from changed
            else:
                recipe = _hash(code, site, scope, "\n".join(map(entry_recipe, top)),
                               "" if top else shape.updated_all)
                page_recipe = "" if scope.kind == "site" else _hash(
                    code, site, scope, _listed(items))
            self._recipes[key] = (stamp, recipe, page_recipe)
            for fmt, writer in feeds.WRITERS.items():
                path = f"{scope.feed_base}.{fmt}"
                plan.recipes[path] = (recipe + fmt, writer.content_type)
                plan.feed_of[path] = _FeedPlan(scope, top, fmt)
            self._plan_scope_pages(plan, corpus, scope, items, _hash(code, page_recipe))
        self._plan_site_pages(plan, corpus, shape, scopes, visible, code)
        return plan

    def _plan_scope_pages(self, plan: _Plan, corpus: Corpus, scope: Scope,
                          items: list[Article], recipe: str) -> None:
        """A scope's subscribe page and (but the site's) its paginated list pages."""
        site = corpus.site
        docs = [htmlpages.subscribe_page(site, scope, items, self._lines(site))]
        person = corpus.authors.get(scope.slug) if scope.kind == "author" else None
        if scope.kind != "site":
            docs += htmlpages.scope_pages(site, scope, items, person, self._lines(site))
        for doc in docs:
            plan.recipes[doc.path] = (_hash(recipe, site, scope, doc.part, person), PAGE_TYPE)
            plan.pages[doc.path] = doc.make

    def _plan_site_pages(self, plan: _Plan, corpus: Corpus, shape: _Shape,
                         scopes: list[Scope], visible: list[Article], code: str) -> None:
        """The index, the directories, the 404 page, the favicon and the OPML."""
        site = corpus.site
        limit = site.items_per_feed
        listed = [htmlpages.Listed(s, len(shape.held[(s.kind, s.slug)]))
                  for s in scopes if s.kind != "site"]
        outline = _hash(code, site, [(s.kind, s.slug, s.name, s.description)
                                     for s in scopes])
        counted = _hash(outline, [x.articles for x in listed])
        recent = [(a.path, a.digest) for a in visible[:limit]]
        plan.recipes[""] = (_hash(counted, recent), PAGE_TYPE)
        plan.pages[""] = partial(htmlpages.index_page, site, scopes[0], listed,
                                 self._listing(site, visible[:limit]))
        for kind, path in (("category", "categories/"), ("author", "authors/")):
            plan.recipes[path] = (_hash(counted, kind), PAGE_TYPE)
            plan.pages[path] = partial(htmlpages.directory_page, site, scopes[0], kind, listed)
        plan.recipes["favicon.ico"] = (_hash(htmlpages.FAVICON), "image/x-icon")
        plan.pages["favicon.ico"] = partial(bytes, htmlpages.FAVICON)
        plan.recipes[htmlpages.NOT_FOUND] = (_hash(code, site), PAGE_TYPE)
        plan.pages[htmlpages.NOT_FOUND] = partial(htmlpages.not_found_page, site)
        plan.recipes["feeds.opml"] = (outline, OPML_TYPE)
        plan.pages["feeds.opml"] = partial(_render, "feeds.opml", site=site, scopes=scopes)

    def _make_feeds(self, corpus: Corpus, plan: _Plan, paths: list[str],
                    rendered: dict[str, tuple[str, str]], updated_all: dt.datetime
                    ) -> tuple[dict[str, tuple[str, bytes]], set[str]]:
        """(recipe -> (ETag, gzip bytes), recipes of feeds made with a body missing) of the
        feeds at `paths`, written and compressed on every core, one job per scope (every
        format).  Jobs are made as they go out, and a body is let go (`rendered` is emptied)
        once its last feed has gone out."""
        site = corpus.site
        groups: dict[str, list[str]] = {}
        for p in paths:
            groups.setdefault(plan.feed_of[p].scope.feed_base, []).append(p)
        uses = Counter(a.path for group in groups.values()
                       for a in plan.feed_of[group[0]].entries)
        partial_feeds: set[str] = set()
        entries: dict[str, feeds.Entry] = {}        # an article is in about two feeds
        bodiless: set[str] = set()                  # articles whose body is missing

        def entry(a: Article) -> feeds.Entry:
            if a.path not in entries:           # from here on, the entry holds the body
                body = rendered.pop(self.body_key(site, a), None)
                entries[a.path] = self._entry(corpus, a, body or ("", a.summary))
                if body is None:                # a file changed under us: its reload comes
                    bodiless.add(a.path)        # next; not cached
            return entries[a.path]

        def jobs() -> Iterator[feeds.Feed]:
            for group in groups.values():
                scope, top = plan.feed_of[group[0]].scope, plan.feed_of[group[0]].entries
                made = tuple(map(entry, top))
                if any(a.path in bodiless for a in top):
                    partial_feeds.update(plan.recipes[p][0] for p in group)
                yield self._feed(corpus, scope, made, [plan.feed_of[p].format for p in group],
                                 updated_all)
                for a in top:
                    uses[a.path] -= 1
                    if not uses[a.path]:
                        del entries[a.path]
        packed: dict[str, tuple[str, bytes]] = {}     # recipe -> (ETag, gzip bytes)
        results = workers.map(_feeds_job, jobs(), PARALLEL_FEEDS, window=4 * workers.cores(),
                              count=len(groups))
        for group, pairs in zip(groups.values(), results, strict=True):
            packed.update(zip((plan.recipes[p][0] for p in group), pairs, strict=True))
        return packed, partial_feeds

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

    def _shape(self, corpus: Corpus, visible: list[Article], now: dt.datetime) -> _Shape:
        """Every scope's visible articles, the scopes with scheduled ones, the newest update.
        For a corpus patched from the last one built (articles edited in place, see
        corpus.Library._patched), the last shape with those articles swapped: only the
        scopes they are in are `affected`, and only those get new recipes."""
        last, self._last = self._last, None
        shape = last and corpus.patched_from is not None and \
            corpus.patched_from == last.serial and len(visible) == last.visible and \
            self._patch(last, corpus, now)
        if not shape:
            pending = members(corpus, corpus.articles[:len(corpus.articles) - len(visible)])
            shape = _Shape(corpus.serial, now, len(visible), members(corpus, visible),
                           {key for key, items in pending.items() if items}, max(
                               (a.updated for a in visible), key=lambda d: d.timestamp(),
                               default=EPOCH), None)
        self._last = shape
        return shape

    @staticmethod
    def _patch(last: _Shape, corpus: Corpus, now: dt.datetime) -> _Shape | None:
        held = dict(last.held)
        affected: set[tuple[str, str]] = set()
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
            keys = [("site", "")] + [("category", c.slug) for c in corpus.categories_of(new)] \
                + [("author", p.slug) for p in corpus.authors_of(new)]
            for key in keys:
                items = held[key] = list(held[key]) if key not in affected else held[key]
                if not swap_sorted(items, was, new):
                    return None
            affected.update(keys)
        return _Shape(corpus.serial, now, last.visible, held, last.pending, updated_all,
                      affected)

    def body_key(self, site: Site, article: Article) -> str:
        """The cache key of the article's body (a hash, asked for several times per build:
        kept like a listing line)."""
        return _per_article(self._body_keys, article, site.base_url, lambda a: content.body_key(
            a.digest, self.page_url(site, a), site.trusted_html))

    def forget(self, corpus: Corpus, recipes: set[str]) -> None:
        """Let the cache drop documents not made by `recipes` and bodies of articles gone
        (every article's body stays: its page renders it)."""
        self.cache.prune_later("gzdocs", recipes)
        site, articles = corpus.site, corpus.articles       # (a hash per article: worked
        self.cache.prune_later("html", lambda: {            # out in the writer thread)
            content.body_key(a.digest, self.page_url(site, a), site.trusted_html)
            for a in articles})

    def _entry(self, corpus: Corpus, a: Article, body: tuple[str, str]) -> feeds.Entry:
        site = corpus.site
        html, summary = body
        return feeds.Entry(
            id=a.id, title=a.title, link=a.link or self.page_url(site, a),
            published=a.published, updated=a.updated,
            authors=tuple(feeds.Author(p.name, p.url or f"{site.base_url}author/{p.slug}/")
                          for p in corpus.authors_of(a)),
            categories=tuple(c.name for c in corpus.categories_of(a)),
            summary=summary, content=html,
            enclosure=(a.image, a.image_type, a.image_length)
            if a.image and not loader.missing_locally(a, site) else None,
            enclosure_title=a.image_alt if a.image else "", language=a.language)

    def _feed(self, corpus: Corpus, scope: Scope, entries: tuple[feeds.Entry, ...],
              formats: list[str], updated_all: dt.datetime) -> feeds.Feed:
        site = corpus.site
        updated = max((e.updated for e in entries), key=lambda d: d.timestamp(),
                      default=updated_all)
        title = htmlpages.feed_title(site, scope)
        return feeds.Feed(
            id=loader.tag_uri(site.base_url, scope.feed_base), title=title,
            subtitle=scope.description or title,
            self_urls={fmt: f"{site.base_url}{scope.feed_base}.{fmt}" for fmt in formats},
            page_url=f"{site.base_url}{scope.page}", language=site.language,
            updated=updated, publisher=site.title, entries=entries)

    def _lines(self, site: Site) -> Callable[[Sequence[Article]], Markup]:
        return partial(self._listing, site)

    def _listing(self, site: Site, articles: Sequence[Article]) -> Markup:
        """The <li> lines of a list of articles.  Each line is rendered once and kept: an
        article is listed on the index, its categories' and its authors' pages."""
        base = site.base_url
        line = partial(htmlpages.listing_line, site)
        lines = [_per_article(self._items, a, base, line) for a in articles]
        return Markup("\n".join(lines))  # noqa: S704 - every value in a line is escaped

    def article_page(self, corpus: Corpus, article: Article) -> bytes:
        html, summary = self.bodies(corpus, [article])[article.path]
        return htmlpages.article_page(
            corpus.site, article, html, summary, corpus.authors_of(article),
            {c.slug: c.name for c in corpus.categories_of(article)})


def _per_article(memo: dict[str, tuple[Article, str, str]], article: Article, base_url: str,
                 make: Callable[[Article], str]) -> str:
    """What `make` gives for `article` under `base_url`, made once per article object
    (articles are frozen: an edit or a change of site settings makes a new one)."""
    kept = memo.get(article.path)
    if kept is not None and kept[0] is article and kept[1] == base_url:
        return kept[2]
    value = make(article)
    memo[article.path] = (article, base_url, value)
    return value


def _feeds_job(feed: feeds.Feed) -> list[tuple[str, bytes]]:
    """In a worker (or here, for a few): the ETag and gzip bytes of one scope's feeds, in
    the order of its formats (only the gzip bytes travel back and stay: see Document)."""
    return [_pack(body) for body in feeds.render(feed).values()]


def _pack(body: bytes) -> tuple[str, bytes]:
    return etag_of(body), compress(body)


def _render(name: str, **context: object) -> bytes:
    context.setdefault("scope", None)
    return _templates.get_template(name).render(**context).encode()

