"""WSGI entry point for any server: `granian --interface wsgi wsgi:app`, `gunicorn wsgi:app`."""
from feedsvc.web import create_app

app = create_app()
