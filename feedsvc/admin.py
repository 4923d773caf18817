"""Admin access: the password, the session cookie, CSRF tokens and the login rate limit.

`feedsvc admin set-password` stores an argon2id hash (argon2-cffi) in the admin store
(adminstore.py: the state directory, or with `database_url` the shared database).  A
login gives a session cookie signed with the store's random key (itsdangerous, as
Flask's own sessions): HttpOnly, SameSite=Strict, Secure when the request came over
TLS or the base URL is https, valid 12 hours, only while the password is the one it
was given for, and not after its logout (ended sessions are kept in the store until
they would have expired).  Every POST carries a CSRF token derived from the session
(or, on the login form, from a cookie set with the form), and a cross-site
Sec-Fetch-Site or an Origin naming another host is refused (the scheme is not
compared: behind a TLS proxy the request looks like http).  Failed logins are counted in the store
by a keyed hash of the address (behind a proxy, with `stats_forwarded_for`, the one
it forwarded for): 5 per address or 100 in all within 15 minutes, then 429 until the
window passes.  With a database, all of this holds across instances; while it is
lost, admin pages answer 503 and feeds are served as ever.

`logged_in(request)` and `require_login(view)` are what other pages use.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
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

from .adminstore import AdminStore, AdminUnavailable

log = logging.getLogger("feedsvc")
SESSION = "feedsvc_admin"
LOGIN = "feedsvc_login"
CHECKED = "feedsvc.admin.session"       # the request's session, once worked out (environ)
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


def set_password(store: AdminStore, password: str) -> None:
    """Store the argon2 hash of `password`; sessions given for the old one end."""
    if len(password) < 10:
        raise ValueError("the admin password needs at least 10 characters")
    store.set_password_hash(PasswordHasher().hash(password))


class Admin:
    """The admin access of one app, on one admin store (see the module docstring)."""

    def __init__(self, store: AdminStore, secure: bool, forwarded_for: bool = False):
        self.store = store
        self.secure = secure
        self.forwarded_for = forwarded_for
        self._signer: URLSafeTimedSerializer | None = None

    @property
    def key(self) -> bytes:
        return self.store.key()

    @property
    def signer(self) -> URLSafeTimedSerializer:
        if self._signer is None:
            self._signer = URLSafeTimedSerializer(self.key, salt="feedsvc-admin-session")
        return self._signer

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), "sha256").hexdigest()

    def _fingerprint(self) -> str | None:
        stored = self.store.password_hash()
        return self._mac("password", stored)[:32] if stored else None

    def session(self, req: Request) -> str | None:
        """The session's nonce if `req` carries a valid session cookie, else None: worked
        out once per request (the page and its forms' CSRF token both ask; with a
        database, each answer is two queries)."""
        if CHECKED not in req.environ:
            req.environ[CHECKED] = self._session(req)
        return req.environ[CHECKED]

    def _session(self, req: Request) -> str | None:
        cookie = req.cookies.get(SESSION)
        if not cookie:
            return None
        fingerprint = self._fingerprint()
        if fingerprint is None:
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
        return None if self.store.is_ended(nonce) else nonce

    def end(self, nonce: str, now: float) -> None:
        """Log the session `nonce` out for good (kept until it would have expired)."""
        self.store.end(nonce, now + SESSION_SECONDS, now)

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
        mine, every = self.store.failures(self._who(req), now - WINDOW_SECONDS)
        return mine >= PER_ADDRESS or every >= OVERALL

    def check_password(self, req: Request, password: str, now: float) -> bool:
        stored = self.store.password_hash()
        try:
            good = stored is not None and PasswordHasher().verify(stored, password)
        except (VerificationError, InvalidHashError):
            good = False
        if not good:
            self.store.fail(self._who(req), now)
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


def install(app: Flask, store: AdminStore, secure: bool, forwarded_for: bool = False) -> None:
    """Add the login and logout routes, and `csrf_token()` for every admin template."""
    app.extensions["feedsvc-admin"] = Admin(store, secure, forwarded_for)

    @app.errorhandler(AdminUnavailable)
    def unavailable(error: AdminUnavailable) -> Response:
        log.warning("%s", error)
        resp = page("admin_login.html", 503, token="",
                    error="Admin access cannot reach its database now: try again in a "
                          "minute (feeds are served as ever).")
        resp.headers["Retry-After"] = "30"
        return resp

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
            unset = adm.store.password_hash() is None
            return page("admin_login.html", 403, token=expected, error=(
                "No admin password is set yet: run `feedsvc admin set-password` (with the "
                "service's state directory or database URL)." if unset else "Wrong password."))
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
