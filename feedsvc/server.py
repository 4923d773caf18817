"""granian, as `feedsvc serve` runs it: the server, its worker factory, and workers
that end with the process that started them.

The only module that imports granian.  `server_class` leans on a private granian hook
(checked on the minor setup.cfg pins), with granian's own rule as the fallback.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

from . import early

PARENT_PID = "FEEDSVC_SERVE_PID"    # set by `serve` for its granian workers


def run(host: str, port: int, workers: int, starting: early.Early) -> None:
    """Serve the app on host:port with `workers` granian workers until stopped; the
    early 503 listener `starting` hands the port over first.  The caller has set
    PARENT_PID (before the warm-up build, whose processes inherit the environment)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    Server = server_class()
    starting.hand_over()
    Server("feedsvc.server:worker_app", factory=True, address=host, port=port,
           interface=Interfaces.WSGI, workers=max(1, workers),
           blocking_threads=1, websockets=False, log_access=False,
           respawn_failed_workers=True,
           # HTTP/1.1 only: the auto mode waits for a first byte to tell HTTP/2 from 1.1,
           # with no time limit, so connections that send nothing were never closed.
           # A client gets 10 s to send its headers, between requests too.
           http=HTTPModes.http1,
           http1_settings=HTTP1Settings(header_read_timeout=10_000)).serve()


def worker_app():
    """granian's worker factory: the app, in a process that ends when its server does."""
    parent = os.environ.get(PARENT_PID)
    if parent:
        # Until granian sets its own handlers after this factory, a stop signal ends the
        # worker at once (the server's handlers, inherited by the fork, would ignore it)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        follow_parent(int(parent))
        # Out of the server's process group: Ctrl-C (SIGINT to the whole group) reaches
        # only the server, which stops each worker with one SIGTERM.  A worker that got
        # both signals at once sometimes lost them and hung the server's shutdown.
        os.setpgid(0, 0)
    from .web import create_app
    app = create_app()
    if parent:
        early.ready(int(parent))        # the 503 listener steps aside
    return app


def follow_parent(parent: int) -> None:
    """SIGTERM this process when `parent` (the process that started it) dies, even by
    kill -9: otherwise granian's workers keep serving on the port with nobody to stop
    them, and a restart shares the port with them (SO_REUSEPORT)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)          # PR_SET_PDEATHSIG
        if os.getppid() != parent:                       # it died before prctl
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:                                 # elsewhere: ask every second
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="feedsvc-parent", daemon=True).start()


def server_class():
    """granian's server, except that a worker that dies soon after its start is started
    again after a pause (1 s, doubling up to 30 s) instead of ending the whole service:
    granian's own rule ("crash loop": a worker dying twice within 5.5 s) exits, and one
    worker killed twice (OOM killer, an operator) took every worker down with it."""
    from granian.server import Server

    # This leans on granian's private respawn hook and worker fields (checked on 2.8,
    # the minor setup.cfg pins). Where they are not what we know, granian's own rule
    # applies and the systemd unit (deploy/feedsvc.service) restarts the whole server.
    if not _knows_respawn(Server):
        logging.getLogger("feedsvc").warning(
            "feedsvc: this granian has no respawn hook we know; a worker that dies twice "
            "within a few seconds stops the server (run it under deploy/feedsvc.service)")
        return Server

    class Respawning(Server):
        """granian's server, starting dead workers again with a growing pause."""
        pauses: dict[int, float]

        def _respawn_workers(self, workers, spawn_target, target_loader, delay: float = 0):
            pauses = self.__dict__.setdefault("pauses", {})
            now = time.monotonic()
            wait = 0.0
            for idx in workers:
                old = self.wrks[idx]
                if old.is_alive():                       # a reload: not a crash
                    continue
                lived = now - old.birth
                pauses[idx] = min(30.0, max(1.0, 2 * pauses.get(idx, 0.5))) if lived < 30 else 0
                wait = max(wait, pauses[idx])
            if wait:
                logging.getLogger("feedsvc").warning(
                    "feedsvc: a worker died soon after it started; starting it again in %g s",
                    wait)
            deadline = now + wait
            while not self.interrupt_signal and time.monotonic() < deadline:
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            if self.interrupt_signal:                    # stopping: shutdown follows
                return None
            result = super()._respawn_workers(workers, spawn_target, target_loader, delay)
            for idx in workers:                          # never a "crash loop" to granian
                self.respawned_wrks[idx] = float("-inf")
            return result

    return Respawning


def _knows_respawn(server: type) -> bool:
    """Whether granian's server has the private respawn hook `server_class` overrides,
    with the signature it was written against."""
    import inspect

    hook = getattr(server, "_respawn_workers", None)
    if hook is None:
        return False
    try:
        params = list(inspect.signature(hook).parameters)
    except (TypeError, ValueError):
        return False
    return params == ["self", "workers", "spawn_target", "target_loader", "delay"]
