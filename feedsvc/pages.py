"""Article pages as ready responses, made on a page's first request from the current corpus.

`http.FeedApp` asks `ArticlePages.get` for a path that is not a ready document, so an
article page is answered by the same code as a feed: the same encodings, ETags,
conditionals, HEAD, 412 and headers.  Finding the article is a dict lookup (an index by
page path, made once per corpus).  Its Last-Modified comes from `validators.Validators`, keyed
by the page's path and ETag as `feedsvc build` stamps it, under the same rule as every
other document: new bytes claim a second no other bytes showed, or go out without
Last-Modified (ETag only) until they may; so no client gets a false 304.

Pages are made when asked, not in the build: a cold start renders none of them, and
only the pages readers open are held, as gzip bytes, the most recently asked up to
`PAGE_CACHE_BYTES`.  A new corpus (any change to the data) lets them all go, since a
page shows its site, authors and categories; each is rendered again (its body is in
the cache) and claims its second again, keeping the one it had when its bytes did not
change.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from .documents import Document, compress, etag_of
from .http import Resource
from .live import NOT_YET

if TYPE_CHECKING:
    from .corpus import Corpus
    from .live import Service
    from .model import Article

PAGE_CACHE_BYTES = 16 << 20         # gzip bytes of article pages held, the most recently asked
CONTENT_TYPE = "text/html; charset=utf-8"


def page_path(article: Article) -> str:
    """The URL path (without the leading slash) of an article's page."""
    return f"articles/{article.slug}/"


class ArticlePages:
    """The ready responses of article pages, for one `Service`."""

    def __init__(self, service: Service, budget: int | None = None):
        self.service = service
        self.budget = PAGE_CACHE_BYTES if budget is None else budget
        self._lock = threading.Lock()
        self._serial: int | None = None    # of the corpus `_index` is made from
        self._index: dict[str, Article] = {}
        self._held: OrderedDict[str, Resource] = OrderedDict()
        self._size = 0
        self._shown: dict[str, tuple[str, int | None]] = {}  # (ETag, second) last served
        self._asked: dict[str, float] = {}  # the `seen` each held page claimed its second at

    def corpus(self) -> Corpus | None:
        """The articles pages are made from: the service's, or after a restart with the data
        unreadable, the last checkpoint's (None: neither; web.py answers 503)."""
        service = self.service
        return service.corpus if service.corpus is not None else service.restored

    def get(self, path: str) -> Resource | None:
        """The response for `path` if it is the page of a visible article, else None."""
        if not path.startswith("articles/"):
            return None
        seen = self.service.seen        # read before the corpus: never newer than its data
        corpus = self.corpus()
        if corpus is None:
            return None
        with self._lock:
            if corpus.serial != self._serial:
                self._serial = corpus.serial
                self._index = {page_path(a): a for a in corpus.articles}
                self._held.clear()
                self._size = 0
            article = self._index.get(path)
            if article is None or article.published.timestamp() > self.service.clock():
                return None
            res = self._held.get(path)
            if res is not None and not self._retry(path, res, seen):
                self._held.move_to_end(path)
                return res
            return self._make(corpus, article, path, seen, res)

    def _retry(self, path: str, res: Resource, seen: float) -> bool:
        """Whether a page held without Last-Modified may ask for one again: when the
        validators say so, or the data it was made from has been scanned again since."""
        if res.last_modified != NOT_YET:
            return False
        retry_at = self.service.validators.retry_at
        return (retry_at is not None and self.service.clock() >= retry_at) or \
            seen > self._asked.get(path, 0.0)

    def _make(self, corpus: Corpus, article: Article, path: str, seen: float,
              old: Resource | None) -> Resource:
        """Render the page (or take `old`'s bytes, held without a second) and claim its
        Last-Modified."""
        if old is not None and old.gzip.body is not None:
            etag, gz = old.identity.etag, old.gzip.body
        else:
            body = self.service.publisher.article_page(corpus, article)
            etag, gz = etag_of(body), compress(body)
        held = {path: self._shown[path]} if path in self._shown else {}
        stamp = self.service.validators.claim({path: etag}, seen, held)[path]
        self._asked[path] = seen
        doc = Document(path, "", CONTENT_TYPE, etag, gz)
        res = Resource.make(CONTENT_TYPE, NOT_YET if stamp is None else stamp, etag, gz,
                            doc.gzip_etag)
        self._shown[path] = (etag, stamp)
        if old is not None:
            self._size -= len(old.gzip.body or b"")
        self._held[path] = res
        self._held.move_to_end(path)
        self._size += len(gz)
        while self._size > self.budget and len(self._held) > 1:
            self._size -= len(self._held.popitem(last=False)[1].gzip.body or b"")
        return res
