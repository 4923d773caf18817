"""Article bodies: CommonMark to HTML with absolute URLs, plain-text summaries, a cache.

Rendering is the slow part of a build, so results are kept in a persistent
cache keyed by what they depend on (body, page URL, renderer version): an
unchanged article is never rendered twice, not even across restarts.
"""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from urllib.parse import urljoin

import lxml.html
from markdown_it import MarkdownIt

RENDERER_VERSION = "1"
_md = MarkdownIt("commonmark", {"html": True})
_URL_ATTRS = ("href", "src", "poster", "cite", "action", "data")


def render_html(body: str, page_url: str) -> str:
    """CommonMark body -> HTML fragment whose every href/src/srcset is absolute."""
    html = _md.render(body)
    if not html.strip():
        return ""
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue                                  # comments, processing instructions
        for attr in _URL_ATTRS:
            value = el.get(attr)
            if value is not None and not value.startswith(("#", "mailto:", "data:")):
                el.set(attr, urljoin(page_url, value.strip()))
        srcset = el.get("srcset")
        if srcset:
            el.set("srcset", ", ".join(_absolute_candidate(page_url, c)
                                       for c in srcset.split(",") if c.strip()))
    inner = (root.text or "") + "".join(
        lxml.html.tostring(child, encoding="unicode") for child in root)
    return inner.strip()


def _absolute_candidate(base: str, candidate: str) -> str:
    url, _, descriptor = candidate.strip().partition(" ")
    return f"{urljoin(base, url)} {descriptor.strip()}".strip()


def first_paragraph(body: str, limit: int = 400) -> str:
    """Plain text of the body's first paragraph, for articles without a summary."""
    tokens = _md.parse(body)
    for i, tok in enumerate(tokens):
        if tok.type == "paragraph_open" and i + 1 < len(tokens):
            text = "".join(" " if child.type in ("softbreak", "hardbreak") else child.content
                           for child in tokens[i + 1].children or []
                           if child.type in ("text", "code_inline", "softbreak", "hardbreak",
                                             "text_special"))
            text = " ".join(text.split())
            if text:
                return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "…"
    return ""


class HtmlCache:
    """A content-keyed store of rendered bodies in SQLite, shared by every worker."""

    def __init__(self, path: str | None):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False,
                                   timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._db.execute("CREATE TABLE IF NOT EXISTS html (key TEXT PRIMARY KEY, html TEXT)")
        self.renders = 0                                # bodies rendered, for tests and bench

    @staticmethod
    def key(body: str, page_url: str) -> str:
        h = hashlib.sha256(f"{RENDERER_VERSION}\0{page_url}\0{body}".encode())
        return h.hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                out.update(self._db.execute(
                    f"SELECT key, html FROM html WHERE key IN ({marks})", chunk))  # noqa: S608
        return out

    def put_many(self, items: dict[str, str]) -> None:
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO html VALUES (?, ?)", items.items())
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
