"""The browser demo at ``/``: a static page and two scripts, no build step.

Served by these small views rather than by the staticfiles app so that the page works
the same under runserver, gunicorn with DEBUG off, and the browser tests.
"""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest

ASSETS = Path(__file__).resolve().parent / "static" / "demo"
SCRIPTS = ("auth-client.js", "page.js")

# The page runs only its own scripts: an injected <script> would not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)


def index(request: HttpRequest) -> FileResponse:
    response = FileResponse((ASSETS / "index.html").open("rb"), content_type="text/html")
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Cache-Control"] = "no-cache"
    return response


def script(request: HttpRequest, name: str) -> FileResponse:
    if name not in SCRIPTS:
        raise Http404
    response = FileResponse((ASSETS / name).open("rb"), content_type="text/javascript")
    response["Cache-Control"] = "no-cache"
    return response
