"""Records: every data file parsed (an Article, Person, category table or DataError), the
last good version of every article, and who keeps an id or slug that several ask for.

An article file that turns invalid keeps publishing its last good version (its error
is reported) until it is fixed or deleted.  The last good versions are persisted in
the cache after each load, by path, so a restart with a broken file publishes what the
last process published.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache

from . import datafile, duplicates, loader, versions, workers
from .cache import Cache
from .model import Article, DataError, Person, Site
from .names import CATEGORIES_FILE
from .scan import SITE_FILE, FileState, Signatures, Unreadable

PARALLEL_PARSE = 1000        # files to parse before a load uses every core

Record = Article | Person | dict | DataError | None    # (None: site.yml, read elsewhere)


@dataclass
class Records:
    """The parsed files of one data directory and their last good versions."""
    root: str
    max_file_bytes: int
    cache: Cache | None = None
    parsed: dict[str, Record] = field(default_factory=dict)     # rel -> record or DataError
    last_good: dict[str, Record] = field(default_factory=dict)  # rel -> last valid record
    reads: int = 0                              # files (re)parsed, for tests and bench
    # rel -> (article, renamed): last good versions to persist after this load
    _good_changed: dict[str, tuple[Article, bool]] = field(default_factory=dict)

    # -- reading ----------------------------------------------------------------
    def drop(self, gone: list[str], persisted: bool) -> None:
        """Forget deleted files, and (`persisted`) their persisted last good versions:
        there is nothing to fall back on."""
        for rel in gone:
            self.parsed.pop(rel, None)
            self.last_good.pop(rel, None)
        if self.cache and persisted and gone:
            self.cache.delete("records", [self.good_key(rel) for rel in gone])

    def parse(self, sigs: Signatures, changed: list[str], site: Site,
              unchanged: set[str]) -> None:
        """Parse the changed files (and note the last good versions of those that are not
        articles).  `unchanged`: racy files whose signature did not change, only checked."""
        for rel in changed:
            if not rel.startswith(("articles/", "media/")):
                rec = self.parsed[rel] = self._parse_other(rel, sigs[rel])
                if rec is not None and not isinstance(rec, DataError):
                    self.last_good[rel] = rec
        articles = [rel for rel in changed if rel.startswith("articles/")]
        self.parsed.update(self._parse_articles(articles, sigs, site, unchanged))

    def measure_images(self, site: Site) -> None:
        """A media file changed: every article's image length again."""
        for store in (self.parsed, self.last_good):
            for rel, rec in store.items():
                if isinstance(rec, Article) and rec.image:
                    store[rel] = self._with_image(rec, site)

    def _parse_other(self, rel: str, sig: FileState) -> Record:
        self.reads += 1
        if rel == SITE_FILE:
            return None
        try:
            if isinstance(sig, Unreadable):
                raise DataError(rel, f"cannot be read ({sig.message})")
            text, _ = datafile.read_text(self.root, rel, self.max_file_bytes)
            if rel == CATEGORIES_FILE:
                return loader.parse_categories(rel, text)
            return loader.parse_person(rel, text)
        except DataError as e:
            return e

    def _parse_articles(self, rels: list[str], sigs: Signatures, site: Site,
                        unchanged: set[str]) -> dict[str, Record]:
        """Read every file; parse only those whose bytes the record cache has not seen
        (a cold start, with many files, parses all of them on every core)."""
        checked = [rel for rel in rels if rel in unchanged]
        moved = [rel for rel in rels if rel not in unchanged]
        if len(moved) >= PARALLEL_PARSE and workers.cores() > 1:
            return {**self._parse_on_every_core(moved, sigs, site),
                    **self._parse_in_process(checked, sigs, site)}
        return self._parse_in_process(rels, sigs, site)

    def _parse_in_process(self, rels: list[str], sigs: Signatures, site: Site
                          ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        raws: dict[str, bytes] = {}
        for rel in rels:
            try:
                raws[rel] = _read(self.root, rel, sigs[rel], self.max_file_bytes)
            except DataError as e:
                out[rel] = e
        digests = {rel: hashlib.sha256(raw).hexdigest() for rel, raw in raws.items()}
        keys = {rel: record_key(rel, digest, site) for rel, digest in digests.items()}
        known = self.cache.get_records(list(keys.values())) if self.cache and keys else {}
        fresh: dict[str, object] = {}
        for rel, raw in raws.items():
            rec = known.get(keys[rel])
            if isinstance(rec, Article):            # these very bytes parsed fine before
                out[rel] = self._with_image(rec, site)
                continue
            self.reads += 1
            try:
                out[rel] = fresh[keys[rel]] = loader.parse_article(
                    rel, datafile.decode(rel, raw), digests[rel], site, self.root)
            except DataError as e:
                out[rel] = e
        if self.cache:
            self.cache.put_records(fresh)
        return out

    def _parse_on_every_core(self, rels: list[str], sigs: Signatures, site: Site
                             ) -> dict[str, Record]:
        """Worker processes read and parse the files and send back pickled records; this
        process unpacks them as they arrive, and the record cache stores them as sent."""
        jobs = [(self.root, rel, sigs[rel], site, self.max_file_bytes) for rel in rels]
        out: dict[str, Record] = {}
        fresh: dict[str, bytes] = {}
        for rel, digest, made in workers.imap(_read_and_parse, jobs):
            self.reads += digest is not None
            if isinstance(made, DataError):
                out[rel] = made
            else:                           # (a file read has a digest)
                assert digest is not None
                out[rel] = pickle.loads(made)  # noqa: S301 - our own worker's pickle
                fresh[record_key(rel, digest, site)] = made
        if self.cache:              # written while the build goes on
            self.cache.put_pickled_later(fresh)
        return out

    def _with_image(self, article: Article, site: Site) -> Article:
        if not article.image:                       # the image file may have changed alone
            return article
        return replace(article, image_length=loader.local_length(article.image, site, self.root))

    # -- last good versions -------------------------------------------------------
    def recall_last_good(self, changed: list[str], site: Site) -> None:
        """A file that is bad when we start may have been published before: find the
        version an earlier process published, so a restart does not unpublish it."""
        self._recall([rel for rel in changed if rel.startswith("articles/")
                      and isinstance(self.parsed.get(rel), DataError)], site)

    def unique(self, candidates: list[Article], errors: list[DataError],
               site: Site) -> list[Article]:
        """Settle ids and slugs that more than one file asks for (see duplicates); an
        article published as read is its file's last good version.  After a restart,
        which of two files was published first is known only to the persisted last good
        records: those of the clashing files are fetched first."""
        ids = Counter(a.id for a in candidates)
        slugs = Counter(a.slug for a in candidates)
        self._recall([a.path for a in candidates if ids[a.id] > 1 or slugs[a.slug] > 1], site)
        kept = duplicates.settle_ids(candidates, self.published_with, errors)
        published = duplicates.settle_slugs(kept, self.published_with, errors)
        for a, out in zip(kept, published, strict=True):
            rec = self.parsed.get(a.path)
            if rec is a or rec == a:        # published as read (`is`: a fast path only)
                self.note_good(out, renamed=out.slug != a.slug)
        return published

    def published_with(self, a: Article) -> Article | None:
        """The last good version of `a`'s file, the one its feeds hold now, if any."""
        good = self.last_good.get(a.path)
        return good if isinstance(good, Article) else None

    def note_good(self, article: Article, renamed: bool = False) -> None:
        """`article`, valid and published, is its file's last good version (persisted
        after the load, so a restart has it too).  `renamed`: published with another slug
        than its file asks for, so it is persisted as it is, not as the file's record."""
        good = self.last_good.get(article.path)
        if good is not article and good != article:    # (`is`: a fast path)
            self.last_good[article.path] = article
            self._good_changed[article.path] = (article, renamed)

    def persist_good(self, site: Site) -> None:
        """A restart must remember the last good versions noted by this load too, by
        reference (worked out by the cache's writer thread)."""
        if self.cache and self._good_changed:
            goods = self._good_changed
            self.cache.put_records_later(lambda: {
                self.good_key(rel): a if renamed else record_key(rel, a.digest, site)
                for rel, (a, renamed) in goods.items()})
        self._good_changed = {}

    def _recall(self, rels: list[str], site: Site) -> None:
        """Fill in the persisted last good records of `rels` this process does not know."""
        unknown = [rel for rel in rels if rel not in self.last_good]
        if not (self.cache and unknown):
            return
        refs = self.cache.get_records([self.good_key(rel) for rel in unknown])
        found = self.cache.get_records([k for k in refs.values() if isinstance(k, str)])
        for rel in unknown:
            ref = refs.get(self.good_key(rel))
            good = ref if isinstance(ref, Article) else found.get(str(ref))
            if isinstance(good, Article):
                # made again from its fields: another version of feedsvc may have
                # pickled it, without what __post_init__ works out now
                self.last_good[rel] = self._with_image(replace(good), site)

    def good_key(self, rel: str) -> str:
        """Where the last good version of `rel` is noted: by path alone, so it survives a
        change of site settings and an upgrade of feedsvc (a record keyed by another
        version of either is still found through the reference it holds)."""
        return hashlib.sha256(os.fsencode(f"last good\0{self.root}\0{rel}")).hexdigest()


def _read(root: str, rel: str, sig: FileState, max_bytes: int) -> bytes:
    if isinstance(sig, Unreadable):
        raise DataError(rel, f"cannot be read ({sig.message})")
    return datafile.read_bytes(root, rel, max_bytes)


def _read_and_parse(job: tuple[str, str, FileState, Site, int]
                    ) -> tuple[str, str | None, bytes | DataError]:
    """In a worker process: (rel, digest or None, pickled Article or DataError)."""
    root, rel, sig, site, max_bytes = job
    try:
        raw = _read(root, rel, sig, max_bytes)
    except DataError as e:
        return rel, None, e
    digest = hashlib.sha256(raw).hexdigest()
    try:
        article = loader.parse_article(rel, datafile.decode(rel, raw), digest, site, root)
    except DataError as e:
        return rel, digest, e
    return rel, digest, pickle.dumps(article, protocol=5)


def record_key(rel: str, digest: str, site: Site) -> str:
    """A parsed article depends on its path, its bytes, the site settings and the loader."""
    site_key = _site_key(site, versions.version(versions.RECORDS))
    return hashlib.sha256(f"{site_key}\0{rel}\0{digest}".encode()).hexdigest()


@lru_cache(maxsize=8)
def _site_key(site: Site, loader_version: str) -> str:
    return hashlib.sha256(repr((loader_version, site)).encode()).hexdigest()
