from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed

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
        token = super().get_validated_token(raw_token)
        if app_settings.CHECK_FAMILY_ON_ACCESS and not family_allows_access(
            token.get(app_settings.FAMILY_CLAIM)
        ):
            raise AuthenticationFailed(
                str(_("This session has ended. Please log in again.")), code="token_revoked"
            )
        return token
