"""The Flask application: composition root, the pages that are not ready-made, errors.

Feeds, the index, scope pages and the OPML never reach Flask: `http.FeedApp`
sits in front of Flask's WSGI app and answers them from ready bytes.
"""
from __future__ import annotations

import hashlib
import os

from flask import Flask, Response, abort, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from . import settings
from .corpus import Corpus
from .http import FeedApp
from .live import Service


def create_app(test_config: dict | None = None) -> Flask:
    config = settings.resolve(test_config)
    app = Flask(__name__)
    app.config.update(FEEDSVC=config)
    service = Service(config)
    app.extensions["feedsvc"] = service
    if config["watch"]:
        service.start()

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
        corpus = service.corpus
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
    def media(name: str) -> Response:
        resp = send_from_directory(os.path.join(config["data_dir"], "media"), name)
        resp.headers["Cache-Control"] = f"public, max-age={config['max_age']}"
        return resp

    @app.get("/healthz")
    def healthz() -> Response:
        docs = service.resources                # exactly what this worker is serving
        digest = hashlib.sha256("".join(f"{p}={r.identity.etag};" for p, r in sorted(docs.items()))
                                .encode()).hexdigest()[:16]
        serving = bool(docs)
        resp = jsonify(status="ok" if serving else "unavailable", pid=os.getpid(),
                       data_dir=config["data_dir"],
                       articles=len(service.corpus.articles) if service.corpus else None,
                       documents=len(docs), snapshot=digest, refreshed_at=service.refreshed_at,
                       errors=[e.as_dict() for e in service.errors])
        resp.status_code = 200 if serving else 503
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(404)
    def not_found(_e) -> Response:
        return Response(f"404 not found: {request.path}\n", 404,
                        content_type="text/plain; charset=utf-8")

    @app.errorhandler(405)
    def not_allowed(e) -> Response:
        resp = Response("405 method not allowed\n", 405, content_type="text/plain; charset=utf-8")
        resp.headers["Allow"] = ", ".join(e.valid_methods or ["GET", "HEAD"])
        return resp

    app.wsgi_app = FeedApp(service, app.wsgi_app)  # type: ignore[method-assign]
    return app
