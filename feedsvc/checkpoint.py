"""The checkpoint file: what a restart of the live service resumes from.

`checkpoint-<hash of the data directory>.pickle` in the state directory holds what the
library knew (file signatures, parsed records), the corpus, when the next scheduled
article goes live, and which documents were published (path to recipe, media type and
ETag; their bytes are in the cache).  A restart whose data is unchanged serves those
documents as they are; otherwise the library adopts what it knew and re-reads only the
files that changed (`live.Service`).

A checkpoint is valid only for the code that wrote it (`versions.CHECKPOINT`): one
from another version, or a damaged one, reads as none and costs a full start, nothing
else.  It is written atomically (a temporary file, then a rename), so several workers
writing it at once is harmless.  It names files by inode and mtime, which mean nothing
on another machine: it stays a local file even when the store is PostgreSQL.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
from contextlib import suppress
from dataclasses import dataclass

from . import versions
from .corpus import Corpus

log = logging.getLogger("feedsvc")


@dataclass(frozen=True)
class Checkpoint:
    """What a restart resumes from."""
    library: object                 # corpus.LibraryState (Library.adopt checks it)
    corpus: Corpus
    next_go_live: float | None      # Unix time
    documents: dict[str, tuple[str, str, str]]     # path: (recipe, media type, ETag)


def path(state_dir: str, data_dir: str) -> str:
    """The checkpoint file of `data_dir` in `state_dir`."""
    name = hashlib.sha256(os.fsencode(os.path.abspath(data_dir))).hexdigest()
    return os.path.join(state_dir, f"checkpoint-{name[:16]}.pickle")


def dumps(checkpoint: Checkpoint) -> bytes:
    return pickle.dumps({
        "code": versions.version(versions.CHECKPOINT), "library": checkpoint.library,
        "corpus": checkpoint.corpus, "next_go_live": checkpoint.next_go_live,
        "documents": checkpoint.documents}, protocol=5)


def write(where: str, blob: bytes) -> None:
    """Replace the file `where` with `blob` at once; OSError if it cannot be written."""
    tmp = f"{where}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(where), exist_ok=True)     # deleted while running?
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, where)
    except OSError:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def read(where: str) -> Checkpoint | None:
    """The checkpoint in `where`; None when there is none, another version of feedsvc
    wrote it, or it is damaged (said in the log)."""
    try:
        with open(where, "rb") as f:
            state = pickle.load(f)  # noqa: S301 - our own state directory
    except FileNotFoundError:           # the first start with this state directory
        return None
    except Exception:                   # damaged: it costs a full start, nothing else
        log.warning("ignoring the unreadable checkpoint %s", where)
        return None
    if not isinstance(state, dict) or state.get("code") != versions.version(versions.CHECKPOINT):
        return None                     # another version of feedsvc wrote it: start afresh
    try:
        found = Checkpoint(state["library"], state["corpus"], state["next_go_live"],
                           state["documents"])
    except KeyError:
        log.warning("ignoring the checkpoint %s: a part of it is missing", where)
        return None
    if not isinstance(found.corpus, Corpus) or not isinstance(found.documents, dict):
        log.warning("ignoring the checkpoint %s: not one this feedsvc reads", where)
        return None
    return found
