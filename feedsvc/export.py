"""`feedsvc build OUTDIR`: the whole site as static files that nginx or a CDN serves.

What is written (paths relative to OUTDIR):

- every document of `Publisher.build`: ``index.html`` (the path ``/``),
  ``category/<slug>/index.html``, ``author/<slug>/index.html``,
  ``feeds/...<format>`` (one per registered writer: rss, atom, json) and ``feeds.opml``;
- ``articles/<slug>/index.html`` for every visible article;
- ``media/...`` copied from ``data/media`` (dot files, and symlinks that leave
  the data directory, are skipped);
- a ``.gz`` sibling of each of these, made by `documents.compress` (deterministic:
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

Incremental (see outdir).  A file is written only when its bytes differ from what is on
disk (sizes first, then bytes), through a temporary dot file that gets its
final mtime before `os.replace`, so nginx never shows new bytes with an old
validator or a half-written file.  A re-run on unchanged data writes nothing.

What a static export cannot do: a scheduled article appears when a build runs
after its time (run the build from a timer), and Cache-Control is the plain
``max-age`` setting, not cut short before the next scheduled article.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import time

import pytz

from . import settings
from .corpus import Library
from .hubs import Hubs
from .nginx import check_listen, check_nginx_path, nginx_conf
from .outdir import MANIFEST, Progress, Writer, read_manifest
from .publish import Publisher
from .scan import Signatures
from .store import newest_mtime, open_store

__all__ = ["MANIFEST", "NGINX_CONF", "export", "nginx_conf"]

NGINX_CONF = "nginx/feedsvc.conf"


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
    check_nginx_path(outdir)
    check_listen(listen)
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
        # a static site has no hub of its own: it advertises only the external ones
        publisher = Publisher(cache, Hubs(external=config.external_hubs))
        documents = publisher.build(corpus, when)
        visible = corpus.visible(when)
        media = _media_files(config.data_dir, library.scan())
        total = len(documents) + len(visible) + len(media) + 1
        writer = Writer(outdir, read_manifest(outdir), progress, total)

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

