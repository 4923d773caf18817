"""The port's answer while `feedsvc serve` warms up: the last published state, else 503
with Retry-After, never a refused connection.

`feedsvc serve` reads and renders the whole site before granian's workers start, which
takes seconds on a large site.  This listener takes the port first (with SO_REUSEPORT,
as granian's workers bind it).  Once offered the last published state
(`lastserved.LastServed`), it answers GET and HEAD of each document in it exactly as a
worker would: the same bytes, ETag, Last-Modified, headers and conditional answers,
from `http.FeedApp` itself.  Everything else (a first start, a path not in it, a
method other than GET and HEAD) gets 503 and `Retry-After`, so load balancers and
browsers see "starting" instead of "connection refused".  It steps aside once a worker
listens beside it (seen in /proc/net/tcp): from then on the kernel hands every new
connection to the workers, which queue it until they serve.  The standard library's
threading WSGI server (wsgiref) does the HTTP, one request per connection.
"""
from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .http import CacheControl, FeedApp, Resource, StartResponse, plain
from .lastserved import LastServed

READY_SIGNAL = signal.SIGUSR1   # a worker to the server process: "my app is made"
READY_WAIT = 60.0               # seconds for a worker to listen beside us, at most
BIND_GRACE = 0.5                # ... or, where that cannot be seen, to give it
RETRY_AFTER = 2                 # seconds, in the 503's Retry-After
CLOSED = "a worker listens: the start-up listener is closed"
BODY = "503 feedsvc is starting: reading the data directory; try again shortly\n"

log = logging.getLogger("feedsvc")


def starting(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """What the last published state does not answer: 503, Retry-After, not cached."""
    return plain(start_response, "503 Service Unavailable", BODY, environ["REQUEST_METHOD"],
                 (("Retry-After", str(RETRY_AFTER)), ("Cache-Control", "no-store")))


@dataclass
class _Nothing:
    """The state offered before (or without) the last published one: no document."""
    resources: dict[str, Resource] = field(default_factory=dict)
    cache_control: CacheControl = field(default_factory=lambda: CacheControl(0))


class _Handler(WSGIRequestHandler):
    """One request per connection, answered by the app; quiet, and a silent client is let
    go."""
    timeout = 5                          # a client that sends nothing is let go

    def log_message(self, format: str, *args: object) -> None:      # noqa: A002
        pass                            # quiet: the operator sees the progress lines


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per connection; it counts those under way (socketserver joins only
    non-daemon threads, which would hold up an interrupted start)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler]):
        self.busy = 0
        self.idle = threading.Condition()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        with self.idle:
            self.busy += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()

    def wait_idle(self, timeout: float) -> None:
        """Until every accepted connection is answered, or `timeout` seconds."""
        with self.idle:
            self.idle.wait_for(lambda: self.busy == 0, timeout)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def handle_error(self, request, client_address) -> None:    # noqa: ANN001
        pass                            # a client that timed out or went away: nothing to say


class _Server6(_Server):
    """The same listener on an IPv6 address."""
    address_family = socket.AF_INET6


class Early:
    """The start-up listener of one `feedsvc serve`, from `start()` until the workers
    serve: 503s, and from `offer()` on the last published state."""

    def __init__(self, host: str, port: int):
        kind = _Server6 if ":" in host else _Server
        self.server = kind((host, port), _Handler)
        self.server.set_app(self._app)
        self._answer = FeedApp(_Nothing(), starting)
        self._source: LastServed | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="feedsvc-early", daemon=True)
        self._closer = threading.Thread(target=self._close_when_ready,
                                        name="feedsvc-early-close", daemon=True)
        self._open = True
        self._alone: int | None = None         # sockets on the port before the workers
        # granian forks its workers: a worker holding this listener open would keep
        # taking connections nobody answers once the server process closes it
        os.register_at_fork(after_in_child=self._forget)

    def start(self) -> Early:
        self._thread.start()
        return self

    def offer(self, source: LastServed | None) -> Early:
        """Answer from `source`, the last published state (None: there is none), until
        the listener closes."""
        if source is None:
            return self
        self._source = source
        self._answer = FeedApp(source, starting)
        log.info("feedsvc: serving the last published state (%d documents) while starting",
                 len(source))
        return self

    def _app(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return starting(environ, start_response)     # a form, the hub: after the start
        return self._answer(environ, start_response)

    def hand_over(self) -> None:
        """From now on, step aside as soon as a worker says it is ready (see `ready`)."""
        self._alone = _listeners(self.server.server_address[1])    # before any worker
        signal.signal(READY_SIGNAL, lambda _s, _f: self._ready.set())
        self._closer.start()

    def _close_when_ready(self) -> None:
        """Close once a worker listens beside us (Linux: /proc/net/tcp): connections the
        kernel hands it then wait in its queue until it serves, never refused.  Where
        that cannot be seen, the worker's ready signal and a grace time decide.  No wait
        rests on the signal alone: the server process runs its Python handler only when
        granian's loop gives it a turn, which a loaded machine can delay for long."""
        port = self.server.server_address[1]
        mine = self._alone
        deadline = time.monotonic() + READY_WAIT
        while time.monotonic() < deadline:
            now = None if mine is None else _listeners(port)
            if now is not None and mine is not None and now > mine:
                break
            if now is None and self._ready.is_set():
                time.sleep(BIND_GRACE)
                break
            time.sleep(0.01)
        self.close()

    def _serve(self) -> None:
        """Answer until told to close; then answer what is queued and close at once: a
        connection still queued on a listener that closes is reset."""
        server = self.server
        server.timeout = 0.05
        while not self._closing.is_set():
            server.handle_request()
        while select.select([server.socket], [], [], 0)[0]:
            server.handle_request()
        self._open = False
        server.server_close()
        if self._source is not None:
            server.wait_idle(_Handler.timeout)      # (a connection's first request)
            self._source.close()
        log.info("feedsvc: %s", CLOSED)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)

    def _forget(self) -> None:
        """In a forked child: close the inherited listener (the parent keeps its own).  The
        store connections of the last published state are left alone: closing a copy of
        an SQLite connection drops the child's own locks on that file, and a copy of a
        PostgreSQL one would end the parent's session.  granian's workers never touch
        them and leave by os._exit, which closes nothing but the file descriptors."""
        if self._open:
            self._open = False
            with contextlib.suppress(OSError):
                self.server.socket.close()


def _listeners(port: int) -> int | None:
    """How many sockets listen on TCP `port` on this machine (Linux), None if unknown."""
    hexport = f":{port:04X} "
    count = 0
    try:
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(name) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A" and (fields[1] + " ").endswith(
                            hexport):
                        count += 1
    except OSError:
        return None
    return count


def ready(server_pid: int) -> None:
    """In a worker whose app is made: tell the server process (`server_pid`)."""
    with contextlib.suppress(OSError):
        os.kill(server_pid, READY_SIGNAL)
