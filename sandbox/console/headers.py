"""Security headers on every response of the app, console and API alike.

The Content-Security-Policy lets a page load scripts, styles, images and fonts from this domain only
and run no inline script (the threat: an injected ``<script>`` or a style that leaks data through a
request to another site); the console never needs more. Pages are not framed (clickjacking), content
types are not sniffed, no referrer leaves the site, and the console's pages, which show one person's
work, are never cached.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.wrappers import Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # No referrer to other sites; this site's own forms send one, which the CSRF check wants on HTTPS.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
HSTS = "max-age=31536000; includeSubDomains"


def init_app(app: Flask) -> None:
    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.blueprint == "console" and request.endpoint != "console.static":
            response.headers["Cache-Control"] = "no-store"
            response.vary.add("Cookie")
        return response
