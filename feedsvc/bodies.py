"""Article bodies: rendered (sanitized HTML and summary) through the cache, on every
core for a large batch, and the cache key of each."""
from __future__ import annotations

from collections.abc import Callable

from . import content
from .assembly import Corpus
from .cache import Cache
from .lru import LRU
from .model import Article, Site

Body = tuple[str, str]              # (html, summary)
RECENT_BODIES = 512                 # the last bodies asked for, held (see Bodies.start),
RECENT_CHARS = 8 << 20              # ... up to this many characters in all


def page_url(site: Site, article: Article) -> str:
    return f"{site.base_url}articles/{article.slug}/"


class Bodies:
    """The bodies of articles, from the cache or rendered anew, by their cache keys."""

    def __init__(self, cache: Cache):
        self.cache = cache
        # path -> (what its key is made from, the key): a hash asked for several times
        # per build, worked out once for each version of each article
        self._keys: dict[str, tuple[tuple[str, str, bool], str]] = {}
        # key -> body: the last asked for (an edit's refresh asks again for the ~250 of
        # the feeds it rewrites: no SQLite read, and their strings keep their hashes for
        # splice.key); a key names one body for good, so none goes stale.  (Article pages
        # ask from request threads: an LRU takes its lock.)
        self._recent: LRU[str, Body] = LRU(RECENT_BODIES, RECENT_CHARS,
                                           lambda body: len(body[0]) + len(body[1]))

    def key(self, site: Site, article: Article) -> str:
        """The cache key of the article's body."""
        made_from = (article.digest, page_url(site, article), site.trusted_html)
        kept = self._keys.get(article.path)
        if kept is not None and kept[0] == made_from:
            return kept[1]
        key = content.body_key(*made_from)
        self._keys[article.path] = (made_from, key)
        return key

    def trim(self, limit: int) -> None:
        """Forget the keys worked out when more than `limit` are kept (of articles gone)."""
        if len(self._keys) > limit:
            self._keys = {}

    def get(self, corpus: Corpus, articles: list[Article]) -> dict[str, Body]:
        """(html, summary) per article path; renders only what the cache does not hold."""
        rendered = self.start(corpus, articles)()
        return {a.path: rendered.get(self.key(corpus.site, a), ("", a.summary))
                for a in articles}

    def start(self, corpus: Corpus, articles: list[Article]) -> Callable[[], dict[str, Body]]:
        """Begin rendering the bodies of `articles` that the cache does not hold (on every
        core for a large batch); the function returned waits for them and gives every
        body by its key.  A body the file no longer has is missing (its reload is on the
        way)."""
        site = corpus.site
        keys = {a.path: self.key(site, a) for a in articles}
        wanted = list(dict.fromkeys(keys.values()))
        known = {k: body for k in wanted if (body := self._recent.get(k)) is not None}
        if len(known) < len(wanted):
            known.update(self.cache.get("html", [k for k in wanted if k not in known]))
        jobs = {keys[a.path]: (corpus.root, a.path, a.digest, page_url(site, a), a.summary,
                               site.trusted_html)
                for a in articles if keys[a.path] not in known}
        rendering = content.start_rendering(list(jobs.values()))

        def finish() -> dict[str, Body]:
            fresh = {k: v for k, v in zip(jobs, rendering(), strict=True) if v is not None}
            self.cache.renders += len(fresh)
            self.cache.put_later("html", fresh)
            known.update(fresh)
            items = list(known.items())     # (only the last of a cold start's thousands)
            for k, body in items[max(0, len(items) - self._recent.max_items):]:
                self._recent.put(k, body)
            return known
        return finish

    def forget(self, corpus: Corpus) -> None:
        """Let the cache drop bodies of articles gone (every article's body stays: its page
        renders it)."""
        site, articles = corpus.site, corpus.articles       # (a hash per article: worked
        self.cache.prune_later("html", lambda: {            # out in the writer thread)
            content.body_key(a.digest, page_url(site, a), site.trusted_html)
            for a in articles})
