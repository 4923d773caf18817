"""The live service: keeps ready responses in step with the data directory.

One `Service` per process.  `refresh()` rescans the data directory, re-reads
changed files, rebuilds the documents whose recipe changed, stamps validators
and swaps in a new response table in one assignment, so a request sees the old
table or the new one, never a mix.  A background thread calls it when watchdog
reports a file event, when a scheduled article's time comes, and every
`poll_seconds` as a safety net.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass

import pytz

from . import checkpoint as checkpoints
from . import checks, oplog, published, settings, workers
from .corpus import Corpus, Library
from .http import NOT_YET, CacheControl, Resource
from .hubs import Hubs, is_topic, link_header
from .model import DataError
from .publish import Document, Publisher
from .scan import Signatures
from .store import SETTLE_SECONDS, newest_mtime, open_store
from .watch import NO_INOTIFY_POLL, WATCH_RETRY, Events, inode, observe

log = logging.getLogger("feedsvc")
CHECKPOINT_QUIET = 10.0     # seconds without changes before the checkpoint is rewritten


class Service:
    """Keeps one data directory's ready responses in step with its files (see the module)."""
    def __init__(self, config: settings.Settings, clock=time.time):
        self.config = config
        self.clock = clock
        with suppress(OSError):         # (the state reports what it cannot do, and goes on)
            os.makedirs(config.state_dir, exist_ok=True)
        # (a lost validators file is made again; every worker, each stamping at least once
        # per safety walk, carries its floors over before anyone claims a new second)
        self.store = open_store(config.state_dir, config.database_url, clock,
                                settle=max(SETTLE_SECONDS, 2 * config.poll_seconds),
                                strict=False)
        self.cache = self.store.cache
        self.library = self._new_library()
        self.hubs = Hubs(config.websub, config.external_hubs)
        self.publisher = Publisher(self.cache, self.hubs)
        self.validators = self.store.validators
        self.cache_control = CacheControl(config.max_age)
        self.resources: dict[str, Resource] = {}
        self.documents: dict[str, Document] = {}
        self.corpus: Corpus | None = None       # None until the data could be read once
        self.restored: Corpus | None = None     # the checkpoint's, while `corpus` is None
        self.errors: list[DataError] = []
        self.refreshed_at = 0.0
        self.seen = 0.0                         # when the data served was scanned (pages.py)
        self.rebuilt: list[str] = []            # paths rebuilt by the last refresh
        # called with the documents and `seen` after each swap (the WebSub hub: websub.py);
        # `seen` as the store compares it (across machines: the data's newest file time)
        self.listeners: list[Callable[[dict[str, Document], float], None]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_go_live: float | None = None
        self._sigs: Signatures | None = None
        self._recorder = published.Recorder()   # the stored record of what is published
        self._observer = None
        self._events = Events()
        self._dirty_since: float | None = None  # changed since the checkpoint was written
        self._failures = 0                      # refreshes that raised, in a row
        self._checkpoint_error = ""             # the last one, logged once
        self._stopped = False
        self.shared_log = oplog.SharedLog(config.state_dir, log)
        if config.watch:             # watch first, so no save between scan and watch is lost
            self._observer = observe(config.data_dir, self._wake, self._events)
        self._events.take()             # from here on, events name what the first scan missed
        if not self._resume():
            self.refresh(force=True)
        atexit.register(self.checkpoint)

    def _new_library(self) -> Library:
        config = self.config
        return Library(config.data_dir, base_url=config.base_url,
                       max_file_bytes=config.max_file_bytes, cache=self.cache)

    # -- loading ----------------------------------------------------------------
    def refresh(self, force: bool = False, paths: set[str] | None = None) -> bool:
        """Bring the responses up to date; True when any document changed.  `paths`: the
        only files that changed since the last refresh (from file events), if known."""
        # a cold start's parse and render share a pool; its cache writes wait until it is done
        with self._lock, workers.session(), \
                (self.cache.held() if not self.documents else nullcontext()):
            now = self.clock()
            seen = time.time()              # our bytes reflect the data as of this moment
            try:
                loaded = self._load(now, force, paths)
                if self.corpus is not None and loaded.corpus.serial == self.corpus.serial \
                        and not loaded.rebuild:
                    self._sigs = loaded.sigs
                    if loaded.walked:
                        self.library.walked_at = seen
                    self._report(loaded.corpus.errors)     # a data directory back, say
                    self._restamp(now, seen)
                    return False
            except DataError as e:          # the data directory is gone or site.yml is bad
                if not self.documents and self._restore(now):
                    log.warning("serving the last published version from %s",
                                self.config.state_dir)
                self._report([e])           # keep serving what we have
                self._sigs = None           # and look at everything again once it is back
                return False
            return self._publish(loaded, now, seen)

    def _load(self, now: float, force: bool, paths: set[str] | None) -> _Loaded:
        """Scan (or, given event `paths`, rescan) and load what changed."""
        sigs = None
        if paths is not None and self._sigs is not None and not force:
            sigs = self.library.rescan(self._sigs, paths)
        walked = sigs is None
        if sigs is None:
            sigs = self.library.scan()
        due = self._next_go_live is not None and now >= self._next_go_live
        rebuild = force or due or bool(self.publisher.partial)
        # files re-read (changed, or too recent to trust) may still make no new corpus
        reread = sigs != self._sigs or bool(self.library.racy)
        corpus = self.corpus
        if rebuild or reread or corpus is None:
            corpus = self.library.load(sigs)
        return _Loaded(corpus, sigs, walked, rebuild)

    def _publish(self, loaded: _Loaded, now: float, seen: float) -> bool:
        """Build the documents of a new corpus and serve them; True when any changed."""
        corpus = loaded.corpus
        when = dt.datetime.fromtimestamp(now, pytz.utc)
        documents = self.publisher.build(corpus, when, self.documents)
        self._sigs = loaded.sigs        # only once built: a failed build is tried again
        if loaded.walked:
            self.library.walked_at = seen
        if self._next_go_live is not None and now >= self._next_go_live:
            since = self._next_go_live - 1          # (the first due is one of them)
            self.shared_log.went_live(oplog.newly_live(corpus.visible(when), since))
        nxt = corpus.next_go_live(when)
        self._next_go_live = nxt.timestamp() if nxt else None
        self.cache_control.next_change = self._next_go_live
        self.rebuilt = [p for p, d in documents.items() if self.documents.get(p) is not d]
        self.corpus, self.documents = corpus, documents
        self.restored = None            # the data is back: its own pages from now on
        self._dirty_since = self._dirty_since or time.monotonic()
        if self.rebuilt:                # queued after the documents it names
            published.save_later(self.cache, self.config.data_dir, self._recorder.record(
                documents, self._links(), self._next_go_live, (corpus.site.base_url, self.hubs)))
        self._report(corpus.errors)
        self._restamp(now, seen)
        for listener in self.listeners:
            listener(self.documents, self.seen)     # (as _restamp judged it)
        return bool(self.rebuilt)

    # -- checkpoint: a restart re-reads and rebuilds only what changed -------------------
    @property
    def _checkpoint_path(self) -> str:
        return checkpoints.path(self.config.state_dir, self.config.data_dir)

    def checkpoint(self) -> None:
        """Persist what the library knows and which documents it published (their bytes
        are in the document cache), if anything changed since the last time."""
        if not self._lock.acquire(timeout=5):   # at exit, a refresh may be stuck mid-way
            return
        try:
            if self._dirty_since is None or self.corpus is None:
                return
            blob = checkpoints.dumps(checkpoints.Checkpoint(
                self.library.state(), self.corpus, self._next_go_live,
                {p: (d.recipe, d.content_type, d.etag) for p, d in self.documents.items()}))
            self._dirty_since = None
            # the cache holds what a restart needs, and no more than that
            self.publisher.forget(self.corpus, {d.recipe for d in self.documents.values()})
        finally:
            self._lock.release()
        # the documents it names are in the cache before it is: a restart (or a worker of
        # `feedsvc serve`) that starts from it finds their bytes instead of rendering them
        self.cache.flush(timeout=60)
        try:
            checkpoints.write(self._checkpoint_path, blob)
            self._checkpoint_error = ""
        except OSError as e:                # a read-only or full state directory: a restart
            if str(e) != self._checkpoint_error:        # will cost a full start, nothing else
                log.warning("%s: cannot write the checkpoint (%s); a restart re-reads the "
                            "data directory", self._checkpoint_path, e)
            self._checkpoint_error = str(e)

    def _resume(self) -> bool:
        """Start from the checkpoint.  True when the data is exactly as it was then and no
        scheduled article has come due: the checkpoint's documents are served as they are.
        Otherwise the library still adopts what it knew, and the first refresh re-reads
        only changed files (and rebuilds only changed documents: the cache has the rest)."""
        state = checkpoints.read(self._checkpoint_path)
        if state is None:
            return False
        try:
            return self._resume_from(state)
        except Exception:               # inconsistent: it costs a full start, nothing else
            log.warning("ignoring the checkpoint %s", self._checkpoint_path, exc_info=True)
            self.library = self._new_library()      # forget whatever it half adopted
            self.documents, self.corpus, self._sigs = {}, None, None
            return False

    def _resume_from(self, state: checkpoints.Checkpoint) -> bool:
        if not self.library.adopt(state.library):
            return False
        with self._lock:
            now, seen = self.clock(), time.time()
            try:
                sigs = self.library.scan()
            except DataError:
                return False
            due = state.next_go_live is not None and now >= state.next_go_live
            if due or not self.library.settled(sigs):
                return False
            index = state.documents
            stored = self.cache.get("gzdocs", [recipe for recipe, _, _ in index.values()])
            if any(recipe not in stored for recipe, _, _ in index.values()):
                return False
            self.documents = {p: Document(p, recipe, ctype, etag, stored[recipe][0])
                              for p, (recipe, ctype, etag) in index.items()}
            self.corpus, self._sigs = state.corpus, sigs
            self.library.walked_at = seen
            self._next_go_live = self.cache_control.next_change = state.next_go_live
            self._report(self.corpus.errors)
            self._restamp(now, seen)
        return True

    def _restore(self, now: float) -> bool:
        """A worker (re)starting while the data cannot be read serves the documents the
        last successful build published, from the caches in the state directory."""
        snapshot = published.load(self.cache, self.config.data_dir)
        if snapshot is None:
            return False
        index = snapshot.documents
        stored = self.cache.get("gzdocs", [e.recipe for e in index.values()])
        if any(e.recipe not in stored for e in index.values()):
            return False
        self.documents = {p: Document(p, e.recipe, e.content_type, stored[e.recipe][1],
                                      stored[e.recipe][0]) for p, e in index.items()}
        last = checkpoints.read(self._checkpoint_path)   # for the article pages (web.py)
        self.restored = last.corpus if last else None   # (and the feeds' Link headers)
        self._restamp(now, 0.0)             # older than any build: it records nothing
        return True

    def _restamp(self, now: float, seen: float) -> None:
        """Attach Last-Modified from the shared state; rebuild responses whose stamp moved.
        A document that may show none yet is served without (NOT_YET) and stamped again
        when the watcher wakes at `validators.retry_at`."""
        etags = {p: d.etag for p, d in self.documents.items()}
        old = self.resources
        if self.store.shared and self._sigs:   # (a stat per folder: only when it is used)
            seen = self.store.seen(seen, newest_mtime(self._sigs, self.config.data_dir))
        stamps = {p: NOT_YET if s is None else s for p, s in self.validators.claim(
            etags, seen, {p: (r.identity.etag, None if r.last_modified == NOT_YET
                              else r.last_modified) for p, r in old.items()}).items()}
        fresh = {}
        links = self._links()
        for path, doc in self.documents.items():
            res = old.get(path)
            if res is None or res.identity.etag != etags[path] or \
                    res.last_modified != stamps[path]:
                res = Resource.make(doc.content_type, stamps[path], doc.etag, doc.gzip,
                                    doc.gzip_etag, links(path))
            fresh[path] = res
        self.resources = fresh
        self.refreshed_at = now
        self.seen = seen
        state = self.store.problems
        self.errors = [e for e in self.errors if e.path not in self.store.places] + state

    def _links(self) -> Callable[[str], tuple[tuple[str, str], ...]]:
        """The WebSub `Link` header of the document at a path (none but for feeds)."""
        corpus = self.corpus or self.restored
        base = corpus.site.base_url if corpus else ""
        hubs = self.hubs.urls(base) if base else ()
        return lambda path: link_header(hubs, base + path) if is_topic(path) else ()

    def _report(self, errors: list[DataError]) -> None:
        if self.corpus is not None:         # a bad file whose last good version is served
            errors = checks.still_published(errors, self.corpus)
        self.shared_log.problems(errors)    # once per change, whichever worker sees it first
        # with what the state files report (logged by them): listed at /healthz too
        self.errors = errors + self.store.problems

    # -- watching ---------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher thread (idempotent; call once per worker process)."""
        if self._thread and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="feedsvc-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching, write the checkpoint, and close the state (tests, embedding)."""
        self._stopped = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        self.checkpoint()
        self.store.close()

    def _run(self) -> None:
        data_dir = self.config.data_dir
        if self._observer is None and not self.config.watch:   # else __init__ just tried
            self._observer = observe(data_dir, self._wake, self._events)
        watch = _Watched(inode(data_dir), time.monotonic() + WATCH_RETRY)
        while not self._stopped:
            # With inotify a walk is only a safety net; without it, polling is all we have.
            # It comes every `poll` seconds even while events keep waking the loop.
            poll = self.config.poll_seconds if self._observer else NO_INOTIFY_POLL
            if self._wake.wait(self._timeout(poll)):
                time.sleep(0.05)            # let a burst of saves settle into one refresh
                self._wake.clear()
            if self._stopped:
                break
            paths = self._events.take()     # stat just the files events named, unless
            if self._observer is None or time.monotonic() - self.library.walked_mono >= poll:
                paths = None                # the safety walk is due
            self._refresh_in_watcher(paths)
            self._keep_watching(watch)

    def _timeout(self, poll: float) -> float:
        """How long the watcher may sleep: until the safety walk, a scheduled article, the
        checkpoint, a racy file's or a partial feed's retry, or a Last-Modified is due."""
        timeout = max(0.01, poll - (time.monotonic() - self.library.walked_mono))
        if self._next_go_live is not None:
            timeout = max(0.01, min(timeout, self._next_go_live - self.clock() + 0.01))
        if self._dirty_since is not None:
            timeout = min(timeout, max(0.01, self._dirty_since + CHECKPOINT_QUIET
                                       - time.monotonic()))
        if self.library.racy or self.publisher.partial:
            timeout = min(timeout, 1.0)     # read those again until they are settled
        if self.validators.retry_at is not None:    # a Last-Modified not yet shown
            timeout = min(timeout, max(0.01, self.validators.retry_at - self.clock()))
        if self._failures or self._sigs is None:
            # a build that keeps failing, or data that cannot be read: no deadline
            # (a scheduled article, the checkpoint) may make the loop spin on it
            timeout = max(timeout, min(30.0, 0.5 * 2 ** self._failures), NO_INOTIFY_POLL)
        return timeout

    def _refresh_in_watcher(self, paths: set[str] | None) -> None:
        """Refresh (and write the checkpoint once the data has been quiet); a failure is
        logged and tried again, with a walk, after a back-off."""
        try:
            if not self.refresh(paths=paths) and self._dirty_since is not None and \
                    time.monotonic() >= self._dirty_since + CHECKPOINT_QUIET:
                self.checkpoint()
            self._failures = 0
        except Exception:               # never let the watcher die
            log.exception("refresh failed; serving the previous version")
            self._failures += 1
            self._events.add(walk=True)

    def _keep_watching(self, watch: _Watched) -> None:
        """Watch again when there is no watcher (tried every so often), it died, or the
        data directory was replaced by another one (which sends no events)."""
        data_dir = self.config.data_dir
        observer = self._observer
        now_inode = inode(data_dir)
        if (observer is None and time.monotonic() >= watch.retry_at) or \
                now_inode != watch.inode or (observer is not None and not observer.is_alive()):
            if observer is not None:
                observer.stop()
            observer = self._observer = observe(data_dir, self._wake, self._events)
            watch.inode = now_inode
            # without events every poll walks the tree; trying them again each time
            # would walk it once more, through watchdog (a folder too deep for it)
            watch.retry_at = time.monotonic() + max(self.config.poll_seconds, WATCH_RETRY)
            self._events.add(walk=True)     # events may have been lost meanwhile:
            if observer is not None:        # walk now, not at the next safety walk
                self._wake.set()


@dataclass(frozen=True)
class _Loaded:
    """What a refresh scanned and loaded."""
    corpus: Corpus
    sigs: Signatures
    walked: bool                # the whole tree was walked (not only event paths stat'ed)
    rebuild: bool               # build even if the corpus is the same one


@dataclass
class _Watched:
    """What the watcher loop knows of the data directory it watches."""
    inode: int | None           # the directory's inode when the watch began
    retry_at: float             # (monotonic) when to try watching again, without a watch
