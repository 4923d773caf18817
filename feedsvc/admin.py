"""Admin access: the password, the session cookie, CSRF tokens and the login rate limit.

`feedsvc admin set-password` stores an argon2id hash (argon2-cffi) in the state
directory (`admin-password`, mode 0600).  A login gives a session cookie signed
with a random key of the state directory (`admin-secret`; itsdangerous, as
Flask's own sessions): HttpOnly, SameSite=Strict, Secure when the request came
over TLS or the base URL is https, valid 12 hours, only while the password is
the one it was given for, and not after its logout (ended sessions are kept in
`admin.sqlite` until they would have expired).  Every POST carries a CSRF token derived from the
session (or, on the login form, from a cookie set with the form), and a
cross-site Sec-Fetch-Site or a foreign Origin is refused.  Failed logins are
counted in `admin.sqlite` by a keyed hash of the address (behind a proxy, with
`stats_forwarded_for`, the one it forwarded for): 5 per address or 100 in all
within 15 minutes, then 429 until the window passes.

`logged_in(request)` and `require_login(view)` are what other pages use.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Request, Response, current_app, redirect, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from . import statefile

log = logging.getLogger("feedsvc")
PASSWORD_FILE = "admin-password"    # noqa: S105 - a file name
SECRET_FILE = "admin-secret"        # noqa: S105 - a file name
SESSION = "feedsvc_admin"
LOGIN = "feedsvc_login"
SESSION_SECONDS = 12 * 3600
WINDOW_SECONDS = 15 * 60
PER_ADDRESS, OVERALL = 5, 100


def _style_source(name: str) -> str:
    text = (Path(__file__).parent / "templates" / name).read_text("utf-8")
    found = re.search(r"<style>(.*?)</style>", text, re.DOTALL)
    assert found, f"templates/{name}: the admin pages' <style> element is missing"
    return "'sha256-" + base64.b64encode(hashlib.sha256(found.group(1).encode()).digest()) \
        .decode() + "'"


# the admin pages' own stylesheets (the status page has its own), forms posting to this
# site only, still no script
CSP = (f"default-src 'none'; style-src {_style_source('admin.html')} "
       f"{_style_source('status.html')}; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _write_private(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def set_password(state_dir: str, password: str) -> None:
    """Store the argon2 hash of `password`; sessions given for the old one end."""
    if len(password) < 10:
        raise ValueError("the admin password needs at least 10 characters")
    os.makedirs(state_dir, exist_ok=True)
    _write_private(os.path.join(state_dir, PASSWORD_FILE),
                   PasswordHasher().hash(password).encode())


def _password_hash(state_dir: str) -> str | None:
    try:
        return Path(state_dir, PASSWORD_FILE).read_text("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _secret(state_dir: str) -> bytes:
    """The key sessions and tokens are signed with, made once per state directory.  A
    key file of the wrong size is replaced (its sessions end); a state directory that
    cannot be written gives a key of this process only (each worker its own: a login
    then holds on one worker only), logged."""
    path = os.path.join(state_dir, SECRET_FILE)
    try:
        os.makedirs(state_dir, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):             # another worker may be writing it: bounded wait
                data = Path(path).read_bytes()
                if len(data) == 32:
                    return data
                time.sleep(0.01)
            log.warning("%s: not a 32-byte key; made a new one (admin sessions end)", path)
            _write_private(path, secrets.token_bytes(32))
            return Path(path).read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        return Path(path).read_bytes()
    except OSError as e:
        log.warning("%s: cannot be used (%s); admin sessions hold in one worker only", path, e)
        return secrets.token_bytes(32)


class Admin:
    """The admin access of one state directory (see the module docstring)."""

    def __init__(self, state_dir: str, secure: bool, forwarded_for: bool = False):
        self.state_dir = state_dir
        self.secure = secure
        self.forwarded_for = forwarded_for
        self.key = _secret(state_dir)
        self.signer = URLSafeTimedSerializer(self.key, salt="feedsvc-admin-session")
        self.db = statefile.open_with(
            state_dir, "admin.sqlite", "CREATE TABLE IF NOT EXISTS failures (who TEXT, at REAL);"
            "CREATE TABLE IF NOT EXISTS ended (nonce TEXT PRIMARY KEY, until REAL);")
        self._lock = threading.Lock()

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), "sha256").hexdigest()

    def _fingerprint(self) -> str | None:
        stored = _password_hash(self.state_dir)
        return self._mac("password", stored)[:32] if stored else None

    def session(self, req: Request) -> str | None:
        """The session's nonce if `req` carries a valid session cookie, else None."""
        cookie = req.cookies.get(SESSION)
        fingerprint = self._fingerprint()
        if not cookie or fingerprint is None:
            return None
        try:
            data = self.signer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("p") != fingerprint:
            return None
        nonce = data.get("n")
        if not isinstance(nonce, str):
            return None
        with self._lock:
            ended = self.db.execute("SELECT 1 FROM ended WHERE nonce = ?", (nonce,)).fetchone()
        return None if ended else nonce

    def end(self, nonce: str, now: float) -> None:
        """Log the session `nonce` out for good (kept until it would have expired)."""
        with self._lock:
            self.db.execute("DELETE FROM ended WHERE until < ?", (now,))
            self.db.execute("INSERT OR IGNORE INTO ended VALUES (?, ?)",
                            (nonce, now + SESSION_SECONDS))

    def csrf_token(self, req: Request) -> str:
        nonce = self.session(req)
        return self._mac("csrf", nonce) if nonce else ""

    def post_allowed(self, req: Request, token_for: str) -> bool:
        """A POST from this site's own form: same-site fetch metadata and Origin (when
        sent), and the form's token equal to the one expected for `token_for`."""
        if req.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = req.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != req.host:
            return False
        sent = req.form.get("csrf", "")
        return bool(token_for) and hmac.compare_digest(sent, token_for)

    def _who(self, req: Request) -> str:
        """The client, for the rate limit: a keyed hash of its address (behind a proxy,
        with `stats_forwarded_for`, the last X-Forwarded-For entry)."""
        address = req.remote_addr or ""
        forwarded = req.headers.get("X-Forwarded-For")
        if self.forwarded_for and forwarded:
            address = forwarded.rsplit(",", 1)[-1].strip()
        return self._mac("address", address)[:32]

    def throttled(self, req: Request, now: float) -> bool:
        since = now - WINDOW_SECONDS
        with self._lock:
            self.db.execute("DELETE FROM failures WHERE at < ?", (since,))
            mine, every = self.db.execute(
                "SELECT sum(who = ?), count(*) FROM failures", (self._who(req),)).fetchone()
        return (mine or 0) >= PER_ADDRESS or every >= OVERALL

    def check_password(self, req: Request, password: str, now: float) -> bool:
        stored = _password_hash(self.state_dir)
        try:
            good = stored is not None and PasswordHasher().verify(stored, password)
        except (VerificationError, InvalidHashError):
            good = False
        if not good:
            with self._lock:
                self.db.execute("INSERT INTO failures VALUES (?, ?)", (self._who(req), now))
        return good

    def new_session(self) -> str:
        return self.signer.dumps({"p": self._fingerprint(), "n": secrets.token_urlsafe(16)})

    def set_cookie(self, resp: BaseResponse, name: str, value: str, max_age: int | None,
                   req: Request) -> None:
        resp.set_cookie(name, value, max_age=max_age, path="/admin/", httponly=True,
                        samesite="Strict", secure=self.secure or req.is_secure)


def admin() -> Admin:
    return current_app.extensions["feedsvc-admin"]


def logged_in(req: Request) -> bool:
    """Whether `req` carries a valid admin session."""
    return admin().session(req) is not None


def require_login(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view only a logged-in admin reaches; others are sent to the login form."""
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not logged_in(request):
            return redirect("/admin/login", 303)
        return view(*args, **kwargs)
    return wrapped


def page(template: str, status: int = 200, **context: Any) -> Response:
    """An admin page: never cached, framed or scripted."""
    resp = Response(render_template(template, **context), status,
                    content_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = CSP
    return resp


def install(app: Flask, state_dir: str, secure: bool, forwarded_for: bool = False) -> None:
    """Add the login and logout routes, and `csrf_token()` for every admin template."""
    app.extensions["feedsvc-admin"] = Admin(state_dir, secure, forwarded_for)

    @app.context_processor
    def tokens() -> dict[str, Any]:
        return {"csrf_token": lambda: admin().csrf_token(request)}

    @app.get("/admin/login")
    def login_form() -> Response:
        value = secrets.token_urlsafe(16)
        resp = page("admin_login.html", token=admin()._mac("login", value), error="")
        admin().set_cookie(resp, LOGIN, value, 3600, request)
        return resp

    @app.post("/admin/login")
    def login() -> BaseResponse:
        adm, now = admin(), time.time()
        expected = adm._mac("login", request.cookies.get(LOGIN, "-"))
        if not adm.post_allowed(request, expected):
            return page("admin_login.html", 403, token="", error="The form expired: reload it.")
        if adm.throttled(request, now):
            slow = page("admin_login.html", 429, token=expected,
                        error="Too many failed logins: try again in 15 minutes.")
            slow.headers["Retry-After"] = str(WINDOW_SECONDS)
            return slow
        if not adm.check_password(request, request.form.get("password", ""), now):
            return page("admin_login.html", 403, token=expected, error="Wrong password.")
        resp = redirect("/admin/stats", 303)
        adm.set_cookie(resp, SESSION, adm.new_session(), SESSION_SECONDS, request)
        resp.delete_cookie(LOGIN, path="/admin/")
        return resp

    @app.post("/admin/logout")
    def logout() -> BaseResponse:
        adm = admin()
        if not adm.post_allowed(request, adm.csrf_token(request)):
            return page("admin_login.html", 403, token="", error="The form expired: reload it.")
        nonce = adm.session(request)
        if nonce:
            adm.end(nonce, time.time())     # a copy of the cookie is worth nothing now
        resp = redirect("/admin/login", 303)
        resp.delete_cookie(SESSION, path="/admin/")
        return resp

    @app.after_request
    def admin_headers(resp: Response) -> Response:
        if request.path.startswith("/admin/"):
            resp.headers["Content-Security-Policy"] = CSP
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["X-Frame-Options"] = "DENY"
        return resp
