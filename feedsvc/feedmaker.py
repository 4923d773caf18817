"""Feeds made: a scope's format-neutral `feeds.Feed` from its articles and their bodies,
written in every format and compressed, on every core for a full build."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from . import feeds, htmlpages, loader, splice, workers
from .assembly import Corpus
from .bodies import Body, page_url
from .model import Article
from .scopes import Scope

PARALLEL_FEEDS = 40     # scopes whose feeds must be made before a build uses every core


@dataclass(frozen=True)
class FeedGroup:
    """One scope's feeds to make, every format in one job: the recipe of each."""
    scope: Scope
    entries: list[Article]              # the articles it holds, newest first
    formats: list[str]
    recipes: list[str]                  # one per format, in the same order


def bodiless(groups: list[FeedGroup], rendered: dict[str, Body],
             key: Callable[[Article], str]) -> set[str]:
    """The recipes of the feeds that hold an article whose body is missing (a file
    changed under us: its reload comes next): made, but never cached."""
    return {recipe for g in groups if any(key(a) not in rendered for a in g.entries)
            for recipe in g.recipes}


class Made(NamedTuple):
    """The feeds made: recipe -> (ETag, gzip bytes), and the keys of the entries of each
    (by ETag: what `splice` needs to write that feed again)."""
    packed: dict[str, tuple[str, bytes]]
    entry_keys: dict[str, tuple[splice.Key, ...]]


def make(corpus: Corpus, groups: list[FeedGroup], rendered: dict[str, Body],
         key: Callable[[Article], str], updated_all: dt.datetime,
         hubs: tuple[str, ...] = (), last: Mapping[str, splice.Last] | None = None) -> Made:
    """The feeds of `groups`, written and compressed on every core, one job per scope.
    `rendered` (body key -> body) is handed over: it is emptied as the feeds go out;
    `hubs`: the WebSub hubs every feed advertises; `last`: a scope's feeds as they are
    now, by its feed base, whose unchanged entries are kept (see splice)."""
    jobs = _Jobs(corpus, groups, rendered, key, updated_all, hubs, last or {})
    results = workers.map(_feeds_job, jobs, PARALLEL_FEEDS,
                          window=4 * workers.cores(), count=len(groups))
    made = Made({}, {})
    for group, keys, pairs in zip(groups, jobs.keys, results, strict=True):
        made.packed.update(zip(group.recipes, pairs, strict=True))
        made.entry_keys.update((etag, keys) for etag, _ in pairs)
    return made


class _Jobs:
    """The feeds of `groups` in order, made as the pool takes them: an article's entry is
    made once (it is in about two feeds), holding the body it takes out of `rendered`,
    and let go once its last feed has gone out, so a cold start never holds every
    entry at once."""

    def __init__(self, corpus: Corpus, groups: list[FeedGroup], rendered: dict[str, Body],
                 key: Callable[[Article], str], updated_all: dt.datetime,
                 hubs: tuple[str, ...], last: Mapping[str, splice.Last]):
        self._corpus = corpus
        self._last = last
        self._hubs = hubs
        self._groups = groups
        self._rendered = rendered
        self._key = key
        self._updated_all = updated_all
        self._uses = Counter(a.path for g in groups for a in g.entries)
        self._entries: dict[str, tuple[feeds.Entry, splice.Key]] = {}     # with its splice key
        self.keys: list[tuple[splice.Key, ...]] = []     # of each group's entries, as they go

    def __iter__(self) -> Iterator[_Job]:
        for g in self._groups:
            made = [self._entry(a) for a in g.entries]
            self.keys.append(tuple(k for _, k in made))
            yield (feed(self._corpus, g.scope, tuple(e for e, _ in made), g.formats,
                        self._updated_all, self._hubs),
                   self.keys[-1], self._last.get(g.scope.feed_base))
            for a in g.entries:
                self._uses[a.path] -= 1
                if not self._uses[a.path]:
                    del self._entries[a.path]

    def _entry(self, a: Article) -> tuple[feeds.Entry, splice.Key]:
        if a.path not in self._entries:     # from here on, the entry holds the body
            body = self._rendered.pop(self._key(a), None)
            made = entry(self._corpus, a, body or ("", a.summary))
            self._entries[a.path] = made, splice.key(made)
        return self._entries[a.path]


def entry(corpus: Corpus, a: Article, body: Body) -> feeds.Entry:
    site = corpus.site
    html, summary = body
    return feeds.Entry(
        id=a.id, title=a.title, link=a.link or page_url(site, a),
        published=a.published, updated=a.updated,
        authors=tuple(feeds.Author(p.name, p.url or f"{site.base_url}author/{p.slug}/")
                      for p in corpus.authors_of(a)),
        categories=tuple(c.name for c in corpus.categories_of(a)),
        summary=summary, content=html,
        enclosure=(a.image, a.image_type, a.image_length)
        if a.image and not loader.missing_locally(a, site) else None,
        enclosure_title=a.image_alt if a.image else "", language=a.language)


def feed(corpus: Corpus, scope: Scope, entries: tuple[feeds.Entry, ...],
         formats: list[str], updated_all: dt.datetime, hubs: tuple[str, ...] = ()
         ) -> feeds.Feed:
    site = corpus.site
    updated = max((e.updated for e in entries), key=lambda d: d.timestamp(),
                  default=updated_all)
    title = htmlpages.feed_title(site, scope)
    return feeds.Feed(
        id=loader.tag_uri(site.base_url, scope.feed_base), title=title,
        subtitle=scope.description or title,
        self_urls={fmt: f"{site.base_url}{scope.feed_base}.{fmt}" for fmt in formats},
        page_url=f"{site.base_url}{scope.page}", language=site.language,
        updated=updated, publisher=site.title, entries=entries, hubs=hubs)


_Job = tuple[feeds.Feed, tuple[splice.Key, ...], "splice.Last | None"]    # feed, keys, last


def _feeds_job(job: _Job) -> list[tuple[str, bytes]]:
    """In a worker (or here, for a few): the ETag and gzip bytes of one scope's feeds, in
    the order of its formats (only the gzip bytes travel back and stay: see Document)."""
    return splice.packed(*job)
