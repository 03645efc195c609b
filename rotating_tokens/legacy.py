"""Accepting djangorestframework-simplejwt tokens while a project migrates.

Until ``ACCEPT_SIMPLEJWT_UNTIL``, ``token/refresh/`` exchanges a still-valid simplejwt
refresh token (signed with the project's ``SIMPLE_JWT`` settings) for a token family,
once (``services.rotate``), and ``AccessTokenAuthentication`` accepts simplejwt access
tokens that carry no family claim (they expire within minutes). Clients that read
``refresh`` from the body change nothing: their next refresh returns one of ours.
``logout/`` (and simplejwt's blacklist URL, ``simplejwt_urls``) spends one.

This module only recognises and verifies simplejwt tokens and applies simplejwt's
rules to them; nothing here writes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Field
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings

from .conf import app_settings
from .exceptions import TokenExpired, TokenInvalid
from .models import SimpleJWTCutoff

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

BLACKLIST_APP = "rest_framework_simplejwt.token_blacklist"


@dataclass(frozen=True)
class SimpleJWTRefresh:
    """A verified simplejwt refresh token: who it is for, and its id."""

    jti: str
    user_id: Any


def accepting(now: datetime) -> bool:
    """Whether simplejwt tokens are still accepted at ``now``."""
    until = app_settings.ACCEPT_SIMPLEJWT_UNTIL
    return until is not None and now < until


def looks_like_jwt(raw: object) -> bool:
    """Three dot-separated parts, bounded in size: worth verifying as a simplejwt token
    (anything else is refused as malformed before any work)."""
    return isinstance(raw, str) and len(raw) <= 8192 and raw.count(".") == 2


def verify_refresh(raw: str) -> SimpleJWTRefresh:
    """Verify ``raw`` as simplejwt verifies its refresh tokens (signature, expiry,
    type), raising the app's own errors: the same codes as for our tokens. The
    blacklist is asked separately (``is_blacklisted``): a token this app converted is
    on it too, and presented again it is reuse, not a logged-out token."""
    from rest_framework_simplejwt.state import token_backend  # what simplejwt verifies with
    from rest_framework_simplejwt.tokens import RefreshToken

    try:
        try:
            payload = token_backend.decode(raw, verify=True)  # type: ignore[arg-type]  # a str, as simplejwt passes
        except TokenBackendExpiredToken:
            raise  # the signature is good (PyJWT checks it first): expired, not invalid
        except TokenBackendError:
            # Maybe signed before SIMPLE_JWT's ALGORITHM or key changed.
            payload = _decode_with_legacy_keys(raw)
    except TokenBackendExpiredToken:
        raise TokenExpired from None
    except TokenBackendError:
        raise TokenInvalid from None
    jti = payload.get(simplejwt_settings.JTI_CLAIM)
    user_id = payload.get(simplejwt_settings.USER_ID_CLAIM)
    if (
        payload.get(simplejwt_settings.TOKEN_TYPE_CLAIM) != RefreshToken.token_type
        or not isinstance(jti, str)
        or not jti
        or len(jti) > 255
        or user_id is None
    ):
        raise TokenInvalid  # an access token, or not one simplejwt made
    return SimpleJWTRefresh(jti=jti, user_id=_user_id_value(user_id))


def _user_id_value(claim: Any) -> Any:
    """The claim as a value of USER_ID_FIELD. A claim that cannot be one (a token signed
    before that setting changed: an int pk where the field is now a UUID) is
    ``token_invalid``, as a token of a user that does not exist is, not a 500."""
    meta = get_user_model()._meta
    name = simplejwt_settings.USER_ID_FIELD
    try:
        field = meta.pk if name == "pk" else meta.get_field(name)
    except FieldDoesNotExist:
        return claim  # not a field: the lookup says what it says
    if not isinstance(field, Field):
        return claim  # a reverse relation: not a field of the user's own
    try:
        return field.to_python(claim)
    except (ValidationError, TypeError, ValueError):
        raise TokenInvalid from None


def _decode_with_legacy_keys(raw: str) -> dict[str, Any]:
    """``raw``'s claims, verified with one of ``SIMPLEJWT_LEGACY_KEYS`` (the keys
    simplejwt signed with before the project changed ``ALGORITHM`` or its key), and
    with ``SIMPLE_JWT``'s ``AUDIENCE``, ``ISSUER`` and ``LEEWAY``, as simplejwt checks
    them. Each entry is pinned to its own algorithm (never the token's choice of
    one), and only entries of the algorithm the token names are tried: one
    verification per candidate key, none for a token no entry could have signed.
    Raises TokenBackendError (or TokenBackendExpiredToken)."""
    import jwt
    from rest_framework_simplejwt import settings as simplejwt_conf
    from rest_framework_simplejwt.backends import TokenBackend

    # simplejwt replaces its api_settings object when SIMPLE_JWT changes: read it here.
    current = simplejwt_conf.api_settings

    try:
        algorithm = jwt.get_unverified_header(raw).get("alg")
    except jwt.PyJWTError:
        raise TokenBackendError from None
    if not isinstance(algorithm, str):
        raise TokenBackendError
    for entry in app_settings.SIMPLEJWT_LEGACY_KEYS:
        if not isinstance(entry, dict) or entry.get("ALGORITHM") != algorithm:
            continue
        try:
            backend = TokenBackend(
                algorithm,
                entry.get("SIGNING_KEY"),
                entry.get("VERIFYING_KEY") or "",
                current.AUDIENCE,
                current.ISSUER,
                None,  # a JWKS URL is for the current keys
                current.LEEWAY,
            )
            return backend.decode(raw, verify=True)  # type: ignore[arg-type]  # a str
        except TokenBackendExpiredToken:
            raise
        except (TokenBackendError, jwt.PyJWTError, ValueError, TypeError):
            # Another key of the same algorithm may have signed it. (A malformed entry,
            # which E061 reports, is skipped rather than a 500.)
            continue
    raise TokenBackendError


def is_blacklisted(jti: str) -> bool:
    """On simplejwt's blacklist (logged out before the switch), where it is installed."""
    if not apps.is_installed(BLACKLIST_APP):
        return False
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    return BlacklistedToken._default_manager.filter(token__jti=jti).exists()


def blacklist(raw: str) -> None:
    """Put a converted token on simplejwt's blacklist too, where it is installed, so
    that simplejwt's own views (if the project still mounts them) refuse it."""
    if apps.is_installed(BLACKLIST_APP):
        from rest_framework_simplejwt.tokens import RefreshToken

        RefreshToken(raw, verify=False).blacklist()  # type: ignore[arg-type]  # a str, as simplejwt takes


# simplejwt's rules, applied to a token about to be converted -----------------------


def claims(raw: str) -> dict[str, Any]:
    """The claims of a token that ``verify_refresh`` accepted: read again, not verified
    again (``verify_refresh`` said it is genuine)."""
    from rest_framework_simplejwt.state import token_backend

    return token_backend.decode(raw, verify=False)  # type: ignore[arg-type]  # a str, as simplejwt passes


def claim_time(claims: dict[str, Any], name: str) -> datetime | None:
    """A NumericDate claim (``exp``, ``iat``) as an aware datetime, or None."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=dt_timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def leeway() -> timedelta:
    """simplejwt's LEEWAY: how long past its ``exp`` it still accepts a token."""
    value = simplejwt_settings.LEEWAY
    return value if isinstance(value, timedelta) else timedelta(seconds=value or 0)


def user_may_convert(user: AbstractBaseUser, claims: dict[str, Any]) -> bool:
    """simplejwt's own rules for the user of a refresh token.

    ``USER_AUTHENTICATION_RULE`` (by default: active, with ``CHECK_USER_IS_ACTIVE``).
    With ``CHECK_REVOKE_TOKEN``, the ``REVOKE_TOKEN_CLAIM`` must still be the MD5 of
    the user's current password hash, as simplejwt's authentication compares it: its
    refresh view copies that claim into the access tokens it makes, which its
    authentication then refuses once the password has changed. A token made before
    the password changed must not become a family that survives the change."""
    if not simplejwt_settings.USER_AUTHENTICATION_RULE(user):
        return False
    if simplejwt_settings.CHECK_REVOKE_TOKEN:
        from rest_framework_simplejwt.utils import get_md5_hash_password

        claim = claims.get(simplejwt_settings.REVOKE_TOKEN_CLAIM)
        current = get_md5_hash_password(user.password or "")
        if not isinstance(claim, str) or not hmac.compare_digest(claim, current):
            return False
    return True


def ended_by_account_change(user: AbstractBaseUser, claims: dict[str, Any], db: str) -> bool:
    """Whether a password change or a deactivation during the transition ended this
    token (``SimpleJWTCutoff``): issued before it, or of unknown issue time."""
    cutoff = (
        SimpleJWTCutoff.objects.using(db)
        .filter(user_id=user.pk)
        .values_list("ended_before", flat=True)
        .first()
    )
    if cutoff is None:
        return False
    issued_at = claim_time(claims, "iat")
    # iat has whole seconds: a token made in the second of the change, even just
    # after it, is ended too (the safe side).
    return issued_at is None or issued_at < cutoff
