"""The Django Ninja auth classes: ``Authorization: Bearer`` or ``DPoP`` access tokens.

Ninja hands whatever an auth callable raises to the API's exception handlers. The
classes raise ``AccessTokenRefused``, a Ninja ``HttpError``: with the handler that
``add_exception_handler`` installs, the answer is the app's ``{"detail", "code"}`` and
``WWW-Authenticate``, exactly as the DRF views send them; without it, still a 401 (or
503) with ``{"detail"}``, never a 500.

A request without an access token is refused too (``not_authenticated``), as DRF's
``IsAuthenticated`` refuses it: list another auth before this one in ``auth=[...]`` for
the requests it should take (Ninja tries the next auth only when one returns None).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ninja.errors import HttpError
from ninja.security.http import HttpAuthBase

from rotating_tokens.access import (
    Access,
    aauthenticate_http_request,
    authenticate_http_request,
    not_authenticated,
)
from rotating_tokens.decorators import grant
from rotating_tokens.exceptions import AccessRefused

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse
    from ninja import NinjaAPI


class AccessTokenRefused(HttpError):
    """An access token refused by a Ninja auth class; ``refused`` says why."""

    def __init__(self, refused: AccessRefused) -> None:
        super().__init__(status_code=refused.status_code, message=refused.detail)
        self.refused = refused


class _AccessTokenAuthBase(HttpAuthBase):
    openapi_scheme = "bearer"
    openapi_bearerFormat = "JWT"  # Ninja reads openapi_<OpenAPI field name>
    openapi_description = (
        "An access token: `Authorization: Bearer <token>`, or `Authorization: DPoP <token>` "
        "with a `DPoP` proof for a token bound to a key (RFC 9449)."
    )

    def _granted(self, request: HttpRequest, access: Access | None) -> Access:
        if access is None:
            raise AccessTokenRefused(not_authenticated())
        grant(request, access)
        return access


class AccessTokenAuth(_AccessTokenAuthBase):
    """For sync operations: ``request.auth`` is the ``access.Access`` (user, token,
    family id) and ``request.user`` its user."""

    def __call__(self, request: HttpRequest) -> Access:
        try:
            access = authenticate_http_request(request)
        except AccessRefused as refused:
            raise AccessTokenRefused(refused) from None
        return self._granted(request, access)


class AsyncAccessTokenAuth(_AccessTokenAuthBase):
    """For async operations (``async def``): the check runs as
    ``access.aauthenticate_request`` runs it, off the event loop only where it needs
    the database."""

    async def authenticate(self, request: HttpRequest) -> Access:
        try:
            access = await aauthenticate_http_request(request)
        except AccessRefused as refused:
            raise AccessTokenRefused(refused) from None
        return self._granted(request, access)

    async def __call__(self, request: HttpRequest) -> Access:
        return await self.authenticate(request)


def add_exception_handler(api: NinjaAPI) -> None:
    """Answer ``AccessTokenRefused`` on ``api`` as the DRF views answer a refused token:
    ``{"detail", "code"}``, its status, and ``WWW-Authenticate`` on a 401."""

    def refused(request: HttpRequest, exc: Any) -> HttpResponse:
        error: AccessRefused = exc.refused
        response = api.create_response(request, error.as_dict(), status=error.status_code)
        challenge = error.www_authenticate
        if challenge is not None:
            response["WWW-Authenticate"] = challenge
        return response

    api.add_exception_handler(AccessTokenRefused, refused)
