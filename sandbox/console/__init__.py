"""The web console: server-rendered pages at the site root for people (the API stays under ``/api/v1``).

Jinja2 templates, htmx (vendored under ``static/vendor``) for partial updates, every string through
Flask-Babel's catalogues (``translations/``; zh-CN by default, English one click away). People sign
in with a password (``sandbox.service.people``); programs keep using bearer tokens on the API, which
the console's session cookie never authenticates. The console shows what the API shows the same
person, through the API's own conversions (``sandbox.api.services.dataset_out``, ``sandbox.api.jobs.job_out``).
"""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_wtf.csrf import CSRFProtect

from sandbox.console import catalogue, headers, i18n, pages, signin
from sandbox.console.analyst import editor, grants, jobs, results, statsform
from sandbox.console.oversight import admin, ledger, reviews
from sandbox.console.steward import consent_lists, grant_queue, onboarding

TEMPLATES = "templates"
STATIC = "static"


def init_app(app: Flask) -> None:
    """Mount the console on ``app`` (after the API, whose blueprint is exempt from the console's CSRF check)."""
    signin.configure_sessions(app)
    i18n.init_app(app)
    csrf = CSRFProtect(app)
    # The API authenticates by bearer token only: a forged cross-site request carries no token, so the
    # CSRF check (which protects cookie sessions) does not apply to it.
    csrf.exempt(app.blueprints["api"])
    bp = Blueprint("console", __name__, template_folder=TEMPLATES, static_folder=STATIC, static_url_path="/static")
    for module in (
        pages,
        signin,
        i18n,
        catalogue,
        jobs,
        grants,
        editor,
        statsform,
        results,
        reviews,
        ledger,
        admin,
        onboarding,
        grant_queue,
        consent_lists,
    ):
        module.register(bp)
    pages.register_errors(bp)
    app.register_blueprint(bp)
    headers.init_app(app)
