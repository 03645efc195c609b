"""A Channels consumer that authenticates a WebSocket by its first message.

The protocol (``docs/howto/channels.md``):

- the client opens the socket (no token in the URL, where servers and proxies log it)
  and sends ``{"type": "authenticate", "access": "<access token>"}``, plus
  ``"dpop": "<proof>"`` for a token bound to a key;
- the server checks the token as every other integration does
  (``access.aauthenticate_request``: signature, expiry, family, owner, DPoP binding,
  user) and answers ``{"type": "authenticated", "user": {"id": …, "username": …}}``,
  or closes the socket with code 4401;
- no authenticate message within ``authentication_timeout`` seconds, anything else
  before it, or a message that is not JSON: closed with 4401;
- while the socket is open, its family is watched (``sockets.py``): revoked anywhere,
  by any process, the socket is closed with 4401: at once where this process made
  the revocation, within a quarter of ``REVOCATION_POLL_INTERVAL`` where Redis pushes
  it (the next look reads the push), else within an interval and a quarter;
- the access token expiring closes the socket with 4401, unless the client sent a new
  ``authenticate`` message with a fresh token (after a refresh) before: a socket may
  re-authenticate any number of times, as the same user only.

A DPoP proof for a WebSocket (RFC 9449 names HTTP requests only): the socket's
opening handshake is an HTTP ``GET`` of the socket's URL (RFC 6455 section 4.1), so
the proof carries ``htm`` ``"GET"`` and ``htu`` the socket's URL with its ``http``
scheme (``wss://`` → ``https://``, ``ws://`` → ``http://``, RFC 6455 section 3 and
RFC 8441 section 5), without query or fragment, and ``ath`` the access token's hash.
It is made when the authenticate message is sent (``iat``) and accepted once (``jti``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from rotating_tokens.access import Access, aauthenticate_request
from rotating_tokens.exceptions import AccessRefused

from . import sockets

if TYPE_CHECKING:
    import uuid

    from django.contrib.auth.models import AbstractBaseUser

#: The close code of a socket that is not (or no longer) authenticated: 4000 + HTTP's 401.
CLOSE_UNAUTHENTICATED = 4401
#: An authenticated client's message that is not a JSON object (RFC 6455 7.4.1).
CLOSE_INVALID_PAYLOAD = 1007


def websocket_htu(scope: dict[str, Any]) -> str:
    """The ``htu`` a DPoP proof carries for this socket: its URL with the ``http``
    scheme that its handshake used, host as the client sent it, path as the client
    wrote it, no query. Behind a proxy that ends TLS, the scheme is ``https`` when
    ``SECURE_PROXY_SSL_HEADER`` says so (as Django decides for HTTP requests) or the
    server reports ``wss`` (uvicorn's ``--proxy-headers``)."""
    headers = {name.decode("latin-1").lower(): value for name, value in scope.get("headers", [])}
    secure = scope.get("scheme") in ("wss", "https")
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, expected = proxy_header
        header_name = name.removeprefix("HTTP_").replace("_", "-").lower()
        sent = headers.get(header_name)
        if sent is not None:
            secure = sent.decode("latin-1").split(",", 1)[0].strip() == expected
    host = headers.get("host", b"").decode("latin-1")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path:
        path = raw_path.decode("latin-1").split("?", 1)[0]
    else:
        path = quote(scope.get("path", "/"), safe="/:@!$&'()*+,;=")
    return f"{'https' if secure else 'http'}://{host}{path}"


class AccessTokenConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """Subclass it and write ``receive_authenticated_json`` (and, if needed,
    ``authenticated``): ``self.access`` is the ``access.Access`` and ``self.user`` its
    user by then. Messages before authentication never reach it."""

    #: Seconds the client has to send its authenticate message.
    authentication_timeout: float = 10.0

    access: Access | None = None
    user: AbstractBaseUser | None = None

    async def connect(self) -> None:
        await self.accept()
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            self.authentication_timeout, self._close_soon
        )
        self._family_id: uuid.UUID | None = None
        self._closed = False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = json.loads(text_data) if text_data else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            if self.access is None:
                await self.close_unauthenticated()
            else:
                await self.close(code=CLOSE_INVALID_PAYLOAD)
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if content.get("type") == "authenticate":
            await self._authenticate(content)
        elif self.access is None:
            await self.close_unauthenticated()
        else:
            await self.receive_authenticated_json(content)

    async def receive_authenticated_json(self, content: dict[str, Any]) -> None:
        """A message of the authenticated client (anything but ``authenticate``)."""

    async def authenticated(self, access: Access) -> None:
        """Called once the socket is authenticated (again, after a re-authentication)."""

    def user_payload(self, user: AbstractBaseUser) -> dict[str, Any]:
        return {"id": user.pk, "username": user.get_username()}

    async def _authenticate(self, content: dict[str, Any]) -> None:
        token, proof = content.get("access"), content.get("dpop")
        if not isinstance(token, str) or not token or not isinstance(proof, (str, type(None))):
            await self.close_unauthenticated()
            return
        # A proof says the token is bound: the DPoP scheme, as it would be over HTTP (a
        # bound token as Bearer is refused, and so is a proof beside an unbound one).
        scheme = "Bearer" if proof is None else "DPoP"
        client = self.scope.get("client") or (None,)
        try:
            access = await aauthenticate_request(
                f"{scheme} {token}",
                proof,
                method="GET",
                url=websocket_htu(self.scope),
                client_address=client[0],
            )
        except AccessRefused:
            access = None
        if access is None or (
            self.user is not None and access.user.pk != self.user.pk
        ):  # a socket stays its first user's
            await self.close_unauthenticated()
            return
        if self._closed:
            return  # closed (revoked, expired) while the check ran
        self._watch(access)
        self.access, self.user = access, access.user
        await self.send_json({"type": "authenticated", "user": self.user_payload(access.user)})
        await self.authenticated(access)

    def _watch(self, access: Access) -> None:
        if self._family_id is not None:
            sockets.unregister(self, self._family_id)
        self._family_id = access.family_id
        if access.family_id is not None:
            sockets.register(self, access.family_id)
        if self._timer is not None:
            self._timer.cancel()
        expires = access.token.get("exp")
        self._timer = None
        if isinstance(expires, (int, float)):
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, expires - time.time()), self._close_soon)

    def _close_soon(self) -> None:
        asyncio.get_running_loop().create_task(self.close_unauthenticated())

    async def close_unauthenticated(self) -> None:
        """Close with 4401 (once): a bad token, a revoked family, an expired token."""
        if self._closed:
            return
        self._closed = True
        self._forget()
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        self._closed = True
        self._forget()

    def _forget(self) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
            self._timer = None
        family_id = getattr(self, "_family_id", None)
        if family_id is not None:
            sockets.unregister(self, family_id)
            self._family_id = None
