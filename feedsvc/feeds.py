"""Feed formats as writers: format-neutral `Feed`/`Entry` in, one writer per format, bytes out.

A writer (`Writer`) knows one format: its name (the URL's extension), its media type,
a label for people, and how to write a `Feed` as bytes.  `WRITERS` registers them in
the order pages list them: RSS 2.0 and Atom 1.0 (through feedgen) and JSON Feed 1.1
(orjson, held to the standard library's json byte for byte).  Everything else that
knows the formats (URLs, recipes, discovery links, the index, the OPML, the static
export's types) reads `WRITERS`, so a new format is one writer and one `register` call.

This is the only module that talks to feedgen.  Every known trap of feedgen 1.0.0 is
handled here and nowhere else: entries are appended in our order; every date comes from
the data; skipDays is never used; the self link is added before the alternate one (RSS
keeps the last link as <link>); authors go out as dc:creator in RSS; HTML is typed as
html in Atom; enclosures get their length and type, and the Atom entry links get back
the attributes feedgen drops; RSS gets its WebSub hub links put back by an extension
(feedgen drops every `<atom:link>` but the self one); building happens under a lock,
because feedgen's RSS date formatting switches the process locale.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, ClassVar

import orjson
from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.version import version_str
from lxml import etree

FEEDGEN_VERSION: str = version_str

_lock = threading.Lock()


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
    """An entry's author as every format names one: a name and a page."""
    name: str
    uri: str = ""


@_pickled_by_fields
@dataclass(frozen=True)
class Entry:
    """One item of a feed, format-neutral (Atom's vocabulary): what every writer writes."""
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
    enclosure_title: str = ""        # the image's text alternative (Atom title, JSON title)
    language: str = ""               # BCP 47 tag when the article sets one (xml:lang)


@_pickled_by_fields
@dataclass(frozen=True)
class Feed:
    """One scope's feed, format-neutral: its head and its entries, newest first."""
    id: str
    title: str
    subtitle: str
    self_urls: dict[str, str]        # writer name -> where that document lives
    page_url: str                    # the human page of the scope
    language: str
    updated: dt.datetime
    publisher: str                   # feed-level Atom author, for entries without one
    entries: tuple[Entry, ...] = field(default=())
    hubs: tuple[str, ...] = ()       # WebSub hubs advertised (hubs.py)


class _Entry(FeedEntry):
    """feedgen entry whose Atom links keep rel, type and length (upstream issue #135),
    with the article's own language as xml:lang."""

    def __init__(self, language: str = ""):
        super().__init__()
        self.language = language

    def atom_entry(self, extensions=True):
        element = super().atom_entry(extensions)
        wanted = self.link() or []
        links = element.findall("link")     # feedgen writes them in self.link() order
        for el, link in zip(links, wanted, strict=True):
            for attr in ("rel", "type", "length", "title"):
                if link.get(attr):
                    el.set(attr, str(link[attr]))
        if self.language:
            element.set(_XML_LANG, self.language)
        return element


_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class Writer:
    """One feed format: a `Feed` in, the document's bytes out (what Django's
    SyndicationFeed subclasses are).  Subclasses set the class attributes and `write`."""
    name: ClassVar[str]             # the registry key and the URL's extension: feeds/all.<name>
    label: ClassVar[str]            # for people: link titles, subscribe buttons
    media_type: ClassVar[str]       # without parameters (discovery links, nginx types)
    charset: ClassVar[bool] = True  # the Content-Type names charset=utf-8
    # how the entries sit in the bytes (splice.py): each begins with `entry_start`, the
    # next follows after `entry_sep`, `entries_end` follows the last; b"": not known
    entry_start: ClassVar[bytes] = b""
    entry_sep: ClassVar[bytes] = b""
    entries_end: ClassVar[bytes] = b""

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8" if self.charset else self.media_type

    def write(self, feed: Feed, url: str, shared: dict[str, Any]) -> bytes:
        """`feed` as this format's bytes, `url` being where the document lives.  `shared`
        holds what the writers of one `render` call share (feedgen's generator, whose
        entries are made once for RSS and Atom)."""
        raise NotImplementedError


WRITERS: dict[str, Writer] = {}


def register(writer: Writer) -> Writer:
    """Add a format: its documents are published for every scope from then on.  Register
    at import time of this module: the cold start's spawned workers import it again."""
    if writer.name in WRITERS:
        raise ValueError(f"a writer named {writer.name!r} is already registered")
    WRITERS[writer.name] = writer
    return writer


def render(feed: Feed) -> dict[str, bytes]:
    """Serialize `feed` in the format of each writer named in `feed.self_urls`, in that
    order.  Same input, same bytes, in any process."""
    shared: dict[str, Any] = {}
    return {name: WRITERS[name].write(feed, url, shared)
            for name, url in feed.self_urls.items()}


class _FeedgenWriter(Writer):
    """A format feedgen writes.  The writers of one render share one generator: its
    entries are set once for every feedgen format.  Under the lock: feedgen's RSS dates
    switch the process locale."""

    def write(self, feed: Feed, url: str, shared: dict[str, Any]) -> bytes:
        with _lock:
            fg = shared.get("feedgen")
            if fg is None:
                fg = shared["feedgen"] = _generator(feed)
            # the self link first, the page last: RSS's <link> is the last link added
            fg.link(href=url, rel="self", type=self.media_type, replace=True)
            for hub in feed.hubs:
                fg.link(href=hub, rel="hub")
            fg.link(href=feed.page_url, rel="alternate", type="text/html")
            return self.serialize(fg, feed)

    def serialize(self, fg: FeedGenerator, feed: Feed) -> bytes:
        raise NotImplementedError


class RssWriter(_FeedgenWriter):
    """RSS 2.0.  feedgen keeps only the self link as `<atom:link>`: the hub links are put
    back after it by `_HubLinks`, an extension through feedgen's extension API."""
    name, label, media_type = "rss", "RSS", "application/rss+xml"
    entry_start, entries_end = b"\n    <item>", b"\n  </channel>"

    def serialize(self, fg: FeedGenerator, feed: Feed) -> bytes:
        fg.hub_links.hubs = feed.hubs
        return fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)


ATOM_NS = "http://www.w3.org/2005/Atom"


class _HubLinks(BaseExtension):
    """An RSS feed extension (feedgen's public `register_extension`): the WebSub hub links
    as `<atom:link rel="hub">` right after the self link, in order."""

    def __init__(self) -> None:
        self.hubs: tuple[str, ...] = ()

    def extend_rss(self, feed: etree._Element) -> etree._Element:
        channel = feed.find("channel")
        atom_link = f"{{{ATOM_NS}}}link"
        after = channel.find(atom_link)             # the self link
        at = list(channel).index(after) + 1 if after is not None else len(channel)
        for i, hub in enumerate(self.hubs):
            channel.insert(at + i, etree.Element(atom_link, href=hub, rel="hub"))
        return feed


class AtomWriter(_FeedgenWriter):
    """Atom 1.0 (RFC 4287), through feedgen."""
    name, label, media_type = "atom", "Atom", "application/atom+xml"
    entry_start, entries_end = b"\n  <entry", b"\n</feed>"

    def serialize(self, fg: FeedGenerator, feed: Feed) -> bytes:
        return fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)


class JsonFeedWriter(Writer):
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/).  Keys in the spec's order,
    no floats, no clock: same feed, same bytes.  Dates are RFC 3339 with the article's
    own UTC offset, whole seconds, as the Atom feed writes them; the body is the same
    sanitized HTML.  The image is also the one attachment, as the other formats carry
    it as an enclosure; `size_in_bytes` only when known (the RSS length 0 means unknown).
    JSON is UTF-8 by definition (RFC 8259): no charset parameter."""
    name, label, media_type, charset = "json", "JSON Feed", "application/feed+json", False
    entry_start, entry_sep, entries_end = b'{"id":', b",", b"]}"

    def write(self, feed: Feed, url: str, shared: dict[str, Any]) -> bytes:
        doc = {"version": "https://jsonfeed.org/version/1.1",
               "title": feed.title,
               "home_page_url": feed.page_url,
               "feed_url": url,
               "description": feed.subtitle or feed.title,
               "language": feed.language,
               "authors": [{"name": feed.publisher}],
               **({"hubs": [{"type": "WebSub", "url": hub} for hub in feed.hubs]}
                  if feed.hubs else {}),
               "items": [self._item(e) for e in feed.entries]}
        try:
            return orjson.dumps(doc) + b"\n"
        except orjson.JSONEncodeError:      # (an integer past 64 bits: json writes it)
            return plain_json(doc)

    @staticmethod
    def _item(e: Entry) -> dict[str, Any]:
        item: dict[str, Any] = {"id": e.id, "url": e.link, "title": e.title}
        if e.content:
            item["content_html"] = e.content
        else:                                   # one of the two is required
            item["content_text"] = e.summary or e.title
        item["summary"] = e.summary or e.title
        if e.enclosure and e.enclosure[1].startswith("image/"):
            item["image"] = e.enclosure[0]
        item["date_published"] = _seconds(e.published).isoformat()
        item["date_modified"] = _seconds(e.updated).isoformat()
        if e.authors:
            item["authors"] = [{"name": a.name, **({"url": a.uri} if a.uri else {})}
                               for a in e.authors]
        if e.categories:
            item["tags"] = list(e.categories)
        if e.language:
            item["language"] = e.language
        if e.enclosure:
            href, media_type, length = e.enclosure
            item["attachments"] = [{"url": href, "mime_type": media_type,
                                    **({"title": e.enclosure_title} if e.enclosure_title
                                       else {}),
                                    **({"size_in_bytes": length} if length > 0 else {})}]
        return item


def plain_json(doc: dict[str, Any]) -> bytes:
    """`doc` as the standard library writes it: compact, UTF-8, keys in order.  orjson
    gives the same bytes about ten times faster (1.4 to 0.14 ms for a 330 KB feed);
    tests/test_jsonfeed.py holds the two to each other on hostile strings."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
                      check_circular=False).encode() + b"\n"


register(RssWriter())
register(AtomWriter())
register(JsonFeedWriter())


def _seconds(when: dt.datetime) -> dt.datetime:
    return when.replace(microsecond=0)


def _generator(feed: Feed) -> FeedGenerator:
    """Everything but the links, for both formats: RSS has no feed or entry author without
    an email (it writes dc:creator, from an extension Atom does not load)."""
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.register_extension("hub_links", _HubLinks, atom=False, rss=True)
    fg.id(feed.id)
    fg.title(feed.title)
    fg.subtitle(feed.subtitle or feed.title)          # RSS <description> is required
    fg.language(feed.language)
    fg.updated(_seconds(feed.updated))
    fg.generator("feedsvc")
    fg.author({"name": feed.publisher})
    for item in feed.entries:
        fe = fg.add_entry(_Entry(item.language), order="append")  # (+ the dc extension)
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
            # what fe.enclosure() does, with Atom's link title (RSS has no place for it)
            fe.link(href=url, rel="enclosure", type=media_type, length=str(length),
                    **({"title": item.enclosure_title} if item.enclosure_title else {}))
    return fg
