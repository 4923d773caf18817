"""OUTDIR as `feedsvc build` keeps it: files written only when their bytes differ,
atomically, with their final mtime; a manifest of what it wrote, so a later build
removes what is no longer published and never touches anything else."""
from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Callable

from .documents import compress

MANIFEST = ".feedsvc-manifest"
GZIP_MEDIA_RATIO = 0.9          # a media file gets a .gz sibling only below this ratio

Progress = Callable[[int, int], None]       # (done, total)


def _to_write(path: str, st: os.stat_result | None, body: bytes | None,
              source: tuple[str, bytes] | None) -> bytes | None:
    """The bytes to write at `path` (`st`: its stat, None when there is no file), or None
    when it holds them already; `body` None: a .gz sibling of `source` (see Writer.put)."""
    if body is None:                # a .gz sibling: unzipping is ~10x cheaper than zipping
        assert source is not None
        return None if st is not None and _gzip_of(path, source[1]) else compress(source[1])
    same = st is not None and st.st_size == len(body) and _same_bytes(path, body)
    return None if same else body


class Writer:
    """Writes the files of one build into OUTDIR and removes those of the last one it
    no longer writes."""

    def __init__(self, outdir: str, old_manifest: set[str], progress: Progress | None,
                 total: int):
        self.outdir = outdir
        self.old = old_manifest
        self.files: set[str] = set()
        self.written: list[str] = []
        self.touched: list[str] = []
        self.unchanged = 0
        self.progress = progress
        self.total = total
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def document(self, rel: str, body: bytes, mtime: int, gz: bytes | None = None) -> None:
        """The identity file and its .gz sibling, both with `mtime`; `gz` when the build
        already compressed it (feeds, pages: the live service's very bytes)."""
        self.put(rel, body, mtime)
        if gz is not None:
            self.put(rel + ".gz", gz, mtime)
        else:
            self.put(rel + ".gz", None, mtime, source=(rel, body))
        self.tick()

    def media(self, rel: str, src: str) -> None:
        st = os.stat(src)
        with open(src, "rb") as f:
            body = f.read()
        self.put(rel, body, st.st_mtime_ns, ns=True)
        gz = compress(body)
        if len(gz) < GZIP_MEDIA_RATIO * len(body):
            self.put(rel + ".gz", gz, st.st_mtime_ns, ns=True)
        self.tick()

    def put(self, rel: str, body: bytes | None, mtime: int | None, *, ns: bool = False,
            source: tuple[str, bytes] | None = None) -> None:
        """Write `rel` unless it already holds `body`; then make its mtime `mtime`.

        `source` (rel, identity bytes) marks a .gz sibling (`body` None): it is
        left alone when it unzips to those bytes, else written as their
        deterministic gzip.  mtime None leaves the mtime alone (nginx/feedsvc.conf).
        """
        if rel in self.files:
            raise ValueError(f"two published files map to {rel!r}")
        self.files.add(rel)
        path = os.path.join(self.outdir, rel)
        mtime_ns = None if mtime is None else (mtime if ns else mtime * 1_000_000_000)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        fresh = _to_write(path, st, body, source)
        if fresh is not None:
            _atomic_write(path, fresh, mtime_ns)
            self.written.append(rel)
        elif st is not None and mtime_ns is not None and st.st_mtime_ns != mtime_ns:
            os.utime(path, ns=(mtime_ns, mtime_ns))
            self.touched.append(rel)
        else:
            self.unchanged += 1

    def finish(self) -> list[str]:
        """Remove what an earlier build wrote and this one did not; save the manifest."""
        removed = []
        for rel in sorted(self.old - self.files):
            path = os.path.join(self.outdir, rel)
            try:
                os.unlink(path)
                removed.append(rel)
            except FileNotFoundError:
                continue
            _prune_dirs(os.path.dirname(path), self.outdir)
        text = "".join(f"{rel}\n" for rel in sorted(self.files)).encode()
        mpath = os.path.join(self.outdir, MANIFEST)
        if not (os.path.isfile(mpath) and _same_bytes(mpath, text)):
            _atomic_write(mpath, text, None)
        return removed


def _same_bytes(path: str, body: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(body) + 1) == body
    except OSError:
        return False


def _gzip_of(path: str, body: bytes) -> bool:
    """Does the gzip file at `path` hold exactly `body`?"""
    try:
        with open(path, "rb") as f:
            return gzip.decompress(f.read()) == body
    except (OSError, EOFError, zlib.error):
        return False


def _atomic_write(path: str, body: bytes, mtime_ns: int | None) -> None:
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")    # a dot file: never served
    try:
        with open(tmp, "wb") as f:
            f.write(body)
        os.chmod(tmp, 0o644)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))             # before it becomes visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _prune_dirs(folder: str, outdir: str) -> None:
    """Remove directories emptied by a removal, up to (not including) OUTDIR."""
    while os.path.commonpath([folder, outdir]) == outdir and folder != outdir:
        try:
            os.rmdir(folder)
        except OSError:                 # not empty (or already gone): stop here
            return
        folder = os.path.dirname(folder)


def read_manifest(outdir: str) -> set[str]:
    try:
        with open(os.path.join(outdir, MANIFEST), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return set()
    out = set()
    for line in lines:
        rel = line.strip()
        parts = rel.split("/")
        if rel and not rel.startswith("/") and ".." not in parts and "" not in parts:
            out.add(rel)                # never follow a manifest line out of OUTDIR
    return out

