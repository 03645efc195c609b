from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import (
    AuthenticationFailed,
    InvalidToken,
    TokenBackendError,
    TokenError,
)
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from . import keys, legacy
from .conf import app_settings
from .services import family_allows_access, set_current_family

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework_simplejwt.authentication import AuthUser
    from rest_framework_simplejwt.tokens import Token


class AccessTokenAuthentication(JWTAuthentication):
    """simplejwt's JWT authentication, plus: an access token stops working as soon as
    its family is revoked (logout, reuse detected, admin…), not only when it expires.

    The family's state is cached (see ``services.family_allows_access``), so the check
    costs no query on most requests. ``CHECK_FAMILY_ON_ACCESS = False`` turns it off.
    """

    def authenticate(self, request: Request) -> tuple[AuthUser, Token] | None:
        result = super().authenticate(request)
        if result is not None:
            # So that a password change made by this request spares its own family.
            set_current_family(result[1].get(app_settings.FAMILY_CLAIM))
        return result  # type: ignore[return-value]

    def get_validated_token(self, raw_token: bytes) -> Token:
        try:
            token = super().get_validated_token(raw_token)
        except InvalidToken:
            # Signed with an earlier key that VERIFYING_KEY_FALLBACKS still lists?
            fallback = self._validated_with_fallback_key(raw_token)
            if fallback is None:
                raise
            token = fallback
        if not app_settings.CHECK_FAMILY_ON_ACCESS:
            return token
        family_id = token.get(app_settings.FAMILY_CLAIM)
        if family_id is None:
            if legacy.accepting(timezone.now()):
                return token  # a simplejwt access token, while the project migrates
            # Not one of ours (an old simplejwt token, say): it has no family that
            # could have ended, so "this session has ended" would be untrue.
            raise AuthenticationFailed(
                str(_("The access token is not valid.")), code="token_invalid"
            )
        # The family must also be the token's user's: the pair is checked from the
        # same cache entry, at no extra cost.
        user_id = token.get(simplejwt_settings.USER_ID_CLAIM)
        if not family_allows_access(family_id, user_id=user_id if user_id is not None else ""):
            raise AuthenticationFailed(
                str(_("This session has ended. Please log in again.")), code="token_revoked"
            )
        return token

    def _validated_with_fallback_key(self, raw_token: bytes) -> Token | None:
        """The token, if it names a key of ``VERIFYING_KEY_FALLBACKS`` and verifies
        with it; None if it names none of them."""
        raw = raw_token.decode() if isinstance(raw_token, bytes) else str(raw_token)
        backend = keys.fallback_backend_for(raw)
        if backend is None:
            return None
        try:
            backend.decode(raw, verify=True)  # signature, expiry, audience, issuer
            token = AccessToken(raw, verify=False)  # type: ignore[arg-type]  # a str, as simplejwt takes
            token.verify()  # the token type and simplejwt's other checks
        except (TokenError, TokenBackendError):
            raise InvalidToken(
                {"detail": str(_("Given token not valid for any token type")), "messages": []}
            ) from None
        return token
