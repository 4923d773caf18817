"""One pool of worker processes for the large batches of a cold start.

Parsing 10,000 front matters and rendering thousands of Markdown bodies are
CPU-bound Python: threads would take turns on the GIL.  A cold start runs
them on every core in one pool (started once, used by both steps, stopped
when the build is done, so a serving process keeps no idle children).
Small batches, the usual live refresh, run in-process: a pool costs a few
milliseconds forked, about 0.3 s spawned (see _new_pool).
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_holders = 0
# Forked workers never walk what they inherit (gc.freeze); read once per pool.  The bench
# turns it off to measure it (bench/tricks.py); the documents are the same either way.
FREEZE_BEFORE_FORK = True


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


@contextmanager
def session() -> Iterator[None]:
    """While any session is open, `map` reuses one pool; the last one out stops it."""
    global _holders, _pool
    with _lock:
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            pool, _pool = (_pool, None) if _holders == 0 else (None, _pool)
        if pool is not None:
            pool.shutdown()


Observer = Callable[[str, int, "int | None"], None]   # (fn's name, done, total if known)
_observer: Observer | None = None


def observe(observer: Observer | None) -> None:
    """Have `observer` told how far each batch on every core is (progress.py), or no one."""
    global _observer
    _observer = observer


def imap(fn: Callable[[T], R], items: Iterable[T], window: int = 0,
         total: int | None = None) -> Iterator[R]:
    """`fn` over `items` on every core, the results in order as they arrive (so the caller
    works on them while the workers go on).  Items go out in chunks, all at once, or with
    `window`, at most that many chunks in flight: large items then never queue up in memory.
    `total`: how many items there are, for the observer, if `items` cannot say."""
    global _pool
    with _lock:
        pool = _pool
    if pool is None:            # made outside the lock: forked workers must not inherit it held
        made = _new_pool()
        with _lock:
            if _holders and _pool is not None:  # another thread of the session was first
                pool, extra = _pool, made
            else:
                pool, extra = made, None
                if _holders:
                    _pool = made
        if extra is not None:
            extra.shutdown(wait=False)
    if window:                  # one item per chunk, taken from `items` as it goes out
        chunks: Iterator[Sequence[T]] = ([item] for item in items)
    else:
        every = list(items)
        total = len(every)
        size = max(1, len(every) // (cores() * 16))
        chunks = iter([every[i:i + size] for i in range(0, len(every), size)])
    sent = deque(_submit(pool, _chunk, fn, c) for c in islice(chunks, window or None))

    def collect() -> Iterator[R]:
        count = 0
        try:
            while sent:
                done = sent.popleft().result()
                sent.extend(_submit(pool, _chunk, fn, c) for c in islice(chunks, 1))
                count += len(done)
                if _observer is not None:
                    _observer(getattr(fn, "__name__", "work"), count, total)
                yield from done
        finally:
            for future in sent:
                future.cancel()
            if pool is not _pool:
                pool.shutdown()
    return collect()


def _new_pool() -> ProcessPoolExecutor:
    """Workers forked from this process when it runs no other thread: they start at once,
    with every module it has imported (a spawned worker imports them again, about 0.2 s of
    CPU).  Forking a process that runs threads (the watcher, the cache writer, a server's)
    can copy a lock some thread holds: then they are spawned."""
    fork = _one_thread() and "fork" in multiprocessing.get_all_start_methods()
    # forked workers never walk what they inherit: the walk would write to every
    # inherited object's page, copying it (about 15 MB of a 10k cold start's peak)
    pool = ProcessPoolExecutor(cores(),
                               mp_context=multiprocessing.get_context("fork" if fork else "spawn"))
    if fork:
        freeze = FREEZE_BEFORE_FORK
        if freeze:
            gc.freeze()
        try:
            _submit(pool, int)  # every worker is forked now, before any thread starts
        finally:
            if freeze:
                gc.unfreeze()
    return pool


_starting = threading.local()     # set while a submit may be starting a worker
_deferred = threading.Event()      # a SIGINT came meanwhile: raised once the submit is done


def _submit(pool: ProcessPoolExecutor, fn: Callable, *args: object):
    """`pool.submit`, during which a Ctrl-C waits: a submit may start a worker, and a
    process that dies while it hands a spawned worker its start-up data leaves that worker
    printing a traceback ("EOFError: Ran out of input") after the one-line message.  The
    worker starts with SIGINT blocked (the mask is inherited), so the Ctrl-C a terminal
    sends the whole group cannot kill it half-started either ("Fatal Python error:
    init_import_site"); this process stops its workers itself."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    _starting.on = True
    try:
        return pool.submit(fn, *args)
    finally:
        _starting.on = False
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if _deferred.is_set():
            _deferred.clear()
            signal.raise_signal(signal.SIGINT)


def defer_interrupt() -> bool:
    """For a SIGINT handler (which runs in the main thread): whether the main thread is
    starting a worker, in which case the interrupt is noted and raised again as soon as
    that is done, and the handler should return."""
    if getattr(_starting, "on", False):
        _deferred.set()
        return True
    return False


def _one_thread() -> bool:
    """True when this process runs a single thread, native ones included (Linux)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(item) for item in chunk]


def start(fn: Callable[[T], R], items: Sequence[T], threshold: int) -> Callable[[], list[R]]:
    """Begin `fn` over `items`, on every core when there are at least `threshold` of them;
    call the result to wait for the results (small batches run then, in this process)."""
    if len(items) < threshold or cores() < 2:
        return lambda: [fn(item) for item in items]
    results = imap(fn, items)
    return lambda: list(results)


def map(fn: Callable[[T], R], items: Iterable[T], threshold: int,  # noqa: A001
        window: int = 0, count: int | None = None) -> list[R]:
    """`fn` over `items`, on every core when there are at least `threshold` of them
    (`count`: how many, when `items` is an iterator; `window`: see `imap`)."""
    if count is None:
        items = list(items)
        count = len(items)
    if count < threshold or cores() < 2:
        return [fn(item) for item in items]
    return list(imap(fn, items, window, total=count))
