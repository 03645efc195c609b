"""The example project under an ASGI server:
``uvicorn example_project.asgi:application --workers 3``.

HTTP goes to Django (the DRF API, ``/api/async/me/``, the Ninja API); WebSockets to
Channels' router. No channel layer: each process closes its own sockets when their
family is revoked (rotating_tokens.contrib.channels.sockets). No Origin check on the
socket either: it is authenticated by a token the client sends in its first message,
never by a cookie, so another site's page gains nothing by opening one."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
# Each request's sync code (a DRF view, the user query) runs in a thread of the
# request's own under ASGI: a persistent database connection would never be reused.
# PostgreSQL connections come from psycopg's pool instead (settings.py).
os.environ.setdefault("DJANGO_CONN_MAX_AGE", "0")
os.environ.setdefault("DJANGO_DB_POOL", "1")
# Django first: the routes below import models.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from example_project.demo.consumers import MeConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": URLRouter([path("ws/me/", MeConsumer.as_asgi())]),
    }
)
