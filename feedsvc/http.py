"""Ready-made HTTP responses and the thin WSGI layer that serves them.

Everything a response needs is computed when a document changes: its gzip
bytes, the strong ETags of both encodings, Last-Modified, the header lists.  A
request is a dict lookup, a choice of encoding, the conditional check, and a
write.  Only the gzip bytes are kept for every document (feed readers ask for
gzip); the identity bytes are gunzipped when a client asks for them and the
most recently asked are kept (`Inflated`), as nginx's gunzip module does for
precompressed files.  The conditional rules are werkzeug's (`is_resource_modified`, RFC 9110 section
13: If-None-Match with weak comparison, lists and `*` wins over
If-Modified-Since; a bad date is ignored); the only shortcut taken before
calling it is the exact-match case, which werkzeug would answer the same way.
If-Match and If-Unmodified-Since are checked first (RFC 9110 13.2.2) with
werkzeug's parsers and answer 412 when false.

`FeedApp` also screens every request before either stack sees it: methods other
than GET and HEAD get 405 (methods are case-sensitive: `get` is not GET; POST
under /admin/ goes on to the admin forms), a
request target that is not a path (`GET *`) and an HTTP/1.1 request without a
Host (or with an empty one) get 400, and a date werkzeug cannot parse without
overflowing (a year past 2**31) is removed, so it is ignored as RFC 9110 says an
invalid date is.  Every response carries `SECURITY_HEADERS`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from isal import igzip
from werkzeug.http import http_date, parse_accept_header, parse_date, parse_etags
from werkzeug.sansio.http import is_resource_modified

from .lru import LRU

StartResponse = Callable[..., object]
IDENTITY_CACHE_BYTES = 32 << 20     # identity bytes kept ready, the most recently asked
ALLOW = "GET, HEAD"
# The Last-Modified of a document whose bytes may show none yet (see validators.Validators):
# the last second HTTP dates can hold, so FeedApp never sends it (it holds back any
# Last-Modified after now) and an If-Modified-Since never finds it unmodified.
NOT_YET = 253402300799


def _style_source() -> str:
    """The CSP source of the pages' one inline stylesheet (in base.html): its hash."""
    text = (Path(__file__).parent / "templates" / "base.html").read_text("utf-8")
    found = re.search(r"<style>(.*?)</style>", text, re.DOTALL)
    assert found, "templates/base.html: the pages' <style> element is missing"
    digest = hashlib.sha256(found.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _script_source() -> str:
    """The CSP source of the pages' one script (templates/copy.js, inlined by
    subscribe.html exactly as the file holds it): its hash."""
    text = (Path(__file__).parent / "templates" / "copy.js").read_text("utf-8")
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


# One script only (the copy buttons), the pages' own stylesheet only (scripts, style
# attributes and <style> in an article body are ignored), images and audio/video from
# anywhere (article images are absolute URLs on any host), no forms, no plugins, not
# framed.
CSP = (f"default-src 'none'; img-src * data:; media-src *; style-src {_style_source()}; "
       f"script-src {_script_source()}; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
NOSNIFF = ("X-Content-Type-Options", "nosniff")
# Documents a browser should save rather than show: the OPML (a list to import into a feed
# reader; shown, it is raw text).  By media type; nginx adds the same (export.py).
OPML_FILE_NAME = "feeds.opml"
DISPOSITION = {"text/x-opml": [("Content-Disposition",
                                f'attachment; filename="{OPML_FILE_NAME}"')]}
SECURITY_HEADERS = [("Content-Security-Policy", CSP), NOSNIFF]


class Inflated:
    """Identity bytes of documents kept only as gzip: gunzipped when asked for (ISA-L,
    about 1 GB/s), the most recently used kept ready up to `budget` bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self._held: LRU[str, bytes] = LRU(1 << 30, budget, len)    # by gzip ETag

    def get(self, key: str, gz: bytes) -> bytes:
        """The identity bytes of `gz`, whose (gzip) ETag is `key`."""
        body = self._held.get(key)
        if body is None:
            body = igzip.decompress(gz)     # outside any lock: other requests go on
            self._held.put(key, body)
        return body

    def clear(self) -> None:
        self._held.clear()


@dataclass(frozen=True)
class Variant:
    """One encoding of a ready document (identity or gzip): its bytes, ETag and headers."""
    body: bytes | None                  # None for identity: see Inflated
    etag: str                           # quoted, strong
    headers: list[tuple[str, str]]      # for a 200, without Cache-Control
    headers_304: list[tuple[str, str]]
    early: tuple[list, list]            # the same two without Last-Modified (see FeedApp)


@dataclass(frozen=True)
class Resource:
    """A ready document as served: both variants and its Last-Modified."""
    identity: Variant
    gzip: Variant
    last_modified: int                  # Unix seconds
    modified: dt.datetime

    @classmethod
    def make(cls, content_type: str, last_modified: int, etag: str, gz: bytes,
             gzip_etag: str, links: tuple[tuple[str, str], ...] = ()) -> "Resource":
        """`gz`: the document's gzip bytes; `etag`, `gzip_etag`: the quoted strong ETags of
        its identity and its gzip bytes; `links`: headers for 200 and 304 alike (a feed's
        WebSub `Link`: hubs.link_header)."""
        lm = http_date(last_modified)

        def variant(data: bytes | None, size: int, etag: str,
                    extra: list[tuple[str, str]]) -> Variant:
            common = [("ETag", etag), ("Last-Modified", lm), ("Vary", "Accept-Encoding"),
                      *links]
            head = [("Content-Type", content_type), ("Content-Length", str(size))] + extra \
                + DISPOSITION.get(content_type.split(";")[0], []) + SECURITY_HEADERS
            early = [common[0], *common[2:]]
            return Variant(data, etag, head + common, common + [NOSNIFF],
                           (head + early, early + [NOSNIFF]))
        # a single-member gzip ends with the identity size, modulo 2**32 (RFC 1952 ISIZE)
        size = int.from_bytes(gz[-4:], "little")
        return cls(variant(None, size, etag, []),
                   variant(gz, len(gz), gzip_etag, [("Content-Encoding", "gzip")]),
                   last_modified, dt.datetime.fromtimestamp(last_modified, dt.UTC))

    def identity_body(self) -> bytes:
        """The identity bytes, gunzipped from the gzip variant's (see Inflated)."""
        assert self.gzip.body is not None   # noqa: S101 - only the identity variant has none
        return INFLATED.get(self.gzip.etag, self.gzip.body)


INFLATED = Inflated(IDENTITY_CACHE_BYTES)



def gzip_accepted(header: str) -> bool:
    """RFC 9110 12.5.3: an explicit `gzip` (or `x-gzip`) entry wins over `*`; q=0 refuses."""
    accept = parse_accept_header(header)
    explicit = [q for value, q in accept if value.lower() in ("gzip", "x-gzip")]
    if explicit:
        return max(explicit) > 0
    return any(value == "*" and q > 0 for value, q in accept)


# memoized for the short values clients send; a request head may be 400 KB, and 512 long
# values kept here would pin 200 MB (FeedApp asks `gzip_accepted` for those)
accepts_gzip = lru_cache(maxsize=512)(gzip_accepted)
MEMO_HEADER_CHARS = 256


@lru_cache(maxsize=256)
def _valid_date(value: str) -> bool:
    """Whether werkzeug's `parse_date` gets through `value` (None counts: it means
    "unparseable", which every caller ignores).  A year past 2**31 overflows."""
    try:
        parse_date(value)
    except (OverflowError, ValueError):
        return False
    return True


def drop_bad_dates(environ: dict) -> None:
    """Remove the conditional dates werkzeug would fail on: such a header is invalid and
    RFC 9110 (13.1.3, 13.1.4) says to ignore it.  An If-Range that cannot match
    (13.1.5) takes its Range with it: the whole representation is sent.  No HTTP date
    is longer than 64 characters: a longer value is dropped, not kept in the memo."""
    for key in ("HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE"):
        value = environ.get(key)
        if value is not None and (len(value) > 64 or not _valid_date(value)):
            del environ[key]
    value = environ.get("HTTP_IF_RANGE")
    if value is not None and not value.lstrip().startswith(('"', "W/")) and \
            (len(value) > 64 or not _valid_date(value)):
        del environ["HTTP_IF_RANGE"]
        environ.pop("HTTP_RANGE", None)


def plain(start_response: StartResponse, status: str, text: str, method: str = "GET",
          extra: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
    """A short text/plain answer (errors), with the security headers."""
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *extra, *SECURITY_HEADERS])
    return [] if method == "HEAD" else [body]


def precondition_failed(environ: dict, etag: str, modified: dt.datetime) -> bool:
    """RFC 9110 13.2.2 steps 1-2: If-Match (strong comparison, `*`), else If-Unmodified-Since.

    werkzeug's `is_resource_modified` folds If-Match into its answer (a failed
    If-Match reads as "not modified"), so it is only ever given INM and IMS.
    """
    if_match = environ.get("HTTP_IF_MATCH", "").strip()
    if if_match:
        return not parse_etags(if_match).contains(etag[1:-1])
    since = parse_date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))    # None if unparseable
    return since is not None and modified > since


def not_modified(environ: dict, etag: str, modified: dt.datetime) -> bool:
    """RFC 9110 13.2.2 steps 3-4 (werkzeug's `is_resource_modified`, given INM and IMS
    only), for ready documents and responses made elsewhere (web.py) alike; an exact
    If-None-Match match, which werkzeug would answer the same way, is decided first."""
    inm = environ.get("HTTP_IF_NONE_MATCH")
    ims = environ.get("HTTP_IF_MODIFIED_SINCE")
    return inm == etag or bool((inm or ims) and not is_resource_modified(
        http_if_none_match=inm, http_if_modified_since=ims, etag=etag[1:-1],
        last_modified=modified))


PRECONDITION_FAILED = "412 precondition failed\n"


class CacheControl:
    """`public, max-age=N`, cut short so caches expire when the next article goes live."""

    def __init__(self, max_age: int):
        self.max_age = max_age
        self.next_change: float | None = None       # Unix time of the next scheduled article
        self._memo: tuple[int, float | None, str] = (-1, None, "")

    def value(self) -> str:
        now, nxt = int(time.time()), self.next_change
        if self._memo[:2] != (now, nxt):        # a new schedule applies at once
            age = self.max_age
            if nxt is not None:
                age = max(0, min(age, int(nxt - now)))
            self._memo = (now, nxt, f"public, max-age={age}")
        return self._memo[2]

    @property
    def now(self) -> int:
        """The second `value()` was last computed for (each request computes it first)."""
        return self._memo[0]


class FeedApp:
    """WSGI: answer ready documents directly, hand every other path to `fallback`.

    `pages(path)` gives the documents made on their first request (article pages:
    pages.py), answered by the same code; None sends the request on to `fallback`.
    `posts`: the paths a POST goes to `fallback` on (the WebSub hub)."""

    def __init__(self, source, fallback: Callable,
                 pages: Callable[[str], Resource | None] = lambda path: None,
                 posts: frozenset[str] = frozenset()):
        self.source = source                # anything with .resources and .cache_control
        self.fallback = fallback
        self.pages = pages
        self.posts = posts
        # statistics (audience.Counter.observe): called with (environ, status, bytes sent,
        # size of the representation) after each 200 or 304 of a ready document
        self.observe: Callable[[dict, int, int, int], None] | None = None

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if not admissible(environ, path):
            if environ["REQUEST_METHOD"] == "POST" and path in self.posts and \
                    environ.get("HTTP_HOST"):
                return self.fallback(environ, start_response)
            return refuse(environ, start_response)
        if "HTTP_IF_MODIFIED_SINCE" in environ or "HTTP_IF_UNMODIFIED_SINCE" in environ or \
                "HTTP_IF_RANGE" in environ:
            drop_bad_dates(environ)
        res = self.source.resources.get(path[1:]) or self.pages(path[1:])
        if res is None:
            return self.fallback(environ, start_response)
        return self.answer(environ, start_response, res)

    def answer(self, environ: dict, start_response: StartResponse,
               res: Resource) -> list[bytes]:
        """A GET or HEAD of the ready document `res`: 412, 304 or 200 (RFC 9110 13.2.2)."""
        method = environ["REQUEST_METHOD"]
        ae = environ.get("HTTP_ACCEPT_ENCODING", "")
        v = res.gzip if (accepts_gzip(ae) if len(ae) <= MEMO_HEADER_CHARS else gzip_accepted(ae)) \
            else res.identity
        cc = ("Cache-Control", self.source.cache_control.value())
        if ("HTTP_IF_MATCH" in environ or "HTTP_IF_UNMODIFIED_SINCE" in environ) and \
                precondition_failed(environ, v.etag, res.modified):
            return plain(start_response, "412 Precondition Failed", PRECONDITION_FAILED, method)
        # Bytes that changed several times within a second carry a Last-Modified a second
        # or two ahead (it must increase); RFC 9110 8.8.2.1 forbids sending a future one.
        headers, headers_304 = (v.headers, v.headers_304) \
            if res.last_modified <= self.source.cache_control.now else v.early
        if not_modified(environ, v.etag, res.modified):
            start_response("304 Not Modified", headers_304 + [cc])
            if self.observe is not None:
                self.observe(environ, 304, 0, _size(v, res))
            return []
        start_response("200 OK", headers + [cc])
        if self.observe is not None:
            size = _size(v, res)
            self.observe(environ, 200, 0 if method == "HEAD" else size, size)
        if method == "HEAD":
            return []
        return [v.body if v.body is not None else res.identity_body()]


def _size(v: Variant, res: Resource) -> int:
    """The body size of the variant `v` of `res` (the identity size from the gzip trailer)."""
    if v.body is not None:
        return len(v.body)
    assert res.gzip.body is not None   # noqa: S101 - only the identity variant has none
    return int.from_bytes(res.gzip.body[-4:], "little")


def admissible(environ: dict, path: str) -> bool:
    """Whether any route may see the request: GET or HEAD (case-sensitive; POST under
    /admin/, the login and its forms), a target that
    is a path, and a Host header on HTTP/1.1 (`refuse` answers the others)."""
    method = environ["REQUEST_METHOD"]
    return (method == "GET" or method == "HEAD" or
            (method == "POST" and path.startswith("/admin/"))) and path[0] == "/" and \
        bool(environ.get("HTTP_HOST") or environ.get("SERVER_PROTOCOL") != "HTTP/1.1")


def refuse(environ: dict, start_response: StartResponse) -> list[bytes]:
    """The answer to a request no route may see (`FeedApp.__call__` says which)."""
    method = environ["REQUEST_METHOD"]
    if not environ.get("HTTP_HOST") and environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
        return plain(start_response, "400 Bad Request",     # RFC 9112 3.2 (granian: "")
                     "400 bad request: an HTTP/1.1 request needs a Host header\n", method)
    if method != "GET" and method != "HEAD":    # case-sensitive (RFC 9110 9.1); OPTIONS too
        return plain(start_response, "405 Method Not Allowed", "405 method not allowed\n",
                     extra=(("Allow", ALLOW),))
    return plain(start_response, "400 Bad Request",         # `GET *`, an absolute URI
                 "400 bad request: the request target must be a path\n", method)
