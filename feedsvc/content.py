"""Article bodies: CommonMark to HTML with absolute URLs, plain-text summaries, a cache.

Raw HTML in a body is sanitized: nothing from a body runs on our pages or in
a feed reader.  cmark keeps raw HTML (as CommonMark says) and every URL as
written, `javascript:` included; nh3 (the ammonia sanitizer, in Rust) then keeps
the elements and attributes articles need (`_CLEANER`) and drops scripts,
event handlers, styles, frames, unknown elements and URLs of other schemes
than nh3's safe list (`data:` too).  A site whose editors are trusted can turn
that off (site.yml `trusted_html: true`).

Rendering is the slow part of a cold start: large batches run on every core,
and results go to the persistent cache (cache.Cache) keyed by what they depend
on (body, page URL, trusted or not, the renderer's code and libraries:
versions.BODIES), so an unchanged article is never rendered twice, not even
across restarts.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from functools import partial
from html import escape
from urllib.parse import urljoin, uses_netloc, uses_relative

import cmarkgfm
import lxml.etree
import lxml.html
import nh3
from cmarkgfm.cmark import Options

from . import versions, workers
from .datafile import body_at, clean

log = logging.getLogger("feedsvc")
PARALLEL_THRESHOLD = 1000     # renders below this run in-process (a spawned pool: ~0.3 s to start)
# cmark-gfm is the CommonMark reference implementation, in C. UNSAFE keeps raw HTML and
# every link's URL as written (its safe mode drops all raw HTML: tables and figures too);
# _sanitized then keeps what is safe, unless the site trusts its editors.
_CMARK_OPTIONS = Options.CMARK_OPT_UNSAFE
_PARSER = lxml.etree.HTMLParser()
_TEXT = lxml.etree.XPath("string()")
_URL_ATTRS = frozenset(("href", "src", "poster", "cite", "action", "data"))
# A scheme as urllib reads one: letters, digits, "+-." up to the first colon.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# A URL that urljoin gives back as it is: a lowercase scheme, "//", a host, then none of
# the parts urllib drops when they are empty ("?", "#", ";").
_PLAIN_ABSOLUTE = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#;\s]+(?:/[^?#;\s]*)?")
_NUMERIC_REFERENCE = re.compile(r"&#([0-9]{1,8}|[xX][0-9a-fA-F]{1,8});")
# cmark returns its HTML in a buffer from the C library's calloc, for the caller to free.
# cmarkgfm's markdown_to_html never frees it (every release up to 2025.10.22, the newest
# when checked): a service running for weeks would lose 8 KB per body it re-renders.  So
# this is the one place that reaches into cmarkgfm's private cffi module (`_cmark`): the
# same C call, its buffer then freed.  setup.cfg pins cmarkgfm below its next release;
# where that module or libc's free is missing, the public function renders (same bytes,
# tests/test_content.py; it leaks).
def _freeing_cmark() -> Callable[[str], str] | None:
    """cmark-gfm's HTML for a body, its buffer freed; None where that cannot be done."""
    try:
        from cmarkgfm import _cmark
        ffi, to_html = _cmark.ffi, _cmark.lib.cmark_markdown_to_html
        free = ctypes.CDLL(None).free
    except (ImportError, AttributeError, OSError, TypeError):
        return None
    free.argtypes, free.restype = [ctypes.c_void_p], None

    def markdown_to_html(body: str) -> str:
        source = body.encode()
        buffer = to_html(source, len(source), _CMARK_OPTIONS)
        try:
            return ffi.string(buffer).decode()
        finally:
            free(int(ffi.cast("uintptr_t", buffer)))
    return markdown_to_html


def public_markdown_to_html(body: str) -> str:
    """cmark-gfm's HTML for a body through cmarkgfm's public function (which leaks it)."""
    return cmarkgfm.markdown_to_html(body, options=_CMARK_OPTIONS)


markdown_to_html: Callable[[str], str] = _freeing_cmark() or public_markdown_to_html
if markdown_to_html is public_markdown_to_html:
    log.warning("cmarkgfm %s: its private module is not as expected; bodies render through "
                "its public function, which leaks each body's HTML (install the cmarkgfm "
                "release setup.cfg pins)", versions.installed("cmarkgfm"))


# What survives in a body's HTML: nh3's default tags and attributes (vetted by ammonia:
# text, links, images, lists, tables, figures, headings, code, quotes...) that feed
# readers also take as safe, plus titles, a code block's language class and a table's
# footer, and responsive images (`srcset`, `sizes`: _tree drops srcset candidates of other
# schemes, which nh3 keeps as written).  Left out: elements that feedparser's sanitizer,
# as readers run it, would strip (their text stays; "bdo" would also be a W3C feed
# validator SecurityRisk), and `cite`, a URL nh3 keeps unchecked and nothing shows.
# What is left is on the W3C feed validator's lists of safe elements and attributes.
# Dropped with their content: scripts, styles, frames, embedded SVG and MathML, forms'
# text areas.  No rel="noopener noreferrer" on links (nh3's default): "noopener" matters
# only with target="_blank", which is dropped, and "noreferrer" would hide the newsroom
# from the sites it links to.
_TAGS = (nh3.ALLOWED_TAGS | {"tfoot"}) - {
    "bdi", "bdo", "data", "hgroup", "mark", "rp", "rt", "rtc", "ruby", "summary", "wbr"}
_ATTRIBUTES = {tag: attrs - {"cite"} for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
for _tag, _attrs in {"*": {"title", "lang", "dir"}, "code": {"class"},
                     "img": {"srcset", "sizes"}}.items():
    _ATTRIBUTES[_tag] = _ATTRIBUTES.get(_tag, set()) | _attrs
_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES      # ammonia's list: no javascript:, data:, file:
_CONTROL_OR_SPACE = "".join(map(chr, range(0x21)))
_CLEANER = nh3.Cleaner(
    tags=_TAGS, attributes=_ATTRIBUTES, link_rel=None, url_schemes=_URL_SCHEMES,
    clean_content_tags={"script", "style", "iframe", "frame", "frameset", "object", "embed",
                        "svg", "math", "noscript", "noembed", "noframes", "template",
                        "textarea", "select", "xmp", "title"},
    strip_comments=True)


def _sanitized(html: str) -> str:
    return _CLEANER.clean(html) if html else html


def _tree(html: str, page_url: str, sanitized: bool = False) -> lxml.etree._Element | None:
    """cmark's HTML as an lxml <div>, every href/src/srcset made absolute; for `sanitized`
    HTML, srcset candidates of other schemes than nh3's dropped (nh3 does not look)."""
    if not html.strip():
        return None
    try:
        root = _fragment(html)
    except (AssertionError, lxml.etree.ParserError):
        # a body that is only document-level markup ("<html>", "<!DOCTYPE html>"): lxml
        # wants a wrapper it can see; what is left of such a body is whitespace
        root = lxml.html.fragment_fromstring(f"<div>{html}</div>")
    scheme = page_url.split(":", 1)[0].lower()
    # every element's attributes, as a list (so setting one is safe): a third cheaper than
    # an XPath query for the elements that have one of them
    for el in root.iter(lxml.etree.Element):
        for attr, value in el.items():
            if attr in _URL_ATTRS:
                if not value.startswith(("#", "mailto:", "data:")):
                    url = _absolute(page_url, scheme, value.strip())
                    if url != value:
                        el.set(attr, url)
            elif attr == "srcset" and value:
                srcset = _srcset(value, page_url, sanitized)
                if srcset:
                    el.set("srcset", srcset)
                else:
                    del el.attrib["srcset"]
    return root


def _srcset(value: str, page_url: str, sanitized: bool) -> str:
    """A srcset's candidates with absolute URLs ("" when none is left); for `sanitized`
    HTML, those of other schemes than nh3's dropped."""
    candidates = [c for c in value.split(",") if c.strip()]
    if sanitized:
        candidates = [c for c in candidates if _safe_url(c.strip().split(" ")[0])]
    return ", ".join(_absolute_candidate(page_url, c) for c in candidates)


def _safe_url(url: str) -> bool:
    """Whether `url` is relative or of a scheme nh3 allows, read as a browser reads it
    (controls and spaces around it stripped, tabs and newlines in it removed)."""
    url = url.strip(_CONTROL_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    m = _SCHEME.match(url)
    return m is None or m.group(1).lower() in _URL_SCHEMES


def _fragment(html: str) -> lxml.etree._Element:
    """lxml.html.fragment_fromstring(html, create_parent="div"), parsed and wrapped with
    lxml's plain HTML parser: lxml.html's parser picks each element's Python class in
    Python, about a tenth of a render."""
    parts = lxml.html.fragments_fromstring(html, parser=_PARSER)
    root = lxml.etree.Element("div")
    if parts and isinstance(parts[0], str):
        root.text = parts.pop(0)
    root.extend(parts)
    return root


def _html(root: lxml.etree._Element | None) -> str:
    if root is None:
        return ""
    inner = lxml.html.tostring(root, encoding="unicode")        # "<div>...</div>"
    return inner[len("<div>"):-len("</div>")].strip()


def _first_paragraph(root: lxml.etree._Element | None) -> str:
    return _first_text(_TEXT(p) for p in root.iter("p")) if root is not None else ""


def _first_text(texts: Iterable[str], limit: int = 400) -> str:
    """The first of `texts` that has any, whitespace collapsed, cut at a word."""
    for text in texts:
        text = " ".join(text.split())
        if text:
            return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "…"
    return ""


def _absolute(base: str, base_scheme: str, url: str) -> str:
    """urljoin(base, url).  Most links are absolute and come back from urljoin as they
    are: another scheme than the base's, or a plain URL with a host; they skip its
    parsing, half the time of a render."""
    m = _SCHEME.match(url)
    if m and "\t" not in url and "\n" not in url and "\r" not in url:
        scheme = m.group(1).lower()
        if scheme != base_scheme or scheme not in uses_relative or (
                scheme in uses_netloc and _PLAIN_ABSOLUTE.fullmatch(url)):
            return url
    try:
        return urljoin(base, url)
    except ValueError:          # "http://[x": a link urllib cannot read is left as written
        return url


def _absolute_candidate(base: str, candidate: str) -> str:
    url, _, descriptor = candidate.strip().partition(" ")
    scheme = base.split(":", 1)[0].lower()
    return f"{_absolute(base, scheme, url)} {descriptor.strip()}".strip()


def body_key(digest: str, page_url: str, trusted: bool = False) -> str:
    """Cache key of a rendered body: the file's digest and everything else it depends on."""
    renderer = versions.version(versions.BODIES)
    return hashlib.sha256(f"{renderer}\0{page_url}\0{trusted:d}\0{digest}".encode()).hexdigest()


def render(job: tuple[str, str, str], trusted: bool = False) -> tuple[str, str]:
    """(body, page URL, summary) -> (HTML, summary or the first paragraph); the body's
    raw HTML and URLs sanitized unless `trusted`."""
    body, page_url, summary = job
    body = _NUMERIC_REFERENCE.sub(_xml_safe_reference, body)
    html = markdown_to_html(body)
    plain = _plain(html, page_url, trusted) if "<" not in body and clean(body) is body \
        else None
    if plain is not None:
        out, first = plain[0], (summary or plain[1]())
    else:
        root = _tree(html, page_url) if trusted else \
            _tree(_sanitized(html), page_url, sanitized=True)
        out, first = _html(root), (summary or _first_paragraph(root))
    # What cmark decodes can still be a character XML forbids (a raw HTML block, say).
    return clean(out), clean(first)


# A body without raw HTML (no "<" in it) renders to cmark's own markup only: tags with
# fixed attributes, text escaped as "&amp;", "&lt;", "&gt;", "&quot;", "&#39;".  For such
# HTML, _plain gives what the lxml round trip (_tree, _html, _first_paragraph) gives,
# about twice as fast; the differential test in tests/test_content.py holds it to that.
# What lxml writes differently: "<br>" for "<br />"; "'" for "&#39;"; '"' for "&quot;" in
# text; "&" as "&amp;" in URLs, which it percent-encodes unless they are printable ASCII
# without space, '"', "<" or ">".  Those URLs, attributes holding '"' (lxml may quote
# them with "'"), empty elements (lxml may drop the end tag), a link in a link (which
# lxml's parser closes first) and a carriage return (lxml's parser makes it "\n") go
# the lxml way.  Such HTML holds nothing nh3 would drop but URLs of other schemes than
# it allows: a body with one (`[x](javascript:...)`) goes the lxml way too, sanitized.
_CMARK_URL = re.compile(r'<(?:a href|img src)="([^"]*)"')
_LINK_TAG = re.compile(r"<a |</a>")
_LXML_KEEPS_URL = re.compile(r"[!#-;=?-~]*")
_EMPTY_ELEMENT = re.compile(r"<(\w+)[^>]*></\1>")
_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.S)
_TAG = re.compile(r"<[^>]*>")


def _plain(html: str, page_url: str, trusted: bool = False
           ) -> tuple[str, Callable[[], str]] | None:
    """(the body's HTML, a function giving its first paragraph) as the lxml path makes
    them from cmark's `html` of a body without raw HTML; None where lxml would write
    something else, or nh3 would drop a URL unless `trusted` (see above)."""
    linked = _plain_urls(html, page_url)
    if linked is None:
        return None
    out, schemed = linked
    if schemed and not trusted and not _kept_by_nh3(schemed):
        return None
    out = out.replace(" />", ">").replace("&#39;", "'")
    if _lxml_writes_otherwise(out):
        return None
    if "&quot;" in out:
        out = out.replace("&quot;", '"')
    return out.strip(), partial(_first_plain_paragraph, html)


def _plain_urls(html: str, page_url: str) -> tuple[str, list[str]] | None:
    """(`html` with its link and image URLs made absolute as lxml writes them, the URLs
    that may have a scheme); None for a URL lxml would percent-encode."""
    scheme = page_url.split(":", 1)[0].lower()
    parts: list[str] = []
    schemed: list[str] = []     # URLs that may have a scheme (no ":": relative, kept)
    at = 0
    for m in _CMARK_URL.finditer(html):
        value = _unescape(m.group(1))
        if ":" in value:
            schemed.append(value)
        if not value.startswith(("#", "mailto:", "data:")):
            value = _absolute(page_url, scheme, value.strip())
        if not _LXML_KEEPS_URL.fullmatch(value):
            return None
        parts += (html[at:m.start(1)], value.replace("&", "&amp;"))
        at = m.end(1)
    parts.append(html[at:])
    return "".join(parts), schemed


def _lxml_writes_otherwise(out: str) -> bool:
    """Whether lxml's round trip would change this HTML beyond what _plain undoes: a
    carriage return ("&#13;": libxml2 writes "\\n"), an empty element, a link in a link,
    '"' in an attribute."""
    return "\r" in out or ("></" in out and _EMPTY_ELEMENT.search(out) is not None) or (
        "<a " in out and "<a <a " in "".join(_LINK_TAG.findall(out))) or (
        "&quot;" in out and any("&quot;" in tag for tag in _TAG.findall(out)))


# A web URL's verdict is its scheme and authority's: parsing its path, query or fragment
# never fails.  cmark's URLs hold no whitespace, control or backslash (it escapes them).
_WEB_URL = re.compile(r"(https?)://([^/?#\\\s]+)(?=[/?#]|$)", re.IGNORECASE)
_VERDICTS: dict[str, bool] = {}     # "https://host/" or a whole URL -> kept by nh3
_PROBE = nh3.Cleaner(tags={"a"}, attributes={"a": {"href"}}, link_rel=None,
                     url_schemes=_URL_SCHEMES)


def _kept_by_nh3(urls: list[str]) -> bool:
    """Whether nh3 keeps every one of these link URLs from cmark, asked of nh3 itself (its
    URL parser's verdicts, a valid host or port included, are not ours to copy) for the
    URLs, or the web URLs' scheme and authority, not yet known."""
    keys = []
    for url in urls:
        m = _WEB_URL.match(url)
        keys.append(f"{m.group(1).lower()}://{m.group(2)}/" if m else url)
    unknown = [k for k in dict.fromkeys(keys) if k not in _VERDICTS]
    if unknown:
        if len(_VERDICTS) > 10_000:
            _VERDICTS.clear()
        out = _PROBE.clean("".join(f'<a href="{escape(k)}"></a>' for k in unknown))
        _VERDICTS.update(zip(unknown, (a.startswith("<a href=") for a in out.split("</a>")),
                             strict=False))
    return all(_VERDICTS.get(k, False) for k in keys)


def _unescape(text: str) -> str:
    """cmark's escapes undone (in a URL it also writes "&#x27;")."""
    if "&" not in text:
        return text
    return text.replace("&quot;", '"').replace("&#39;", "'").replace("&#x27;", "'") \
        .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _first_plain_paragraph(html: str) -> str:
    """_first_paragraph for cmark's HTML of a body without raw HTML: the texts of its <p>
    elements (cmark never nests one <p> in another)."""
    return _first_text(_unescape(_TAG.sub("", m.group(1))) for m in _PARAGRAPH.finditer(html))


def render_file(job: tuple[str, str, str, str, str, bool]) -> tuple[str, str] | None:
    """(data dir, file, digest, page URL, summary, trusted) -> `render` of the file's body,
    or None if the file no longer holds those bytes.  Workers read the bodies themselves:
    the process that asks keeps no copy of thousands of Markdown sources."""
    root, rel, digest, page_url, summary, trusted = job
    body = body_at(root, rel, digest)
    if body is None:
        return None
    try:
        return render((body, page_url, summary), trusted)
    except Exception:       # one odd body must never stop every feed from being built
        log.exception("%s: the body cannot be rendered; it is left out", rel)
        return "", clean(summary)


def _xml_safe_reference(m: re.Match) -> str:
    """Drop `&#1;`, `&#xFFFE;` ...: decoded, they would break every feed holding the body."""
    text = m.group(1)
    code = int(text[1:], 16) if text[0] in "xX" else int(text)
    allowed = code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or \
        0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF
    return m.group(0) if allowed else ""


def start_rendering(jobs: list[tuple[str, str, str, str, str, bool]]
                    ) -> Callable[[], list[tuple[str, str] | None]]:
    """Begin `render_file` over `jobs`, on every core when there is enough work to pay for
    starting processes; call the result to wait for the results."""
    return workers.start(render_file, jobs, PARALLEL_THRESHOLD)
