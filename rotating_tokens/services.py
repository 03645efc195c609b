"""The domain: start a family, rotate a refresh token, revoke families.

Plain functions with no HTTP in them, so views, management commands, the admin and
signal receivers all share them. ``now`` is taken once per operation (or passed in),
so tests move time instead of sleeping.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.db import router, transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from . import signals
from .conf import app_settings
from .crypto import (
    MalformedToken,
    ParsedToken,
    hash_secret,
    make_token,
    open_successor,
    parse_token,
    seal_successor,
    verify_secret,
)
from .exceptions import TokenExpired, TokenInvalid, TokenReused, TokenRevoked
from .models import RefreshToken, RevokeReason, TokenFamily

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.core.cache.backends.base import BaseCache
    from django.db.models import QuerySet

logger = logging.getLogger("rotating_tokens")


@dataclass(frozen=True)
class Client:
    """Who sent a request: the IP address (as DRF's throttles find it) and user agent."""

    ip_address: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class TokenPair:
    access: str
    access_expires_at: datetime
    refresh: str
    refresh_expires_at: datetime
    family: TokenFamily

    def __repr__(self) -> str:
        return f"TokenPair(family={self.family.pk}, refresh_expires_at={self.refresh_expires_at})"


# Login -----------------------------------------------------------------------------


def start_family(
    user: AbstractBaseUser, client: Client, *, now: datetime | None = None
) -> TokenPair:
    """Log ``user`` in: a new family with its first refresh token, and an access token."""
    now = now or timezone.now()
    family = TokenFamily(
        user=user,
        created_at=now,
        expires_at=now + app_settings.FAMILY_LIFETIME,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )
    token, raw = _new_token(family, client, now)
    with transaction.atomic(using=router.db_for_write(TokenFamily)):
        family.save(force_insert=True)
        token.save(force_insert=True)
    signals.tokens_issued.send(sender=TokenFamily, family=family, user=user, token=token)
    return _token_pair(user, family, token, raw, now)


# Rotation --------------------------------------------------------------------------


def rotate(raw_token: object, client: Client, *, now: datetime | None = None) -> TokenPair:
    """Exchange a refresh token for a new one and a new access token.

    The whole algorithm is here; the HTTP views only translate. In order:

    1. malformed, unknown or wrong secret: TokenInvalid, nothing changes;
    2. the family is revoked (or its user is inactive): TokenRevoked;
    3. the token or its family has expired: TokenExpired;
    4. the token was already used: either a retry inside the grace period, which gets
       back the successor that the first use returned, or reuse: the family is
       revoked and TokenReused raised;
    5. otherwise the token is marked used and a successor issued, in one transaction.
    """
    now = now or timezone.now()
    try:
        parsed = parse_token(raw_token)
    except MalformedToken:
        raise TokenInvalid from None
    db = router.db_for_write(RefreshToken)
    token = _find_token(parsed, db)
    if token is None:
        raise TokenInvalid
    family = token.family
    if family.is_revoked or not family.user.is_active:
        raise TokenRevoked
    if token.is_expired(now) or family.is_expired(now):
        raise TokenExpired
    if token.is_used:
        return _retry_or_reuse(token, parsed, client, now)

    # Hash and seal before the transaction opens: argon2 takes tens of milliseconds
    # and must not run while the row is locked.
    successor, raw_successor = _new_token(
        family, client, now, rotated_from=token, parent_secret=parsed.secret
    )
    with transaction.atomic(using=db):
        # The conditional UPDATE is the claim. Two requests may both have read the
        # token as unused; the database lets only one UPDATE match "used_at IS NULL"
        # (the other waits for the row lock, then matches nothing), so exactly one
        # request rotates. A plain read-then-save would let both issue a successor
        # and fork the chain. Erasing ``sealed`` here ends the grace window of the
        # token before this one: its retry needs this token unused anyway.
        claimed = (
            RefreshToken.objects.using(db)
            .filter(pk=token.pk, used_at__isnull=True)
            .update(used_at=now, sealed=None)
        )
        if claimed:
            successor.save(using=db, force_insert=True)
    if not claimed:
        # Another request used the token between our read and our UPDATE. Read it
        # again, now that the winner has committed, and treat it as any used token.
        token = _find_token(parsed, db)
        if token is None:  # deleted in between (purged): as unknown
            raise TokenInvalid
        return _retry_or_reuse(token, parsed, client, now)

    token.used_at = now
    signals.token_rotated.send(
        sender=TokenFamily, family=family, user=family.user, token=successor, previous=token
    )
    return _token_pair(family.user, family, successor, raw_successor, now)


def _find_token(parsed: ParsedToken, db: str) -> RefreshToken | None:
    """The token with this lookup key and its family, user and successor, in one
    query, if the secret matches (compared in constant time)."""
    token = (
        RefreshToken.objects.using(db)
        .select_related("family__user", "rotated_to")
        .filter(lookup_key=parsed.lookup_key)
        .first()
    )
    if token is None or not verify_secret(parsed.secret, token.secret_hash):
        return None
    return token


def _retry_or_reuse(
    token: RefreshToken, parsed: ParsedToken, client: Client, now: datetime
) -> TokenPair:
    family = token.family
    successor = _successor_for_retry(token, client, now)
    if successor is not None:
        raw = open_successor(
            successor.sealed, parent_secret=parsed.secret, lookup_key=successor.lookup_key
        )
        if raw is not None:
            return _token_pair(family.user, family, successor, raw, now)

    revoke_family(family, RevokeReason.REUSE_DETECTED, now=now)
    logger.warning(
        "Refresh token reuse detected: family %s revoked (ip=%s, user agent=%r).",
        family.pk,
        client.ip_address,
        client.user_agent,
    )
    signals.token_reuse_detected.send(
        sender=TokenFamily,
        family=family,
        user=family.user,
        token=token,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )
    raise TokenReused


def _successor_for_retry(token: RefreshToken, client: Client, now: datetime) -> RefreshToken | None:
    """The successor a retry of ``token`` may get back, or None if this is reuse.

    A retry is a lost response or a second tab, not theft, when all of these hold:
    the token was first used less than the grace period ago (the window runs from
    the first use and never slides); the successor is still unused (its ciphertext
    is erased when it is used); and the request comes from the same IP address and
    user agent as the one that first used the token, which the successor recorded.
    """
    grace = app_settings.REUSE_GRACE_PERIOD
    successor = getattr(token, "rotated_to", None)
    if not grace or token.used_at is None or now - token.used_at >= grace:
        return None
    if successor is None or successor.is_used or successor.sealed is None:
        return None
    if (successor.ip_address, successor.user_agent) != (client.ip_address, client.user_agent):
        return None
    return successor


def _new_token(
    family: TokenFamily,
    client: Client,
    now: datetime,
    *,
    rotated_from: RefreshToken | None = None,
    parent_secret: str | None = None,
) -> tuple[RefreshToken, str]:
    """An unsaved token of ``family`` and its raw value (which is never stored)."""
    raw, parsed = make_token()
    token = RefreshToken(
        family=family,
        lookup_key=parsed.lookup_key,
        secret_hash=hash_secret(parsed.secret),
        issued_at=now,
        expires_at=min(now + app_settings.REFRESH_TOKEN_LIFETIME, family.expires_at),
        rotated_from=rotated_from,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )
    if parent_secret is not None and app_settings.REUSE_GRACE_PERIOD:
        token.sealed = seal_successor(
            raw, parent_secret=parent_secret, lookup_key=parsed.lookup_key
        )
    return token, raw


def _token_pair(
    user: AbstractBaseUser, family: TokenFamily, token: RefreshToken, raw: str, now: datetime
) -> TokenPair:
    access = AccessToken.for_user(user)
    access[app_settings.FAMILY_CLAIM] = str(family.pk)
    # An access token never outlives its family.
    lifetime = min(app_settings.ACCESS_TOKEN_LIFETIME, family.expires_at - now)
    access.set_iat(at_time=now)
    access.set_exp(from_time=now, lifetime=lifetime)
    return TokenPair(
        access=str(access),
        access_expires_at=datetime.fromtimestamp(access["exp"], tz=dt_timezone.utc),
        refresh=raw,
        refresh_expires_at=token.expires_at,
        family=family,
    )


# Revocation ------------------------------------------------------------------------


def revoke_family(family: TokenFamily, reason: str, *, now: datetime | None = None) -> bool:
    """Revoke one family: its refresh tokens and access tokens stop working.

    Returns False if it was already revoked (nothing is sent twice).
    """
    now = now or timezone.now()
    # Conditional, so two concurrent revocations send the signal once and the first
    # reason is kept.
    revoked = (
        TokenFamily.objects.using(router.db_for_write(TokenFamily))
        .filter(pk=family.pk, revoked_at__isnull=True)
        .update(revoked_at=now, revoke_reason=reason)
    )
    if not revoked:
        return False
    family.revoked_at, family.revoke_reason = now, reason
    _forget_family_state([family.pk])
    signals.family_revoked.send(sender=TokenFamily, family=family, reason=reason)
    return True


def revoke_families(
    families: QuerySet[TokenFamily], reason: str, *, now: datetime | None = None
) -> int:
    """Revoke every family of a queryset that is not revoked yet; returns how many."""
    now = now or timezone.now()
    db = router.db_for_write(TokenFamily)
    with transaction.atomic(using=db):
        # Locked, so the signal goes out exactly for the families this call revoked.
        to_revoke = list(families.using(db).filter(revoked_at__isnull=True).select_for_update())
        TokenFamily.objects.using(db).filter(pk__in=[f.pk for f in to_revoke]).update(
            revoked_at=now, revoke_reason=reason
        )
    _forget_family_state([f.pk for f in to_revoke])
    for family in to_revoke:
        family.revoked_at, family.revoke_reason = now, reason
        signals.family_revoked.send(sender=TokenFamily, family=family, reason=reason)
    return len(to_revoke)


def logout(raw_token: object, *, now: datetime | None = None) -> None:
    """Revoke the family of a refresh token. Says nothing about the token: unknown,
    malformed and already revoked tokens are ignored alike (no oracle)."""
    try:
        parsed = parse_token(raw_token)
    except MalformedToken:
        return
    token = _find_token(parsed, router.db_for_write(RefreshToken))
    if token is not None:
        revoke_family(token.family, RevokeReason.LOGOUT, now=now)


def logout_all(user: AbstractBaseUser, *, now: datetime | None = None) -> int:
    return revoke_families(TokenFamily.objects.for_user(user), RevokeReason.LOGOUT_ALL, now=now)


# Access tokens follow their family ---------------------------------------------------
#
# Checking the family on every authenticated request would cost a query, so its state
# is cached: the time until which its access tokens are good (its absolute expiry), or
# 0 once it is revoked. Revocation deletes the entry, so with a shared cache every
# server sees it at once. The cache is an optimisation only: if it fails, the database
# answers.

_REVOKED = 0.0


def family_allows_access(family_id: Any, *, now: datetime | None = None) -> bool:
    """Whether access tokens of this family are still good."""
    try:
        family_id = uuid.UUID(str(family_id))
    except ValueError:
        return False
    now = now or timezone.now()
    cache = _state_cache()
    key = _state_key(family_id)
    good_until = _cache_call(cache, "get", key)
    if good_until is None:
        row = (
            TokenFamily.objects.filter(pk=family_id).values_list("revoked_at", "expires_at").first()
        )
        good_until = _REVOKED if row is None or row[0] is not None else row[1].timestamp()
        timeout = app_settings.FAMILY_STATE_CACHE_TIMEOUT.total_seconds()
        _cache_call(cache, "set", key, good_until, timeout)
    return now.timestamp() < good_until


def _forget_family_state(family_ids: Iterable[Any]) -> None:
    cache = _state_cache()
    if cache is None:
        return
    keys = [_state_key(pk) for pk in family_ids]

    def forget() -> None:
        _cache_call(cache, "delete_many", keys)

    # Now, and again after the commit: a request that read the family between the
    # two would otherwise cache the state the revocation is replacing.
    forget()
    transaction.on_commit(forget, using=router.db_for_write(TokenFamily))


def _state_cache() -> BaseCache | None:
    alias = app_settings.FAMILY_STATE_CACHE
    return caches[alias] if alias else None


def _state_key(family_id: Any) -> str:
    return f"rotating_tokens:family:{family_id}"


def _cache_call(cache: BaseCache | None, method: str, *args: Any) -> Any:
    if cache is None:
        return None
    try:
        return getattr(cache, method)(*args)
    except Exception:  # a cache that is down must not take authentication with it
        logger.warning("Cache unavailable for family state; using the database.", exc_info=True)
        return None
