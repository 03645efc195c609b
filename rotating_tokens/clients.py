"""Who sent a request: the client's IP address and user agent, and its DPoP proof.

One rule for the whole app: the address recorded on tokens and families, the one the
grace period compares, and the one the login, refresh and logout throttles count by.
By default it is ``REMOTE_ADDR``, the peer of the TCP connection, which a client
cannot choose. ``X-Forwarded-For`` is read only when ``TRUSTED_PROXY_COUNT`` says how
many reverse proxies append to it, and then only the entry the nearest of them wrote:
anything to its left was written by the client and is never trusted.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from django.utils.translation import gettext as _

from . import services
from .conf import app_settings
from .dpop import InvalidProof, Proof, verify_proof
from .models import RefreshToken
from .services import Client

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request

logger = logging.getLogger("rotating_tokens")


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


def dpop_proof(
    request: HttpRequest | Request, *, access_token: str | None = None
) -> Proof | InvalidProof | None:
    """The request's DPoP proof (RFC 9449), verified: a Proof, the InvalidProof that
    says why it was refused, or None without a ``DPoP`` header. Verified whatever
    ``DPOP`` says: a family bound before it was turned off still needs proofs.

    ``htu`` is compared with the URL Django builds for the request (its scheme and
    host, behind ``SECURE_PROXY_SSL_HEADER`` and ``USE_X_FORWARDED_HOST`` as Django
    sees them), without query or fragment. ``access_token``: a resource request, whose
    proof must carry its hash (``ath``). A proof is accepted once (``jti``), however
    many processes serve the requests (``services.proof_is_new``).
    """
    return verify_dpop_header(
        request.META.get("HTTP_DPOP"),
        method=request.method or "",
        url=request_url(request),
        access_token=access_token,
        log=functools.partial(log_refused_proof, request),
    )


def verify_dpop_header(
    value: str | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    log: Callable[[str], None],
    check_replay: bool = True,
) -> Proof | InvalidProof | None:
    """``dpop_proof`` for any transport: the ``DPoP`` header's value, the method and the
    URL (``htu``) it must carry; ``log(reason)`` is told why a proof was refused.
    ``check_replay=False`` leaves the ``jti`` to the caller (``services.proof_is_new``):
    an async caller records it off the event loop."""
    if value is None:
        return None
    try:
        proof = verify_proof(
            value,
            method=method,
            url=url,
            now=time.time(),
            algorithms=app_settings.DPOP_ALGORITHMS,
            max_age=app_settings.DPOP_PROOF_MAX_AGE.total_seconds(),
            leeway=app_settings.DPOP_CLOCK_SKEW.total_seconds(),
            access_token=access_token,
        )
    except InvalidProof as refused:
        log(refused.reason)
        return refused
    if check_replay and not services.proof_is_new(proof):
        log("replay")
        return InvalidProof("replay", _("This DPoP proof was already used."))
    return proof


def request_url(request: HttpRequest | Request) -> str:
    """The request's URL as a DPoP proof's ``htu`` names it: scheme and host as Django
    sees them, then the path as it is (joining them with urljoin would resolve "//host"
    and dot segments in it), without query or fragment."""
    return request.build_absolute_uri("/")[:-1] + request_path(request)


def request_path(request: HttpRequest | Request) -> str:
    """The request's path as the client wrote it, for comparing with ``htu``.

    Django's ``request.path`` is percent-decoded, so ``/a%2Fb`` and ``/a/b`` are one path
    there, while RFC 3986 (section 2.2) makes them two: a proof for one must not pass
    for the other. The server's raw request target (``RAW_URI``, gunicorn;
    ``REQUEST_URI``, uWSGI and others) keeps the escapes, and is used when it decodes
    to the path Django routed; otherwise the decoded path is encoded again, which is
    exact for every path without an encoded reserved character.
    """
    path = request.path
    for name in ("RAW_URI", "REQUEST_URI"):
        raw = request.META.get(name)
        if isinstance(raw, str) and raw:
            try:
                raw_path = urlsplit(raw).path
            except ValueError:
                continue
            if unquote(raw_path) == path:
                return raw_path
    # Kept as they are: what a path segment may hold (RFC 3986 "pchar"); "%", "?",
    # "#", spaces and non-ASCII characters are encoded.
    return quote(path, safe="/:@!$&'()*+,;=")


def log_refused_proof(request: HttpRequest | Request, reason: str) -> None:
    """Log why a DPoP proof was refused: ``dpop_invalid`` does not tell the client
    which check failed, so the log is where it can be found. Never the proof itself,
    the token, or the query string."""
    log_refused(
        reason, method=request.method or "", path=request.path, address=client_address(request)
    )


def log_refused(reason: str, *, method: str, path: str, address: str | None) -> None:
    """``log_refused_proof`` where there is no Django request (a WebSocket message)."""
    logger.warning("DPoP proof refused (%s) on %s %r from %s.", reason, method, path, address)
