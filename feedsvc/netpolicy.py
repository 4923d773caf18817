"""Where the WebSub hub may send requests: a callback URL to one checked address.

The hub sends requests to URLs strangers give it.  A callback is resolved once;
each address is checked (`allowed`), and the request goes to the first allowed
address itself, with the name in the Host header and as the TLS server name, so
a second lookup (DNS rebinding) cannot send it elsewhere.  Refused by default:
loopback, private (RFC 1918, unique local, shared 100.64/10), link-local (cloud
metadata at 169.254.169.254), multicast, unspecified and reserved addresses, and
IPv4-mapped IPv6 forms of them.  `allow_private` admits loopback and private
addresses (tests, private networks), never link-local, multicast or unspecified.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

MAX_URL_CHARS = 2000

Resolver = Callable[[str, int], list[str]]      # (host, port) -> addresses


class Refused(ValueError):
    """A URL the hub will not send a request to; the message says why."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (getaddrinfo), in its order, once each."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise Refused(f"{host}: cannot be resolved ({e})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked request target: `url` names the address, `host` goes in the Host header,
    `server_name` is the TLS server name (None for http)."""
    url: str
    host: str
    server_name: str | None
    address: str


@dataclass(frozen=True)
class NetPolicy:
    """Which addresses the hub's outgoing requests may reach."""
    allow_private: bool = False
    resolver: Resolver = field(default=system_resolver)

    def allowed(self, address: str) -> bool:
        """Whether the hub may connect to `address`."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_multicast or ip.is_unspecified or ip.is_link_local:
            return False
        if self.allow_private and (ip.is_loopback or ip.is_private):
            return True
        return ip.is_global and not ip.is_reserved

    def target(self, url: str) -> Target:
        """The address to send a request for `url` to; Refused names the reason."""
        parts = check_url(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self.resolver(host, port)
        good = [a for a in addresses if self.allowed(a)]
        if not good:
            shown = ", ".join(addresses[:4]) or "nothing"
            raise Refused(f"{url}: {host} resolves to {shown}, not a public address "
                          "(FEEDSVC_WEBSUB_ALLOW_PRIVATE allows loopback and private ones)")
        address = good[0]
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        return Target(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
                      parts.netloc, host if parts.scheme == "https" else None, address)


def check_url(url: str):
    """`url` split, if it is an absolute http(s) URL with a host and no user part."""
    if len(url) > MAX_URL_CHARS:
        raise Refused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port                  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise Refused(f"{url}: not a URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"{url}: not an absolute http or https URL")
    if "@" in parts.netloc:
        raise Refused(f"{url}: a user name or password is not accepted in a callback")
    return parts
