"""The built-in WebSub hub (W3C Recommendation, 2018) at `/websub`: requests and changes.

Subscribers POST a form (`hub.mode` subscribe or unsubscribe, `hub.callback`,
`hub.topic`, optional `hub.lease_seconds` and `hub.secret` under 200 bytes).
The answer is 202 once the intent is in the store; a worker's pool (deliver.py),
whichever claims it first, verifies it: a GET to the callback with
`hub.challenge`, accepted only by a 2xx whose body is the challenge.  A topic
that is not one of the site's feeds gets `hub.mode=denied` at its callback.
Leases are clamped to the settings' minimum and maximum; a subscription asked
for again is renewed.  Refused at once: a malformed request
(400), over `MAX_PER_TOPIC` subscriptions to the topic or `MAX_PER_HOST` on the
callback's host (403), over `websub_rate` requests in one clock minute from one
client address, counted in the store so every worker and instance shares the
limit (429), a denial with no free thread or a store that cannot be used now (503).

`Hub.changed` is live.Service's listener: after each refresh it hands the feeds
whose ETag moved to the store, which queues one delivery per subscriber and
external hub (websubstore.py says how that is exactly once).
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode, urlsplit

from .deliver import Dispatcher, Sender
from .hubs import is_topic, link_header
from .live import Service
from .netpolicy import NetPolicy, Refused, Resolver, check_url, system_resolver
from .publish import Document
from .settings import Settings
from .websubstore import (
    HeldIntent,
    Intent,
    SqliteStore,
    StoreDown,
    Subscription,
    SubscriptionStore,
    TopicBytes,
)

log = logging.getLogger("feedsvc")
MAX_SECRET_BYTES = 199          # "less than 200 bytes"
MAX_REQUEST_BYTES = 16 << 10
MAX_PER_TOPIC = 10_000
MAX_PER_HOST = 1_000


@dataclass(frozen=True)
class Answer:
    """The hub's answer to a request: status, a line of text, Retry-After seconds (0: none)."""
    status: int
    text: str
    retry: int = 0


@dataclass(frozen=True)
class Handover:
    """What live.Service handed the hub after a refresh."""
    documents: dict[str, Document]
    seen: float


class BadRequest(ValueError):
    """A hub request that is refused at once; the message says which parameter."""


def parse(form: Mapping[str, str], config: Settings) -> Intent:
    """The hub request in `form` (its first value of each name), checked; BadRequest
    otherwise."""
    mode = form.get("hub.mode", "")
    if mode not in ("subscribe", "unsubscribe"):
        raise BadRequest("hub.mode must be subscribe or unsubscribe")
    callback, topic = form.get("hub.callback", ""), form.get("hub.topic", "")
    try:
        check_url(callback)
    except Refused as e:
        raise BadRequest(f"hub.callback: {e}") from None
    if not topic:
        raise BadRequest("hub.topic is missing")
    lease = config.websub_lease_seconds
    if form.get("hub.lease_seconds"):
        try:
            lease = int(form["hub.lease_seconds"])
        except ValueError:
            raise BadRequest("hub.lease_seconds must be a whole number of seconds") from None
    lease = max(config.websub_lease_min, min(config.websub_lease_max, lease))
    secret = form.get("hub.secret")
    if secret is not None and len(secret.encode()) > MAX_SECRET_BYTES:
        raise BadRequest("hub.secret must be less than 200 bytes")
    return Intent(mode, callback, topic, lease, secret.encode() if secret else None)


class Hub:
    """One worker's hub: the /websub route, the change listener and the dispatcher."""

    def __init__(self, config: Settings, service: Service,
                 store: SubscriptionStore | None = None,
                 resolver: Resolver = system_resolver, clock=time.time):
        self.config = config
        self.service = service
        self.clock = clock
        self._own_store = store is None         # closed with the hub
        self.store = store or open_subscriptions(config)
        self.sender = Sender(NetPolicy(config.websub_allow_private, resolver))
        self.dispatcher = Dispatcher(self.store, self.sender, config.websub_retry_seconds,
                                     self.links, self.verify, self.catch_up, clock)
        self._etags: dict[str, str] = {}        # topic path -> the ETag last handed over
        self._missed: Handover | None = None    # what the store could not take yet
        self._lock = threading.Lock()

    # -- changes ---------------------------------------------------------------
    def start(self) -> None:
        """Hand over the documents served now (a change made while no worker ran is
        delivered), follow every refresh, and start sending."""
        self.service.listeners.append(self.changed)
        self.changed(self.service.documents, self.service.seen)
        self.dispatcher.start()

    @property
    def base_url(self) -> str:
        corpus = self.service.corpus
        return corpus.site.base_url if corpus else ""

    def links(self, topic: str) -> str:
        """The Link header of a delivery of `topic`."""
        header = link_header(self.service.hubs.urls(self.base_url), topic)
        return header[0][1] if header else f'<{topic}>; rel="self"'

    def changed(self, documents: dict[str, Document], seen: float) -> None:
        """live.Service's listener: record the feeds whose bytes moved; never raises.
        What the store could not take is handed over again by `catch_up`."""
        with self._lock:
            queued = self._record(Handover(documents, seen))
        if queued:
            self.dispatcher.wake.set()

    def catch_up(self) -> None:
        """(The dispatcher's thread, each poll.)  Hand over again the last documents the
        store could not take (a database lost for a while), so their change is sent."""
        with self._lock:
            queued = self._record(self._missed) if self._missed is not None else 0
        if queued:
            self.dispatcher.wake.set()

    def _record(self, given: Handover) -> int:
        """(Holding the lock.)  The deliveries queued for the feeds of `given` whose bytes
        moved; 0, and `given` kept as missed, when the store cannot take them now."""
        base = self.base_url
        if not base:
            return 0
        moved = [d for p, d in given.documents.items()
                 if is_topic(p) and self._etags.get(p) != d.etag]
        try:
            queued = self.store.record(
                [TopicBytes(base + d.path, d.etag, d.content_type, d.gzip) for d in moved],
                given.seen, self.config.external_hubs, self.clock()) if moved else 0
        except Exception as e:
            if self._missed is None and not isinstance(e, StoreDown):   # (logged there)
                log.exception("websub: cannot record changed feeds; trying again")
            self._missed = given
            return 0
        self._etags.update((d.path, d.etag) for d in moved)
        self._missed = None
        return queued

    # -- requests (web.py routes POST /websub here) ------------------------------
    def screen(self, mimetype: str, length: int | None, client: str) -> Answer | None:
        """The refusal of a request before its form is read, or None."""
        if (length or 0) > MAX_REQUEST_BYTES:
            return Answer(413, f"a hub request is at most {MAX_REQUEST_BYTES} bytes")
        if mimetype != "application/x-www-form-urlencoded":
            return Answer(400, "send the hub request as application/x-www-form-urlencoded")
        minute = int(self.clock() // 60)
        try:
            allowed = self.store.allow(rate_key(client, minute), minute,
                                       self.config.websub_rate)
        except StoreDown:
            return BUSY
        if not allowed:
            return Answer(429, "too many hub requests from this address; try again later",
                          retry=60 - int(self.clock() % 60))
        return None

    def handle(self, form: Mapping[str, str]) -> Answer:
        """The answer to a screened request whose form is `form`."""
        try:
            req = parse(form, self.config)
        except BadRequest as e:
            return Answer(400, str(e))
        try:
            return self.accept(req)
        except StoreDown:
            return BUSY

    def accept(self, req: Intent) -> Answer:
        """202 and the intent kept in the store for a verification on the pool (or a
        denial sent), or the refusal."""
        base = self.base_url
        path = req.topic[len(base):] if base and req.topic.startswith(base) else ""
        if not (is_topic(path) and path in self.service.documents):
            if not self.dispatcher.submit(partial(self.deny, req, "not a feed of this site")):
                return BUSY
            return ACCEPTED
        if req.mode == "subscribe":
            per_topic, per_host = self.store.counts(req.topic, _host(req.callback),
                                                    self.clock())
            if per_topic >= MAX_PER_TOPIC or per_host >= MAX_PER_HOST:
                return Answer(403, "too many subscriptions to this topic or on this "
                              "callback host")
        if not self.store.intend(req, self.clock()):
            return BUSY
        self.dispatcher.wake.set()
        return ACCEPTED

    def verify(self, held: HeldIntent) -> bool:
        """Verification of intent (WebSub 5.3); on success the store is updated.  The
        intent is settled either way (one try, as a subscriber expects)."""
        req = held.intent
        challenge = secrets.token_urlsafe(24)
        query = {"hub.mode": req.mode, "hub.topic": req.topic, "hub.challenge": challenge}
        if req.mode == "subscribe":
            query["hub.lease_seconds"] = str(req.lease_seconds)
        reply = self.sender.send("GET", _with_query(req.callback, query))
        ok = reply.ok and reply.body == challenge.encode()
        if not ok:
            log.info("websub: %s of %s to %s not verified (%s)", req.mode, req.callback,
                     req.topic, reply.error or f"status {reply.status}")
        elif req.mode == "subscribe":
            self.store.subscribe(Subscription(req.topic, req.callback, req.secret,
                                              req.lease_seconds),
                                 _host(req.callback), self.clock())
        else:
            self.store.unsubscribe(req.topic, req.callback)
        self.store.settle(held)
        return ok

    def active(self) -> dict[str, int] | None:
        """Live subscriptions per feed path (`feeds/all.atom`), for the statistics; None
        when the store cannot be read now."""
        base = self.base_url
        try:
            found = self.store.active(self.clock())
        except StoreDown:
            return None
        return {topic[len(base):]: n for topic, n in found.items()
                if base and topic.startswith(base)}

    def deny(self, req: Intent, reason: str) -> None:
        """Tell the callback its subscription is denied (WebSub 5.2)."""
        self.sender.send("GET", _with_query(req.callback, {
            "hub.mode": "denied", "hub.topic": req.topic, "hub.reason": reason}))

    def close(self) -> None:
        self.dispatcher.stop()
        self.sender.close()
        if self._own_store:
            self.store.close()


ACCEPTED = Answer(202, "accepted; the hub will verify your intent at the callback")
BUSY = Answer(503, "the hub is busy; try again later", retry=10)


def open_subscriptions(config: Settings) -> SubscriptionStore:
    """The hub's store: in PostgreSQL with `database_url` (every instance shares it),
    else `websub.sqlite` in the state directory."""
    if config.database_url:
        from .pgwebsub import PgSubscriptions
        return PgSubscriptions(config.database_url)
    return SqliteStore(config.state_dir)


def rate_key(client: str, minute: int) -> str:
    """What the rate limit stores of a client address: a hash that changes every minute
    (the rows of past minutes are deleted), never the address."""
    return hashlib.sha256(f"{minute} {client}".encode()).hexdigest()[:32]


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to its query (a callback may have one of its own)."""
    base, _, _ = url.partition("#")
    return base + ("&" if urlsplit(base).query else "?") + urlencode(params)
