"""The admin store in PostgreSQL: one login for every instance (`PgAdminStore`).

With `database_url`, the password's hash and the signing key are rows of
`feedsvc_admin_keys`, logged-out sessions rows of `feedsvc_admin_ended` and failed
logins rows of `feedsvc_admin_failures` (`pglink.SCHEMA`).  So a session cookie given
by one instance is good on every other, a logout ends it everywhere, and the login
rate limit counts the attempts made on all of them.  The key is made by the first
instance that needs it (`INSERT ... ON CONFLICT DO NOTHING`, then read back), so two
starting at once agree on it.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar

import psycopg

from .adminstore import KEY_BYTES, AdminUnavailable
from .pglink import PgLink

T = TypeVar("T")


class PgAdminStore:
    """The admin store of every instance sharing one database (see the module
    docstring).  Each method is one transaction; AdminUnavailable while the database
    cannot be used."""

    def __init__(self, url: str):
        self.link = PgLink(url, "admin access")
        self.where = self.link.where
        self._key: bytes | None = None

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        return self.link.run_as(work, lambda why: AdminUnavailable(
            f"{self.where}: admin access cannot use the database now ({why})"))

    def _value(self, name: str) -> bytes | None:
        row = self._run(lambda conn: conn.execute(
            "SELECT value FROM feedsvc_admin_keys WHERE name = %s", (name,)).fetchone())
        return bytes(row[0]) if row else None

    def password_hash(self) -> str | None:
        value = self._value("password")
        return value.decode("ascii", "replace") if value else None

    def set_password_hash(self, hashed: str) -> None:
        def work(conn: psycopg.Connection) -> None:
            conn.execute("INSERT INTO feedsvc_admin_keys VALUES ('password', %s) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                         (hashed.encode(),))
            conn.execute("DELETE FROM feedsvc_admin_failures")
        self._run(work)

    def key(self) -> bytes:
        if self._key is None:
            def made(conn: psycopg.Connection) -> bytes:
                conn.execute("INSERT INTO feedsvc_admin_keys VALUES ('secret', %s) "
                             "ON CONFLICT (name) DO NOTHING",
                             (secrets.token_bytes(KEY_BYTES),))
                row = conn.execute("SELECT value FROM feedsvc_admin_keys "
                                   "WHERE name = 'secret'").fetchone()
                assert row is not None, "inserted in this transaction"
                return bytes(row[0])
            self._key = self._run(made)
        return self._key

    def is_ended(self, nonce: str) -> bool:
        return self._run(lambda conn: conn.execute(
            "SELECT 1 FROM feedsvc_admin_ended WHERE nonce = %s", (nonce,)).fetchone()
        ) is not None

    def end(self, nonce: str, until: float, now: float) -> None:
        def work(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM feedsvc_admin_ended WHERE until < %s", (now,))
            conn.execute("INSERT INTO feedsvc_admin_ended VALUES (%s, %s) "
                         "ON CONFLICT (nonce) DO NOTHING", (nonce, until))
        self._run(work)

    def fail(self, who: str, at: float) -> None:
        self._run(lambda conn: conn.execute(
            "INSERT INTO feedsvc_admin_failures VALUES (%s, %s)", (who, at)))

    def failures(self, who: str, since: float) -> tuple[int, int]:
        def work(conn: psycopg.Connection) -> tuple[int, int]:
            conn.execute("DELETE FROM feedsvc_admin_failures WHERE at < %s", (since,))
            row = conn.execute("SELECT count(*) FILTER (WHERE who = %s), count(*) "
                               "FROM feedsvc_admin_failures", (who,)).fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)
        return self._run(work)

    def close(self) -> None:
        self.link.close()
