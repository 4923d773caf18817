"""What admin access remembers, behind one interface: `AdminStore`, and its files.

Admin access (admin.py) needs four things kept where every worker, and with a
database every instance, sees the same: the password's hash, the key sessions are
signed with, the sessions logged out before they expire, and the failed logins of
the last minutes.  Without `database_url` they live in the state directory
(`FileAdminStore`: two private files and `admin.sqlite`); with it, in PostgreSQL
(`pgadmin.PgAdminStore`), so a login holds on every machine, a logout ends it on
every machine, and the rate limit counts the attempts made on all of them.
`store.open_admin` picks one.
"""
from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from . import statefile

log = logging.getLogger("feedsvc")
PASSWORD_FILE = "admin-password"    # noqa: S105 - a file name
SECRET_FILE = "admin-secret"        # noqa: S105 - a file name
KEY_BYTES = 32


class AdminUnavailable(Exception):
    """The admin store cannot be used now (its database is lost); the message says which."""


class AdminStore(Protocol):
    """Where the admin password's hash, the signing key, ended sessions and failed logins
    are kept.  Every method may raise AdminUnavailable."""
    where: str                  # what messages name: the state directory or the database

    def password_hash(self) -> str | None:
        """The stored argon2 hash, or None if no password was ever set."""
        ...

    def set_password_hash(self, hashed: str) -> None:
        """Store a new hash and forget the failed logins (an operator who sets the
        password after a flood of failures closed the login gets in at once)."""
        ...

    def key(self) -> bytes:
        """The random key sessions and tokens are signed with: made by the first caller,
        the same for every later one."""
        ...

    def is_ended(self, nonce: str) -> bool: ...

    def end(self, nonce: str, until: float, now: float) -> None:
        """Record the session `nonce` as logged out until `until` (forgetting those past)."""
        ...

    def fail(self, who: str, at: float) -> None:
        """Record one failed login of the client `who` (a keyed hash)."""
        ...

    def failures(self, who: str, since: float) -> tuple[int, int]:
        """Failed logins since `since`: of `who`, and of everybody (forgetting older ones)."""
        ...

    def close(self) -> None: ...


def _write_private(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class FileAdminStore:
    """The admin store of one state directory: `admin-password` and `admin-secret` (mode
    0600), and `admin.sqlite` for ended sessions and failed logins.  A key file of the
    wrong size is replaced (its sessions end); a state directory that cannot be written
    gives a key of this process only (each worker its own: a login then holds on one
    worker only), logged."""

    def __init__(self, state_dir: str):
        self.state_dir = self.where = state_dir
        self._key: bytes | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def password_hash(self) -> str | None:
        try:
            return Path(self.state_dir, PASSWORD_FILE).read_text("ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def set_password_hash(self, hashed: str) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        _write_private(os.path.join(self.state_dir, PASSWORD_FILE), hashed.encode())
        self._sql("DELETE FROM failures", ())

    def key(self) -> bytes:
        if self._key is None:
            self._key = self._read_or_make_key()
        return self._key

    def _read_or_make_key(self) -> bytes:
        path = os.path.join(self.state_dir, SECRET_FILE)
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                for _ in range(50):         # another worker may be writing it: bounded wait
                    data = Path(path).read_bytes()
                    if len(data) == KEY_BYTES:
                        return data
                    time.sleep(0.01)
                log.warning("%s: not a %d-byte key; made a new one (admin sessions end)",
                            path, KEY_BYTES)
                _write_private(path, secrets.token_bytes(KEY_BYTES))
                return Path(path).read_bytes()
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(KEY_BYTES))
            return Path(path).read_bytes()
        except OSError as e:
            log.warning("%s: cannot be used (%s); admin sessions hold in one worker only",
                        path, e)
            return secrets.token_bytes(KEY_BYTES)

    def _sql(self, sql: str, args: tuple) -> tuple:
        with self._lock:
            if self._db is None:
                self._db = statefile.open_with(
                    self.state_dir, "admin.sqlite",
                    "CREATE TABLE IF NOT EXISTS failures (who TEXT, at REAL);"
                    "CREATE TABLE IF NOT EXISTS ended (nonce TEXT PRIMARY KEY, until REAL);")
            return self._db.execute(sql, args).fetchone() or ()

    def is_ended(self, nonce: str) -> bool:
        return bool(self._sql("SELECT 1 FROM ended WHERE nonce = ?", (nonce,)))

    def end(self, nonce: str, until: float, now: float) -> None:
        self._sql("DELETE FROM ended WHERE until < ?", (now,))
        self._sql("INSERT OR IGNORE INTO ended VALUES (?, ?)", (nonce, until))

    def fail(self, who: str, at: float) -> None:
        self._sql("INSERT INTO failures VALUES (?, ?)", (who, at))

    def failures(self, who: str, since: float) -> tuple[int, int]:
        self._sql("DELETE FROM failures WHERE at < ?", (since,))
        mine, every = self._sql("SELECT sum(who = ?), count(*) FROM failures", (who,))
        return mine or 0, every

    def close(self) -> None:
        with self._lock:
            statefile.close_quietly(self._db)
            self._db = None
