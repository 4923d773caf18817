"""The HTML documents readers meet: index, scope pages (paginated), subscribe pages,
the category and author directories, article pages and the 404 page.

`publish.Publisher` decides which documents exist and when they are made again (their
recipes); this module only turns records into HTML.  Everything a page shows is
escaped by Jinja's autoescape or by `markupsafe.escape` in `listing_line`.

Any script: a page's `lang` is the site's, an article page's its own `language` when
set, and `dir="rtl"` follows from the language (`direction`).  Titles and names in
lists sit in `<bdi>`, so a Persian title beside a Latin date keeps both in order.
Dates are shown in the site's time zone (`local_time`), the ISO value with the
article's own offset in `<time datetime>`.

The one script (templates/copy.js, allowed by its hash in http.CSP) makes the copy
buttons of subscribe pages work; the pages read fine without it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from math import ceil
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import quote

import jinja2
import pytz
from markupsafe import Markup, escape

from .feeds import WRITERS, Writer
from .model import Article, Person, Site

TEMPLATES = Path(__file__).parent / "templates"
COPY_SCRIPT = (TEMPLATES / "copy.js").read_text("utf-8")
# `/favicon.ico`: the bundled default (made by tests/tools/make_bundled_image.py)
FAVICON = (TEMPLATES / "favicon.ico").read_bytes()
DIRECTORY_TOP = 8           # categories and authors the index shows, the largest first
PREVIEW_ITEMS = 5           # latest articles a subscribe page shows
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
# languages written right to left (ISO 639 codes), and scripts that are (ISO 15924)
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku-arab",
                           "mzn", "nqo", "pnb", "ps", "sd", "syr", "ug", "ur", "yi"})
RTL_SCRIPTS = frozenset({"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg"})

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(("html", "xml", "opml")),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, auto_reload=False)


class ScopeLike(Protocol):
    """What a page needs of a `publish.Scope`."""
    @property
    def kind(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def feed_base(self) -> str: ...
    @property
    def page(self) -> str: ...


class PageDoc(NamedTuple):
    """One HTML document to publish: its path, what makes its recipe unique, its maker."""
    path: str
    part: str                       # added to the scope's recipe (the page number...)
    make: Callable[[], bytes]
    lists: Sequence[Article] = ()   # the articles it lists (their files: in its recipe)


class Listed(NamedTuple):
    """A category or author as a directory lists it."""
    scope: ScopeLike
    articles: int


def direction(language: str) -> str:
    """"rtl" for a language tag written right to left (`fa`, `ar-EG`, `ku-Arab`), else
    "ltr"."""
    parts = language.lower().split("-")
    if parts[0] in RTL_LANGUAGES or "-".join(parts[:2]) in RTL_LANGUAGES:
        return "rtl"
    return "rtl" if any(p in RTL_SCRIPTS for p in parts[1:]) else "ltr"


def local_time(site: Site, when: dt.datetime, clock: bool = True) -> str:
    """`when` in the site's time zone, readable: "26 August 2015, 10:30"."""
    local = when.astimezone(pytz.timezone(site.timezone))
    day = f"{local.day} {MONTHS[local.month - 1]} {local.year}"
    return f"{day}, {local:%H:%M}" if clock else day


def subscribe_path(scope: ScopeLike) -> str:
    return "subscribe/" if scope.kind == "site" else f"{scope.page}subscribe/"


def page_path(scope: ScopeLike, number: int) -> str:
    """The path of page `number` (from 1) of a scope's list: stable, the first is the
    scope's own page."""
    return scope.page if number == 1 else f"{scope.page}page/{number}/"


def scope_label(site: Site, scope: ScopeLike) -> str:
    """How pages name a scope's feeds: the site's title, or the category or author."""
    return site.title if scope.kind == "site" else scope.name


def feed_title(site: Site, scope: ScopeLike) -> str:
    """A scope's feed title, which discovery links show too."""
    if scope.kind == "site":
        return site.title
    if scope.kind == "author":
        return f"{site.title}: articles by {scope.name}"
    return f"{site.title}: {scope.name}"


def feed_name(label: str, writer: Writer) -> str:
    """A feed's name for screen readers and links: "Hard News RSS feed", "Hard News
    JSON Feed"."""
    kind = writer.label if writer.label.endswith("Feed") else f"{writer.label} feed"
    return f"{label} {kind}"


def listing_line(site: Site, a: Article) -> str:
    """One article as every list shows it (escaped HTML; made once per article by
    publish._per_article)."""
    lang = a.language if a.language and a.language != site.language else ""
    attrs = f' lang="{escape(lang)}"' if lang else ""
    return '<li><a href="%sarticles/%s/"><bdi%s>%s</bdi></a> <span class="meta"><time ' \
        'datetime="%s">%s</time></span></li>' % (
            escape(site.base_url), escape(a.slug), attrs, escape(a.title),
            escape(a.published.isoformat()), escape(local_time(site, a.published, False)))


# what every template and macro may use
_env.globals.update(writers=WRITERS, subscribe_path=subscribe_path, scope_label=scope_label,
                    feed_name=feed_name, feed_title=feed_title,
                    local_time=local_time,
                    copy_script=Markup(COPY_SCRIPT))  # noqa: S704 - our file, allowed by hash


def _render(name: str, site: Site, language: str = "", **context: object) -> bytes:
    language = language or site.language
    context.setdefault("scope", None)
    # the site's own words (navigation, the subscribe box) on a page in another language
    chrome = "" if language == site.language else Markup(' lang="%s"%s') % (
        site.language, Markup(' dir="%s"') % direction(site.language))
    return _env.get_template(name).render(
        site=site, lang=language, dir=direction(language), chrome=chrome, **context).encode()


def scope_pages(site: Site, scope: ScopeLike, items: Sequence[Article], person: Person | None,
                listing: Callable[[Sequence[Article]], Markup]) -> list[PageDoc]:
    """A category's or author's pages, `site.page_size` articles each, newest first."""
    size = site.page_size
    total = max(1, ceil(len(items) / size))

    def make(number: int) -> bytes:
        chunk = items[(number - 1) * size:number * size]
        return _render("scope.html", site, scope=scope, person=person, count=len(items),
                       listing=listing(chunk), number=number, total=total,
                       prev=page_path(scope, number - 1) if number > 1 else "",
                       next=page_path(scope, number + 1) if number < total else "")
    return [PageDoc(page_path(scope, n), f"page {n} of {total}, {len(items)} articles",
                    partial(make, n), items[(n - 1) * size:n * size])
            for n in range(1, total + 1)]


def subscribe_page(site: Site, scope: ScopeLike, items: Sequence[Article],
                   listing: Callable[[Sequence[Article]], Markup]) -> PageDoc:
    """The page a scope's RSS, Atom and JSON buttons lead to (recipe part: the articles
    it previews, by path and digest)."""
    preview = items[:PREVIEW_ITEMS]
    feeds = [(w, f"{site.base_url}{scope.feed_base}.{w.name}") for w in WRITERS.values()]
    readers = [(name, pattern.format(quote(url, safe=""), url=url))
               for name, pattern in READERS for url in [feeds[0][1]]]
    more = len(items) > len(preview)
    return PageDoc(subscribe_path(scope), f"subscribe, more: {more}",
                   lambda: _render("subscribe.html", site, scope=scope, feeds=feeds,
                                   readers=readers, listing=listing(preview), more=more),
                   preview)


# "Open in" links: each reader's documented subscribe address ({0}: the feed URL,
# percent-encoded; {url}: as it is)
READERS = (("Feedly", "https://feedly.com/i/subscription/feed/{0}"),
           ("Inoreader", "https://www.inoreader.com/?add_feed={0}"),
           ("NewsBlur", "https://www.newsblur.com/?url={0}"),
           ("The Old Reader", "https://theoldreader.com/feeds/subscribe?url={0}"),
           ("another feed reader (feed: link)", "feed:{url}"))


def largest(listed: Sequence[Listed], kind: str, top: int | None = None) -> list[Listed]:
    """The scopes of `kind`, most articles first (then by name), the first `top`."""
    out = sorted((x for x in listed if x.scope.kind == kind),
                 key=lambda x: (-x.articles, x.scope.name.casefold(), x.scope.slug))
    return out if top is None else out[:top]


def index_page(site: Site, scope: ScopeLike, listed: Sequence[Listed], listing: Markup) -> bytes:
    return _render("index.html", site, scope=scope, listing=listing, top=DIRECTORY_TOP,
                   categories=largest(listed, "category"), authors=largest(listed, "author"))


def directory_page(site: Site, scope: ScopeLike, kind: str, listed: Sequence[Listed]) -> bytes:
    """`/categories/` or `/authors/`: every one, the largest first (advertising the site's
    feeds, `scope`)."""
    return _render("directory.html", site, scope=scope, kind=kind,
                   entries=largest(listed, kind))


def article_page(site: Site, article: Article, html: str, summary: str,
                 people: Sequence[Person], categories: Mapping[str, str]) -> bytes:
    """`categories`: slug -> name of the article's categories."""
    return _render("article.html", site, language=article.language, article=article,
                   html=html, summary=summary, people=people, categories=categories)


NOT_FOUND = "404.html"     # the 404 page's document path (nginx: error_page, internal)


def not_found_page(site: Site) -> bytes:
    """The 404 page: the same bytes for every missing path (it echoes none)."""
    return _render("404.html", site)
