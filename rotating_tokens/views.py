"""HTTP only: each view reads the request, calls one service, and shapes the answer."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.contrib.auth import authenticate
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from . import services
from .authentication import AccessTokenAuthentication
from .conf import app_settings
from .exceptions import (
    InvalidCredentials,
    RequestTooLarge,
    ServiceUnavailable,
    TokenError,
    TokenMissing,
    exception_handler,
)
from .middleware import note_body_token, refresh_token_from_cookie
from .models import RefreshToken, RevokeReason, TokenFamily
from .serializers import (
    ObtainSerializer,
    RefreshSerializer,
    SessionSerializer,
    TokenPairSerializer,
)
from .throttling import OptionalScopedRateThrottle


def client_from_request(request: HttpRequest | Request) -> services.Client:
    """The client's IP address, found as DRF's throttles find it (``NUM_PROXIES``),
    and its user agent."""
    ident = BaseThrottle().get_ident(request)  # type: ignore[arg-type]
    ip_address = _storable_address(ident) or _storable_address(request.META.get("REMOTE_ADDR"))
    # PostgreSQL refuses NUL in text: a user agent carrying one would make a 503.
    user_agent = request.META.get("HTTP_USER_AGENT", "").replace("\x00", "")
    # The columns hold 512 characters: a larger setting must not make a 503 either.
    column = RefreshToken._meta.get_field("user_agent").max_length
    user_agent = user_agent[: min(app_settings.USER_AGENT_MAX_LENGTH, column or 0)]
    return services.Client(ip_address=ip_address, user_agent=user_agent)


def _storable_address(value: str | None) -> str | None:
    """``value`` as an address the database stores, or None. A scope id ("fe80::1%eth0",
    which a client can write in X-Forwarded-For) is dropped: PostgreSQL and MariaDB
    refuse it, and the request would fail with a 503."""
    try:
        return str(ipaddress.ip_address((value or "").split("%", 1)[0]))
    except ValueError:
        return None


class TokenAPIView(APIView):
    """Base of the app's views: errors come out as ``{"detail", "code"}``, a refused
    refresh as 401, and a database that fails mid-request as 503."""

    # Annotated as DRF declares them, so that subclasses may name other classes.
    authentication_classes: Sequence[type[BaseAuthentication]] = ()
    permission_classes: Sequence[type[BasePermission]] = (AllowAny,)

    def get_exception_handler(self) -> Callable[..., Response | None]:
        return exception_handler

    def get_authenticate_header(self, request: Request) -> str:
        # With a WWW-Authenticate header DRF answers 401 (not 403) to a refused token.
        return super().get_authenticate_header(request) or 'Bearer realm="api"'

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, TokenError):
            exc = AuthenticationFailed(detail=exc.message, code=exc.code)
        elif isinstance(exc, (DatabaseError, InterfaceError)):
            # InterfaceError (a closed connection) is not a DatabaseError in Django.
            exc = ServiceUnavailable()
        elif isinstance(exc, (RequestDataTooBig, TooManyFieldsSent)):
            # Django would answer an HTML 400; keep the {"detail", "code"} contract.
            exc = RequestTooLarge()
        response = super().handle_exception(exc)
        if response.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
            response["Retry-After"] = "1"
        return response

    def refresh_token_from(self, request: Request) -> Any:
        data = request.data
        raw = data.get("refresh") if isinstance(data, Mapping) else None
        if raw is None or raw == "":
            # A browser's token is in the HttpOnly cookie (RefreshTokenCookieMiddleware);
            # using it passes the CSRF check first.
            return refresh_token_from_cookie(request) or raw
        note_body_token(request, raw)
        return raw


class TokenResponseMixin:
    def get_token_response(self, pair: services.TokenPair) -> Response:
        """The 200 answer of obtain and refresh. Override to add fields."""
        response = Response(TokenPairSerializer(pair).data)
        response["Cache-Control"] = "no-store"
        return response


class ObtainTokenView(TokenResponseMixin, TokenAPIView):
    """``POST token/``: log in with USERNAME_FIELD and password."""

    throttle_classes = (OptionalScopedRateThrottle,)
    serializer_class = ObtainSerializer
    refresh_cookie_role = "obtain"

    @property
    def throttle_scope(self) -> str:
        return app_settings.LOGIN_THROTTLE_SCOPE

    def post(self, request: Request) -> Response:
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        credentials = dict(serializer.validated_data)
        user = authenticate(request._request, **credentials)
        # Unknown user, wrong password and inactive user look the same from outside.
        if user is None or not user.is_active:
            raise InvalidCredentials
        return self.get_token_response(services.start_family(user, client_from_request(request)))


class RefreshTokenView(TokenResponseMixin, TokenAPIView):
    """``POST token/refresh/``: exchange a refresh token for a new pair."""

    throttle_classes = (OptionalScopedRateThrottle,)
    serializer_class = RefreshSerializer
    refresh_cookie_role = "refresh"

    @property
    def throttle_scope(self) -> str:
        return app_settings.REFRESH_THROTTLE_SCOPE

    def post(self, request: Request) -> Response:
        raw = self.refresh_token_from(request)
        if raw is None or raw == "":
            raise TokenMissing
        return self.get_token_response(services.rotate(raw, client_from_request(request)))


class LogoutView(TokenAPIView):
    """``POST logout/``: revoke the family of a refresh token. Always 204."""

    serializer_class = RefreshSerializer
    refresh_cookie_role = "logout"

    def post(self, request: Request) -> Response:
        services.logout(self.refresh_token_from(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(TokenAPIView):
    """``POST logout/all/``: revoke every family of the authenticated user."""

    authentication_classes = (AccessTokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    def post(self, request: Request) -> Response:
        services.logout_all(request.user)  # type: ignore[arg-type]  # IsAuthenticated: a real user
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(TokenAPIView):
    """``GET sessions/``: the user's active families (devices), newest first."""

    authentication_classes = (AccessTokenAuthentication,)
    permission_classes = (IsAuthenticated,)
    serializer_class = SessionSerializer

    def get(self, request: Request) -> Response:
        user = request.user
        sessions = TokenFamily.objects.for_user(user).active().with_last_use()  # type: ignore[arg-type]  # IsAuthenticated: a real user
        serializer = self.serializer_class(
            sessions.order_by("-created_at"),
            many=True,
            # request.auth is simplejwt's access token here (the stubs know DRF's Token).
            context={"current_family_id": request.auth.get(app_settings.FAMILY_CLAIM)},  # type: ignore[union-attr]
        )
        return Response(serializer.data)


class SessionView(TokenAPIView):
    """``DELETE sessions/<id>/``: sign one of the user's devices out. Another user's
    family and an unknown id get the same 404."""

    authentication_classes = (AccessTokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    def delete(self, request: Request, family_id: str) -> Response:
        user = request.user
        families = TokenFamily.objects.for_user(user)  # type: ignore[arg-type]  # IsAuthenticated: a real user
        try:
            family = families.filter(pk=uuid.UUID(family_id)).first()
        except ValueError:  # not a UUID: as unknown
            family = None
        if family is None:
            raise NotFound(_("No such session."))
        services.revoke_family(family, RevokeReason.LOGOUT)
        return Response(status=status.HTTP_204_NO_CONTENT)
