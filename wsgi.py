"""WSGI entry point: ``gunicorn wsgi:app``."""

from sandbox import create_app

app = create_app()
