"""The only module that talks to feedgen: format-neutral feed data in, RSS or Atom bytes out.

Every known trap of feedgen 1.0.0 is handled here and nowhere else:
entries are appended in our order; every date comes from the data; skipDays is
never used; the self link is added before the alternate one (RSS keeps the
last link as <link>); authors go out as dc:creator in RSS; HTML is typed as
html in Atom; enclosures get their length and type, and the Atom entry links
get back the attributes feedgen drops; building happens under a lock, because
feedgen's RSS date formatting switches the process locale.
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from feedgen.version import version_str

FEEDGEN_VERSION: str = version_str

FORMATS = {"rss": "application/rss+xml; charset=utf-8",
           "atom": "application/atom+xml; charset=utf-8"}
_lock = threading.Lock()


@dataclass(frozen=True)
class Author:
    name: str
    uri: str = ""


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime
    authors: tuple[Author, ...]
    categories: tuple[str, ...]
    summary: str                     # plain text
    content: str                     # HTML with absolute URLs
    enclosure: tuple[str, str, int] | None = None   # url, media type, length


@dataclass(frozen=True)
class Feed:
    id: str
    title: str
    subtitle: str
    self_urls: dict[str, str]        # format ("rss", "atom") -> where that document lives
    page_url: str                    # the human page of the scope
    language: str
    updated: dt.datetime
    publisher: str                   # feed-level Atom author, for entries without one
    entries: tuple[Entry, ...] = field(default=())


class _Entry(FeedEntry):
    """feedgen entry whose Atom links keep rel, type and length (upstream issue #135)."""

    def atom_entry(self, extensions=True):
        element = super().atom_entry(extensions)
        wanted = self.link() or []
        links = element.findall("link")     # feedgen writes them in self.link() order
        for el, link in zip(links, wanted, strict=True):
            for attr in ("rel", "type", "length"):
                if link.get(attr):
                    el.set(attr, str(link[attr]))
        return element


def render(feed: Feed) -> dict[str, bytes]:
    """Serialize `feed` in each format of `feed.self_urls`, from one generator (its entries
    are set once for both).  Same input, same bytes, in any process."""
    with _lock:
        fg = _generator(feed)
        out = {}
        for fmt, url in feed.self_urls.items():
            # the self link first, the page last: RSS's <link> is the last link added
            fg.link(href=url, rel="self", type=FORMATS[fmt].split(";")[0], replace=True)
            fg.link(href=feed.page_url, rel="alternate", type="text/html")
            out[fmt] = (fg.rss_str if fmt == "rss" else fg.atom_str)(
                pretty=True, encoding="UTF-8", xml_declaration=True)
        return out


def _seconds(when: dt.datetime) -> dt.datetime:
    return when.replace(microsecond=0)


def _generator(feed: Feed) -> FeedGenerator:
    """Everything but the links, for both formats: RSS has no feed or entry author without
    an email (it writes dc:creator, from an extension Atom does not load)."""
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(feed.id)
    fg.title(feed.title)
    fg.subtitle(feed.subtitle or feed.title)          # RSS <description> is required
    fg.language(feed.language)
    fg.updated(_seconds(feed.updated))
    fg.generator("feedsvc")
    fg.author({"name": feed.publisher})
    for item in feed.entries:
        fe = fg.add_entry(_Entry(), order="append")     # registers the dc extension
        fe.id(item.id)
        fe.title(item.title)
        fe.link(href=item.link, rel="alternate", type="text/html")
        fe.published(_seconds(item.published))
        fe.updated(_seconds(item.updated))
        for author in item.authors:
            fe.dc.dc_creator(author.name, replace=False)
            fe.author({"name": author.name, **({"uri": author.uri} if author.uri else {})})
        for term in item.categories:
            fe.category(term=term)
        fe.summary(item.summary or item.title)
        if item.content:
            fe.content(item.content, type="html")
        if item.enclosure:
            url, media_type, length = item.enclosure
            fe.enclosure(url=url, length=str(length), type=media_type)
    return fg
