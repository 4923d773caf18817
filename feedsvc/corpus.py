"""Walk the data directory and assemble a consistent Corpus, incrementally.

A `Library` remembers every file's stat signature and parsed record, so a rescan
re-reads only files whose signature changed.  It also remembers the last good
record of every article: an article file that turns invalid keeps publishing
its last good version (and its error is reported) until it is fixed or deleted.
The last site.yml that was read fine is kept the same way, in the state too: a
restart with site.yml broken publishes with the settings it was published with.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import pickle
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

from . import duplicates, loader, names, scan, versions, workers
from .cache import Cache
from .model import Article, Category, DataError, Person, Site, newest_first, swap_sorted
from .names import CATEGORIES_FILE, name_key
from .scan import (  # noqa: F401 - read from here by tests, web
    LARGE_MEDIA_BYTES,
    MAX_DEPTH,
    SITE_FILE,
    FileState,
    Rescanned,
    Signatures,
    Unreadable,
)

_SERIALS = itertools.count(1)
PARALLEL_PARSE = 1000        # files to parse before a load uses every core


@dataclass
class Corpus:
    root: str                               # the data directory (bodies are read from it)
    site: Site
    articles: list[Article]                 # every non-draft article, newest first
    authors: dict[str, Person]              # slug -> person
    categories: dict[str, Category]         # slug -> category
    author_slugs: dict[str, str]            # name key -> slug
    category_slugs: dict[str, str]          # name key -> slug
    errors: list[DataError] = field(default_factory=list)
    # set when this corpus is the one of serial `patched_from` with articles swapped
    # (old, new) and nothing else changed (see Library._patched): a build redoes only the
    # scopes those articles are in
    patched_from: int | None = field(default=None, repr=False, compare=False)
    swaps: tuple[tuple[Article, Article], ...] = field(default=(), repr=False, compare=False)
    # which corpus this is, unique in this process (a new one for every corpus made)
    serial: int = field(default_factory=lambda: next(_SERIALS), init=False, repr=False,
                        compare=False)
    _authors_by_names: dict = field(default_factory=dict, repr=False, compare=False)
    _categories_by_names: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        """A checkpoint keeps this corpus, not what it was patched from."""
        return {**self.__dict__, "patched_from": None, "swaps": ()}

    def __setstate__(self, state: dict) -> None:
        """Read back in another process: a serial of this one (none it has given out)."""
        self.__dict__.update(state, serial=next(_SERIALS))

    def visible(self, now: dt.datetime) -> list[Article]:
        return self.articles[self._first_visible(now):]

    def next_go_live(self, now: dt.datetime) -> dt.datetime | None:
        i = self._first_visible(now)        # newest first: the last future one comes next
        return self.articles[i - 1].published if i else None

    def _first_visible(self, now: dt.datetime) -> int:
        """Articles are sorted newest first: those published by `now` are a suffix."""
        return bisect_left(self.articles, (-now.timestamp(), ""), key=newest_first)

    def authors_of(self, article: Article) -> list[Person]:
        found = self._authors_by_names.get(article.authors)
        if found is None:                       # asked for every article in every build: kept
            slugs = [self.author_slugs.get(name_key(n)) for n in article.authors]
            found = self._authors_by_names[article.authors] = [
                self.authors[s] for s in dict.fromkeys(slugs) if s is not None]
        return found

    def categories_of(self, article: Article) -> list[Category]:
        found = self._categories_by_names.get(article.categories)
        if found is None:
            slugs = [self.category_slugs.get(name_key(n)) for n in article.categories]
            found = self._categories_by_names[article.categories] = [
                self.categories[s] for s in dict.fromkeys(slugs) if s is not None]
        return found


class Changes(NamedTuple):
    """What a load reads again and drops."""
    changed: list[str]      # files whose signatures changed (or are racy), in path order
    gone: list[str]         # files deleted since the last load
    site: bool              # site.yml is to be read again (changed, gone, or never read)


class Library:
    """Incremental loader for one data directory."""

    def __init__(self, root: str, *, base_url: str = "", max_file_bytes: int = 1 << 20,
                 cache: Cache | None = None):
        self.cache = cache
        self.root = os.path.abspath(root)
        self.base_url = base_url
        self.max_file_bytes = max_file_bytes
        self._sigs: dict[str, FileState] = {}
        self._records: dict[str, object] = {}           # rel -> record or DataError
        self._last_good: dict[str, object] = {}        # rel -> last valid record
        self._good_changed: dict[str, tuple[Article, bool]] = {}    # to persist after
                                                                    # this load (see _note_good)
        self.scan_errors: list[DataError] = []
        self.site: Site | None = None
        self._site_error: DataError | None = None       # site.yml is bad: we keep self.site
        self._site_text: str | None = None              # the text self.site was read from
        self.reads = 0                                  # files (re)parsed, for tests and bench
        self.walks = 0                                  # full scans, for tests and bench
        self.walked_at = 0.0    # when the walk that saw every loaded signature started
        self.racy: set[str] = set()     # files too recent for their signature to be trusted
        self._future: set[str] = set()  # files dated after the last load started
        self._links = False             # whether the last load's files include a symlink
        self._started = 0.0             # when the last load started
        # the signatures the last load was given (None until one after `adopt`), and what
        # `rescan` made of them: a load of that compares only the files rescan stat'ed
        self._loaded: Signatures | None = None
        self._rescanned: Rescanned | None = None
        self._corpus: Corpus | None = None              # what the last load returned
        self._scan_errors: list[DataError] = []
        self._corpus_site_error: DataError | None = None
        self.walked_mono = 0.0  # when the last walk started (monotonic clock)

    # -- resuming ---------------------------------------------------------------
    def state(self) -> dict:
        """What this library knows, for `adopt` in a later process (see live.Service)."""
        return {"loader": versions.version(versions.RECORDS), "root": self.root,
                "base_url": self.base_url,
                "max_file_bytes": self.max_file_bytes, "walked_at": self.walked_at,
                "sigs": dict(self._sigs), "records": dict(self._records),
                "last_good": dict(self._last_good), "site": self.site,
                "site_error": self._site_error}

    def adopt(self, state: dict) -> bool:
        """Take over what an earlier process knew, so the next `load` re-reads only the files
        that changed since.  A file whose time is within two seconds of the walk that saw
        it may have changed again within its timestamp's resolution: it is read again."""
        if self.site is not None or any(state.get(k) != v for k, v in (
                ("loader", versions.version(versions.RECORDS)), ("root", self.root),
                ("base_url", self.base_url),
                ("max_file_bytes", self.max_file_bytes))):
            return False
        settled = (state["walked_at"] - 2.0) * 1e9
        # an unsettled file keeps its place with a signature no scan gives: it is read
        # again if it is still there, and dropped (with its record) if it is gone
        self._sigs = {rel: scan.settled(sig, settled) for rel, sig in state["sigs"].items()}
        self._loaded = self._rescanned = None
        self._records, self._last_good = state["records"], state["last_good"]
        self.site, self._site_error = state["site"], state["site_error"]
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
        based = self._loaded is not None and sigs == self._loaded
        if self._links if based else scan.has_links(sigs.values()):
            return None             # a link's target may have changed under another name
        found = scan.rescan(self.root, sigs, paths)
        if found is None:
            return None
        if based:
            self._rescanned = found
        return found.sigs

    def load(self, sigs: Signatures | None = None) -> Corpus:
        """Re-read changed files and return the corpus they make now."""
        sigs = self.scan() if sigs is None else sigs
        started = time.time()
        # After `rescan` of what the last load was given, only the files it stat'ed can
        # differ (a refresh at 10,000 files then skips comparing all of them).
        hint = self._rescanned if self._rescanned is not None and \
            self._rescanned.sigs == sigs and started >= self._started else None
        self._rescanned = None
        changes = self._changes(sigs, hint)
        for rel in changes.gone:
            self._records.pop(rel, None)
            self._last_good.pop(rel, None)
        if self.cache and self.site and changes.gone:   # deleted: nothing to fall back on
            self.cache.delete("records", [self._good_key(rel) for rel in changes.gone])

        site_before = self.site
        try:
            corpus = self._load(sigs, changes)
        except BaseException:
            self.site = site_before     # records parsed with a new site were not all made
            self._corpus = None         # and those it did make are not in it: assemble anew
            raise
        # Only now: a load that fails half-way must see these files as changed next time.
        self._sigs = dict(sigs)
        self._note_times(sigs, changes.changed if hint else None, started)
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

    def _note_times(self, sigs: Signatures, changed: list[str] | None,
                    started: float) -> None:
        """Which files are too recent to trust (`racy`), dated in the future, or links
        (see scan.recent).  `changed`: the only files whose signatures changed since the
        last load, if known; any other file was neither recent nor in the future then,
        so it is not now."""
        if changed is None:
            candidates: Iterable[str] = sigs
            self._links = scan.has_links(sigs.values())
        else:
            candidates = {rel for rel in (*self.racy, *self._future, *changed) if rel in sigs}
            self._links = self._links or scan.has_links(sigs[rel] for rel in changed)
        self.racy, self._future = scan.recent(sigs, candidates, started)
        self._started = started
        self._loaded = sigs

    def _load(self, sigs: Signatures, changes: Changes) -> Corpus:
        changed, gone = changes.changed, changes.gone
        if changes.site:
            changed = self._read_site(sigs, changed)
        assert self.site is not None
        before = {rel: self._records.get(rel) for rel in changed}
        self._parse_changed(sigs, changed)
        if any(rel.startswith("media/") for rel in changed + gone):
            self._measure_images()
        self._recall_last_good(changed)
        corpus = self._corpus_after(before, changed, gone)
        self._persist_good()
        if corpus is not self._corpus:
            corpus.errors[:0] = self.scan_errors
            if self._site_error:
                corpus.errors.insert(0, self._site_error)
            self._corpus, self._scan_errors = corpus, list(self.scan_errors)
            self._corpus_site_error = self._site_error
        return corpus

    def _read_site(self, sigs: Signatures, changed: list[str]) -> list[str]:
        """Read site.yml (or, when it is bad, keep the site settings we have, or recall the
        last good ones); the files to read again: all of them when the settings changed."""
        try:
            text, _ = loader.read_text(self.root, SITE_FILE, self.max_file_bytes)
            site = loader.parse_site(SITE_FILE, text, self.base_url)
            self._site_error = None
            if site != self.site:       # dates and ids depend on the site settings
                self.site, changed = site, sorted(sigs)
            if self.cache and text != self._site_text:
                self.cache.put_records_later({self._good_site_key: text})
            self._site_text = text
        except DataError as e:
            self._site_error = e        # reported on every load until site.yml is fixed
            if self.site is None:       # as the running process would: the last good one
                self.site = self._recall_site()
                if self.site is None:
                    raise
                changed = sorted(sigs)
        return changed

    def _parse_changed(self, sigs: Signatures, changed: list[str]) -> None:
        """Parse the changed files into `_records` (and `_last_good`, those that are good)."""
        for rel in changed:
            if not rel.startswith(("articles/", "media/")):
                rec = self._records[rel] = self._parse(rel, sigs[rel])
                if rec is not None and not isinstance(rec, DataError):
                    self._last_good[rel] = rec
        articles = [rel for rel in changed if rel.startswith("articles/")]
        self._records.update(self._parse_articles(articles, sigs))

    def _measure_images(self) -> None:
        """A media file changed: every article's image length again."""
        assert self.site is not None
        for store in (self._records, self._last_good):
            for rel, rec in store.items():
                if isinstance(rec, Article) and rec.image:
                    store[rel] = self._with_image(rec, self.site)

    def _corpus_after(self, before: dict[str, object], changed: list[str],
                      gone: list[str]) -> Corpus:
        """The corpus the records make now: the last one when nothing it is made from
        changed, the last one patched when only articles changed in place (see _patched),
        else one assembled anew."""
        assert self.site is not None
        media = any(rel.startswith("media/") for rel in changed)
        # re-read files that turned out the same (a racy file, a touch) make no new corpus
        if self._corpus is not None and not gone and not media and self._same(before):
            return self._corpus
        return (None if gone or media else self._patched(before)) \
            or self._assemble(self.site)

    def _same(self, before: dict[str, object]) -> bool:
        """Whether the last corpus is still what the records make, these read again."""
        assert self._corpus is not None
        return self.site == self._corpus.site and self._site_error is None \
            and self._corpus_site_error is None and self.scan_errors == self._scan_errors \
            and all(self._records.get(rel) == rec for rel, rec in before.items())

    def _persist_good(self) -> None:
        """A restart must remember the last good versions noted by this load too, by
        reference (worked out by the cache's writer thread)."""
        if self.cache and self._good_changed:
            goods, site = self._good_changed, self.site
            assert site is not None
            self.cache.put_records_later(lambda: {
                self._good_key(rel): a if renamed else _record_key(rel, a.digest, site)
                for rel, (a, renamed) in goods.items()})
        self._good_changed = {}

    def _parse_articles(self, rels: list[str], sigs: Signatures) -> dict[str, object]:
        """Read every file; parse only those whose bytes the record cache has not seen
        (a cold start, with many files, parses all of them on every core)."""
        # racy files whose signature did not change are only checked: read and hashed here
        checked = [rel for rel in rels if rel in self.racy and self._sigs.get(rel) == sigs[rel]]
        moved = [rel for rel in rels if rel not in set(checked)]
        if len(moved) >= PARALLEL_PARSE and workers.cores() > 1:
            return {**self._parse_on_every_core(moved, sigs),
                    **self._parse_in_process(checked, sigs)}
        return self._parse_in_process(rels, sigs)

    def _parse_in_process(self, rels: list[str], sigs: Signatures) -> dict[str, object]:
        site = self.site
        assert site is not None
        out: dict[str, object] = {}
        raws: dict[str, bytes] = {}
        for rel in rels:
            try:
                sig = sigs[rel]
                if isinstance(sig, Unreadable):
                    raise DataError(rel, f"cannot be read ({sig.message})")
                raws[rel] = loader.read_bytes(self.root, rel, self.max_file_bytes)
            except DataError as e:
                out[rel] = e
        digests = {rel: hashlib.sha256(raw).hexdigest() for rel, raw in raws.items()}
        keys = {rel: _record_key(rel, digest, site) for rel, digest in digests.items()}
        known = self.cache.get_records(list(keys.values())) if self.cache and keys else {}
        fresh: dict[str, object] = {}
        for rel, raw in raws.items():
            rec = known.get(keys[rel])
            if isinstance(rec, Article):            # these very bytes parsed fine before
                rec = self._with_image(rec, site)
            else:
                self.reads += 1
                try:
                    rec = loader.parse_article(rel, loader.decode(rel, raw), digests[rel], site,
                                               self.root)
                    fresh[keys[rel]] = rec
                except DataError as e:
                    rec = e
            out[rel] = rec
        if self.cache:
            self.cache.put_records(fresh)
        return out

    def _parse_on_every_core(self, rels: list[str], sigs: Signatures) -> dict[str, object]:
        """Worker processes read and parse the files and send back pickled records; this
        process unpacks them as they arrive, and the record cache stores them as sent."""
        site = self.site
        assert site is not None
        jobs = [(self.root, rel, sigs[rel], site, self.max_file_bytes) for rel in rels]
        out: dict[str, object] = {}
        fresh: dict[str, bytes] = {}
        for rel, digest, made in workers.imap(_read_and_parse, jobs):
            self.reads += digest is not None
            if isinstance(made, bytes) and digest is not None:
                out[rel] = pickle.loads(made)  # noqa: S301 - our own worker's pickle
                fresh[_record_key(rel, digest, site)] = made
            else:
                out[rel] = made
        if self.cache:              # written while the build goes on
            self.cache.put_pickled_later(fresh)
        return out

    def _with_image(self, article: Article, site: Site) -> Article:
        if not article.image:                       # the image file may have changed alone
            return article
        return replace(article, image_length=loader.local_length(article.image, site, self.root))

    def _recall_clashing(self, candidates: list[Article]) -> None:
        """After a restart, which of two files sharing an id or slug was published first is
        known only to the persisted last good records: fetch those of the clashing files."""
        ids = Counter(a.id for a in candidates)
        slugs = Counter(a.slug for a in candidates)
        self._recall([a.path for a in candidates if ids[a.id] > 1 or slugs[a.slug] > 1])

    def _recall_last_good(self, changed: list[str]) -> None:
        """A file that is bad when we start may have been published before: find the
        version an earlier process published, so a restart does not unpublish it."""
        self._recall([rel for rel in changed if rel.startswith("articles/")
                      and isinstance(self._records.get(rel), DataError)])

    def _recall(self, rels: list[str]) -> None:
        """Fill in the persisted last good records of `rels` this process does not know."""
        unknown = [rel for rel in rels if rel not in self._last_good]
        if self.cache and unknown:
            refs = self.cache.get_records([self._good_key(rel) for rel in unknown])
            found = self.cache.get_records([k for k in refs.values() if isinstance(k, str)])
            for rel in unknown:
                ref = refs.get(self._good_key(rel))
                good = ref if isinstance(ref, Article) else found.get(str(ref))
                if isinstance(good, Article) and self.site:
                    # made again from its fields: another version of feedsvc may have
                    # pickled it, without what __post_init__ works out now
                    self._last_good[rel] = self._with_image(replace(good), self.site)

    def _good_key(self, rel: str) -> str:
        """Where the last good version of `rel` is noted: by path alone, so it survives a
        change of site settings and an upgrade of feedsvc (a record keyed by another
        version of either is still found through the reference it holds)."""
        return hashlib.sha256(os.fsencode(f"last good\0{self.root}\0{rel}")).hexdigest()

    @property
    def _good_site_key(self) -> str:
        """Where the text of the last site.yml that was read fine is noted (by the data
        directory alone: it stays when site.yml is deleted, as the running site does)."""
        return hashlib.sha256(os.fsencode(f"last good site\0{self.root}")).hexdigest()

    def _recall_site(self) -> Site | None:
        """The site settings of the last site.yml an earlier process read fine, parsed
        again by this version of feedsvc with this base URL; None if there is none."""
        text = self.cache.get_records([self._good_site_key]).get(self._good_site_key) \
            if self.cache else None
        if not isinstance(text, str):
            return None
        try:
            site = loader.parse_site(SITE_FILE, text, self.base_url)
        except DataError:
            return None
        self._site_text = text
        return site

    def _parse(self, rel: str, sig: FileState) -> object:
        self.reads += 1
        if rel == SITE_FILE:
            return None
        try:
            if isinstance(sig, Unreadable):
                raise DataError(rel, f"cannot be read ({sig.message})")
            text, _ = loader.read_text(self.root, rel, self.max_file_bytes)
            if rel == CATEGORIES_FILE:
                return loader.parse_categories(rel, text)
            return loader.parse_person(rel, text)
        except DataError as e:
            return e

    # -- assembling -------------------------------------------------------------
    def _patched(self, before: dict[str, object]) -> Corpus | None:
        """The last corpus with edited articles swapped in, when the edits change nothing
        another article or a name depends on (id, slug, draft, authors, categories, and
        the file was valid and published before and after): what `_assemble` would
        make, without its passes over every article.  None when that does not hold."""
        old = self._corpus
        if old is None or not before or self.site != old.site or self._site_error \
                or self._corpus_site_error or self.scan_errors != self._scan_errors:
            return None
        swaps = self._swaps(before)
        if not swaps:
            return None
        articles = list(old.articles)
        for was, new in swaps:
            if not swap_sorted(articles, was, new):
                return None                 # it was not published as it was read
        for _, new in swaps:
            self._note_good(new)
        errors = old.errors[len(self.scan_errors):]     # as assembled: see `_load`
        return replace(old, articles=articles, errors=errors, patched_from=old.serial,
                       swaps=tuple(swaps))

    def _swaps(self, before: dict[str, object]) -> list[tuple[Article, Article]] | None:
        """(was, now) of every article whose record changed from `before`, when each was
        and is published and keeps what others depend on; else None."""
        swaps = []
        for rel, was in before.items():
            new = self._records.get(rel)
            if new == was:
                continue                    # read again (racy, touched), the same record
            if not (rel.startswith("articles/") and isinstance(was, Article)
                    and isinstance(new, Article)) or was.draft or new.draft \
                    or (was.id, was.slug, was.authors, was.categories) != \
                    (new.id, new.slug, new.authors, new.categories):
                return None
            swaps.append((was, new))
        return swaps

    def _assemble(self, site: Site) -> Corpus:
        errors: list[DataError] = []
        described: dict[str, str] = {}
        people: list[tuple[str, Person]] = []
        candidates: list[Article] = []
        for rel in sorted(self._records):
            rec = self._records[rel]
            if isinstance(rec, DataError):
                errors.append(rec)
                rec = self._last_good.get(rel)     # a typo never unpublishes anything
            if isinstance(rec, dict):
                described = rec
            elif isinstance(rec, Person):
                people.append((rel, rec))
            elif isinstance(rec, Article):
                candidates.append(rec)

        articles = self._unique(candidates, errors)
        published = [a for a in articles if not a.draft]
        published.sort(key=newest_first)

        authors, author_slugs = names.people(people, published, errors)
        categories, category_slugs = names.categories(described, published, errors)
        return Corpus(root=self.root, site=site, articles=published, authors=authors,
                      categories=categories, author_slugs=author_slugs,
                      category_slugs=category_slugs,
                      errors=sorted(errors, key=lambda e: (e.path, e.message)))

    def _unique(self, candidates: list[Article], errors: list[DataError]) -> list[Article]:
        """Settle ids and slugs that more than one file asks for (see duplicates); an
        article published as read is its file's last good version."""
        self._recall_clashing(candidates)
        kept = duplicates.settle_ids(candidates, self._published_with, errors)
        published = duplicates.settle_slugs(kept, self._published_with, errors)
        for a, out in zip(kept, published, strict=True):
            rec = self._records.get(a.path)
            if rec is a or rec == a:        # published as read, not a last good version
                self._note_good(out, renamed=out is not a)
        return published

    def _published_with(self, a: Article) -> Article | None:
        """The last good version of `a`'s file, the one its feeds hold now, if any."""
        good = self._last_good.get(a.path)
        return good if isinstance(good, Article) else None

    def _note_good(self, article: Article, renamed: bool = False) -> None:
        """`article`, valid and published, is its file's last good version (persisted
        after the load, so a restart has it too).  `renamed`: published with another slug
        than its file asks for, so it is persisted as it is, not as the file's record."""
        good = self._last_good.get(article.path)
        if good is not article and good != article:
            self._last_good[article.path] = article
            self._good_changed[article.path] = (article, renamed)


def _read_and_parse(job: tuple[str, str, FileState, Site, int]) -> tuple[str, str | None, object]:
    """In a worker process: (rel, digest or None, pickled Article or DataError)."""
    root, rel, sig, site, max_bytes = job
    try:
        if isinstance(sig, Unreadable):
            raise DataError(rel, f"cannot be read ({sig.message})")
        raw = loader.read_bytes(root, rel, max_bytes)
    except DataError as e:
        return rel, None, e
    digest = hashlib.sha256(raw).hexdigest()
    try:
        article = loader.parse_article(rel, loader.decode(rel, raw), digest, site, root)
    except DataError as e:
        return rel, digest, e
    return rel, digest, pickle.dumps(article, protocol=5)


def _record_key(rel: str, digest: str, site: Site) -> str:
    """A parsed article depends on its path, its bytes, the site settings and the loader."""
    site_key = _site_key(site, versions.version(versions.RECORDS))
    return hashlib.sha256(f"{site_key}\0{rel}\0{digest}".encode()).hexdigest()


@lru_cache(maxsize=8)
def _site_key(site: Site, loader_version: str) -> str:
    return hashlib.sha256(repr((loader_version, site)).encode()).hexdigest()
