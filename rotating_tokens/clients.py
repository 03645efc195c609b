"""Who sent a request: the client's IP address and user agent.

One rule for the whole app: the address recorded on tokens and families, the one the
grace period compares, and the one the login, refresh and logout throttles count by.
By default it is ``REMOTE_ADDR``, the peer of the TCP connection, which a client
cannot choose. ``X-Forwarded-For`` is read only when ``TRUSTED_PROXY_COUNT`` says how
many reverse proxies append to it, and then only the entry the nearest of them wrote:
anything to its left was written by the client and is never trusted.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from .conf import app_settings
from .models import RefreshToken
from .services import Client

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request


def client_address(request: HttpRequest | Request) -> str | None:
    """The client's IP address, as a string the database stores, or None.

    With ``TRUSTED_PROXY_COUNT = n`` the app sits behind n proxies, each appending the
    address it received the request from, so the client is the n-th entry from the
    right of ``X-Forwarded-For``. A header with fewer entries did not pass through
    all of them (a request straight to the app): ``REMOTE_ADDR`` is then the truth.
    """
    meta = request.META
    proxies = app_settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= proxies:
            return _storable_address(forwarded[-proxies])
    return _storable_address(meta.get("REMOTE_ADDR"))


def client_from_request(request: HttpRequest | Request) -> Client:
    """The client's address (``client_address``) and user agent."""
    # PostgreSQL refuses NUL in text: a user agent carrying one would make a 503.
    user_agent = request.META.get("HTTP_USER_AGENT", "").replace("\x00", "")
    # The columns hold 512 characters: a larger setting must not make a 503 either.
    column = RefreshToken._meta.get_field("user_agent").max_length
    user_agent = user_agent[: min(app_settings.USER_AGENT_MAX_LENGTH, column or 0)]
    return Client(ip_address=client_address(request), user_agent=user_agent)


def _storable_address(value: str | None) -> str | None:
    """``value`` as an address the database stores, or None. A scope id ("fe80::1%eth0",
    which a client can write in X-Forwarded-For) is dropped: PostgreSQL and MariaDB
    refuse it, and the request would fail with a 503."""
    try:
        return str(ipaddress.ip_address((value or "").split("%", 1)[0]))
    except ValueError:
        return None
