from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, NoReturn

from django.core.exceptions import ValidationError
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

from . import dpop, keys, legacy
from .clients import dpop_proof, log_refused_proof
from .conf import app_settings
from .dpop import Proof
from .exceptions import DPoPError, DPoPInvalid, DPoPRequired, ServiceUnavailable
from .revocation import allows_access
from .services import ReplayStoreUnavailable, set_current_family

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework_simplejwt.authentication import AuthUser
    from rest_framework_simplejwt.tokens import Token


DPOP_SCHEME = b"DPoP"
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
    """

    def authenticate(self, request: Request) -> tuple[AuthUser, Token] | None:
        header = self.get_header(request)
        if header is None:
            return None
        parts = header.split()
        dpop_scheme = len(parts) > 0 and parts[0].lower() == DPOP_SCHEME.lower()
        if dpop_scheme:
            if len(parts) != 2:
                raise AuthenticationFailed(
                    str(_("Authorization header must contain two space-delimited values")),
                    code="bad_authorization_header",
                )
            raw_token: bytes | None = parts[1]
        else:
            raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        token = self.get_validated_token(raw_token)
        self._check_proof_of_possession(request, token, raw_token, dpop_scheme)
        user = self.get_user(token)
        # So that a password change made by this request spares its own family.
        set_current_family(token.get(app_settings.FAMILY_CLAIM))
        return user, token  # type: ignore[return-value]  # the stubs say TokenUser

    def get_user(self, validated_token: Token) -> AuthUser:  # type: ignore[type-var]  # simplejwt's signature
        """simplejwt's lookup by USER_ID_FIELD, where a claim that is not a value of that
        field (a token signed before the setting changed) is no such user, not a 500."""
        try:
            return super().get_user(validated_token)  # type: ignore[return-value]  # the stubs say TokenUser
        except (ValidationError, ValueError, TypeError):
            raise AuthenticationFailed(str(_("User not found")), code="user_not_found") from None

    def _check_proof_of_possession(
        self, request: Request, token: Token, raw_token: bytes, dpop_scheme: bool
    ) -> None:
        cnf = token.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if not jkt:
            if dpop_scheme:  # RFC 9449 section 7.1: DPoP is for bound tokens only
                raise AuthenticationFailed(
                    str(_("This access token is not bound to a key: send it as Bearer.")),
                    code="token_invalid",
                )
            return
        if not dpop_scheme:
            log_refused_proof(request, "bearer")
            self._refuse(request, DPoPRequired(), proof_refused=False)
        try:
            proof = dpop_proof(request, access_token=raw_token.decode("ascii", "replace"))
        except ReplayStoreUnavailable:
            raise ServiceUnavailable from None
        if not isinstance(proof, Proof) or not hmac.compare_digest(proof.jkt, str(jkt)):
            # No proof, a refused one (dpop_proof logged why), or one by another key.
            if proof is None:
                log_refused_proof(request, "missing")
            elif isinstance(proof, Proof):
                log_refused_proof(request, "jkt")
            self._refuse(request, DPoPInvalid(), proof_refused=True)

    def _refuse(self, request: Request, error: DPoPError, *, proof_refused: bool) -> NoReturn:
        challenge = dpop.www_authenticate(
            app_settings.DPOP_ALGORITHMS,
            error="invalid_dpop_proof" if proof_refused else None,
        )
        setattr(request, _CHALLENGE, challenge)
        raise AuthenticationFailed(str(error.message), code=error.code)

    def authenticate_header(self, request: Request) -> str:
        """The 401's WWW-Authenticate: both schemes, or the DPoP challenge (with
        ``error="invalid_dpop_proof"`` for a refused proof), RFC 9449 section 7.1."""
        challenge = getattr(request, _CHALLENGE, None)
        if challenge is not None:
            return str(challenge)
        bearer = super().authenticate_header(request)
        if app_settings.DPOP == "off":
            return bearer
        return f"{bearer}, {dpop.www_authenticate(app_settings.DPOP_ALGORITHMS)}"

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
        if not allows_access(family_id, user_id=user_id if user_id is not None else ""):
            raise AuthenticationFailed(
                str(_("This session has ended. Please log in again.")), code="token_revoked"
            )
        return token

    def _validated_with_fallback_key(self, raw_token: bytes) -> Token | None:
        """The token, if it names a key of ``VERIFYING_KEY_FALLBACKS`` and verifies
        with it; None if it names none of them."""
        try:
            raw = raw_token.decode() if isinstance(raw_token, bytes) else str(raw_token)
        except UnicodeDecodeError:
            return None  # not a JWT: simplejwt's own refusal stands
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
