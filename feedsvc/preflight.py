"""Checks an operator's settings against the machine before any long work starts.

`feedsvc serve` and `feedsvc build` run them first, so a mistake costs one line
and a non-zero exit instead of a build followed by a traceback.  Each raises
PreflightError with a message that names the path or port, and the option or
variable that sets it (`where`, from `settings.origin`).
"""
from __future__ import annotations

import errno
import os
import socket
import tempfile

# File systems on which SQLite's WAL mode (shared memory, POSIX locks) is unsafe.
NETWORK_FILE_SYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.davfs2", "fuse.s3fs",
    "fuse.rclone", "fuse.gcsfuse", "fuse.cephfs",
})


class PreflightError(Exception):
    """A check before serving failed; the message names what and the fix."""
    pass


def check_data_dir(path: str, where: str) -> None:
    if not os.path.isdir(path):
        raise PreflightError(f"data directory {path} does not exist or is not a directory; "
                             f"check {where}")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def file_system_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the file system holding `path` (or the nearest existing folder
    above it), from the longest mount point containing it; None if unknown."""
    path = os.path.realpath(path)
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None                     # not Linux, or no /proc: nothing to say
    best, kind = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = _unescape(fields[4])
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):      # later lines stack over earlier ones
            best, kind = mount, right.split()[0]
    return kind


def check_state_dir(path: str, where: str, mountinfo: str = "/proc/self/mountinfo") -> None:
    """The state directory can be created and written, and is not on a network file
    system (SQLite's write-ahead log needs locks and shared memory that they lack)."""
    kind = file_system_type(path, mountinfo)
    if kind in NETWORK_FILE_SYSTEMS:
        raise PreflightError(f"state directory {path} is on a network file system ({kind}), "
                             f"where SQLite cannot keep it safely; choose a local folder "
                             f"with {where}")
    problem = _unwritable(path)
    if problem:
        raise PreflightError(f"state directory {path} cannot be created or written "
                             f"({problem}); fix its permissions or choose another "
                             f"with {where}")


def check_out_dir(path: str) -> None:
    problem = _unwritable(path)
    if problem:
        raise PreflightError(f"output directory {path} cannot be created or written "
                             f"({problem})")


def _unwritable(path: str) -> str:
    """Why a file cannot be written in folder `path` (made if missing), or ""."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return ""


def check_port(host: str, port: int, where: str, host_where: str) -> None:
    """Bind the address once, without SO_REUSEPORT: granian binds with it, so a second
    server on a port another one holds would otherwise start and share the port.

    The socket is closed again before granian binds: a program that takes the port
    in the moment between the two is not caught here (granian then fails)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PreflightError(f"cannot listen on {host!r}: {e.strerror} "
                             f"; check {host_where}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as granian: TIME_WAIT is fine
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PreflightError(f"port {port} is in use on {host} (another feedsvc or "
                                     f"another program); stop it or choose another port "
                                     f"with {where}") from None
            raise PreflightError(f"cannot listen on {host} port {port} ({e.strerror or e}); "
                                 f"check {host_where} and {where}") from None

