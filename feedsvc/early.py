"""The port's answer while `feedsvc serve` warms up: 503 with Retry-After, never a
refused connection.

`feedsvc serve` reads and renders the whole site before granian's workers start, which
takes seconds on a large site.  This listener takes the port first (with SO_REUSEPORT,
as granian's workers bind it) and answers every request with 503 and `Retry-After`,
so load balancers and browsers see "starting" instead of "connection refused".  It
steps aside once a worker listens beside it (seen in /proc/net/tcp): from then on the
kernel hands every new connection to the workers, which queue it until they serve.
The standard library's threading HTTP server does the HTTP.
"""
from __future__ import annotations

import contextlib
import http.server
import logging
import os
import select
import signal
import socket
import threading
import time

READY_SIGNAL = signal.SIGUSR1   # a worker to the server process: "my app is made"
READY_WAIT = 60.0               # seconds for a worker to listen beside us, at most
BIND_GRACE = 0.5                # ... or, where that cannot be seen, to give it
RETRY_AFTER = 2                 # seconds, in the 503's Retry-After
CLOSED = "a worker listens: the start-up listener (503) is closed"
BODY = b"503 feedsvc is starting: reading the data directory; try again shortly\n"

log = logging.getLogger("feedsvc")


class _Starting(http.server.BaseHTTPRequestHandler):
    """Every request: 503, Retry-After, the connection closed."""
    timeout = 5                          # a client that sends nothing is let go
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bool = True) -> None:
        self.send_response(503)
        self.send_header("Retry-After", str(RETRY_AFTER))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(BODY)
        self.close_connection = True

    def do_GET(self) -> None:      # noqa: N802 (the name http.server calls)
        self._answer()

    def do_HEAD(self) -> None:     # noqa: N802
        self._answer(body=False)

    do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_GET    # noqa: N815

    def log_message(self, format: str, *args: object) -> None:      # noqa: A002
        pass                            # quiet: the operator sees the progress lines


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class _Server6(_Server):
    address_family = socket.AF_INET6


class Early:
    """The 503 listener of one `feedsvc serve`, from `start()` until the workers serve."""

    def __init__(self, host: str, port: int):
        kind = _Server6 if ":" in host else _Server
        self.server = kind((host, port), _Starting)
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
        log.info("feedsvc: %s", CLOSED)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)

    def _forget(self) -> None:
        """In a forked child: close the inherited listener (the parent keeps its own)."""
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
