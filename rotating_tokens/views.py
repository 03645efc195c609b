"""HTTP only: each view reads the request, calls one service, and shapes the answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import authenticate, logout, user_logged_in
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, InterfaceError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from rest_framework import status
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import (
    APIException,
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
)
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import keys, services
from .authentication import AccessTokenAuthentication
from .clients import client_from_request, dpop_proof
from .conf import app_settings
from .dpop import Proof
from .exceptions import (
    DPoPError,
    DPoPRefused,
    InvalidCredentials,
    RequestTooLarge,
    ServiceUnavailable,
    TokenError,
    TokenMissing,
    exception_handler,
)
from .middleware import (
    COOKIE_MIDDLEWARE,
    deliver_refresh_token,
    keep_refresh_cookie,
    refresh_token_from_cookie,
)
from .models import RevokeReason, TokenFamily
from .parsers import TOKEN_ENDPOINT_PARSERS
from .serializers import (
    ObtainSerializer,
    RefreshSerializer,
    SessionExchangeSerializer,
    SessionNameSerializer,
    SessionSerializer,
    TokenPairSerializer,
)
from .throttling import OptionalScopedRateThrottle

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class TokenAPIView(APIView):
    """Base of the app's views: errors come out as ``{"detail", "code"}``, a refused
    refresh as 401, and a database that fails mid-request as 503."""

    # Annotated as DRF declares them, so that subclasses may name other classes.
    authentication_classes: Sequence[type[BaseAuthentication]] = ()
    permission_classes: Sequence[type[BasePermission]] = (AllowAny,)
    # JSON and form bodies only: anything else (a multipart upload) is a 415, before
    # the body is read.
    parser_classes: Sequence[type[BaseParser]] = TOKEN_ENDPOINT_PARSERS

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # Never inside ATOMIC_REQUESTS: an error answer (401 token_reused) would roll
        # back what the request had to keep (the revocation of a reused family, the
        # record of a used DPoP proof). Each service commits its own steps.
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A method the view does not have is a 405 before anything else: DRF would
        # authenticate first and answer 401 to a TRACE on an authenticated view.
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            self.http_method_not_allowed(request, *args, **kwargs)
        super().initial(request, *args, **kwargs)

    def get_exception_handler(self) -> Callable[..., Response | None]:
        return exception_handler

    def get_authenticate_header(self, request: Request) -> str:
        # With a WWW-Authenticate header DRF answers 401 (not 403) to a refused token.
        return super().get_authenticate_header(request) or 'Bearer realm="api"'

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, DPoPError):
            exc = DPoPRefused.from_error(exc)
        elif isinstance(exc, services.ReplayStoreUnavailable):
            exc = ServiceUnavailable()
        elif isinstance(exc, TokenError):
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
        return raw


# Issuing tokens from a project's own views --------------------------------------------


def issue_tokens(
    request: HttpRequest | Request, user: AbstractBaseUser, *, remember: bool = True
) -> services.TokenPair:
    """Log ``user`` in with tokens, after the project authenticated them some other way
    (a social login, an MFA step, a magic link): a new family, as ``token/`` starts.

    The request gives the client's address and user agent (recorded on the family and
    compared by the grace period). Answer with ``token_response(request, pair)``. This
    sends no ``user_logged_in``: the project's own login already did, or should.
    ``remember=False``: the user did not tick "remember me" (see ``start_family``).
    """
    return services.start_family(
        user, client_from_request(request), dpop=login_proof(request), remember=remember
    )


def login_proof(request: HttpRequest | Request) -> Proof | None:
    """The DPoP proof a login binds its family with, or None (a bearer login).

    Raises ``DPoPRefused`` (400): ``dpop_invalid`` for a proof that is sent but
    refused (never silently a bearer login), ``dpop_required`` for none when
    ``DPOP = "required"``."""
    if app_settings.DPOP == "off":
        return None  # the header is not even read
    try:
        return services.login_binding(dpop_proof(request))
    except DPoPError as refused:
        raise DPoPRefused.from_error(refused) from None


def refusal_response(exc: APIException) -> JsonResponse:
    """An ``APIException`` (``DPoPRefused`` from ``issue_tokens``, say) as the app's
    ``{"detail", "code"}`` answer, for a plain Django view, where DRF does not turn
    exceptions into answers."""
    codes = exc.get_codes()
    return JsonResponse(
        {"detail": str(exc.detail), "code": codes if isinstance(codes, str) else "error"},
        status=exc.status_code,
    )


def token_response(request: HttpRequest | Request, pair: services.TokenPair) -> JsonResponse:
    """The answer ``token/`` gives for ``pair``, from any view, DRF or plain Django: the
    same JSON body, ``Cache-Control: no-store``, and, as ``TRANSPORT`` says, the refresh
    token in the HttpOnly cookie (out of a browser's body) with the ``csrftoken`` cookie
    the page needs to refresh by cookie. Another site's request gets no cookie."""
    django_request: HttpRequest = getattr(request, "_request", request)
    data: Mapping[str, Any] = TokenPairSerializer.data_of(pair)
    response = JsonResponse({})
    if COOKIE_MIDDLEWARE in settings.MIDDLEWARE:
        # Without the middleware no refresh could read the cookie: the body keeps it.
        data = deliver_refresh_token(django_request, response, data, login=True)
    response.content = json.dumps(data, cls=DjangoJSONEncoder).encode()
    response["Cache-Control"] = "no-store"
    return response


class TokenResponseMixin:
    def get_token_response(self, pair: services.TokenPair) -> Response:
        """The 200 answer of obtain and refresh. Override to add fields."""
        response = Response(TokenPairSerializer.data_of(pair))
        response["Cache-Control"] = "no-store"
        return response


# Error reports (Django's error mail, the debug page with DEBUG off) never show the
# password or a refresh token: not the POST fields, not the local variables of these
# views or of anything they call (services.rotate…).
_hide_secrets = method_decorator(
    [sensitive_post_parameters("password", "refresh"), sensitive_variables()], name="dispatch"
)


@_hide_secrets
class ObtainTokenView(TokenResponseMixin, TokenAPIView):
    """``POST token/``: log in with USERNAME_FIELD and password.

    A login sends Django's ``user_logged_in`` (so ``last_login`` is updated, and
    django-axes, audit logs and "last seen" screens see API logins as well)."""

    throttle_classes = (OptionalScopedRateThrottle,)
    serializer_class = ObtainSerializer
    refresh_cookie_role = "obtain"

    @property
    def throttle_scope(self) -> str:
        return app_settings.LOGIN_THROTTLE_SCOPE

    def post(self, request: Request) -> Response:
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        proof = login_proof(request)  # before the password hasher runs
        credentials = dict(serializer.validated_data)
        remember = credentials.pop("remember")
        user = authenticate(request._request, **credentials)
        # Unknown user, wrong password and inactive user look the same from outside.
        if user is None or not user.is_active:
            raise InvalidCredentials
        self.check_login(request, user)
        pair = services.start_family(
            user, client_from_request(request), dpop=proof, remember=remember
        )
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        return self.get_token_response(pair)

    def check_login(self, request: Request, user: AbstractBaseUser) -> None:
        """Refuse a login whose password was right: raise ``exceptions.LoginRefused``.
        Calls ``CHECK_LOGIN``; override to add rules of the view's own."""
        check = app_settings.CHECK_LOGIN
        if check is not None:
            check(request, user)


class _SessionAuthentication(SessionAuthentication):
    """DRF's session authentication, whose CSRF failure answers with our code."""

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except PermissionDenied as exc:
            raise PermissionDenied(detail=str(exc.detail), code="csrf_failed") from None


class SessionTokenView(TokenResponseMixin, TokenAPIView):
    """``POST token/session/``: exchange an authenticated Django session (Django's login
    page, the admin, django-allauth's views, a social login callback) for a token
    family; the same answer as ``token/``.

    Needs the session and Django's CSRF check, so another site's page cannot mint
    tokens for a visitor. With ``SESSION_EXCHANGE_ENDS_SESSION`` (the default) the
    session is logged out once it has become tokens: one credential, not two."""

    authentication_classes = (_SessionAuthentication,)
    permission_classes = (IsAuthenticated,)
    refresh_cookie_role = "obtain"

    serializer_class = SessionExchangeSerializer

    def post(self, request: Request) -> Response:
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request.user
        pair = issue_tokens(request, user, remember=serializer.validated_data["remember"])  # type: ignore[arg-type]  # IsAuthenticated: a real user
        if app_settings.SESSION_EXCHANGE_ENDS_SESSION:
            logout(request._request)
        return self.get_token_response(pair)


@_hide_secrets
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
        pair = services.rotate(raw, client_from_request(request), dpop=dpop_proof(request))
        return self.get_token_response(pair)


@_hide_secrets
class LogoutView(TokenAPIView):
    """``POST logout/``: revoke the family of a refresh token. Always 204.

    Throttled with the refresh scope: a logout verifies a secret as a refresh does
    (with the argon2 hasher, 0.1 s and 64 MiB), so unthrottled it would let anyone
    who ever held a lookup key make the server do that at will."""

    throttle_classes = (OptionalScopedRateThrottle,)
    serializer_class = RefreshSerializer
    refresh_cookie_role = "logout"

    @property
    def throttle_scope(self) -> str:
        return app_settings.REFRESH_THROTTLE_SCOPE

    def post(self, request: Request) -> Response:
        done = services.logout(
            self.refresh_token_from(request),
            dpop=dpop_proof(request),
            client=client_from_request(request),
        )
        if not done:
            # A bound family without a proof by its key: nothing changed, and the
            # browser keeps its cookie (its page will sign the next logout).
            keep_refresh_cookie(request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SimpleJWTBlacklistView(LogoutView):
    """simplejwt's ``token/blacklist/``, for the clients that still call it during the
    transition (``simplejwt_urls``): a logout, answered as simplejwt answers, 200
    ``{}``. With one of our refresh tokens it ends the family; with a simplejwt one,
    it spends it (``services.logout``)."""

    def post(self, request: Request) -> Response:
        super().post(request)  # 204, or the cookie kept (keep_refresh_cookie)
        return Response({}, status=status.HTTP_200_OK)


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
    """``GET sessions/<id>/``: one of the user's active sessions, as the list shows it;
    ``PATCH sessions/<id>/``: name it; ``DELETE sessions/<id>/``: sign it out. Another
    user's family and an unknown id get the same 404."""

    authentication_classes = (AccessTokenAuthentication,)
    permission_classes = (IsAuthenticated,)
    serializer_class = SessionNameSerializer

    def get_family(self, request: Request, family_id: str, *, active: bool = False) -> TokenFamily:
        families = TokenFamily.objects.for_user(request.user)  # type: ignore[arg-type]  # IsAuthenticated: a real user
        if active:
            families = families.active()
        try:
            family = families.filter(pk=uuid.UUID(family_id)).first()
        except ValueError:  # not a UUID: as unknown
            family = None
        if family is None:
            raise NotFound(_("No such session."))
        return family

    def get(self, request: Request, family_id: str) -> Response:
        return self.session_response(request, self.get_family(request, family_id, active=True))

    def patch(self, request: Request, family_id: str) -> Response:
        # A session that has ended is no longer listed: it cannot be named either.
        family = self.get_family(request, family_id, active=True)
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.rename_family(family, serializer.validated_data["name"])
        return self.session_response(request, family)

    def session_response(self, request: Request, family: TokenFamily) -> Response:
        session = TokenFamily.objects.with_last_use().get(pk=family.pk)
        return Response(
            SessionSerializer(
                session,
                # request.auth is simplejwt's access token here (the stubs know DRF's Token).
                context={"current_family_id": request.auth.get(app_settings.FAMILY_CLAIM)},  # type: ignore[union-attr]
            ).data
        )

    def delete(self, request: Request, family_id: str) -> Response:
        family = self.get_family(request, family_id)
        services.revoke_family(family, RevokeReason.LOGOUT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JWKSView(TokenAPIView):
    """``GET jwks/``: the verifying keys of access tokens as a JWKS (RFC 7517), for
    other services; mount it at ``/.well-known/jwks.json`` as well if they expect it
    there. A 404 with a symmetric algorithm: there is no public key to publish."""

    def get(self, request: Request) -> Response:
        document = keys.jwks()
        if document is None:
            raise NotFound(
                _(
                    "No public keys: access tokens are signed with a symmetric algorithm "
                    "(SIMPLE_JWT['ALGORITHM'])."
                )
            )
        response = Response(document)
        # Verifiers may cache it; a new key reaches them within the hour, long before
        # tokens signed with it could be all they see (keep the old key as a fallback).
        response["Cache-Control"] = "public, max-age=300"
        return response
