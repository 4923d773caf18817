"""The scopes a corpus publishes (the site, each category, each author), and which
visible articles each one holds."""
from __future__ import annotations

from dataclasses import dataclass

from .assembly import Corpus
from .model import Article

ScopeKey = tuple[str, str]          # (kind, slug)


@dataclass(frozen=True)
class Scope:
    """What a feed and a page are of: the whole site, one category or one author."""
    kind: str               # "site", "category" or "author"
    slug: str
    name: str
    description: str

    @property
    def key(self) -> ScopeKey:
        return (self.kind, self.slug)

    @property
    def feed_base(self) -> str:
        return "feeds/all" if self.kind == "site" else f"feeds/{self.kind}/{self.slug}"

    @property
    def page(self) -> str:
        return "" if self.kind == "site" else f"{self.kind}/{self.slug}/"


def scopes_of(corpus: Corpus) -> list[Scope]:
    site = corpus.site
    out = [Scope("site", "", site.title, site.description)]
    out += [Scope("category", c.slug, c.name, c.description) for c in corpus.categories.values()]
    out += [Scope("author", p.slug, p.name, p.bio) for p in corpus.authors.values()]
    return out


def members(corpus: Corpus, visible: list[Article]) -> dict[ScopeKey, list[Article]]:
    """Every scope's visible articles, newest first."""
    out: dict[ScopeKey, list[Article]] = {("site", ""): visible}
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


def scope_keys(corpus: Corpus, article: Article) -> list[ScopeKey]:
    """The scopes `article` is in."""
    return [("site", "")] + [("category", c.slug) for c in corpus.categories_of(article)] \
        + [("author", p.slug) for p in corpus.authors_of(article)]


def published(scopes: list[Scope], held: dict[ScopeKey, list[Article]],
              pending: set[ScopeKey]) -> list[Scope]:
    """A scope whose only articles are still scheduled stays unpublished: its name, page
    and feeds would reveal an embargoed article before its time."""
    return [s for s in scopes if s.kind == "site" or held[s.key] or s.key not in pending]
