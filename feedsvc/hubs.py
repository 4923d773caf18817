"""WebSub discovery: which hubs a feed advertises, and its `Link` header.

A topic is one feed document (`feeds/...<.format>`), named by its absolute URL
under the site's base URL.  Feeds advertise the built-in hub (`<base_url>websub`)
when it runs, then the external hubs of the `websub_hubs` setting, in the
document (feeds.py writes them) and in a `Link` header on 200 and 304 (http.py
keeps it with the other ready headers).
"""
from __future__ import annotations

from dataclasses import dataclass

from .feeds import WRITERS

HUB_PATH = "websub"         # the built-in hub's path below the base URL


@dataclass(frozen=True)
class Hubs:
    """The hubs to advertise: the built-in one or not, and external ones (absolute URLs)."""
    builtin: bool = False
    external: tuple[str, ...] = ()

    def urls(self, base_url: str) -> tuple[str, ...]:
        """Every advertised hub's URL, the built-in one first."""
        return ((f"{base_url}{HUB_PATH}",) if self.builtin else ()) + self.external


def is_topic(path: str) -> bool:
    """Whether the document at `path` (no leading slash) is a feed: a WebSub topic."""
    if not path.startswith("feeds/"):
        return False
    stem, dot, ext = path.rpartition(".")
    return bool(dot and stem) and ext in WRITERS


def link_header(hubs: tuple[str, ...], self_url: str) -> tuple[tuple[str, str], ...]:
    """The `Link` header of a topic at `self_url` (RFC 8288), none without hubs."""
    if not hubs:
        return ()
    value = ", ".join([f'<{hub}>; rel="hub"' for hub in hubs] + [f'<{self_url}>; rel="self"'])
    return (("Link", value),)
