"""The Flask application: composition root, the pages that are not ready-made, errors.

Feeds, the index, scope pages and the OPML never reach Flask: `http.FeedApp`
sits in front of Flask's WSGI app and answers them from ready bytes.  It also
screens every request first (methods, request target, Host, dates: see http.py),
so Flask only ever sees GET and HEAD.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from urllib.parse import quote, urlsplit

from flask import Flask, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.security import safe_join
from werkzeug.utils import send_file
from werkzeug.wrappers import Response as BaseResponse

from . import settings
from .corpus import Corpus
from .http import ALLOW, SECURITY_HEADERS, FeedApp
from .live import Service
from .model import DataError


def create_app(test_config: dict | None = None) -> Flask:
    config = settings.resolve(test_config)
    app = Flask(__name__)
    app.config.update(FEEDSVC=config)
    service = Service(config)
    app.extensions["feedsvc"] = service
    if config["watch"]:
        service.start()
    worker = secrets.token_hex(4)           # tells workers apart at /healthz, says nothing

    pages: list = [None, {}]                # [corpus, {slug: page}] for the current corpus

    def article_response(slug: str, corpus: Corpus) -> tuple[bytes, str]:
        held, cached = pages                # one read: another thread may swap in a new pair
        if held is not corpus or len(cached) > 1024:
            cached = {}
            pages[:] = [corpus, cached]
        page = cached.get(slug)
        if page is None:
            article = next(a for a in corpus.articles if a.slug == slug)
            body = service.publisher.article_page(corpus, article)
            page = cached[slug] = (body, hashlib.sha256(body).hexdigest()[:32])
        return page

    @app.get("/articles/<slug>/")
    def article(slug: str) -> ResponseReturnValue:
        # after a restart with the data unreadable, the pages of the last checkpoint
        corpus = service.corpus if service.corpus is not None else service.restored
        if corpus is None:
            return unavailable()
        now = service.clock()
        if not any(a.slug == slug and a.published.timestamp() <= now for a in corpus.articles):
            abort(404)
        body, etag = article_response(slug, corpus)     # a new corpus after every reload
        resp = Response(body, content_type="text/html; charset=utf-8")
        resp.set_etag(etag)
        resp.headers["Cache-Control"] = service.cache_control.value()
        return resp.make_conditional(request)

    def unavailable() -> Response:
        resp = Response("503 the data directory cannot be read; see /healthz\n", 503,
                        content_type="text/plain; charset=utf-8")
        resp.headers["Retry-After"] = "10"
        return resp

    @app.get("/media/<path:name>")
    def media(name: str) -> BaseResponse:
        return media_response(os.path.join(config["data_dir"], "media"), name,
                              config["max_age"])

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
        return Response(f"404 not found: {quote(request.path, safe='/')}\n", 404,
                        content_type="text/plain; charset=utf-8")

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

    app.wsgi_app = FeedApp(service, app.wsgi_app)  # type: ignore[method-assign]
    return app


def relative(location: str) -> str:
    """The path and query of `location`, as a path-absolute reference (never `//host`)."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/")
    return f"{path}?{parts.query}" if parts.query else path


def public(error: DataError, config: dict) -> dict:
    """An error as /healthz shows it to anyone: paths relative to the data directory (a
    state file's as FEEDSVC_STATE_DIR/<name>), with where those directories are on this
    host left out (named by their settings instead)."""
    out = error.as_dict()
    for setting in ("state_dir", "data_dir"):
        name = f"FEEDSVC_{setting.upper()}"
        for where in {os.path.realpath(config[setting]), os.path.abspath(config[setting])}:
            out["message"] = out["message"].replace(where, name)
            if out["path"].startswith(where + os.sep):
                out["path"] = name + out["path"][len(where):]
    if os.path.isabs(out["path"]):
        out["path"] = "."
    return out


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
    resp = send_file(real, request.environ, download_name=os.path.basename(name))
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    resp.direct_passthrough = False
    body = resp.get_data() if request.method == "GET" and resp.status_code in (200, 206) \
        else None                           # the whole file, or the asked range
    resp.close()                            # the file is read, or not needed: closed now
    if body is None:
        resp.response = []                  # HEAD, 304, 416: the headers say it all
    else:
        resp.set_data(body)
    return resp
