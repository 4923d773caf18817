"""The pages publish makes itself, around `htmlpages`: the listing lines every list shows
(each made once per version of an article), article pages, and the OPML."""
from __future__ import annotations

from collections.abc import Sequence

import jinja2
from markupsafe import Markup

from . import feeds, htmlpages
from .assembly import Corpus
from .bodies import Bodies
from .model import Article, Site

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("feedsvc", "templates"),
    autoescape=jinja2.select_autoescape(("html", "xml", "opml")),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    auto_reload=False)      # package files: no stat of the template on every render
# every format, in the order pages list them; the first is the one the OPML lists
_templates.globals["writers"] = feeds.WRITERS

_LineKey = tuple[Site, str, str, str, str]


class Views:
    """Renders article pages, and keeps the listing line of every article."""

    def __init__(self, bodies: Bodies):
        self.bodies = bodies
        # path -> (what its listing line is made from, the line): an article is listed on
        # the index, its categories' and its authors' pages and their subscribe pages
        self._lines: dict[str, tuple[_LineKey, str]] = {}

    def trim(self, limit: int) -> None:
        """Forget the listing lines kept when more than `limit` are (of articles gone)."""
        if len(self._lines) > limit:
            self._lines = {}

    def listing(self, site: Site, articles: Sequence[Article]) -> Markup:
        """The <li> lines of a list of articles (htmlpages.listing_line), each made once."""
        lines = []
        for a in articles:
            made_from = (site, a.slug, a.title, a.published.isoformat(), a.language)
            kept = self._lines.get(a.path)
            if kept is None or kept[0] != made_from:
                kept = self._lines[a.path] = (made_from, htmlpages.listing_line(site, a))
            lines.append(kept[1])
        return Markup("\n".join(lines))  # noqa: S704 - every value in a line is escaped

    def article_page(self, corpus: Corpus, article: Article) -> bytes:
        html, summary = self.bodies.get(corpus, [article])[article.path]
        return htmlpages.article_page(
            corpus.site, article, html, summary, corpus.authors_of(article),
            {c.slug: c.name for c in corpus.categories_of(article)})


def render(name: str, **context: object) -> bytes:
    context.setdefault("scope", None)
    return _templates.get_template(name).render(**context).encode()
