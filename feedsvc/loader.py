"""Parse one data file's text into a record, or raise DataError naming the file and the
problem: site settings, an author, the categories, an article.

Pure parsing: reading a file is datafile's job, its YAML safeyaml's; this module never
walks the directory (see corpus.py) and never imports Flask or feedgen.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import posixpath
import re
from urllib.parse import urljoin, urlsplit

import pytz

from .datafile import FRONT_MATTER, body_at
from .model import Article, DataError, Person, Site
from .safeyaml import load_yaml

_IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif",
                ".svg": "image/svg+xml"}
# lowercase ASCII words joined by single hyphens: python-slugify returns them unchanged
_PLAIN_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# "/media/a.jpg": no scheme, query, fragment, empty or dot segment (which urljoin resolves)
_PLAIN_PATH = re.compile(r"/?(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*/)*[A-Za-z0-9_~-][A-Za-z0-9._~-]*")
ID_DATE = "2000"   # the date part of our tag: URIs; any fixed date is valid (RFC 4151)


def _mapping(rel: str, value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(rel, f"{what} must be a YAML mapping (key: value lines)")
    return value


def _text(rel: str, data: dict, key: str, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise DataError(rel, f"'{key}' is required")
        return ""
    if isinstance(value, (dict, list, bool)):
        raise DataError(rel, f"'{key}' must be text (got {type(value).__name__})")
    text = str(value).strip()
    if required and not text:
        raise DataError(rel, f"'{key}' is required and must not be empty")
    return text


def _names(rel: str, data: dict, plural: str, singular: str) -> tuple[str, ...]:
    value = data.get(plural, data.get(singular))
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, list) or any(isinstance(v, (dict, list)) or v is None for v in value):
        raise DataError(rel, f"'{plural}' must be a list of names")
    names: list[str] = []
    for v in value:
        name = " ".join(str(v).split())
        if name and name not in names:
            names.append(name)
    return tuple(names)


def parse_datetime(rel: str, key: str, value: object, tz: pytz.BaseTzInfo) -> dt.datetime:
    """ISO 8601 with an offset, or a naive local time in the site's zone.

    A naive time is localized with the pytz rules of that date."""
    raw = str(value).strip()
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise DataError(rel, f"'{key}' is not an ISO 8601 datetime (got {raw!r})") from None
    if parsed.tzinfo is None:
        try:
            parsed = tz.localize(parsed, is_dst=None)
        except pytz.NonExistentTimeError:
            raise DataError(rel, f"'{key}' {raw!r} does not exist in {tz.zone} (clocks "
                            "jumped forward); write it with an explicit offset") from None
        except pytz.AmbiguousTimeError:
            raise DataError(rel, f"'{key}' {raw!r} happens twice in {tz.zone} (clocks went "
                            "back); write it with an explicit offset") from None
    return parsed.replace(microsecond=0)


def parse_site(rel: str, text: str, base_url_override: str = "") -> Site:
    data = _mapping(rel, load_yaml(rel, text), "site settings")
    base_url = base_url_override or _text(rel, data, "base_url", required=True)
    try:
        parts = urlsplit(base_url)
    except ValueError:                  # an unclosed "[" for an IPv6 address
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DataError(rel, f"'base_url' must be an absolute http(s) URL (got {base_url!r})")
    try:
        tag_authority(base_url)         # what entry and feed ids are made of
    except ValueError as e:
        raise DataError(rel, f"'base_url' needs a host name or IP address ({e}; got "
                             f"{base_url!r})") from None
    tzname = _text(rel, data, "timezone") or "UTC"
    try:
        pytz.timezone(tzname)
    except pytz.UnknownTimeZoneError:
        raise DataError(rel, f"'timezone' {tzname!r} is not an IANA time zone name") from None
    items = _count(rel, data, "items_per_feed")
    page_size = _count(rel, data, "page_size")
    trusted = data.get("trusted_html", False)
    if not isinstance(trusted, bool):
        raise DataError(rel, f"'trusted_html' must be true or false (got {trusted!r})")
    return Site(title=_text(rel, data, "title", required=True),
                description=_text(rel, data, "description"),
                base_url=base_url.rstrip("/") + "/",
                language=_language(rel, data) or "en",
                timezone=tzname, items_per_feed=items, trusted_html=trusted,
                page_size=page_size)


def _count(rel: str, data: dict, key: str) -> int:
    """A whole number from 1 to 1000 (default 50) in site.yml."""
    value = data.get(key, 50)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
        raise DataError(rel, f"'{key}' must be a whole number from 1 to 1000 (got {value!r})")
    return value


def parse_person(rel: str, text: str) -> Person:
    data = _mapping(rel, load_yaml(rel, text), "an author file")
    slug = posixpath.splitext(posixpath.basename(rel))[0]
    return Person(name=_text(rel, data, "name", required=True), slug=slug,
                  bio=_text(rel, data, "bio"), email=_text(rel, data, "email"),
                  url=_text(rel, data, "url"))


def parse_categories(rel: str, text: str) -> dict[str, str]:
    data = _mapping(rel, load_yaml(rel, text) or {}, "categories.yml")
    out = {}
    for name, value in data.items():
        if isinstance(value, dict):
            value = value.get("description", "")
        out[" ".join(str(name).split())] = "" if value is None else str(value).strip()
    return out


def body_of(root: str, article: Article) -> str | None:
    """The CommonMark body of `article`, or None if its file no longer holds those bytes."""
    return body_at(root, article.path, article.digest)


def split_front_matter(rel: str, text: str) -> tuple[dict, str]:
    m = FRONT_MATTER.match(text)
    if not m:
        raise DataError(rel, "has no front matter: start the file with a '---' line, "
                             "the YAML fields, then another '---' line")
    data = load_yaml(rel, m.group(1) or "", first_line=text.count("\n", 0, max(m.start(1), 0)) + 1)
    return _mapping(rel, data or {}, "front matter"), text[m.end():]


def parse_article(rel: str, text: str, digest: str, site: Site, root: str = "") -> Article:
    """`rel` is relative to the data directory (articles/...)."""
    data, _ = split_front_matter(rel, text)
    tz = pytz.timezone(site.timezone)
    title = _text(rel, data, "title", required=True)
    if "date" not in data or data["date"] in (None, ""):
        raise DataError(rel, "'date' is required (ISO 8601, e.g. 2024-10-28T13:00:00+03:30)")
    published = parse_datetime(rel, "date", data["date"], tz)
    updated = published
    if data.get("updated") not in (None, ""):
        updated = parse_datetime(rel, "updated", data["updated"], tz)
        if updated < published:
            raise DataError(rel, "'updated' is earlier than 'date'")
    stem = posixpath.splitext(rel.split("/", 1)[1] if "/" in rel else rel)[0]
    given = _text(rel, data, "slug") or posixpath.basename(stem)
    if _PLAIN_SLUG.fullmatch(given):
        slug = given                # what slugify gives back as it is, without its 9 regexes
    else:
        from slugify import slugify  # local: keeps import of this module cheap for workers
        slug = slugify(given)
    if not slug:
        raise DataError(rel, "has no usable slug: set 'slug' to ASCII letters and digits")
    draft = data.get("draft", False)
    if not isinstance(draft, bool):
        raise DataError(rel, f"'draft' must be true or false (got {draft!r})")
    link = _text(rel, data, "link")
    if link and urlsplit(link).scheme not in ("http", "https"):
        raise DataError(rel, f"'link' must be an absolute http(s) URL (got {link!r})")
    image, image_type, image_length = _image(rel, _text(rel, data, "image"), site, root)
    return Article(
        path=rel, id=_text(rel, data, "id") or tag_uri(site.base_url, stem),
        slug=slug, title=title, published=published, updated=updated,
        authors=_names(rel, data, "authors", "author"),
        categories=_names(rel, data, "categories", "category"),
        summary=" ".join(_text(rel, data, "summary").split()), link=link,
        image=image, image_type=image_type, image_length=image_length, draft=draft,
        language=_language(rel, data), image_alt=" ".join(_text(rel, data, "image_alt").split()),
        image_caption=" ".join(_text(rel, data, "image_caption").split()), digest=digest)


# a BCP 47 language tag as people write them (`fa`, `en-GB`, `zh-Hant-TW`); case kept
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


def _language(rel: str, data: dict) -> str:
    """The `language` field: a BCP 47 tag, or "" when absent."""
    tag = _text(rel, data, "language")
    if tag and not _LANGUAGE.fullmatch(tag):
        raise DataError(rel, f"'language' must be a language tag such as fa, en or en-GB "
                             f"(got {tag!r})")
    return tag


def tag_uri(base_url: str, specific: str) -> str:
    """The tag: URI (RFC 4151) of `specific` on the site at `base_url`: every entry and
    feed id is made here, so they all name the site the same way."""
    return f"tag:{tag_authority(base_url)},{ID_DATE}:{specific}"


@functools.lru_cache(maxsize=8)
def tag_authority(base_url: str) -> str:
    """The tagging entity of `base_url`: its host from one parse, lowercase, without user,
    port or a final dot.  RFC 4151 wants a DNS name: an internationalized name is written
    in ASCII (IDNA 2008 with UTS 46, as browsers do: `bücher.example` is
    `xn--bcher-kva.example`), and an IPv6 literal as its name under ip6.arpa (RFC 3596;
    `[::1]` is `1.0.0 ... 0.ip6.arpa`).  An IPv4 address already fits the grammar and is
    kept, as is every ASCII host name: ids made before stay the same.
    ValueError when there is no such name."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if "[" in parts.netloc:                         # an IP literal (RFC 3986 3.2.2)
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0]).reverse_pointer
        except ValueError:
            raise ValueError(f"[{host}] is not an IPv6 address") from None
    host = host.removesuffix(".")
    if not host:
        raise ValueError("no host")
    if not host.isascii():
        import idna  # local: only internationalized names need it (as slugify above)
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except UnicodeError:        # idna.IDNAError is one
            try:        # IDNA 2003, which browsers still accept for some names
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"{host!r} is not a valid internationalized "
                                 "domain name") from None
    return host.lower()


@functools.lru_cache(maxsize=8)
def _joins_plainly(base_url: str) -> bool:
    """Whether urljoin(base_url, path) is base_url + path for a plain relative path."""
    return urljoin(base_url, "a/b.jpg") == base_url + "a/b.jpg"


def _image(rel: str, image: str, site: Site, root: str) -> tuple[str, str, int]:
    if not image:
        return "", "", 0
    if _PLAIN_PATH.fullmatch(image) and _joins_plainly(site.base_url):
        url = site.base_url + image.lstrip("/")       # what urljoin makes of it, sooner
        ext = posixpath.splitext(image)[1].lower()
    else:
        url = urljoin(site.base_url, image.lstrip("/")) if not urlsplit(image).scheme else image
        ext = posixpath.splitext(urlsplit(url).path)[1].lower()
    if ext not in _IMAGE_TYPES:
        raise DataError(rel, f"'image' must end in one of {', '.join(sorted(_IMAGE_TYPES))} "
                             f"(got {image!r})")
    return url, _IMAGE_TYPES[ext], local_length(url, site, root)


def missing_locally(article: Article, site: Site) -> bool:
    """Whether `article`'s image is one of this site's that is not in the data directory
    (no enclosure then: a length 0 pointing at a 404 is worse than none; an empty
    file counts as missing)."""
    return article.image_length == 0 and article.image.startswith(site.base_url)


def local_length(url: str, site: Site, root: str) -> int:
    """Size of an image that lies under the data directory, else 0 (unknown)."""
    if root and url.startswith(site.base_url):
        local = os.path.join(root, *url[len(site.base_url):].split("/"))
        if os.path.isfile(local):
            return os.path.getsize(local)
    return 0
