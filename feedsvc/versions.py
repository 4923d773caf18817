"""What each cache's values are made by, as one version string per cache.

A cached value (a parsed record, a rendered body, a document, a checkpoint) is valid
only for the code and the libraries that made it.  Each cache's version is a hash of
the source of the modules that shape its values and of the installed versions of the
libraries that do, so an edit of that code or an upgrade of one of those libraries
misses every entry made before it: nothing to bump by hand, nothing forgotten.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed_version
from pathlib import Path

PACKAGE = Path(__file__).parent


@dataclass(frozen=True)
class Makers:
    """The package files (glob patterns relative to the package) and the distributions
    (names as pip knows them) that shape one cache's values."""
    files: tuple[str, ...]
    libraries: tuple[str, ...]

    def __add__(self, other: Makers) -> Makers:
        return Makers(self.files + other.files, self.libraries + other.libraries)


# parsed articles (corpus record cache, the library's state in a checkpoint)
RECORDS = Makers(("loader.py", "datafile.py", "safeyaml.py", "model.py"), ("PyYAML", "pytz"))
# rendered bodies (content.body_key)
BODIES = Makers(("content.py", "datafile.py"), ("cmarkgfm", "lxml", "nh3"))
# feeds, pages and the OPML (publish's recipes): made from records and bodies
DOCUMENTS = RECORDS + BODIES + Makers(
    ("corpus.py", "assembly.py", "records.py", "sitefile.py", "names.py", "feeds.py",
     "publish.py", "documents.py", "scopes.py", "recipes.py", "bodies.py", "feedmaker.py",
     "views.py", "htmlpages.py", "splice.py", "templates/*"),
    ("feedgen", "lxml", "orjson", "isal", "Jinja2", "MarkupSafe", "python-slugify"))
# a checkpoint holds what every module knows
CHECKPOINT = DOCUMENTS + Makers(("*.py",), ())


def installed(distribution: str) -> str:
    """The installed version of `distribution`, "" if it is not installed."""
    try:
        return _installed_version(distribution)
    except PackageNotFoundError:
        return ""


@cache
def version(makers: Makers) -> str:
    """The version of the values `makers` make: it changes when one of their files or
    one of their libraries' installed versions does."""
    files = sorted({p for pattern in makers.files for p in PACKAGE.glob(pattern) if p.is_file()})
    libraries = sorted({(name, installed(name)) for name in makers.libraries})
    parts = ([(p.relative_to(PACKAGE).as_posix(), p.read_bytes()) for p in files], libraries)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
