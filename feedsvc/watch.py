"""File events of the data directory (watchdog's inotify), for the service's watcher loop.

`observe` starts a watch that sets an event and notes the paths that changed in `Events`;
the loop (live.Service) stats just those files, or walks the tree when only that will do.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("feedsvc")
NO_INOTIFY_POLL = 1.0       # seconds between scans when file events are unavailable


def inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class Events:
    """The paths file events named since the last `take`; None when only a walk of the
    whole data directory will do (a folder changed, too many events)."""

    LIMIT = 5000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] | None = None     # the first refresh walks anyway

    def add(self, *paths: str, walk: bool = False) -> None:
        with self._lock:
            if walk or self._paths is None or len(self._paths) > self.LIMIT:
                self._paths = None
            else:
                self._paths.update(paths)

    def take(self) -> set[str] | None:
        with self._lock:
            paths, self._paths = self._paths, set()
        return paths


WATCH_RETRY = 30.0      # at least this many seconds between tries to get file events back


def observe(path: str, wake: threading.Event, events: Events):
    """inotify (via watchdog) wakes the loop at once; None if it cannot watch now."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:  # pragma: no cover
        return None

    class Handler(FileSystemEventHandler):
        """Names the files watchdog reports changed and wakes the loop."""
        def on_any_event(self, event):
            if event.event_type in ("opened", "closed_no_write"):
                return
            if event.is_directory and event.event_type == "modified":
                return              # a folder's own times: its files' events say what changed
            paths = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
            events.add(*map(os.fsdecode, paths), walk=event.is_directory)
            wake.set()

    before = set(threading.enumerate())
    observer = Observer()
    observer.daemon = True
    try:
        observer.schedule(Handler(), path, recursive=True)
        observer.start()
        return _Watch(observer, [t for t in threading.enumerate() if t not in before
                                 and type(t).__module__.startswith("watchdog.")], wake)
    except OSError as e:
        reason = e.strerror or str(e)
    except RecursionError:          # watchdog adds its watches with a recursive os.walk
        reason = "a folder is nested too deeply for the watcher"
    observer.stop()     # and with it the inotify reader thread `schedule` started
    log.warning("%s: file events are unavailable (%s); scanning every %g s instead",
                path, reason, NO_INOTIFY_POLL)
    return None


class _Watch:
    """A started watchdog observer and the threads it started (its emitter, its inotify
    reader).  Those can die while the observer lives on and delivers nothing: the
    reader runs a recursive os.walk over each new folder tree, which a tree a thousand
    folders deep ends with a RecursionError."""

    def __init__(self, observer, threads: list[threading.Thread], wake: threading.Event):
        self.observer = observer
        self.threads = threads
        for thread in threads:      # the loop hears of a death at once, not at its next poll
            threading.Thread(target=_wake_after, args=(thread, wake), daemon=True,
                             name="feedsvc-watch-sentry").start()

    def is_alive(self) -> bool:
        return self.observer.is_alive() and all(t.is_alive() for t in self.threads)

    def stop(self) -> None:
        self.observer.stop()

    def join(self, timeout: float | None = None) -> None:
        self.observer.join(timeout)


def _wake_after(thread: threading.Thread, wake: threading.Event) -> None:
    thread.join()
    wake.set()
