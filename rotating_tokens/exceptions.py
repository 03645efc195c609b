"""Errors of the token service, and the exception handler that gives every error
response of the app the same body: ``{"detail": "<sentence>", "code": "<code>"}``."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response


class TokenError(Exception):
    """A refresh was refused. ``code`` is part of the HTTP contract."""

    code = "token_invalid"
    message = _("The refresh token is not valid.")

    def __str__(self) -> str:
        return str(self.message)


class TokenInvalid(TokenError):
    pass


class TokenMissing(TokenError):
    code = "token_missing"
    message = _("No refresh token was sent.")


class TokenRevoked(TokenError):
    code = "token_revoked"
    message = _("This session has ended. Please log in again.")


class TokenExpired(TokenError):
    code = "token_expired"
    message = _("The refresh token has expired. Please log in again.")


class TokenReused(TokenError):
    code = "token_reused"
    message = _("This refresh token was already used. Please log in again.")


class DPoPError(TokenError):
    """A DPoP proof was missing or refused: 400 at the token endpoints (RFC 9449
    answers proof errors there as 400, and the cookie middleware keeps the cookie),
    401 on resource requests. Nothing changes: no token is used, no family revoked."""


class DPoPRequired(DPoPError):
    code = "dpop_required"
    message = _("This token is bound to a key: the request needs a DPoP proof.")


class DPoPInvalid(DPoPError):
    code = "dpop_invalid"
    message = _("The DPoP proof is not valid.")


class AccessRefused(Exception):
    """An access token was refused (``access.authenticate_request``), in any framework.

    ``status_code`` (401, or 503 when the DPoP replay store is down), ``code`` and
    ``detail`` make the app's body ``{"detail", "code"}``; ``www_authenticate`` is the
    401's challenge, as ``AccessTokenAuthentication.authenticate_header`` sends it.
    ``api_exception()`` is the DRF exception the DRF views raise for it.
    """

    def __init__(
        self,
        detail: str,
        code: str,
        *,
        status_code: int = status.HTTP_401_UNAUTHORIZED,
        challenge: str | None = None,
        cause: exceptions.APIException | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status_code = status_code
        self._challenge = challenge
        self._cause = cause

    @property
    def www_authenticate(self) -> str | None:
        """The ``WWW-Authenticate`` value for this answer (None for a 503)."""
        if self.status_code != status.HTTP_401_UNAUTHORIZED:
            return None
        if self._challenge is not None:
            return self._challenge
        from .access import default_challenge

        return default_challenge()

    def api_exception(self) -> exceptions.APIException:
        """The exception DRF's path raised before this class existed (simplejwt's own,
        with its body, where simplejwt refused the token)."""
        if self._cause is not None:
            return self._cause
        if self.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
            return ServiceUnavailable()
        return exceptions.AuthenticationFailed(self.detail, code=self.code)

    def as_dict(self) -> dict[str, str]:
        return {"detail": self.detail, "code": self.code}


class InvalidCredentials(exceptions.AuthenticationFailed):
    default_detail = _("No active account was found with these credentials.")
    default_code = "invalid_credentials"


class LoginRefused(exceptions.APIException):
    """Raised by a ``CHECK_LOGIN`` hook to refuse a login whose password was right:
    ``LoginRefused(_("Verify your email address first."), code="email_not_verified")``.
    The answer is ``{"detail", "code"}`` with ``status`` (403 by default)."""

    status_code: int = status.HTTP_403_FORBIDDEN
    default_detail = _("This account cannot log in.")
    default_code = "login_refused"

    def __init__(self, detail: Any = None, code: str | None = None, *, status: int | None = None):
        super().__init__(detail, code)
        if status is not None:
            self.status_code = status


class DPoPRefused(exceptions.APIException):
    """A DPoPError at a token endpoint: 400, as RFC 9449 answers proof errors there."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = DPoPInvalid.message
    default_code = DPoPInvalid.code

    @classmethod
    def from_error(cls, error: DPoPError) -> DPoPRefused:
        return cls(detail=error.message, code=error.code)


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The service is temporarily unavailable. Please try again.")
    default_code = "service_unavailable"


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "request_too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, with every body reduced to ``detail`` and ``code``.

    Validation errors keep their field errors beside them, as DRF lays them out.
    Set it as ``REST_FRAMEWORK["EXCEPTION_HANDLER"]`` to give the rest of an API the
    same shape; the app's own views use it whatever that setting says.
    """
    # Imported here: rest_framework.views imports the authentication classes, which
    # import this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"detail": str(_("Invalid input.")), "code": "invalid", **fields}
        return response
    detail: Any = exc.detail
    if isinstance(detail, dict):
        # simplejwt puts {"detail", "code", "messages"} here.
        code = detail.get("code") or exc.default_code
        detail = detail.get("detail", exc.default_detail)
    elif isinstance(detail, list):
        detail = detail[0] if detail else exc.default_detail
        code = getattr(detail, "code", exc.default_code)
    else:
        code = getattr(detail, "code", None) or exc.default_code
    response.data = {"detail": str(detail), "code": str(code)}
    return response
