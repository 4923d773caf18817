"""The text of one data file, read safely: no link out of the data directory, no
non-file, no more than the size limit, UTF-8 only, and none of the characters XML
forbids (removed as soon as the text is decoded, so nothing downstream has to care).
Also an article's body, read again from its file when it is rendered.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat

from .model import DataError

# XML 1.0 forbids C0 controls except tab/newline/return, surrogates and U+FFFE/U+FFFF.
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.S)

_C0_FORBIDDEN = bytes(range(0x20)).translate(None, b"\t\n\r")
_READ_STEP = 1 << 16


def clean(text: str, utf8: bytes | None = None) -> str:
    """`text` without the characters XML 1.0 forbids (`utf8`: its UTF-8 bytes, if at hand).
    Most texts have none: a regex scan of a body costs about 17 us, this check about 6
    (encoding fails on a lone surrogate, and the C0 controls are single bytes in UTF-8)."""
    if utf8 is None:
        try:
            utf8 = text.encode()
        except UnicodeEncodeError:
            return XML_FORBIDDEN.sub("", text)
    if len(utf8.translate(None, _C0_FORBIDDEN)) == len(utf8) and \
            "\ufffe" not in text and "\uffff" not in text:
        return text
    return XML_FORBIDDEN.sub("", text)


def read_bytes(root: str, rel: str, max_bytes: int) -> bytes:
    """The bytes of data file `rel`, refusing links out of the data directory and non-files."""
    path = os.path.join(root, rel)
    if os.path.islink(path):        # the walk never enters linked folders: only files can be
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise DataError(rel, "is a symlink pointing outside the data directory")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DataError(rel, "cannot be read (not a regular file)")
            # read what fstat says is there, then what a writer may have added since, in
            # small steps: os.read allocates what it is asked for, and a buffer as large as
            # the limit (1 GB for bodies) costs a page mapping per file, most of a read
            raw = os.read(fd, min(st.st_size, max_bytes) + 1)
            if len(raw) <= max_bytes:
                chunks, size = [raw], len(raw)
                while size <= max_bytes:
                    more = os.read(fd, min(_READ_STEP, max_bytes + 1 - size))
                    if not more:
                        break
                    chunks.append(more)
                    size += len(more)
                raw = b"".join(chunks) if len(chunks) > 1 else raw
        finally:
            os.close(fd)
    except OSError as e:
        raise DataError(rel, f"cannot be read ({e.strerror})") from None
    if len(raw) > max_bytes:
        raise DataError(rel, f"is larger than the {max_bytes}-byte limit (FEEDSVC_MAX_FILE_BYTES)")
    return raw


def decode(rel: str, raw: bytes) -> str:
    """UTF-8 text cleaned of what XML forbids, or a DataError saying why not."""
    if not raw.strip():
        raise DataError(rel, "is empty")
    if b"\x00" in raw:
        raise DataError(rel, "is a binary file, not UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(rel, f"is not valid UTF-8 (byte {e.start})") from None
    return clean(text, raw)


def read_text(root: str, rel: str, max_bytes: int) -> tuple[str, str]:
    """Return (text, sha256) of data file `rel`, refusing what we cannot publish."""
    raw = read_bytes(root, rel, max_bytes)
    return decode(rel, raw), hashlib.sha256(raw).hexdigest()


def body_at(root: str, rel: str, digest: str) -> str | None:
    """The body of data file `rel` if its bytes still have `digest`, else None."""
    try:
        raw = read_bytes(root, rel, 1 << 30)
    except DataError:
        return None
    if hashlib.sha256(raw).hexdigest() != digest:
        return None
    text = decode(rel, raw)
    m = FRONT_MATTER.match(text)
    return text[m.end():] if m else None
