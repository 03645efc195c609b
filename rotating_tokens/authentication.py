from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework_simplejwt.authentication import JWTAuthentication

from . import access as access_module
from .clients import client_address, request_url
from .exceptions import AccessRefused, DPoPInvalid, DPoPRequired
from .services import set_current_family

if TYPE_CHECKING:
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request
    from rest_framework_simplejwt.authentication import AuthUser
    from rest_framework_simplejwt.tokens import Token


_CHALLENGE = "_rotating_tokens_dpop_challenge"


class AccessTokenAuthentication(JWTAuthentication):
    """simplejwt's JWT authentication, plus:

    - an access token stops working as soon as its family is revoked (logout, reuse
      detected, admin…), not only when it expires. Each process answers from what it
      knows of the family and its list of revoked families (``revocation.py``), so
      the check costs no query on most requests. ``CHECK_FAMILY_ON_ACCESS = False``
      turns it off;
    - an access token bound to a DPoP key (``cnf.jkt``) is accepted only as
      ``Authorization: DPoP <token>`` with a ``DPoP`` proof of this request, signed by
      that key and carrying the token's hash (RFC 9449 section 7).

    Every check is ``access.authenticate_request``'s, which the other integrations
    (async views, adrf, Django Ninja, Channels) call too.
    """

    def authenticate(self, request: Request) -> tuple[AuthUser, Token] | None:
        try:
            access = access_module.authenticate_request(
                self.get_header(request),
                request.META.get("HTTP_DPOP"),
                method=request.method or "",
                # Computed only for a bound token, or a refusal's log line.
                url=lambda: request_url(request),
                client_address=lambda: client_address(request),
            )
        except AccessRefused as refused:
            raise self._api_exception(request, refused) from None
        if access is None:
            return None
        # So that a password change made by this request spares its own family.
        set_current_family(access.family_id)
        return access.user, access.token  # type: ignore[return-value]  # the stubs say TokenUser

    def _api_exception(self, request: Request, refused: AccessRefused) -> APIException:
        if refused.code in (DPoPRequired.code, DPoPInvalid.code):
            setattr(request, _CHALLENGE, refused.www_authenticate)
        return refused.api_exception()

    def authenticate_header(self, request: Request) -> str:
        """The 401's WWW-Authenticate: both schemes, or the DPoP challenge (with
        ``error="invalid_dpop_proof"`` for a refused proof), RFC 9449 section 7.1."""
        challenge = getattr(request, _CHALLENGE, None)
        if challenge is not None:
            return str(challenge)
        return access_module.default_challenge()

    def get_user(self, validated_token: Token) -> AuthUser:  # type: ignore[type-var]  # simplejwt's signature
        """simplejwt's lookup by USER_ID_FIELD, where a claim that is not a value of that
        field (a token signed before the setting changed) is no such user, not a 500."""
        try:
            return access_module.user_of(validated_token)  # type: ignore[return-value]  # the stubs say TokenUser
        except AccessRefused as refused:
            raise refused.api_exception() from None

    def get_validated_token(self, raw_token: bytes) -> Token:
        """The token, checked as ``access.authenticate_request`` checks it but for the
        DPoP binding and the user: signature, expiry, type, and its family."""
        try:
            token = access_module.validated_token(raw_token)
            access_module.check_family(token)
        except AccessRefused as refused:
            raise refused.api_exception() from None
        return token


class AsyncAccessTokenAuthentication(AccessTokenAuthentication):
    """``AccessTokenAuthentication`` for adrf's async views (``adrf.views.APIView``):
    adrf awaits ``authenticate`` when it is a coroutine function, and the check runs
    as ``access.aauthenticate_request`` runs it, off the event loop only where it needs
    the database."""

    async def authenticate(self, request: Request) -> tuple[AuthUser, Token] | None:  # type: ignore[override]
        try:
            access = await access_module.aauthenticate_request(
                self.get_header(request),
                request.META.get("HTTP_DPOP"),
                method=request.method or "",
                # Computed only for a bound token, or a refusal's log line.
                url=lambda: request_url(request),
                client_address=lambda: client_address(request),
            )
        except AccessRefused as refused:
            raise self._api_exception(request, refused) from None
        if access is None:
            return None
        set_current_family(access.family_id)
        return access.user, access.token  # type: ignore[return-value]  # the stubs say TokenUser
