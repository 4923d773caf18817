"""Stat signatures of the data directory's files: the walk, the rescan of event paths,
and which files are too recent to trust.

A file's state is a typed value: its `Signature` (time, size, inode, whether it is a
link), `Unreadable(message)` when it cannot be stat'ed, or `UNSETTLED` for a signature an
earlier process saw too close to its walk to trust.  Two states compare equal exactly
when nothing suggests the file changed.  Nothing here reads a file or keeps state: the
corpus's `Library` decides what to re-read from what these functions return.
"""
from __future__ import annotations

import enum
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .model import DataError
from .names import CATEGORIES_FILE

SITE_FILE = "site.yml"
RACY_SECONDS = 3.0           # a file this much younger than a load is read again next time
MAX_DEPTH = 32      # folders a data file may lie below (articles/ is the first)
# `feedsvc serve` reads a media file whole into memory for each GET (web.media_response:
# streaming it would hold granian's one WSGI thread for as long as a slow client reads),
# so a worker holds about 1.25x a file's size per client still reading it.  Up to 32 MB
# that is a few clients' worth of a small box's memory; above it a file is still served,
# with a warning that nginx (`feedsvc build`) should serve it.
LARGE_MEDIA_BYTES = 32 << 20


class Signature(NamedTuple):
    """What a stat says of a file: a change of any field means it is read again."""
    mtime_ns: int
    size: int
    inode: int
    link: bool              # a symbolic link (the other fields are its target's)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A file the walk found but could not stat (a dangling link, a vanished file)."""
    message: str            # the system's reason, as in "cannot be read (<message>)"


@dataclass(frozen=True, slots=True)
class Unsettled:
    """A signature adopted from an earlier process, dated too close to the walk that saw
    it to be trusted: no scan gives this state, so the file is read again if it is still
    there (and dropped with its record if it is gone)."""


UNSETTLED = Unsettled()
FileState = Signature | Unreadable | Unsettled
Signatures = dict[str, FileState]


class Walk(NamedTuple):
    """What one walk of the data directory found."""
    sigs: Signatures
    errors: list[DataError]     # names, depths and folders the walk skipped or kept


class Rescanned(NamedTuple):
    """Signatures with the files at some event paths stat'ed again."""
    sigs: Signatures
    touched: frozenset[str]     # the only files whose states may differ from those given


class Recent(NamedTuple):
    """Files dated too close to a load to trust, and files dated after it."""
    racy: set[str]
    future: set[str]


def walk(root: str, known: Mapping[str, FileState]) -> Walk:
    """Signatures of every data file below `root` (dot files and folders, backups~ and
    folders the service does not read are skipped).  The files of a folder that cannot
    be listed keep their `known` states: what we cannot list is not deleted."""
    if not os.path.isdir(root):
        raise DataError(".", f"data directory {root} is missing or not a directory")
    found = Walk({}, [])
    unreadable: dict[str, str] = {}
    # depth first, each folder's entries in name order, without recursion: a tree
    # of a thousand nested folders must not take the process's stack with it
    stack = [_listing(root, "", unreadable)]
    while stack:
        rel_dir, entries = stack[-1]
        e = next(entries, None)
        if e is None:
            stack.pop()
            continue
        if e.name.startswith(".") or e.name.endswith("~"):
            continue
        listing = _visit(root, e, f"{rel_dir}/{e.name}" if rel_dir else e.name, found,
                         unreadable)
        if listing is not None:
            stack.append(listing)
    sigs = {rel: sig for rel, sig in found.sigs.items() if wanted(rel)}
    _keep_unlisted(sigs, known, unreadable, found.errors)
    return Walk(sigs, found.errors)


def _keep_unlisted(sigs: Signatures, known: Mapping[str, FileState],
                   unreadable: dict[str, str], errors: list[DataError]) -> None:
    """What we cannot list is not deleted: the files below a folder that could not be
    listed keep their `known` states."""
    for folder, reason in unreadable.items():
        prefix = folder + "/" if folder else ""
        sigs.update((rel, sig) for rel, sig in known.items()
                    if rel.startswith(prefix) and rel not in sigs)
        errors.append(DataError(folder or ".", f"cannot be listed ({reason}); "
                                               "its files keep their last version"))


def _visit(root: str, e: os.DirEntry, rel: str, found: Walk,
           unreadable: dict[str, str]) -> tuple[str, Iterator] | None:
    """Note the file `e`; the listing of the folder `e` when the walk enters it."""
    try:
        if not e.is_dir(follow_symlinks=False):
            _note_file(root, e, rel, found)
        elif _entered(rel):
            return _folder(e, rel, found.errors, unreadable)
    except OSError as err:  # dangling symlink, vanished file
        found.sigs[rel] = Unreadable(_reason(err))
    return None


def _entered(rel: str) -> bool:
    """Whether the walk looks into the folder `rel`."""
    return rel in ("articles", "authors", "media") or rel.startswith(("articles/", "media/"))


def _folder(e: os.DirEntry, rel: str, errors: list[DataError],
            unreadable: dict[str, str]) -> tuple[str, Iterator] | None:
    """The listing of a folder to enter, or None (with an error) when it is skipped."""
    problem = _bad_name(e.name, "folder") or (_TOO_DEEP if rel.count("/") >= MAX_DEPTH else "")
    if problem:
        errors.append(DataError(_shown(rel), problem))
        return None
    return _listing(e.path, rel, unreadable)


def _note_file(root: str, e: os.DirEntry, rel: str, found: Walk) -> None:
    """Note the signature of the file `e` (and what is wrong with it, if anything)."""
    problem = _bad_name(e.name, "file")
    if problem:
        if wanted(_shown(rel)):
            found.errors.append(DataError(_shown(rel), problem,
                                          warning=rel.startswith("media/")))
        return
    link = e.is_symlink()
    st = e.stat(follow_symlinks=True) if link else e.stat()
    sig = found.sigs[rel] = Signature(st.st_mtime_ns, st.st_size, st.st_ino, link)
    if large_media(rel, sig):
        found.errors.append(large_media_warning(rel, st.st_size))
    if link and rel.startswith("media/") and not _inside(os.path.join(root, "media"), e.path):
        found.errors.append(DataError(rel, "is a symlink pointing outside media/: it is not "
                                           "served under /media/; copy the file in instead"))


class _Step(enum.Enum):
    """What a rescan does with a path a file event names (see `_step`)."""
    WALK = "walk"       # a walk is needed after all
    SKIP = "skip"       # the walk would not see it either
    STAT = "stat"       # stat it again


def rescan(root: str, sigs: Mapping[str, FileState], paths: Iterable[str]) -> Rescanned | None:
    """`sigs` with the files at `paths` (absolute, from file events) stat'ed again: a save
    costs a few stats instead of a walk of the whole tree.  None when a walk is needed
    after all (a folder was among them, or a path the walk would see differently).
    Links among `sigs` are the caller's to rule out: a link's target may change under
    another name."""
    out = dict(sigs)
    touched: set[str] = set()
    root = os.path.abspath(root)
    for path in paths:
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        step = _step(rel, sigs)
        if step is _Step.WALK:
            return None
        if step is _Step.STAT and not _restat(path, rel, out, touched):
            return None
    return Rescanned(out, frozenset(touched))


def _step(rel: str, sigs: Mapping[str, FileState]) -> _Step:
    """What a rescan does with the event path `rel`, before looking at the file."""
    parts = rel.split("/")
    if rel == ".":
        return _Step.WALK
    if rel.startswith("../") or rel == "..":
        return _Step.SKIP                           # outside the data directory
    if large_media(rel, sigs.get(rel)):
        return _Step.WALK                           # the walk reports it: no more, now
    if any(p.startswith(".") or p.endswith("~") for p in parts):
        return _Step.SKIP                           # what the walk skips
    if len(parts) > 1 and parts[0] not in ("articles", "authors", "media"):
        return _Step.SKIP                           # a folder the walk does not enter
    if len(parts) > MAX_DEPTH + 1:
        return _Step.SKIP                           # below a folder too deep to enter
    if any(_BAD_NAME_CHARS.search(p) for p in parts):
        return _Step.WALK                           # the walk reports it, or its folder
    return _Step.STAT


def _restat(path: str, rel: str, out: Signatures, touched: set[str]) -> bool:
    """Stat `path` again into `out` (noting `rel` in `touched` when its state may have
    changed); False when a walk is needed after all."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        if any(r.startswith(rel + "/") for r in out):
            return False                            # a folder went away
        out.pop(rel, None)
        touched.add(rel)
        return True
    except OSError as err:
        if wanted(rel):
            out[rel] = Unreadable(_reason(err))
            touched.add(rel)
        return True
    if stat.S_ISDIR(lst.st_mode):
        return False                                # a new folder: walk it
    if not wanted(rel):
        return True
    link = stat.S_ISLNK(lst.st_mode)
    touched.add(rel)
    try:
        st = os.stat(path) if link else lst
        out[rel] = Signature(st.st_mtime_ns, st.st_size, st.st_ino, link)
    except OSError as err:                          # a dangling symlink
        out[rel] = Unreadable(_reason(err))
    return not large_media(rel, out[rel])           # the walk reports it


def recent(sigs: Mapping[str, FileState], candidates: Iterable[str], started: float) -> Recent:
    """Which of `candidates` are dated within RACY_SECONDS before `started` (a file
    modified within a few seconds of being read may change again within its timestamp's
    resolution, coarse on network file systems, without its signature changing) or after
    it (no clue either way: looked at again on each load until it is past)."""
    since, now = (started - RACY_SECONDS) * 1e9, started * 1e9
    found = Recent(set(), set())
    for rel in candidates:
        sig = sigs[rel]
        if isinstance(sig, Signature) and sig.mtime_ns >= since:
            (found.racy if sig.mtime_ns <= now else found.future).add(rel)
    return found


def has_links(sigs: Iterable[FileState]) -> bool:
    """Whether any of these states is a symbolic link's."""
    return any(isinstance(sig, Signature) and sig.link for sig in sigs)


def settled(sig: FileState, before_ns: float) -> FileState:
    """`sig` if it is a signature dated before `before_ns`, else UNSETTLED."""
    return sig if isinstance(sig, Signature) and sig.mtime_ns < before_ns else UNSETTLED


def large_media(rel: str, sig: FileState | None) -> bool:
    """Whether the file `rel` in state `sig` is a media file over LARGE_MEDIA_BYTES."""
    return rel.startswith("media/") and isinstance(sig, Signature) \
        and sig.size > LARGE_MEDIA_BYTES


def large_media_warning(rel: str, size: int) -> DataError:
    return DataError(rel, f"is {size / 2 ** 20:.1f} MB, over {LARGE_MEDIA_BYTES >> 20} MB: "
                          "feedsvc serve reads a media file whole into memory for each "
                          "request; serve large files from nginx (feedsvc build) or a CDN",
                     warning=True)


def wanted(rel: str) -> bool:
    """Whether the service reads the file `rel` (relative to the data directory)."""
    if rel in (SITE_FILE, CATEGORIES_FILE):
        return True
    if rel.startswith("authors/"):
        return rel.count("/") == 1 and rel.endswith((".yml", ".yaml"))
    if rel.startswith("media/"):        # scanned so an image edit updates enclosure lengths
        return True
    return rel.startswith("articles/") and rel.endswith(".md")


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def _inside(folder: str, path: str) -> bool:
    """Whether `path`, links resolved, is `folder` or below it (as web.py serves media)."""
    real = os.path.realpath(folder)
    return os.path.commonpath([real, os.path.realpath(path)]) == real


_TOO_DEEP = (f"is nested more than {MAX_DEPTH} folders deep; its files are skipped "
             "(move them up)")
# what no file name should hold: bytes that are not UTF-8 (read as lone surrogates),
# control characters (a line break would split a `path: message` line in two)
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _listing(path: str, rel: str, unreadable: dict[str, str]) -> tuple[str, Iterator]:
    """(rel, the folder's entries in name order); an unlistable folder is noted, empty."""
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda entry: entry.name)
    except OSError as err:
        unreadable[rel] = _reason(err)
        entries = []
    return rel, iter(entries)


def _bad_name(name: str, kind: str) -> str:
    """Why the walk skips a file or folder of this name ("" if it does not)."""
    if name.isprintable() or not _BAD_NAME_CHARS.search(name):   # the first: ~20x faster
        return ""
    what = "its files are skipped" if kind == "folder" else "it is skipped"
    if any("\ud800" <= c <= "\udfff" for c in name):
        return f"the {kind} name is not valid UTF-8; rename it ({what})"
    return f"the {kind} name holds control characters; rename it ({what})"


def _shown(rel: str) -> str:
    """`rel` safe to print: bytes that are not UTF-8 as \\xNN, control characters escaped."""
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    return _BAD_NAME_CHARS.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
