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

import copy
import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from operator import attrgetter

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from feedgen.version import version_str
from lxml import etree

FEEDGEN_VERSION: str = version_str

FORMATS = {"rss": "application/rss+xml; charset=utf-8",
           "atom": "application/atom+xml; charset=utf-8"}
_lock = threading.Lock()
KEPT_BYTES = 8 << 20    # about what the kept entries hold (see _keep), least recent out


def _pickled_by_fields(cls: type) -> type:
    """Pickle a dataclass as its class and field values: a cold start sends thousands of
    entries to the workers, and the default (a state dict) costs about twice as much."""
    values = attrgetter(*(f.name for f in fields(cls)))

    def __reduce__(self: object) -> tuple[type, tuple]:
        return cls, values(self)
    cls.__reduce__ = __reduce__                             # type: ignore[assignment]
    return cls


@_pickled_by_fields
@dataclass(frozen=True)
class Author:
    name: str
    uri: str = ""


@_pickled_by_fields
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


@_pickled_by_fields
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
    """feedgen entry whose Atom links keep rel, type and length (upstream issue #135), and
    whose elements are kept for the next feeds that hold the same entry (see _Kept)."""

    def __init__(self, item: Entry | None):
        super().__init__()
        self.item = item                    # None: made once, not kept

    def atom_entry(self, extensions=True):
        element = super().atom_entry(extensions)
        wanted = self.link() or []
        links = element.findall("link")     # feedgen writes them in self.link() order
        for el, link in zip(links, wanted, strict=True):
            for attr in ("rel", "type", "length"):
                if link.get(attr):
                    el.set(attr, str(link[attr]))
        return _keep(self.item, "atom", element)

    def rss_entry(self, extensions=True):
        return _keep(self.item, "rss", super().rss_entry(extensions))


class _Kept(FeedEntry):
    """An entry feedgen made before from the same data (see _key): copies of its elements.

    An article is in up to seven feeds (the site's, its categories' and its authors'), and
    an edit changes one entry of each feed that holds it: the others are not made again."""

    def __init__(self, elements: dict[str, etree._Element]):
        super().__init__()
        self.elements = elements

    def atom_entry(self, extensions=True):
        return copy.deepcopy(self.elements["atom"])

    def rss_entry(self, extensions=True):
        return copy.deepcopy(self.elements["rss"])


# entry key -> (bytes it holds, format -> element); least recent first
_kept: OrderedDict[tuple, tuple[int, dict[str, etree._Element]]] = OrderedDict()
_kept_bytes = 0


def _key(item: Entry) -> tuple:
    """What an entry's elements are made from.  Equal datetimes may differ in their UTC
    offset, which feedgen writes: the dates go in as written."""
    return item, item.published.isoformat(), item.updated.isoformat()


def _keep(item: Entry | None, fmt: str, element: etree._Element) -> etree._Element:
    global _kept_bytes
    if item is None:
        return element
    key = _key(item)
    kept = _kept.pop(key, None)
    if kept is None:
        # its texts, held by the entry and by each format's element: about
        kept = (4096 + 3 * (len(item.content) + len(item.summary) + len(item.title)), {})
        _kept_bytes += kept[0]
    kept[1][fmt] = copy.deepcopy(element)
    _kept[key] = kept                           # now the most recent
    while _kept_bytes > KEPT_BYTES and _kept:
        _kept_bytes -= _kept.popitem(last=False)[1][0]
    return element


def render(feed: Feed, keep: bool = False) -> dict[str, bytes]:
    """Serialize `feed` in each format of `feed.self_urls`, from one generator (its entries
    are set once for both).  Same input, same bytes, in any process.

    `keep`: keep the elements of the entries made, for the next feeds that hold them.
    Worth it for the few feeds of a refresh; not for a cold start's hundreds, where each
    entry is in about two feeds and copying every one costs more than it saves."""
    with _lock:
        fg = _generator(feed, keep)
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


def _generator(feed: Feed, keep: bool) -> FeedGenerator:
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
        kept = _kept.get(key := _key(item)) if _kept else None   # (a cold start keeps none)
        if kept is not None and len(kept[1]) == len(FORMATS):
            _kept.move_to_end(key)
            fg.add_entry(_Kept(kept[1]), order="append")
            continue
        fe = fg.add_entry(_Entry(item if keep else None), order="append")  # (+ dc extension)
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
