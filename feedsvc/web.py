"""The Flask application: composition root, the pages that are not ready-made, errors.

Feeds, the index, scope pages, the OPML and article pages never reach Flask:
`http.FeedApp` sits in front of Flask's WSGI app and answers them from ready bytes
(article pages are made on their first request: pages.py).  It also
screens every request first (methods, request target, Host, dates: see http.py),
so Flask only ever sees GET and HEAD (and POST under /admin/: admin.py, and to
the WebSub hub: websub.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from flask import Flask, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import Headers
from werkzeug.security import safe_join
from werkzeug.utils import send_file
from werkzeug.wrappers import Response as BaseResponse

from . import admin, settings, statspage, status
from .audience import Counter, Flusher
from .htmlpages import NOT_FOUND
from .http import (
    ALLOW,
    PRECONDITION_FAILED,
    SECURITY_HEADERS,
    FeedApp,
    not_modified,
    precondition_failed,
)
from .hubs import HUB_PATH
from .live import Service
from .model import DataError
from .pages import ArticlePages
from .store import open_admin, open_stats
from .websub import Hub

log = logging.getLogger("feedsvc")

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment



def create_app(test_config: dict | None = None) -> Flask:
    config = settings.resolve(test_config)
    app = Flask(__name__)
    app.config.update(FEEDSVC=config)
    service = Service(config)
    app.extensions["feedsvc"] = service
    app.extensions["feedsvc-close"] = [service.close]
    if config.watch:
        service.start()
    worker = secrets.token_hex(4)           # tells workers apart at /healthz, says nothing

    pages = ArticlePages(service)

    @app.get("/articles/<slug>/")
    def article(slug: str) -> ResponseReturnValue:
        # FeedApp answers every visible article's page (pages.py); what reaches here is not
        # one, or cannot be known while the data is unreadable and no checkpoint has pages
        if pages.corpus() is None:
            return unavailable()
        abort(404)

    def unavailable() -> Response:
        resp = Response("503 the data directory cannot be read; see /healthz\n", 503,
                        content_type="text/plain; charset=utf-8")
        resp.headers["Retry-After"] = "10"
        return resp

    # Pages FeedApp answers when they exist: routes here only so that the path without
    # its final slash redirects (308) to it, as /articles/x does; what reaches them is
    # not a page
    for rule in ("/<any(category, author):kind>/<slug>/",
                 "/<any(category, author):kind>/<slug>/subscribe/",
                 "/<any(category, author):kind>/<slug>/page/<int:number>/",
                 "/subscribe/", "/categories/", "/authors/"):
        app.add_url_rule(rule, f"page:{rule}", lambda **_: abort(404))

    @app.get("/media/<path:name>")
    def media(name: str) -> BaseResponse:
        return media_response(os.path.join(config.data_dir, "media"), name,
                              config.max_age)

    @app.get("/healthz")
    def healthz() -> Response:
        docs = service.resources                # exactly what this worker is serving
        digest = hashlib.sha256("".join(f"{p}={r.identity.etag};" for p, r in sorted(docs.items()))
                                .encode()).hexdigest()[:16]
        errors = service.errors
        status = "unavailable" if not docs else \
            "degraded" if any(not e.warning for e in errors) else "ok"
        resp = jsonify(status=status, worker=worker,
                       articles=len(service.corpus.articles) if service.corpus else None,
                       documents=len(docs), snapshot=digest, refreshed_at=service.refreshed_at,
                       errors=[public(e, config) for e in errors])
        resp.status_code = 503 if status == "unavailable" else 200
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(404)
    def not_found(_e) -> Response:
        # the path as it came, percent-encoded: never a raw CR, LF or NUL in what we echo
        page = service.resources.get(NOT_FOUND)     # the published 404 page (htmlpages)
        if page is None:
            return Response(f"404 not found: {quote(request.path, safe='/')}\n", 404,
                            content_type="text/plain; charset=utf-8")
        return Response(page.identity_body(), 404, content_type="text/html; charset=utf-8")

    @app.errorhandler(405)
    def not_allowed(_e) -> Response:        # FeedApp answers these first; kept the same
        resp = Response("405 method not allowed\n", 405, content_type="text/plain; charset=utf-8")
        resp.headers["Allow"] = ALLOW
        return resp

    @app.after_request
    def headers(resp: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            resp.headers.setdefault(name, value)
        location = resp.headers.get("Location")
        if location:                # routing's redirects (`//x`, a missing slash) are built
            resp.headers["Location"] = relative(location)   # from Host: keep only the path
        return resp

    status_page = status.StatusPage(service, config.max_file_bytes)

    @app.get("/admin/status/")
    @admin.require_login
    def status_() -> Response:
        resp = Response(status_page.render(), 200, content_type="text/html; charset=utf-8")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Robots-Tag"] = "noindex"
        return resp

    posts: frozenset[str] = frozenset()
    hub = start_hub(config, service) if config.websub or config.external_hubs else None
    if hub is not None:                         # the hub, or only the pings to others
        app.extensions["websub"] = hub
        app.extensions["feedsvc-close"].append(hub.close)
        if config.websub:
            app.add_url_rule(f"/{HUB_PATH}", "websub", partial(websub_request, hub),
                             methods=["POST"])
            posts = frozenset({f"/{HUB_PATH}"})
    feed_app = FeedApp(service, app.wsgi_app, pages.get, posts)
    app.wsgi_app = feed_app                 # type: ignore[method-assign]
    _install_stats(app, feed_app, config, hub.active if hub and config.websub else None)
    return app


def _install_stats(app: Flask, feed_app: FeedApp, config: settings.Settings,
                   websub: Callable[[], dict[str, int] | None] | None) -> None:
    """Counting in the request path (audience.py), the admin login and /admin/stats."""
    store = open_stats(config.state_dir, config.database_url)
    admins = open_admin(config.state_dir, config.database_url)
    app.extensions["feedsvc-close"] += [store.close, admins.close]
    if config.stats:
        counter = Counter(store, config.stats_forwarded_for)
        feed_app.observe = counter.observe
        flusher = Flusher(counter, config.stats_flush_seconds, config.stats_retention_days,
                          websub)
        app.extensions["feedsvc-stats"] = flusher
        app.extensions["feedsvc-close"].append(flusher.stop)
        flusher.start()
    admin.install(app, admins, config.base_url.startswith("https:"), config.stats_forwarded_for)
    statspage.install(app, store, lambda: dt.datetime.now(dt.UTC).date())


def close_app(app: Flask) -> None:
    """Stop what `create_app` started and close what it opened, newest first (tests,
    embedding); a served process just exits."""
    for done in reversed(app.extensions.get("feedsvc-close", [])):
        done()


def start_hub(config: settings.Settings, service: Service) -> Hub | None:
    """The WebSub hub of this worker, following the service when it watches; None (and
    an error in the log) when its state cannot be opened: feeds are served all the same."""
    try:
        hub = Hub(config, service)
    except (sqlite3.Error, OSError) as e:
        log.error("websub: the hub is off in this worker: %s/websub.sqlite: %s",
                  config.state_dir, e)
        return None
    if config.watch:
        hub.start()
    return hub


def websub_request(hub: Hub) -> Response:
    """POST /websub: a subscription request to the built-in hub (websub.py)."""
    answer = hub.screen(request.mimetype, request.content_length, request.remote_addr or "")
    if answer is None:
        answer = hub.handle(request.form)
    resp = Response(answer.text + "\n", answer.status, content_type="text/plain; charset=utf-8")
    if answer.retry:
        resp.headers["Retry-After"] = str(answer.retry)
    return resp


def relative(location: str) -> str:
    """The path and query of `location`, as a path-absolute reference (never `//host`)."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/")
    return f"{path}?{parts.query}" if parts.query else path


def public(error: DataError, config: settings.Settings) -> dict:
    """An error as /healthz shows it to anyone: paths relative to the data directory (a
    state file's as FEEDSVC_STATE_DIR/<name>), with where those directories are on this
    host left out (named by their settings instead)."""
    out = error.as_dict()
    for setting in ("state_dir", "data_dir"):
        name = f"FEEDSVC_{setting.upper()}"
        value = config.get(setting)
        for where in {os.path.realpath(value), os.path.abspath(value)}:
            out["message"] = out["message"].replace(where, name)
            if out["path"].startswith(where + os.sep):
                out["path"] = name + out["path"][len(where):]
    if os.path.isabs(out["path"]):
        out["path"] = "."
    return out


class NotModified(Response):
    """A 304 that keeps its Last-Modified, as a ready document's 304 and nginx's do
    (werkzeug drops it from every 304)."""

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        headers = super().get_wsgi_headers(environ)
        headers["Last-Modified"] = self.headers["Last-Modified"]
        return headers


CONDITIONALS = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
                "HTTP_IF_UNMODIFIED_SINCE")


def media_response(root: str, name: str, max_age: int) -> BaseResponse:
    """The file `name` below `root`, which it must really be in: a symlink that leads out
    of it is not followed (404).  A GET's body is one bytes object: granian sends that
    from its own runtime, where an iterator of file chunks holds a server thread for as
    long as a slow client takes to read them (one stalled client stopped every request).
    The price is memory: files over corpus.LARGE_MEDIA_BYTES are reported by the scan."""
    root = os.path.realpath(root)
    path = safe_join(root, name)
    real = os.path.realpath(path) if path is not None else root
    if real == root or os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        abort(404)
    # the conditionals are decided as for every ready document (http.py), not by
    # send_file, which ignores If-Unmodified-Since and refuses `If-Match: *`; it is left
    # the ranges (Range, If-Range)
    environ = {k: v for k, v in request.environ.items() if k not in CONDITIONALS}
    resp = send_file(real, environ, download_name=os.path.basename(name))
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    etag, modified = resp.headers["ETag"], resp.last_modified
    assert modified is not None     # noqa: S101 - send_file sets it from the file
    if precondition_failed(request.environ, etag, modified):
        resp.close()
        return Response(PRECONDITION_FAILED, 412, content_type="text/plain; charset=utf-8")
    if not_modified(request.environ, etag, modified):
        resp.close()
        return NotModified(status=304, headers=[(k, resp.headers[k]) for k in (
            "ETag", "Last-Modified", "Cache-Control")])
    resp.direct_passthrough = False
    body = resp.get_data() if request.method == "GET" and resp.status_code in (200, 206) \
        else None                           # the whole file, or the asked range
    resp.close()                            # the file is read, or not needed: closed now
    if body is None:
        resp.response = []                  # HEAD, 304, 416: the headers say it all
    else:
        resp.set_data(body)
    return resp
