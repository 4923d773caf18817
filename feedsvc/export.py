"""`feedsvc build OUTDIR`: the whole site as static files that nginx or a CDN serves.

What is written (paths relative to OUTDIR):

- every document of `Publisher.build`: ``index.html`` (the path ``/``),
  ``category/<slug>/index.html``, ``author/<slug>/index.html``,
  ``feeds/...<format>`` (one per registered writer: rss, atom, json) and ``feeds.opml``;
- ``articles/<slug>/index.html`` for every visible article;
- ``media/...`` copied from ``data/media`` (dot files, and symlinks that leave
  the data directory, are skipped);
- a ``.gz`` sibling of each of these, made by `publish.compress` (deterministic:
  no timestamp, no name), so nginx's ``gzip_static`` serves precompressed bytes.
  Media get one only when it saves at least 10% (a PNG does not shrink);
- ``nginx/feedsvc.conf``: a ``server {}`` block for the ``http {}`` context;
- ``.feedsvc-manifest``: every file the build wrote, so a later build removes
  what is no longer published and never touches anything else in OUTDIR.

The bytes are the live service's: the same `Library`, `Publisher` and rendered
caches (``cache.sqlite`` in the state directory).

Validators.  nginx derives its ETag from a file's mtime and size
(``"<mtime hex>-<size hex>"``), not from the bytes, and its Last-Modified from
the mtime.  So each file's mtime is set to the document's Last-Modified from
`validators.Validators` (the same persisted stamps the live service uses, keyed by
the ETag of the bytes): it moves forward, by at least one second, exactly when
the bytes change, and stays put otherwise.  That makes nginx's ETag and
Last-Modified stable across rebuilds and identical on every machine that
shares the state directory, and a changed file always gets a new ETag even
when its size did not change.  The ``.gz`` sibling gets the same mtime; its
size differs, so its ETag differs from the identity one.  Media keep the mtime
of their source file, as the live service's ``/media/`` route reports it.
Article pages are stamped under ``articles/<slug>/`` in the same state.

Incremental.  A file is written only when its bytes differ from what is on
disk (sizes first, then bytes), through a temporary dot file that gets its
final mtime before `os.replace`, so nginx never shows new bytes with an old
validator or a half-written file.  A re-run on unchanged data writes nothing.

What a static export cannot do: a scheduled article appears when a build runs
after its time (run the build from a timer), and Cache-Control is the plain
``max-age`` setting, not cut short before the next scheduled article.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import mimetypes
import os
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

import pytz

from . import feeds, loader, settings
from .corpus import Library
from .htmlpages import NOT_FOUND
from .http import CSP, NOSNIFF, OPML_FILE_NAME
from .publish import Publisher, compress
from .scan import Signatures
from .store import newest_mtime, open_store

MANIFEST = ".feedsvc-manifest"
NGINX_CONF = "nginx/feedsvc.conf"
GZIP_MEDIA_RATIO = 0.9          # a media file gets a .gz sibling only below this ratio

# Content types nginx sends, by extension; `charset utf-8` adds the charset to the
# text ones (charset_types), so they match the live service's headers exactly.  The
# feeds' types come from their writers (feeds.WRITERS), under /feeds/ only: a JSON Feed
# is a .json there, while a .json under /media/ stays application/json.
TYPES = {
    "html": "text/html",
    "opml": "text/x-opml", "xml": "text/xml", "txt": "text/plain", "css": "text/css",
    "js": "application/javascript", "json": "application/json",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "webp": "image/webp", "avif": "image/avif", "svg": "image/svg+xml", "ico": "image/x-icon",
    "mp3": "audio/mpeg", "m4a": "audio/mp4", "ogg": "audio/ogg", "mp4": "video/mp4",
    "webm": "video/webm", "pdf": "application/pdf",
}
CHARSET_TYPES = ("text/plain", "text/xml", "text/css", "text/x-opml",     # (text/html is implied)
                 "application/javascript", "application/json")

Progress = Callable[[int, int], None]       # (done, total)


def export(config: settings.Settings, outdir: str, progress: Progress | None = None, *,
           now: float | None = None, listen: str = "80") -> dict:
    """Write the site into `outdir`; return counts and the paths written and removed.

    `config` gives data_dir, state_dir, base_url, max_age and
    max_file_bytes.  `progress(done, total)`
    is called as files are processed.  `now` (Unix seconds) decides which
    articles are visible and stamps new validators; `listen` goes into the
    nginx server block.
    """
    outdir = os.path.abspath(outdir)
    _check_nginx_path(outdir)
    _check_listen(listen)
    now = time.time() if now is None else now
    when = dt.datetime.fromtimestamp(now, pytz.utc)
    os.makedirs(config.state_dir, exist_ok=True)

    seen = time.time()                  # the data as of now is what this build writes
    state = open_store(config.state_dir, config.database_url)
    cache = state.cache
    library = Library(config.data_dir, base_url=config.base_url,
                      max_file_bytes=config.max_file_bytes, cache=cache)
    corpus = library.load()
    validators = state.validators
    if state.shared:                    # across machines: how new this copy is
        seen = state.seen(seen, newest_mtime(library.scan(), config.data_dir))
    try:
        publisher = Publisher(cache)
        documents = publisher.build(corpus, when)
        visible = corpus.visible(when)
        media = _media_files(config.data_dir, library.scan())
        total = len(documents) + len(visible) + len(media) + 1
        writer = _Writer(outdir, _read_manifest(outdir), progress, total)

        stamps = validators.stamp({path: doc.etag for path, doc in documents.items()}, seen)
        for path, doc in documents.items():
            writer.document(_file_of(path), doc.body, stamps[path], doc.gzip)
        pages = [(f"articles/{a.slug}/", a) for a in visible]
        for i in range(0, len(pages), 500):       # in batches: bounded memory, steady progress
            bodies = {path: publisher.article_page(corpus, a) for path, a in pages[i:i + 500]}
            stamps = validators.stamp({path: f'"{hashlib.sha256(body).hexdigest()[:32]}"'
                                       for path, body in bodies.items()}, seen)
            for path, body in bodies.items():
                writer.document(_file_of(path), body, stamps[path])
        for rel, src in media:
            writer.media(rel, src)
        extensions = sorted({os.path.splitext(rel)[1][1:].lower() for rel, _ in media} - {""})
        conf = nginx_conf(outdir, config, listen=listen, extra_types=extensions).encode()
        writer.put(NGINX_CONF, conf, None)
        writer.tick()
        removed = writer.finish()
    finally:
        state.close()
    return {"written": len(writer.written), "unchanged": writer.unchanged,
            "touched": len(writer.touched), "removed": len(removed),
            "written_paths": writer.written, "removed_paths": removed,
            "documents": len(documents), "articles": len(pages), "media": len(media),
            "errors": corpus.errors, "nginx_conf": os.path.join(outdir, NGINX_CONF)}


def _file_of(path: str) -> str:
    """URL path (no leading slash) -> file under OUTDIR: a directory URL is its index.html."""
    return path + "index.html" if path == "" or path.endswith("/") else path


def _to_write(path: str, st: os.stat_result | None, body: bytes | None,
              source: tuple[str, bytes] | None) -> bytes | None:
    """The bytes to write at `path` (`st`: its stat, None when there is no file), or None
    when it holds them already; `body` None: a .gz sibling of `source` (see _Writer.put)."""
    if body is None:                # a .gz sibling: unzipping is ~10x cheaper than zipping
        assert source is not None
        return None if st is not None and _gzip_of(path, source[1]) else compress(source[1])
    same = st is not None and st.st_size == len(body) and _same_bytes(path, body)
    return None if same else body


def _media_files(data_dir: str, sigs: Signatures) -> list[tuple[str, str]]:
    """(OUTDIR-relative path, source path) of every file under data/media, sorted: those
    the data directory's walk keeps (`sigs`: no dot files or backups, no name that is not
    UTF-8, no folder too deep; os.walk would recurse into a thousand nested folders)."""
    real_data = os.path.realpath(data_dir)
    out = []
    for rel in sigs:
        src = os.path.join(data_dir, *rel.split("/"))
        if not rel.startswith("media/") or not os.path.isfile(src):
            continue
        if os.path.commonpath([os.path.realpath(src), real_data]) != real_data:
            continue                            # a symlink out of data/: never publish it
        out.append((rel, src))
    return sorted(out)


# -- writing --------------------------------------------------------------------

class _Writer:
    def __init__(self, outdir: str, old_manifest: set[str], progress: Progress | None,
                 total: int):
        self.outdir = outdir
        self.old = old_manifest
        self.files: set[str] = set()
        self.written: list[str] = []
        self.touched: list[str] = []
        self.unchanged = 0
        self.progress = progress
        self.total = total
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def document(self, rel: str, body: bytes, mtime: int, gz: bytes | None = None) -> None:
        """The identity file and its .gz sibling, both with `mtime`; `gz` when the build
        already compressed it (feeds, pages: the live service's very bytes)."""
        self.put(rel, body, mtime)
        if gz is not None:
            self.put(rel + ".gz", gz, mtime)
        else:
            self.put(rel + ".gz", None, mtime, source=(rel, body))
        self.tick()

    def media(self, rel: str, src: str) -> None:
        st = os.stat(src)
        with open(src, "rb") as f:
            body = f.read()
        self.put(rel, body, st.st_mtime_ns, ns=True)
        gz = compress(body)
        if len(gz) < GZIP_MEDIA_RATIO * len(body):
            self.put(rel + ".gz", gz, st.st_mtime_ns, ns=True)
        self.tick()

    def put(self, rel: str, body: bytes | None, mtime: int | None, *, ns: bool = False,
            source: tuple[str, bytes] | None = None) -> None:
        """Write `rel` unless it already holds `body`; then make its mtime `mtime`.

        `source` (rel, identity bytes) marks a .gz sibling (`body` None): it is
        left alone when it unzips to those bytes, else written as their
        deterministic gzip.  mtime None leaves the mtime alone (nginx/feedsvc.conf).
        """
        if rel in self.files:
            raise ValueError(f"two published files map to {rel!r}")
        self.files.add(rel)
        path = os.path.join(self.outdir, rel)
        mtime_ns = None if mtime is None else (mtime if ns else mtime * 1_000_000_000)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        fresh = _to_write(path, st, body, source)
        if fresh is not None:
            _atomic_write(path, fresh, mtime_ns)
            self.written.append(rel)
        elif st is not None and mtime_ns is not None and st.st_mtime_ns != mtime_ns:
            os.utime(path, ns=(mtime_ns, mtime_ns))
            self.touched.append(rel)
        else:
            self.unchanged += 1

    def finish(self) -> list[str]:
        """Remove what an earlier build wrote and this one did not; save the manifest."""
        removed = []
        for rel in sorted(self.old - self.files):
            path = os.path.join(self.outdir, rel)
            try:
                os.unlink(path)
                removed.append(rel)
            except FileNotFoundError:
                continue
            _prune_dirs(os.path.dirname(path), self.outdir)
        text = "".join(f"{rel}\n" for rel in sorted(self.files)).encode()
        mpath = os.path.join(self.outdir, MANIFEST)
        if not (os.path.isfile(mpath) and _same_bytes(mpath, text)):
            _atomic_write(mpath, text, None)
        return removed


def _same_bytes(path: str, body: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(body) + 1) == body
    except OSError:
        return False


def _gzip_of(path: str, body: bytes) -> bool:
    """Does the gzip file at `path` hold exactly `body`?"""
    try:
        with open(path, "rb") as f:
            return gzip.decompress(f.read()) == body
    except (OSError, EOFError, zlib.error):
        return False


def _atomic_write(path: str, body: bytes, mtime_ns: int | None) -> None:
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")    # a dot file: never served
    try:
        with open(tmp, "wb") as f:
            f.write(body)
        os.chmod(tmp, 0o644)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))             # before it becomes visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _prune_dirs(folder: str, outdir: str) -> None:
    """Remove directories emptied by a removal, up to (not including) OUTDIR."""
    while os.path.commonpath([folder, outdir]) == outdir and folder != outdir:
        try:
            os.rmdir(folder)
        except OSError:                 # not empty (or already gone): stop here
            return
        folder = os.path.dirname(folder)


def _read_manifest(outdir: str) -> set[str]:
    try:
        with open(os.path.join(outdir, MANIFEST), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return set()
    out = set()
    for line in lines:
        rel = line.strip()
        parts = rel.split("/")
        if rel and not rel.startswith("/") and ".." not in parts and "" not in parts:
            out.add(rel)                # never follow a manifest line out of OUTDIR
    return out


# -- nginx ----------------------------------------------------------------------

def _check_nginx_path(outdir: str) -> None:
    bad = set('$"\\') | {chr(c) for c in range(32)} | {"\x7f"}
    if any(ch in bad for ch in outdir):
        raise ValueError(f"{outdir!r}: an nginx root cannot safely hold $, \", \\ or "
                         "control characters; choose another OUTDIR")


def _check_listen(listen: str) -> None:
    if not listen or any(ch in listen for ch in ';{}"\'#$') or not listen.isprintable():
        raise ValueError(f"{listen!r} is not an nginx listen address (e.g. 80, 127.0.0.1:8080)")


def _type_lines(types: dict[str, str], indent: int) -> str:
    """The lines of an nginx `types {}` block: one per content type, its extensions."""
    by_type: dict[str, list[str]] = {}
    for ext, ctype in sorted(types.items()):
        by_type.setdefault(ctype, []).append(ext)
    return "".join(f"{' ' * indent}{ctype:<24} {' '.join(exts)};\n"
                   for ctype, exts in sorted(by_type.items()))


def _server_name(base_url: str) -> str:
    """`server_name` for `base_url` as nginx compares it with the Host header: an IPv6
    literal in brackets (Host is `[::1]:8000`), an internationalized name in ASCII
    (browsers send `xn--...`), lowercase, without a final dot; `_` without a base URL."""
    if not base_url:
        return "_"
    parts = urlsplit(base_url)
    if "[" in parts.netloc:
        host = f"[{parts.hostname}]"
    else:
        host = loader.tag_authority(base_url)   # the host as the site's ids name it
    if not all(ch.isascii() and (ch.isalnum() or ch in "-.:[]") for ch in host):
        raise ValueError(f"{base_url!r}: its host cannot be an nginx server_name")
    return host


def nginx_conf(outdir: str, config: settings.Settings, *, listen: str = "80",
               extra_types: list[str] | tuple[str, ...] = ()) -> str:
    """A `server {}` block (for nginx's `http {}` context) serving OUTDIR like the live service."""
    _check_listen(listen)
    types = dict(TYPES)
    for ext in extra_types:
        if ext not in types and ext.isascii() and ext.isalnum():
            guessed = mimetypes.guess_type("x." + ext, strict=False)[0]
            if guessed:
                types[ext] = guessed
    type_lines = _type_lines(types, 8)
    feed_type_lines = _type_lines({w.name: w.media_type for w in feeds.WRITERS.values()}, 12)
    charset_types = CHARSET_TYPES + tuple(sorted(
        {w.media_type for w in feeds.WRITERS.values() if w.charset} - set(CHARSET_TYPES)))
    host = _server_name(config.base_url)
    assert not set('"$\\') & set(CSP), "http.CSP must fit in an nginx string"
    max_age = config.max_age
    return f"""\
# nginx server block generated by `feedsvc build`: serves {outdir}
# with the live service's headers.  Include it in the http {{}} context.
#
# Validators: nginx's ETag is "<mtime hex>-<size hex>" of the file sent (the .gz
# sibling for gzip), not a hash of the bytes, and Last-Modified is its mtime.
# feedsvc build sets every mtime to the document's persisted Last-Modified
# (state directory), which moves forward exactly when the bytes change, so both
# validators are stable across rebuilds and equal on machines sharing the state.
# nginx answers 304 only when every validator the client sent matches (RFC 9110
# would ignore If-Modified-Since beside If-None-Match): never a false 304.
server {{
    listen {listen};
    server_name {host};
    root "{outdir}";
    index index.html;

    types {{
{type_lines}    }}
    default_type application/octet-stream;
    charset utf-8;
    charset_types {' '.join(charset_types)};

    etag on;
    if_modified_since before;      # 304 when If-Modified-Since >= Last-Modified, as live
    gzip off;                      # never compress on the fly: ...
    gzip_static on;                # ... serve the precompressed .gz siblings
    gzip_vary off;                 # Vary comes from add_header, on 200 and 304 alike
    gzip_proxied any;              # also behind a proxy or CDN (requests with Via)
    gzip_http_version 1.0;
    absolute_redirect off;
    server_tokens off;

    # Vary and Cache-Control come from add_header, not gzip_vary: gzip_vary only
    # marks files that have a .gz sibling (media have none).  Without `always`,
    # add_header applies to 200, 301 and 304 (a 304 keeps Vary) but not to errors;
    # the locations inherit these (only the 405 location has its own add_header, so it
    # repeats the security headers).
    add_header Vary "Accept-Encoding";
    add_header Cache-Control "public, max-age={max_age}";
    # The live service's security headers (feedsvc/http.py), on every answer.
    add_header Content-Security-Policy "{CSP}" always;
    add_header {NOSNIFF[0]} {NOSNIFF[1]} always;

    # the published 404 page (htmlpages: one file, the same bytes as the live service's)
    error_page 404 /{NOT_FOUND};
    error_page 405 @feedsvc_405;

    location / {{
        if ($request_method !~ ^(GET|HEAD)$) {{
            return 405;
        }}
        try_files $uri $uri/ =404;
    }}

    # Feeds: each format's type by its extension, from the registered writers (a
    # location's types replace the server's, and a location runs only its own `if`).
    location ^~ /feeds/ {{
        types {{
{feed_type_lines}        }}
        if ($request_method !~ ^(GET|HEAD)$) {{
            return 405;
        }}
        try_files $uri =404;
    }}

    # The OPML downloads (a list to import), as the live service sends it (http.DISPOSITION);
    # a location's add_header replaces the server's: all of them again.
    location = /feeds.opml {{
        if ($request_method !~ ^(GET|HEAD)$) {{
            return 405;
        }}
        add_header Content-Disposition 'attachment; filename="{OPML_FILE_NAME}"';
        add_header Vary "Accept-Encoding";
        add_header Cache-Control "public, max-age={max_age}";
        add_header Content-Security-Policy "{CSP}" always;
        add_header {NOSNIFF[0]} {NOSNIFF[1]} always;
    }}

    # The manifest, temporary files and this configuration are not part of the site.
    location ~ /\\. {{
        return 404;
    }}
    location ^~ /nginx/ {{
        return 404;
    }}

    location @feedsvc_405 {{
        types {{ }}
        default_type text/plain;
        add_header Allow "GET, HEAD" always;
        add_header Content-Security-Policy "{CSP}" always;
        add_header {NOSNIFF[0]} {NOSNIFF[1]} always;
        return 405 "405 method not allowed\\n";
    }}
}}
"""
