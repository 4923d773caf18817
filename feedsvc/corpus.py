"""The incremental path's driver: which files changed since the last load, and the Corpus
they make now.

A `Library` remembers every file's stat signature, so a load re-reads only the files
whose signature changed (see scan), hands them to `Records` to parse, and to
`assembly` to make the corpus: the last one when nothing it is made from changed,
the last one with articles swapped when only articles changed in place, else one
assembled anew.  `LibraryState` carries what it knows to a later process.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from . import scan, versions
from .assembly import Corpus, assemble, patched, swaps
from .cache import Cache
from .model import DataError, Site
from .names import name_key  # noqa: F401 - read from here by tests
from .records import Record, Records
from .scan import (  # noqa: F401 - the first two read from here by tests
    LARGE_MEDIA_BYTES,
    MAX_DEPTH,
    SITE_FILE,
    FileState,
    Rescanned,
    Signatures,
)
from .sitefile import SiteFile

__all__ = ["Changes", "Corpus", "Library", "LibraryState", "Recency"]


class Changes(NamedTuple):
    """What a load reads again and drops."""
    changed: list[str]      # files whose signatures changed (or are racy), in path order
    gone: list[str]         # files deleted since the last load
    site: bool              # site.yml is to be read again (changed, gone, or never read)


@dataclass(frozen=True)
class Recency:
    """What the last load learned of its files' times (see scan.recent)."""
    loaded: Signatures | None = None    # the signatures it was given (None: none since adopt)
    started: float = 0.0                # when it started
    racy: set[str] = field(default_factory=set)     # too recent for their signature to
    future: set[str] = field(default_factory=set)   # be trusted; dated after it started
    links: bool = False                 # whether its files include a symlink


@dataclass(frozen=True)
class LibraryState:
    """What a library knows, for `Library.adopt` in a later process (see live.Service)."""
    loader: str                         # versions.RECORDS of the code that parsed the records
    root: str
    base_url: str
    max_file_bytes: int
    walked_at: float                    # when the walk that saw every signature started
    sigs: Signatures
    records: dict[str, Record]
    last_good: dict[str, Record]
    site: Site | None
    site_error: DataError | None


@dataclass(frozen=True)
class _Made:
    """The last corpus a load made, and the errors it was assembled with."""
    corpus: Corpus
    scan_errors: list[DataError]
    site_error: DataError | None


class Library:
    """Incremental loader for one data directory."""

    def __init__(self, root: str, *, base_url: str = "", max_file_bytes: int = 1 << 20,
                 cache: Cache | None = None):
        self.cache = cache
        self.root = os.path.abspath(root)
        self.base_url = base_url
        self.max_file_bytes = max_file_bytes
        self.records = Records(self.root, max_file_bytes, cache)
        self.sitefile = SiteFile(self.root, base_url, max_file_bytes, cache)
        self.scan_errors: list[DataError] = []
        self.walks = 0                                  # full scans, for tests and bench
        self.walked_at = 0.0    # when the walk that saw every loaded signature started
        self.walked_mono = 0.0  # when the last walk started (monotonic clock)
        self.recency = Recency()
        self._sigs: dict[str, FileState] = {}           # of the files the last load read
        self._rescanned: Rescanned | None = None        # see rescan
        self._made: _Made | None = None

    @property
    def site(self) -> Site | None:
        return self.sitefile.site

    @property
    def reads(self) -> int:
        """Files (re)parsed, for tests and bench."""
        return self.records.reads

    @property
    def racy(self) -> set[str]:
        """Files too recent for their signature to be trusted: read again by every load."""
        return self.recency.racy

    # -- resuming ---------------------------------------------------------------
    def state(self) -> LibraryState:
        """What this library knows, for `adopt` in a later process."""
        return LibraryState(
            versions.version(versions.RECORDS), self.root, self.base_url, self.max_file_bytes,
            self.walked_at, dict(self._sigs), dict(self.records.parsed),
            dict(self.records.last_good), self.sitefile.site, self.sitefile.error)

    def adopt(self, state: object) -> bool:
        """Take over what an earlier process knew, so the next `load` re-reads only the files
        that changed since.  A file whose time is within two seconds of the walk that saw
        it may have changed again within its timestamp's resolution: it is read again."""
        if self.site is not None or not isinstance(state, LibraryState) or (
                state.loader, state.root, state.base_url, state.max_file_bytes) != (
                versions.version(versions.RECORDS), self.root, self.base_url,
                self.max_file_bytes):
            return False
        settled = (state.walked_at - 2.0) * 1e9
        # an unsettled file keeps its place with a signature no scan gives: it is read
        # again if it is still there, and dropped (with its record) if it is gone
        self._sigs = {rel: scan.settled(sig, settled) for rel, sig in state.sigs.items()}
        self.recency = replace(self.recency, loaded=None)
        self._rescanned = None
        self.records.parsed, self.records.last_good = state.records, state.last_good
        self.sitefile.site, self.sitefile.error = state.site, state.site_error
        return True

    def settled(self, sigs: Signatures) -> bool:
        """Whether `sigs` are exactly the signatures this library has loaded."""
        return sigs == self._sigs

    # -- scanning ---------------------------------------------------------------
    def scan(self) -> Signatures:
        """Stat signatures of every data file (see scan.walk); its errors in `scan_errors`."""
        self.scan_errors = []
        self.walks += 1
        self.walked_mono = time.monotonic()
        found = scan.walk(self.root, self._sigs)
        self.scan_errors = found.errors
        return found.sigs

    def rescan(self, sigs: Signatures, paths: set[str]) -> Signatures | None:
        """`sigs` with the files at `paths` (absolute, from file events) stat'ed again: a
        save costs a few stats instead of a walk of the whole tree.  None when a walk is
        needed after all (a folder was among them, a path the walk would see differently,
        a link).  `sigs` is not changed.  When `sigs` are those the last load was given,
        the next load of what this returns compares only the files it stat'ed."""
        self._rescanned = None
        loaded = self.recency.loaded
        based = loaded is not None and sigs == loaded
        if self.recency.links if based else scan.has_links(sigs.values()):
            return None             # a link's target may have changed under another name
        found = scan.rescan(self.root, sigs, paths)
        if found is None:
            return None
        if based:
            self._rescanned = found
        return found.sigs

    # -- loading ----------------------------------------------------------------
    def load(self, sigs: Signatures | None = None) -> Corpus:
        """Re-read changed files and return the corpus they make now."""
        sigs = self.scan() if sigs is None else sigs
        started = time.time()
        # After `rescan` of what the last load was given, only the files it stat'ed can
        # differ (a refresh at 10,000 files then skips comparing all of them).
        hint = self._rescanned if self._rescanned is not None and \
            self._rescanned.sigs == sigs and started >= self.recency.started else None
        self._rescanned = None
        changes = self._changes(sigs, hint)
        self.records.drop(changes.gone, persisted=self.site is not None)
        site_before = self.site
        try:
            corpus = self._load(sigs, changes)
        except BaseException:
            self.sitefile.site = site_before    # records parsed with a new site were not
            self._made = None                   # all made, nor those made in a corpus
            raise
        # Only now: a load that fails half-way must see these files as changed next time.
        self._sigs = dict(sigs)
        self.recency = self._recency(sigs, changes.changed if hint else None, started)
        return corpus

    def _changes(self, sigs: Signatures, hint: Rescanned | None) -> Changes:
        """The files to read again and the files gone since the last load: among those
        `hint` touched, when it is given, else among all."""
        racy = self.racy
        if hint:
            changed = [rel for rel in sorted(hint.touched | racy) if rel in sigs and (
                self._sigs.get(rel) != sigs[rel] or rel in racy)]
            gone = sorted(rel for rel in hint.touched if rel in self._sigs and rel not in sigs)
        else:
            changed = [rel for rel, sig in sigs.items()
                       if self._sigs.get(rel) != sig or rel in racy]
            gone = sorted(set(self._sigs) - set(sigs))
        site = SITE_FILE in changed or SITE_FILE not in sigs or self.site is None
        return Changes(changed, gone, site)

    def _recency(self, sigs: Signatures, changed: list[str] | None, started: float) -> Recency:
        """Which files are too recent to trust, dated in the future, or links (see
        scan.recent).  `changed`: the only files whose signatures changed since the last
        load, if known; any other file was neither recent nor in the future then, so it
        is not now."""
        last = self.recency
        if changed is None:
            candidates: Iterable[str] = sigs
            links = scan.has_links(sigs.values())
        else:
            candidates = {rel for rel in (*last.racy, *last.future, *changed) if rel in sigs}
            links = last.links or scan.has_links(sigs[rel] for rel in changed)
        racy, future = scan.recent(sigs, candidates, started)
        return Recency(sigs, started, racy, future, links)

    def _load(self, sigs: Signatures, changes: Changes) -> Corpus:
        changed = changes.changed
        if changes.site and self.sitefile.read():
            changed = sorted(sigs)          # dates and ids depend on the site settings
        site = self.site
        assert site is not None
        before = {rel: self.records.parsed.get(rel) for rel in changed}
        self._read(sigs, changed, changes.gone, site)
        corpus = self._corpus_after(before, changed, changes.gone, site)
        self.records.persist_good(site)
        return corpus

    def _read(self, sigs: Signatures, changed: list[str], gone: list[str], site: Site) -> None:
        """Parse the changed files into the records; image lengths again when a media
        file changed; the persisted last good versions of files that are bad now."""
        # racy files whose signature did not change are only checked (read and hashed)
        unchanged = {rel for rel in changed
                     if rel in self.racy and self._sigs.get(rel) == sigs[rel]}
        self.records.parse(sigs, changed, site, unchanged)
        if any(rel.startswith("media/") for rel in changed + gone):
            self.records.measure_images(site)
        self.records.recall_last_good(changed, site)

    def _corpus_after(self, before: dict[str, Record], changed: list[str], gone: list[str],
                      site: Site) -> Corpus:
        """The corpus the records make now: the last one when nothing it is made from
        changed (re-read files that turned out the same: a racy file, a touch), the last
        one patched when only articles changed in place, else one assembled anew."""
        media = any(rel.startswith("media/") for rel in changed)
        if self._made is not None and not gone and not media and self._same(before):
            return self._made.corpus
        corpus = (None if gone or media else self._patched(before)) or \
            assemble(self.root, site, self.records)
        corpus.errors[:0] = self.scan_errors
        if self.sitefile.error:
            corpus.errors.insert(0, self.sitefile.error)
        self._made = _Made(corpus, list(self.scan_errors), self.sitefile.error)
        return corpus

    def _unchanged_since(self, made: _Made) -> bool:
        """Whether the site settings and errors are those `made` was assembled with."""
        return self.site == made.corpus.site and self.sitefile.error is None \
            and made.site_error is None and self.scan_errors == made.scan_errors

    def _same(self, before: dict[str, Record]) -> bool:
        """Whether the last corpus is still what the records make, these read again."""
        assert self._made is not None
        return self._unchanged_since(self._made) and \
            all(self.records.parsed.get(rel) == rec for rel, rec in before.items())

    def _patched(self, before: dict[str, Record]) -> Corpus | None:
        """The last corpus with edited articles swapped in, when the edits change nothing
        another article or a name depends on (see assembly.swaps): what `assemble` would
        make, without its passes over every article.  None when that does not hold."""
        made = self._made
        if made is None or not before or not self._unchanged_since(made):
            return None
        edits = swaps(before, self.records)
        if not edits:
            return None
        errors = made.corpus.errors[len(self.scan_errors):]     # as assembled: see `_load`
        corpus = patched(made.corpus, edits, errors)
        if corpus is not None:
            for _, new in edits:
                self.records.note_good(new)
        return corpus
