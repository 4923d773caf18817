"""The hub's outgoing requests: a bounded pool that sends them, with retries.

`Sender` makes one request with httpx: to the address `netpolicy` checked (Host
header and TLS server name from the URL), no redirects, a time limit for each
phase, at most `MAX_RESPONSE_BYTES` of a response read.  `Dispatcher` runs in
each worker: a thread takes intents to verify (`claim_intents`) and due
deliveries (`claim`) from the store while the pool has free threads, and the
pool's `POOL_THREADS` threads send them, so the hub never holds more than that
many threads, whatever the number of subscribers, and never a request thread of
the server.  A failed delivery is retried with a growing back-off for
`websub_retry_seconds`, then dropped and logged; the subscription stays, and
gets the next change.  A subscriber that
answers 410 Gone is unsubscribed.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode

import httpx
from isal import igzip

from .netpolicy import NetPolicy, Refused
from .websubstore import HeldIntent, Job, StoreDown, SubscriptionStore, retry_delay

log = logging.getLogger("feedsvc")
POOL_THREADS = 16               # requests the hub sends at once, per worker
KEPT_BODIES = 8                 # gunzipped bodies kept for the next subscribers
KEPT_FOR_REQUESTS = 4           # of them, never taken by claims (denials of foreign topics)
MAX_RESPONSE_BYTES = 64 << 10   # read of any response; a longer one is cut there
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
EXPIRE_EVERY = 60.0


@dataclass(frozen=True)
class Reply:
    """What came back: the status (0: no answer) and the first bytes of the body."""
    status: int
    body: bytes
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Sender:
    """One outgoing request at a time per call; thread-safe (httpx's client is)."""

    def __init__(self, policy: NetPolicy, transport: httpx.BaseTransport | None = None):
        self.policy = policy
        # no connection is kept: each request's TLS server name is its own (see netpolicy)
        self.client = httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False,
                                   limits=httpx.Limits(max_keepalive_connections=0),
                                   transport=transport)

    def send(self, method: str, url: str, checked: bool = True, content: bytes = b"",
             headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        """`method` to `url`; `checked`: through the address policy (callbacks), else
        as given (external hubs the operator named)."""
        try:
            if checked:
                target = self.policy.target(url)
                extensions = {"sni_hostname": target.server_name} if target.server_name \
                    else {}
                request = self.client.build_request(
                    method, target.url, content=content or None,
                    headers=[("Host", target.host), *headers], extensions=extensions)
            else:
                request = self.client.build_request(method, url, content=content or None,
                                                    headers=list(headers))
            response = self.client.send(request, stream=True)
        except (Refused, httpx.HTTPError, OSError, ValueError) as e:
            return Reply(0, b"", str(e) or type(e).__name__)
        try:
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) >= MAX_RESPONSE_BYTES:
                    break
            return Reply(response.status_code, bytes(body[:MAX_RESPONSE_BYTES]))
        except (httpx.HTTPError, httpx.StreamError) as e:
            return Reply(response.status_code, b"", str(e) or type(e).__name__)
        finally:
            response.close()

    def close(self) -> None:
        self.client.close()


def signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature value: `sha256=` and the HMAC of the body, in hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Dispatcher:
    """Takes deliveries from the store and sends them on the pool (see the module
    docstring).  `links(topic)`: the Link header a delivery of `topic` carries;
    `verify(held)`: verifies a claimed intent and settles it; `catch_up()`: called
    before each look at the store (the hub records changes the store missed)."""

    def __init__(self, store: SubscriptionStore, sender: Sender, retry_seconds: float,
                 links: Callable[[str], str], verify: Callable[[HeldIntent], object],
                 catch_up: Callable[[], object], clock: Callable[[], float] = time.time):
        self.store = store
        self.sender = sender
        self.retry_seconds = retry_seconds
        self.links = links
        self.verify = verify
        self.catch_up = catch_up
        self.clock = clock
        self.pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="feedsvc-websub")
        self.wake = threading.Event()
        self._bodies: OrderedDict[tuple[str, int], bytes] = OrderedDict()   # see body()
        self._busy = 0                  # pool threads taken (or promised to a task)
        self._count = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._retry_at = float("inf")   # the soonest retry this worker scheduled

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feedsvc-websub-claim",
                                            daemon=True)
            self._thread.start()

    def submit(self, task: Callable[[], object]) -> bool:
        """Run `task` on the pool if a thread is free (denials); False when busy."""
        with self._count:
            if self._busy >= POOL_THREADS:
                return False
            self._busy += 1
        self.pool.submit(self._guarded, task)
        return True

    def _guarded(self, task: Callable[[], object]) -> None:
        try:
            task()
        except Exception:
            log.exception("websub: a hub task failed")
        finally:
            with self._count:
                self._busy -= 1
            self.wake.set()

    def _run(self) -> None:
        last_expiry = 0.0
        pause = self.store.watch(self.wake)     # between looks, unless woken
        while not self._stopped:
            with self._count:
                soonest = self._retry_at - self.clock()
            self.wake.wait(max(0.0, min(pause, soonest)))
            self.wake.clear()
            with self._count:
                if self._retry_at <= self.clock():
                    self._retry_at = float("inf")
            try:
                self.catch_up()
                now = self.clock()
                if now - last_expiry >= EXPIRE_EVERY:
                    last_expiry = now
                    self.store.expire(now)
                self._take(now)
            except StoreDown:           # (the store logged it) tried again later
                time.sleep(1.0)
            except Exception:           # a locked or damaged store: tried again later
                log.exception("websub: cannot read the pending deliveries")
                time.sleep(1.0)

    def _take(self, now: float) -> None:
        """Claim as many intents to verify, then due deliveries, as there are threads
        for (keeping `KEPT_FOR_REQUESTS` free for denials) and start them."""
        with self._count:
            free = POOL_THREADS - KEPT_FOR_REQUESTS - self._busy
            if free <= 0:
                return
            self._busy += free              # promised, so no denial takes them
        try:
            held = self.store.claim_intents(now, free)
            jobs = self.store.claim(now, free - len(held))
        finally:
            with self._count:
                self._busy -= free
        tasks = [partial(self.verify, h) for h in held] + \
            [partial(self.deliver, job) for job in jobs]
        for task in tasks:
            with self._count:
                self._busy += 1
            self.pool.submit(self._guarded, task)

    def deliver(self, job: Job) -> None:
        """Send `job` once; record the outcome."""
        if job.kind == "ping":
            reply = self.sender.send(
                "POST", job.callback, checked=False,
                content=urlencode({"hub.mode": "publish", "hub.url": job.topic}).encode(),
                headers=(("Content-Type", "application/x-www-form-urlencoded"),))
        else:
            body = self.body(job)
            headers = [("Content-Type", job.content_type), ("Link", self.links(job.topic))]
            if job.secret:
                headers.append(("X-Hub-Signature", signature(job.secret, body)))
            reply = self.sender.send("POST", job.callback, content=body,
                                     headers=tuple(headers))
        if reply.ok:
            self.store.done(job)
            return
        if reply.status == 410 and job.kind == "sub":   # Gone: WebSub 7 lets the hub end it
            self.store.unsubscribe(job.topic, job.callback)
            log.info("websub: %s answered 410 Gone: unsubscribed from %s", job.callback,
                     job.topic)
            return
        why = reply.error or f"status {reply.status}"
        now = self.clock()
        if not self.store.failed(job, now, self.retry_seconds):
            log.warning("websub: gave up sending %s to %s after %d tries over %.0f s (%s); "
                        "the subscription stays and gets the next change", job.topic,
                        job.callback, job.attempts + 1, now - job.since, why)
        else:
            with self._count:
                self._retry_at = min(self._retry_at, now + retry_delay(job.attempts))
            log.info("websub: sending %s to %s failed (%s); will retry", job.topic,
                     job.callback, why)

    def body(self, job: Job) -> bytes:
        """The identity bytes `job` delivers, gunzipped once for every subscriber of a
        change (the last `KEPT_BODIES` versions kept)."""
        key = (job.topic, job.version)
        with self._count:
            body = self._bodies.get(key)
        if body is None:
            body = igzip.decompress(job.gzip)
            with self._count:
                self._bodies[key] = body
                while len(self._bodies) > KEPT_BODIES:
                    self._bodies.popitem(last=False)
        return body

    def stop(self) -> None:
        self._stopped = True
        self.wake.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
