"""A WebSub subscriber for tests: a real HTTP server on 127.0.0.1 that answers the hub's
verifications (echoing the challenge) and records every request it gets."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Subscriber:
    """`callback(name)` is a callback URL; `fail` POSTs get 500 before the others get 204;
    `down`: every POST gets 500."""
    port: int = 0
    fail: int = 0
    down: bool = False
    refuse_verification: bool = False
    gone: bool = False              # every POST gets 410 Gone (counted in failures)
    hang: int = 0                   # POSTs answered only after 30 s (counted in `hung`)
    hung: int = 0
    verifications: list[dict[str, str]] = field(default_factory=list)
    deliveries: list[Received] = field(default_factory=list)
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def callback(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/cb/{name}"

    def delivered(self, name: str) -> list[Received]:
        with self.lock:
            return [d for d in self.deliveries if d.path == f"/cb/{name}"]

    def verified(self, name: str, mode: str = "subscribe") -> bool:
        with self.lock:
            return any(v["path"] == f"/cb/{name}" and v.get("hub.mode") == mode
                       for v in self.verifications)


def start_subscriber() -> tuple[Subscriber, ThreadingHTTPServer]:
    sub = Subscriber()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with sub.lock:
                sub.verifications.append({"path": parts.path, **query})
            body = b"" if sub.refuse_verification else query.get("hub.challenge", "").encode()
            self.send_response(404 if sub.refuse_verification else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with sub.lock:
                hanging = sub.hang > 0
                if hanging:
                    sub.hang -= 1
                    sub.hung += 1
            if hanging:                 # a subscriber that takes its time (the hub gives
                time.sleep(30)          # up after 10 s); the thread is a daemon
                return
            with sub.lock:
                failing = sub.down or sub.gone or sub.fail > 0
                if failing:
                    sub.fail -= 1
                    sub.failures += 1
                else:
                    sub.deliveries.append(Received(self.path, dict(self.headers), body))
            self.send_response((410 if sub.gone else 500) if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sub.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sub, server


def wait_until(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def hub_request(hub: str, mode: str, topic: str, callback: str, **extra: str
                ) -> requests.Response:
    form = {"hub.mode": mode, "hub.topic": topic, "hub.callback": callback,
            **{f"hub.{k}": v for k, v in extra.items()}}
    return requests.post(hub, data=form, timeout=10)
