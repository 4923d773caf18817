"""The site settings a load uses: site.yml as read, or, while it is bad, the last
settings that were read fine (kept in the cache too, so a restart with site.yml
broken publishes with the settings it was published with)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from . import datafile, loader
from .cache import Cache
from .model import DataError, Site
from .scan import SITE_FILE


@dataclass
class SiteFile:
    """site.yml of one data directory: the settings in use and the error it has now."""
    root: str
    base_url: str
    max_file_bytes: int
    cache: Cache | None = None
    site: Site | None = None            # the settings in use (kept while site.yml is bad)
    error: DataError | None = None      # site.yml is bad: reported on every load
    _text: str | None = None            # the text `site` was read from

    def read(self) -> bool:
        """Read site.yml again; True when the settings in use changed (dates and ids
        depend on them: every file is to be read again).  When it is bad, keep the
        settings in use, or recall the last good ones; raise when there are none."""
        try:
            text, _ = datafile.read_text(self.root, SITE_FILE, self.max_file_bytes)
            site = loader.parse_site(SITE_FILE, text, self.base_url)
        except DataError as e:
            self.error = e
            if self.site is not None:
                return False
            self.site = self._recall()  # as the running process would: the last good one
            if self.site is None:
                raise
            return True
        self.error = None
        changed = site != self.site
        if changed:
            self.site = site
        if self.cache and text != self._text:
            self.cache.put_records_later({self._good_key: text})
        self._text = text
        return changed

    @property
    def _good_key(self) -> str:
        """Where the text of the last site.yml that was read fine is noted (by the data
        directory alone: it stays when site.yml is deleted, as the running site does)."""
        return hashlib.sha256(os.fsencode(f"last good site\0{self.root}")).hexdigest()

    def _recall(self) -> Site | None:
        """The site settings of the last site.yml an earlier process read fine, parsed
        again by this version of feedsvc with this base URL; None if there is none."""
        text = self.cache.get_records([self._good_key]).get(self._good_key) \
            if self.cache else None
        if not isinstance(text, str):
            return None
        try:
            site = loader.parse_site(SITE_FILE, text, self.base_url)
        except DataError:
            return None
        self._text = text
        return site
