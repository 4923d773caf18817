"""The HTML pages and the OPML, rendered from the package's Jinja templates: the index,
a page per category and author, an article's page, the outline of every feed."""
from __future__ import annotations

import jinja2
from markupsafe import Markup, escape

from . import feeds
from .assembly import Corpus
from .bodies import Bodies
from .model import Article, Site
from .recipes import PagePlan
from .scopes import Scope, feed_title

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("feedsvc", "templates"),
    autoescape=jinja2.select_autoescape(("html", "xml", "opml")),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    auto_reload=False)      # package files: no stat of the template on every render
_templates.globals["feed_title"] = feed_title
# every format, in the order pages list them; the first is the one the OPML lists
_templates.globals["writers"] = feeds.WRITERS


class Views:
    """Renders pages, keeping the parts many pages share (listing lines, the directory)."""

    def __init__(self, bodies: Bodies):
        self.bodies = bodies
        # path -> (what its listing line is made from, the line): an article is listed on
        # the index, its categories' and its authors' pages
        self._lines: dict[str, tuple[tuple[str, str, str, str], str]] = {}
        self._directory: tuple[object, Markup] = (None, Markup())   # see index

    def trim(self, limit: int) -> None:
        """Forget the listing lines kept when more than `limit` are (of articles gone)."""
        if len(self._lines) > limit:
            self._lines = {}

    def page(self, corpus: Corpus, scopes: list[Scope], plan: PagePlan) -> bytes:
        """The bytes of a planned page (see recipes.Plan)."""
        if plan.template == "index.html":
            return self.index(corpus, scopes, plan.articles)
        if plan.template == "scope.html":
            return render("scope.html", site=corpus.site, scope=plan.scope,
                          articles=plan.articles,
                          listing=self._listing(corpus.site, plan.articles), corpus=corpus)
        return render(plan.template, site=corpus.site, scopes=scopes)

    def index(self, corpus: Corpus, scopes: list[Scope], recent: list[Article]) -> bytes:
        outline = (corpus.site, scopes)
        if self._directory[0] != outline:       # a new scope, name or site setting
            self._directory = (outline, _templates.get_template("_macros.html").module
                               .directory(corpus.site, scopes))    # type: ignore[attr-defined]
        return render("index.html", site=corpus.site, scopes=scopes, articles=recent,
                      listing=self._listing(corpus.site, recent), scope=scopes[0],
                      corpus=corpus, directory=self._directory[1])

    def article_page(self, corpus: Corpus, article: Article) -> bytes:
        html, summary = self.bodies.get(corpus, [article])[article.path]
        return render("article.html", site=corpus.site, article=article, html=html,
                      summary=summary, corpus=corpus)

    def _listing(self, site: Site, articles: list[Article]) -> Markup:
        """The <li> lines of a list of articles, each rendered once and kept."""
        base = site.base_url
        lines = []
        for a in articles:
            made_from = (base, a.slug, a.title, a.published.isoformat())
            kept = self._lines.get(a.path)
            if kept is None or kept[0] != made_from:
                kept = self._lines[a.path] = (made_from, _line(a, made_from))
            lines.append(kept[1])
        return Markup("\n".join(lines))  # noqa: S704 - every value in a line is escaped


def _line(a: Article, made_from: tuple[str, str, str, str]) -> str:
    """What templates/_macros.html lists, escaped."""
    base, slug, title, published = made_from
    return '<li><a href="%sarticles/%s/">%s</a> <span class="meta"><time ' \
        'datetime="%s">%s</time></span></li>' % (
            escape(base), escape(slug), escape(title), escape(published),
            escape(a.published.strftime("%Y-%m-%d %H:%M")))


def render(name: str, **context: object) -> bytes:
    context.setdefault("scope", None)
    return _templates.get_template(name).render(**context).encode()
