"""The domain: start a family, rotate a refresh token, revoke families.

Plain functions with no HTTP in them, so views, management commands, the admin and
signal receivers all share them. ``now`` is taken once per operation (or passed in),
so tests move time instead of sleeping.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, OperationalError, connections, router, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from . import keys, legacy, notices, revocation, signals, sql
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
from .dpop import InvalidProof, Proof
from .exceptions import (
    DPoPError,
    DPoPInvalid,
    DPoPRequired,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenReused,
    TokenRevoked,
)
from .models import (
    ConvertedToken,
    RefreshToken,
    Revocation,
    RevokeReason,
    SimpleJWTCutoff,
    TokenFamily,
    UsedDPoPProof,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.core.cache.backends.base import BaseCache
    from django.db.models import QuerySet

logger = logging.getLogger("rotating_tokens")

T = TypeVar("T")


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

    @property
    def token_type(self) -> str:
        """How the access token is presented: "DPoP" (with a proof) or "Bearer"."""
        return "DPoP" if self.family.is_bound else "Bearer"

    @property
    def remember(self) -> bool:
        """False for a login that said ``"remember": false``: its refresh cookie is
        a session cookie."""
        return self.family.remember

    def __repr__(self) -> str:
        return f"TokenPair(family={self.family.pk}, refresh_expires_at={self.refresh_expires_at})"


# Login -----------------------------------------------------------------------------


def start_family(
    user: AbstractBaseUser,
    client: Client,
    *,
    now: datetime | None = None,
    dpop: Proof | None = None,
    grace_secret: str | None = None,
    remember: bool = True,
) -> TokenPair:
    """Log ``user`` in: a new family with its first refresh token, and an access token.

    With a verified DPoP proof, the family is bound to its key for good: every refresh
    and every use of its access tokens will need a proof signed with that key.
    ``grace_secret`` (the simplejwt token being converted) seals the first token under
    a key derived from it, as a rotation seals a successor, so a retry of the
    conversion inside the grace period gets the same answer.

    ``remember=False`` ("remember me" unticked): the family lives
    ``SESSION_FAMILY_LIFETIME``, idles out after ``SESSION_REFRESH_TOKEN_LIFETIME``,
    and its refresh cookie is a session cookie, which ends when the browser closes."""
    now = now or timezone.now()
    lifetime = app_settings.FAMILY_LIFETIME if remember else app_settings.SESSION_FAMILY_LIFETIME
    family = TokenFamily(
        user=user,  # type: ignore[misc]  # any AUTH_USER_MODEL; the stubs assume auth.User
        created_at=now,
        expires_at=now + lifetime,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
        dpop_jkt=dpop.jkt if dpop is not None else "",
        remember=remember,
    )
    token, raw = _new_token(family, client, now, parent_secret=grace_secret)
    db = router.db_for_write(TokenFamily)
    # On PostgreSQL both INSERTs are one statement, committed on its own: one round
    # trip instead of four (a login, password check aside, from 3.8 to 3.1 ms
    # in-process, measured).
    if not sql.insert_family_and_token(family, token, using=db):
        with transaction.atomic(using=db):
            family.save(using=db, force_insert=True)
            token.save(using=db, force_insert=True)
    signals.tokens_issued.send(sender=TokenFamily, family=family, user=user, token=token)
    notices.login_started(user, family, now=now)
    if app_settings.MAX_FAMILIES_PER_USER:
        _evict_families(user, keep=family, limit=app_settings.MAX_FAMILIES_PER_USER, now=now)
    return _token_pair(user, family, token, raw, now)


def _evict_families(user: AbstractBaseUser, *, keep: TokenFamily, limit: int, now: datetime) -> int:
    """Revoke the least recently used active families of ``user`` beyond ``limit``,
    ``keep`` (the new login) counting as the most recent one."""
    others = (
        TokenFamily.objects.for_user(user)  # type: ignore[misc]  # orders by with_last_use()
        .active(now)
        .exclude(pk=keep.pk)
        .with_last_use()
        .order_by("-last_used_at", "-created_at")
    )
    stale = list(others.values_list("pk", flat=True)[limit - 1 :])
    if not stale:
        return 0
    return revoke_families(TokenFamily.objects.filter(pk__in=stale), RevokeReason.EVICTED, now=now)


# Rotation --------------------------------------------------------------------------


def rotate(
    raw_token: object,
    client: Client,
    *,
    now: datetime | None = None,
    dpop: Proof | InvalidProof | None = None,
) -> TokenPair:
    """Exchange a refresh token for a new one and a new access token.

    The whole algorithm is here; the HTTP views only translate. In order:

    1. malformed, unknown or wrong secret: TokenInvalid, nothing changes; then a
       family bound to a DPoP key without a valid proof by that key (``dpop``: the
       request's proof, checked by the caller): DPoPRequired or DPoPInvalid, and
       nothing changes, so a thief without the key cannot even get the family
       revoked; a refused proof on an unbound family is DPoPInvalid as well;
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
        if legacy.accepting(now) and legacy.looks_like_jwt(raw_token):
            return _convert_simplejwt_token(raw_token, client, now, dpop)  # type: ignore[arg-type]
        raise TokenInvalid from None
    db = router.db_for_write(RefreshToken)
    token = _find_token(parsed, db)
    if token is None:
        raise TokenInvalid
    family = token.family
    check_proof_of_possession(family, dpop, client)
    if family.is_revoked or not family.user.is_active:
        raise TokenRevoked
    if token.is_expired(now) or family.is_expired(now):
        raise TokenExpired
    if token.is_used:
        return _retry_or_reuse(token, parsed, client, now, db)

    # Hash and seal before the transaction opens: argon2 takes tens of milliseconds
    # and must not run while the row is locked.
    successor, raw_successor = _new_token(
        family, client, now, rotated_from=token, parent_secret=parsed.secret
    )
    # The conditional UPDATE is the claim. Two requests may both have read the token
    # as unused; the database lets only one UPDATE match "used_at IS NULL" (the other
    # waits for the row lock, then matches nothing), so exactly one request rotates.
    # A plain read-then-save would let both issue a successor and fork the chain.
    # Erasing ``sealed`` here ends the grace window of the token before this one: its
    # retry needs this token unused anyway. The claim and the successor's INSERT
    # commit together or not at all.
    # On PostgreSQL both are one statement, committed on its own: one round trip
    # instead of four (BEGIN, UPDATE, INSERT, COMMIT) and no ORM query building, which
    # took a refresh from 2.58 to 1.87 ms (in-process, measured).
    # A claim the database rolled back to break a deadlock (a logout-all locking the
    # same rows) changed nothing, and is made again.
    claimed = _retried("A refresh", _claim, token, successor, now, db)
    if not claimed:
        # Another request used the token between our read and our UPDATE. Read it
        # again, now that the winner has committed, and treat it as any used token.
        token = _find_token(parsed, db)
        if token is None:  # deleted in between (purged): as unknown
            raise TokenInvalid
        # Logged out or deactivated meanwhile: never honoured.
        if token.family.is_revoked or not token.family.user.is_active:
            raise TokenRevoked
        return _retry_or_reuse(token, parsed, client, now, db)

    token.used_at = now
    signals.token_rotated.send(
        sender=TokenFamily, family=family, user=family.user, token=successor, previous=token
    )
    return _token_pair(family.user, family, successor, raw_successor, now)


def _claim(token: RefreshToken, successor: RefreshToken, now: datetime, db: str) -> bool:
    """Mark ``token`` used and insert its ``successor``, together or not at all; False
    when another request had already used it."""
    claimed = sql.claim_and_insert(token, successor, now=now, using=db)
    if claimed is None:  # elsewhere, the same in a transaction, with the ORM
        with transaction.atomic(using=db):
            claimed = bool(
                RefreshToken.objects.using(db)
                .filter(pk=token.pk, used_at__isnull=True)
                .update(used_at=now, sealed=None)
            )
            if claimed:
                successor.save(using=db, force_insert=True)
    return claimed


def _convert_simplejwt_token(
    raw: str, client: Client, now: datetime, dpop: Proof | InvalidProof | None = None
) -> TokenPair:
    """Exchange a djangorestframework-simplejwt refresh token for a new family, once
    (see legacy.py). Its ``jti`` is claimed with an INSERT into a unique column before
    the family is started, so of N requests presenting it at once exactly one converts
    it: the others wait for that row, fail on it, and are reuse (or, from the same
    client inside the grace period, a retry: the same answer). Presented again later,
    it is reuse too: the family it started is revoked.

    simplejwt's own rules apply to the token first: ``USER_AUTHENTICATION_RULE``, the
    revoke claim (``CHECK_REVOKE_TOKEN``), its blacklist, and what a password change or
    a deactivation during the transition ended (``SimpleJWTCutoff``)."""
    simple = legacy.verify_refresh(raw)
    proof = login_binding(dpop)  # the conversion starts a family, as a login does
    claims = legacy.claims(raw)
    user_model = get_user_model()
    user = (
        user_model._default_manager.filter(**{simplejwt_settings.USER_ID_FIELD: simple.user_id})
        .order_by()
        .first()
    )
    if user is None:
        raise TokenInvalid
    db = router.db_for_write(ConvertedToken)
    if ConvertedToken.objects.using(db).filter(jti=simple.jti).exists():
        return _converted_again(simple.jti, raw, client, now, db, proof)
    if (
        not user.is_active
        or not legacy.user_may_convert(user, claims)
        or legacy.ended_by_account_change(user, claims, db)
    ):
        raise TokenRevoked
    if legacy.is_blacklisted(simple.jti):
        # Blacklisted with its conversion, in the same transaction: if that committed
        # since the check above, this is a racing second presentation, not a token
        # that was logged out before the switch.
        if ConvertedToken.objects.using(db).filter(jti=simple.jti).exists():
            return _converted_again(simple.jti, raw, client, now, db, proof)
        raise TokenRevoked
    try:
        with transaction.atomic(using=db):
            claim = ConvertedToken.objects.using(db).create(
                jti=simple.jti, converted_at=now, expires_at=legacy.claim_time(claims, "exp")
            )
            pair = start_family(user, client, now=now, dpop=proof, grace_secret=raw)
            claim.family = pair.family
            claim.save(using=db, update_fields=["family"])
            legacy.blacklist(raw)
    except IntegrityError:
        # Another request converted (or logged out) it between our check and our INSERT.
        return _converted_again(simple.jti, raw, client, now, db, proof)
    return pair


def _converted_again(
    jti: str, raw: str, client: Client, now: datetime, db: str, proof: Proof | None
) -> TokenPair:
    """A simplejwt token presented again after it was spent: a retry of its
    conversion (the same answer), or reuse (the family it started is revoked). Logged
    out: revoked. Its family purged or deleted: reuse, with nothing left to revoke."""
    converted = (
        ConvertedToken.objects.using(db).select_related("family__user").filter(jti=jti).first()
    )
    if converted is not None and converted.logged_out:
        raise TokenRevoked
    family = converted.family if converted is not None else None
    if converted is None or family is None:
        raise TokenReused
    pair = _conversion_retry(converted, family, raw, client, now, db, proof)
    if pair is not None:
        return pair
    _reuse_detected(family, None, client, now)
    raise TokenReused


def _conversion_retry(
    converted: ConvertedToken,
    family: TokenFamily,
    raw: str,
    client: Client,
    now: datetime,
    db: str,
    proof: Proof | None,
) -> TokenPair | None:
    """The pair the conversion answered, again, if this presentation is a retry of it:
    the rule of ``_successor_for_retry``, with the family's first token as the
    successor (sealed under a key derived from the simplejwt token, which the database
    never holds: see ``start_family``) and the conversion as the first use."""
    if family.is_revoked or not family.user.is_active:
        return None
    if not _within_grace(converted.converted_at, now):
        return None
    # From the database that converted the token (a replica could lag behind it).
    first = (
        RefreshToken.objects.using(db)
        .filter(family=family, rotated_from__isnull=True)
        .order_by("issued_at", "pk")
        .first()
    )
    if first is None or first.sealed is None:  # erased when it was used: no retry
        return None
    if family.is_bound:
        # Nothing checked this proof against the family yet (the simplejwt token was
        # a bearer token): only the key the conversion bound the family to retries.
        if proof is None or not hmac.compare_digest(proof.jkt, family.dpop_jkt):
            return None
    elif not _same_client(first, client):
        return None
    raw_first = open_successor(bytes(first.sealed), parent_secret=raw, lookup_key=first.lookup_key)
    if raw_first is None:
        return None
    return _token_pair(family.user, family, first, raw_first, now)


def login_binding(dpop: Proof | InvalidProof | None) -> Proof | None:
    """The proof a new family is bound with, or None for a bearer login, as ``DPOP``
    says. A proof that was sent but refused is DPoPInvalid, never silently a bearer
    login; none at all is DPoPRequired when proofs are required."""
    if app_settings.DPOP == "off":
        return None
    if isinstance(dpop, InvalidProof):
        raise DPoPInvalid
    if dpop is None and app_settings.DPOP == "required":
        raise DPoPRequired
    return dpop


def check_proof_of_possession(
    family: TokenFamily, dpop: Proof | InvalidProof | None, client: Client
) -> None:
    """Raise DPoPRequired or DPoPInvalid unless ``dpop`` is a valid proof by the key
    ``family`` is bound to. An unbound family takes no proof, but a refused one is
    still refused (it does not bind the family: that happens at login or never)."""
    if not family.is_bound:
        if isinstance(dpop, InvalidProof) and app_settings.DPOP != "off":
            raise DPoPInvalid
        return
    if dpop is None:
        _proof_rejected(family, "missing", client)
        raise DPoPRequired
    if isinstance(dpop, InvalidProof):
        _proof_rejected(family, dpop.reason, client)
        raise DPoPInvalid
    if not hmac.compare_digest(dpop.jkt, family.dpop_jkt):
        _proof_rejected(family, "jkt", client)
        raise DPoPInvalid


def _proof_rejected(family: TokenFamily, reason: str, client: Client) -> None:
    logger.warning(
        "DPoP proof refused for family %s (%s; ip=%s, user agent=%r).",
        family.pk,
        reason,
        client.ip_address,
        client.user_agent,
    )
    signals.dpop_proof_rejected.send(
        sender=TokenFamily,
        family=family,
        user=family.user,
        reason=reason,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )


def _find_token(parsed: ParsedToken, db: str) -> RefreshToken | None:
    """The token with this lookup key, its family and user, in one query, if the
    secret matches (compared in constant time)."""
    # A statement written once, not an ORM query built on every refresh: 0.4-0.55 ms
    # less per refresh (sql.py). Not the successor: only a retry needs it (see
    # _successor_for_retry).
    token = sql.token_with_family_and_user(parsed.lookup_key, using=db)
    if token is None or not verify_secret(parsed.secret, token.secret_hash):
        return None
    return token


def _retry_or_reuse(
    token: RefreshToken, parsed: ParsedToken, client: Client, now: datetime, db: str
) -> TokenPair:
    family = token.family
    successor = _successor_for_retry(token, client, now, db)
    if successor is not None:
        raw = open_successor(
            bytes(successor.sealed or b""),  # never None: _successor_for_retry checked
            parent_secret=parsed.secret,
            lookup_key=successor.lookup_key,
        )
        if raw is not None:
            return _token_pair(family.user, family, successor, raw, now)

    _reuse_detected(family, token, client, now)
    raise TokenReused


def _reuse_detected(
    family: TokenFamily, token: RefreshToken | None, client: Client, now: datetime
) -> None:
    """Revoke ``family``, whose token (``None``: a converted simplejwt token) was
    presented again. Every attempt is logged; the signal goes out once per family,
    from the request that revoked it (N racing replays must not send N alerts)."""
    revoked_now = revoke_family(family, RevokeReason.REUSE_DETECTED, now=now)
    logger.warning(
        "Refresh token reuse detected: family %s revoked (ip=%s, user agent=%r).",
        family.pk,
        client.ip_address,
        client.user_agent,
    )
    if revoked_now:
        signals.token_reuse_detected.send(
            sender=TokenFamily,
            family=family,
            user=family.user,
            token=token,
            ip_address=client.ip_address,
            user_agent=client.user_agent,
        )


def _successor_for_retry(
    token: RefreshToken, client: Client, now: datetime, db: str
) -> RefreshToken | None:
    """The successor a retry of ``token`` may get back, or None if this is reuse.

    A retry is a lost response or a second tab, not theft, when all of these hold:
    the token was first used less than the grace period ago (the window runs from
    the first use and never slides); the successor is still unused (its ciphertext
    is erased when it is used); and the request comes from the same client as the
    one that first used the token: for a family bound to a DPoP key, a valid proof
    by that key (already checked, whatever the address), otherwise the same IP
    address and user agent, which the successor recorded.
    """
    if not _within_grace(token.used_at, now):
        return None
    # From the database that rotated the token (a replica could lag behind it).
    successor = RefreshToken.objects.using(db).filter(rotated_from=token).first()
    if successor is None or successor.is_used or successor.sealed is None:
        return None
    if token.family.is_bound:
        return successor
    if not _same_client(successor, client):
        return None
    return successor


def _within_grace(first_used_at: datetime | None, now: datetime) -> bool:
    """Inside the grace window, which runs from the first use and never slides."""
    grace = app_settings.REUSE_GRACE_PERIOD
    return bool(grace) and first_used_at is not None and now - first_used_at < grace


def _same_client(successor: RefreshToken, client: Client) -> bool:
    """The request comes from the IP address and user agent the successor recorded."""
    return successor.user_agent == client.user_agent and _same_ip(
        successor.ip_address, client.ip_address
    )


def _same_ip(stored: str | None, presented: str | None) -> bool:
    """Compare addresses as addresses, not strings: the database hands back an
    IPv4-mapped client as "::ffff:192.0.2.1" where Python spells it "::ffff:c000:201",
    and a dual-stack server sees every IPv4 client that way."""
    if stored is None or presented is None:
        return stored == presented
    try:
        return ipaddress.ip_address(stored) == ipaddress.ip_address(presented)
    except ValueError:
        return stored == presented


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
        expires_at=min(now + _refresh_token_lifetime(family), family.expires_at),
        rotated_from=rotated_from,
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )
    if parent_secret is not None and app_settings.REUSE_GRACE_PERIOD:
        token.sealed = seal_successor(
            raw, parent_secret=parent_secret, lookup_key=parsed.lookup_key
        )
    return token, raw


def _refresh_token_lifetime(family: TokenFamily) -> timedelta:
    """How long a refresh token of ``family`` lives: its idle timeout."""
    if family.remember:
        return app_settings.REFRESH_TOKEN_LIFETIME
    return app_settings.SESSION_REFRESH_TOKEN_LIFETIME


def _token_pair(
    user: AbstractBaseUser, family: TokenFamily, token: RefreshToken, raw: str, now: datetime
) -> TokenPair:
    access = AccessToken.for_user(user)
    access[app_settings.FAMILY_CLAIM] = str(family.pk)
    if family.is_bound:
        access["cnf"] = {"jkt": family.dpop_jkt}  # RFC 9449 section 6.1
    add_claims = app_settings.ACCESS_TOKEN_CLAIMS
    if add_claims is not None:
        for name, value in add_claims(user, family).items():
            if name in _reserved_claims():
                raise ImproperlyConfigured(
                    f"ACCESS_TOKEN_CLAIMS returned the claim {name!r}, which the app sets itself."
                )
            access[name] = value
    # An access token never outlives its family.
    lifetime = min(app_settings.ACCESS_TOKEN_LIFETIME, family.expires_at - now)
    access.set_iat(at_time=now)
    access.set_exp(from_time=now, lifetime=lifetime)
    return TokenPair(
        access=keys.encode_access_token(access.payload),
        access_expires_at=datetime.fromtimestamp(access["exp"], tz=dt_timezone.utc),
        refresh=raw,
        refresh_expires_at=token.expires_at,
        family=family,
    )


def _reserved_claims() -> set[str]:
    return {
        "exp",
        "iat",
        "nbf",
        "jti",
        "iss",
        "aud",
        "cnf",
        simplejwt_settings.TOKEN_TYPE_CLAIM,
        simplejwt_settings.USER_ID_CLAIM,
        simplejwt_settings.JTI_CLAIM,
        app_settings.FAMILY_CLAIM,
    }


# Revocation ------------------------------------------------------------------------


def revoke_family(family: TokenFamily, reason: str, *, now: datetime | None = None) -> bool:
    """Revoke one family: its refresh tokens and access tokens stop working.

    Returns False if it was already revoked (nothing is sent twice).
    """
    now = now or timezone.now()
    db = router.db_for_write(TokenFamily)
    if not _retried("A revocation", _revoke_one, family.pk, reason, now, db):
        return False
    family.revoked_at, family.revoke_reason = now, reason
    signals.family_revoked.send(sender=TokenFamily, family=family, reason=reason)
    return True


def revoke_families(
    families: QuerySet[TokenFamily], reason: str, *, now: datetime | None = None
) -> int:
    """Revoke every family of a queryset that is not revoked yet; returns how many."""
    now = now or timezone.now()
    db = router.db_for_write(TokenFamily)
    to_revoke = _retried("A revocation", _revoke_locked, families, reason, now, db)
    for family in to_revoke:
        family.revoked_at, family.revoke_reason = now, reason
        signals.family_revoked.send(sender=TokenFamily, family=family, reason=reason)
    return len(to_revoke)


def _revoke_one(family_id: uuid.UUID, reason: str, now: datetime, db: str) -> bool:
    """Revoke and log one family unless it is revoked already, in one transaction."""
    with transaction.atomic(using=db):
        # Conditional, so two concurrent revocations send the signal once and the first
        # reason is kept. The log row goes in the same transaction (revocation.py).
        revoked = (
            TokenFamily.objects.using(db)
            .filter(pk=family_id, revoked_at__isnull=True)
            .update(revoked_at=now, revoke_reason=reason)
        )
        if revoked:
            revocation.record([family_id], db=db, now=now)
    return bool(revoked)


def _revoke_locked(
    families: QuerySet[TokenFamily], reason: str, now: datetime, db: str
) -> list[TokenFamily]:
    """Revoke and log the families of ``families`` not revoked yet, in one transaction;
    the families it revoked."""
    with transaction.atomic(using=db):
        # Locked, so the signal goes out exactly for the families this call revoked.
        to_revoke = list(families.using(db).filter(revoked_at__isnull=True).select_for_update())
        TokenFamily.objects.using(db).filter(pk__in=[f.pk for f in to_revoke]).update(
            revoked_at=now, revoke_reason=reason
        )
        revocation.record([f.pk for f in to_revoke], db=db, now=now)
    return to_revoke


def logout(
    raw_token: object,
    *,
    now: datetime | None = None,
    dpop: Proof | InvalidProof | None = None,
    client: Client | None = None,
) -> bool:
    """Revoke the family of a refresh token. Says nothing about the token: unknown,
    malformed and already revoked tokens are ignored alike (no oracle), and so is a
    token of a family bound to a DPoP key without a valid proof by that key (someone
    who stole the token but not the key cannot log the user out).

    Returns False only in that last case: the token's holder should keep it."""
    try:
        parsed = parse_token(raw_token)
    except MalformedToken:
        now = now or timezone.now()
        if legacy.accepting(now) and legacy.looks_like_jwt(raw_token):
            return _spend_simplejwt_token(raw_token, now, dpop, client or Client())  # type: ignore[arg-type]
        return True
    token = _find_token(parsed, router.db_for_write(RefreshToken))
    if token is None:
        return True
    try:
        check_proof_of_possession(token.family, dpop, client or Client())
    except DPoPError:
        return False
    revoke_family(token.family, RevokeReason.LOGOUT, now=now)
    return True


def _spend_simplejwt_token(
    raw: str, now: datetime, dpop: Proof | InvalidProof | None, client: Client
) -> bool:
    """Log out with a simplejwt refresh token during the transition: it is spent (its
    ``jti`` recorded as logged out, and put on simplejwt's blacklist where that app is
    installed), so it never converts afterwards. Already converted, it logs out the
    family it started, as a logout with any used token of a family does. An invalid
    or expired one changes nothing and says nothing, as for our tokens."""
    try:
        simple = legacy.verify_refresh(raw)
    except TokenError:
        return True
    expires_at = legacy.claim_time(legacy.claims(raw), "exp")
    db = router.db_for_write(ConvertedToken)
    try:
        with transaction.atomic(using=db):
            ConvertedToken.objects.using(db).create(
                jti=simple.jti, converted_at=now, expires_at=expires_at, logged_out=True
            )
            legacy.blacklist(raw)
    except IntegrityError:  # spent already: converted, or logged out before
        converted = (
            ConvertedToken.objects.using(db)
            .select_related("family__user")
            .filter(jti=simple.jti)
            .first()
        )
        if converted is not None and converted.family is not None:
            try:
                check_proof_of_possession(converted.family, dpop, client)
            except DPoPError:
                return False
            revoke_family(converted.family, RevokeReason.LOGOUT, now=now)
    return True


def end_simplejwt_tokens(user: AbstractBaseUser, *, now: datetime | None = None) -> None:
    """During the transition, end every simplejwt refresh token of ``user`` issued
    until now, as a password change or a deactivation ends the user's families
    (receivers.py): they carry no family to revoke, so a cutoff records it."""
    now = now or timezone.now()
    if not legacy.accepting(now):
        return
    db = router.db_for_write(SimpleJWTCutoff)
    SimpleJWTCutoff.objects.using(db).update_or_create(
        user_id=user.pk, defaults={"ended_before": now}
    )


def logout_all(user: AbstractBaseUser, *, now: datetime | None = None) -> int:
    """Revoke every family of ``user``; during a migration from simplejwt, their
    simplejwt refresh tokens not converted yet end too (everywhere means those too)."""
    now = now or timezone.now()
    end_simplejwt_tokens(user, now=now)
    return revoke_families(TokenFamily.objects.for_user(user), RevokeReason.LOGOUT_ALL, now=now)


# Names --------------------------------------------------------------------------------


def rename_family(family: TokenFamily, name: str) -> None:
    """Give one of a user's sessions the name they know it by ("Work laptop").

    Only the name is written: a concurrent refresh or revocation of the family is
    never undone by it. The caller checks the name (``serializers.SessionNameSerializer``)."""
    TokenFamily.objects.using(router.db_for_write(TokenFamily)).filter(pk=family.pk).update(
        name=name
    )
    family.name = name


# The family of the request being served ----------------------------------------------
#
# AccessTokenAuthentication records it, so that a password change made through that
# request spares the session it was made from; it is forgotten when the request ends
# (receivers.py). A context variable, so threads and async tasks each see their own.

_current_family: ContextVar[uuid.UUID | None] = ContextVar(
    "rotating_tokens_current_family", default=None
)


def current_family_id() -> uuid.UUID | None:
    """The family whose access token authenticated the request being served, if any."""
    return _current_family.get()


def set_current_family(family_id: Any) -> None:
    """Record the family of the request being served (None forgets it). Code that
    authenticates requests in another way can call it to get the same behaviour."""
    if family_id is None or isinstance(family_id, uuid.UUID):
        _current_family.set(family_id)
        return
    try:
        _current_family.set(uuid.UUID(str(family_id)))
    except ValueError:
        _current_family.set(None)


# Who owns a family, as access tokens say it --------------------------------------------


def user_id_claim(value: Any) -> str:
    """A user's ``USER_ID_FIELD`` value as access tokens carry it in ``USER_ID_CLAIM``
    (simplejwt's ``Token.for_user`` writes ``str()`` of it), so that the value read from
    the database (an int, a UUID…) and the claim compare equal. None (a nullable
    field) is "", which no token matches."""
    return "" if value is None else str(value)


def _owner_lookup() -> str:
    """What ``values_list`` reads from a family row for its owner's USER_ID_FIELD: the
    foreign key itself when that field is the primary key (no join, as before), else
    the user's field, joined in the same query."""
    field = simplejwt_settings.USER_ID_FIELD
    pk = get_user_model()._meta.pk
    if pk is not None and field in ("pk", pk.name, pk.attname):
        return "user_id"
    return f"user__{field}"


def token_user_id(user_pk: Any) -> str | None:
    """What the access tokens of the user with this primary key carry in
    ``USER_ID_CLAIM`` (None: no such user). No query when USER_ID_FIELD is the pk."""
    if _owner_lookup() == "user_id":
        return user_id_claim(user_pk)
    user_model = get_user_model()
    try:
        values = user_model._default_manager.filter(pk=user_pk).values_list(
            simplejwt_settings.USER_ID_FIELD, flat=True
        )
        found = list(values.order_by()[:1])
    except (ValueError, ValidationError):  # not a pk of this model
        return None
    return user_id_claim(found[0]) if found else None


# DPoP proofs are used once ------------------------------------------------------------
#
# The record of a used proof must live until the proof can no longer be accepted: a
# store that drops it earlier lets the proof be replayed. Caches drop entries when
# they like: Django's DatabaseCache culls a third of its rows (or all of them) past
# MAX_ENTRIES, Memcached evicts by LRU, Redis evicts under any maxmemory-policy but
# noeviction. So the records go to the UsedDPoPProof table, which drops nothing, and
# to the cache only when it is a Redis that this process has seen refuse to evict.

# Whether each Redis (by pid, backend and servers) keeps every key until it expires, as
# CONFIG GET answered it once in this process.
_never_evicts: dict[tuple[Any, ...], bool] = {}


class ReplayStoreUnavailable(Exception):
    """The shared cache that remembers used DPoP proofs failed: the proof cannot be
    accepted (503), since nothing would stop it being accepted again."""


def replay_cache_candidate() -> BaseCache | None:
    """``DPOP_REPLAY_CACHE`` if it is a Redis (Django's RedisCache or django-redis:
    add() is atomic, and the server can be asked whether it evicts), else None."""
    alias = app_settings.DPOP_REPLAY_CACHE
    if not alias:
        return None
    cache = caches[alias]
    client, _why = revocation.redis_client(cache)
    return cache if client is not None else None


def replay_cache() -> BaseCache | None:
    """The cache used DPoP proofs are recorded in, or None for the database.

    ``DPOP_REPLAY_CACHE`` when it is a Redis whose ``maxmemory-policy`` is
    ``noeviction`` or that has no ``maxmemory``, as the server said once in this
    process. A server that refuses CONFIG GET (managed Redis often does) is not
    trusted. One that cannot be reached is ReplayStoreUnavailable: choosing the
    database instead would check proofs against the wrong store once it is back.
    """
    cache = replay_cache_candidate()
    if cache is None:
        return None
    key = (
        os.getpid(),
        app_settings.DPOP_REPLAY_CACHE,
        revocation.backend_path(cache),
        tuple(getattr(cache, "_servers", ())),
    )
    if key not in _never_evicts:
        _never_evicts[key] = _redis_never_evicts(cache)
        if not _never_evicts[key]:
            logger.warning(
                "The DPoP replay cache may evict keys (its maxmemory-policy is not "
                "noeviction, or CONFIG GET is refused): used DPoP proofs are recorded "
                "in the database instead."
            )
    return cache if _never_evicts[key] else None


def _redis_never_evicts(cache: BaseCache) -> bool:
    import redis

    try:
        client, _why = revocation.redis_client(cache)
        config = client.config_get("maxmemory*")
    except redis.ResponseError:  # CONFIG refused (renamed, ACL, a managed service)
        return False
    except Exception as exc:
        logger.warning("Cache unavailable for DPoP proofs: proof refused.", exc_info=True)
        raise ReplayStoreUnavailable from exc
    policy = config.get("maxmemory-policy")
    maxmemory = config.get("maxmemory")
    return policy == "noeviction" or (maxmemory is not None and str(maxmemory) == "0")


def replay_record_expiry(proof: Proof) -> datetime:
    """Until when the record of ``proof`` is kept: past the last instant at which any
    server process could still accept it.

    ``Proof.accepted_until`` is that instant on this server's clock (``iat`` plus the
    maximum age plus the clock skew allowed). Another process's clock may be behind
    this one's, so the skew is allowed once more, and the sum is rounded up to a whole
    second: Redis (and Memcached) take whole seconds and truncate a fraction, which
    would drop the record up to a second before the proof stops being accepted.
    """
    margin = app_settings.DPOP_CLOCK_SKEW.total_seconds()
    return datetime.fromtimestamp(math.ceil(proof.accepted_until + margin), tz=dt_timezone.utc)


def proof_is_new(proof: Proof, *, now: datetime | None = None) -> bool:
    """Record ``proof`` as used; False if it was already (a replay, RFC 9449 11.1).

    Remembered until no process would accept it anyway (``replay_record_expiry``), in
    one store, which must never drop it earlier: a Redis that does not evict
    (``replay_cache``: one round trip), or else the database (one INSERT into a unique
    column). Inside a transaction (the project's ATOMIC_REQUESTS), the INSERT is
    committed on a connection of its own, so an error answer, which rolls the
    request's transaction back, cannot take the record with it (except on SQLite, see
    below).

    If the cache fails, ReplayStoreUnavailable: falling back to the database would
    check a proof against the wrong store (one recorded in the cache would pass again
    in the database, and the other way round when the cache comes back).
    """
    now = now or timezone.now()
    expires_at = replay_record_expiry(proof)
    cache = replay_cache()
    if cache is not None:
        # Whole seconds, rounded up: expires_at is a whole second and now is not.
        timeout = max(1, math.ceil((expires_at - now).total_seconds()))
        try:
            return bool(cache.add(f"rotating_tokens:dpop:{proof.replay_key}", 1, timeout))
        except Exception as exc:
            logger.warning("Cache unavailable for DPoP proofs: proof refused.", exc_info=True)
            raise ReplayStoreUnavailable from exc
    db = router.db_for_write(UsedDPoPProof)
    if connections[db].in_atomic_block and connections[db].vendor != "sqlite":
        return _record_proof_on_its_own_connection(db, proof.replay_key, expires_at)
    # SQLite has one writer at a time: a second connection would wait for the
    # request's own transaction. There, under ATOMIC_REQUESTS, an error answer takes
    # the record with it (rotating_tokens.W041 says so; a Redis that does not evict
    # avoids it).
    try:
        with transaction.atomic(using=db):
            UsedDPoPProof.objects.using(db).create(key=proof.replay_key, expires_at=expires_at)
    except IntegrityError:
        return False
    return True


def _record_proof_on_its_own_connection(db: str, key: str, expires_at: datetime) -> bool:
    """The INSERT of proof_is_new, committed on a connection of its own: the
    request's connection is inside a transaction (ATOMIC_REQUESTS, or the project's
    own atomic block) that an error answer would roll back."""
    connection = connections.create_connection(db)
    try:
        sql.insert_used_proof(connection, key, expires_at)
        connection.commit()
    except IntegrityError:
        return False
    finally:
        connection.close()
    return True


# Purge ---------------------------------------------------------------------------------


@dataclass
class PurgeResult:
    """What a purge deleted (or, in a dry run, would delete)."""

    families: int = 0
    family_tokens: int = 0  # the tokens of those families
    used_tokens: int = 0  # used, expired tokens of active families
    # Records of spent simplejwt tokens (and the users' cutoffs) nobody needs any more.
    simplejwt_records: int = 0
    # Rows of the revocation log no process will read again (revocation.py).
    revocations: int = 0

    @property
    def tokens(self) -> int:
        return self.family_tokens + self.used_tokens


def purge(
    *,
    older_than: timedelta | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete the families and tokens nobody needs any more.

    - Families that are over (absolutely expired, idle: every token expired, or
      revoked) since longer than ``older_than`` (default ``PURGE_RETENTION``), with
      their tokens.
    - In active families, used tokens whose own expiry has passed: presented again,
      they are refused as expired before reuse detection looks at them. Every other
      token stays, because reuse detection needs the used tokens of a live family.
    - Records of spent simplejwt tokens (``ConvertedToken``) once the simplejwt token
      has expired (``exp`` plus simplejwt's ``LEEWAY``), and every one of them and
      every ``SimpleJWTCutoff`` once the transition is over. Not with their family:
      the record is what keeps the old token spent, so the purge unlinks it from a
      family it deletes.

    Rows go in batches of ``batch_size``, each selected through an index and deleted
    in its own short transaction, so memory and lock times stay flat whatever the size
    of the table. A batch deletes only the rows still there, so two purges running at
    once share the work instead of failing, and a batch the database rolled back to
    break a deadlock is tried again (``_retried``). ``progress`` is called after each
    batch with the running totals.
    """
    now = now or timezone.now()
    cutoff = now - (app_settings.PURGE_RETENTION if older_than is None else older_than)
    db = router.db_for_write(TokenFamily)
    if dry_run:
        ended = TokenFamily.objects.using(db).filter(
            Q(expires_at__lt=cutoff)
            | Q(revoked_at__lt=cutoff)
            | Q(pk__in=_idle_since(cutoff).values("family_id"))
        )
        return PurgeResult(
            families=ended.count(),
            family_tokens=RefreshToken.objects.using(db).filter(family__in=ended).count(),
            used_tokens=_spent_tokens(now).using(db).count(),
            simplejwt_records=sum(rows.using(db).count() for rows in _simplejwt_records(now)),
            revocations=_old_revocations(now, db).count(),
        )

    result = PurgeResult()
    # Three selections of family ids, each walking its own index in order, rather than
    # one OR that the database could only answer by scanning every family. Ordered, so
    # the planner walks the expiry index from its oldest end (where the rows to delete
    # are) instead of joining whole tables for each batch.
    for family_ids in (
        TokenFamily.objects.filter(expires_at__lt=cutoff).order_by("expires_at").values_list("pk"),
        TokenFamily.objects.filter(revoked_at__lt=cutoff).order_by("revoked_at").values_list("pk"),
        _idle_since(cutoff).values_list("family_id"),
    ):
        # A batch that found nothing ends the loop, not one whose rows another purge
        # deleted first.
        found = True
        while found:
            found, families, tokens = _retried(
                "Purge: a batch", _purge_families_batch, family_ids.using(db), batch_size, db
            )
            result.families += families
            result.family_tokens += tokens
            if found and progress:
                progress(result)
    found = True
    while found:
        found, tokens = _retried(
            "Purge: a batch", _purge_tokens_batch, _spent_tokens(now).using(db), batch_size, db
        )
        result.used_tokens += tokens
        if found and progress:
            progress(result)
    for rows in _simplejwt_records(now):
        found = True
        while found:
            found, deleted = _retried(
                "Purge: a batch", _purge_rows_batch, rows.using(db), batch_size, db
            )
            result.simplejwt_records += deleted
            if found and progress:
                progress(result)
    # DPoP proofs too old to be accepted again (the database replay store).
    stale_proofs = UsedDPoPProof.objects.using(db).filter(expires_at__lt=now).order_by("pk")
    found = True
    while found:
        found, _ = _retried("Purge: a batch", _purge_rows_batch, stale_proofs, batch_size, db)
    old_revocations = _old_revocations(now, db)
    found = True
    while found:
        found, deleted = _retried(
            "Purge: a batch", _purge_rows_batch, old_revocations, batch_size, db
        )
        result.revocations += deleted
    return result


# How often a batch the database chose as a deadlock's victim is tried again.
DEADLOCK_ATTEMPTS = 8


def _retried(what: str, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` (whose last argument is the database alias), tried again when
    the database broke a deadlock by rolling it back.

    Two purges at once (a cron on two servers) lock the same rows; a purge and the
    site's own writes, or a refresh and a logout-all, lock rows of neighbouring index
    entries in opposite orders. InnoDB in particular then picks one transaction and
    rolls it back ("Deadlock found when trying to get lock; try restarting
    transaction"), even in READ COMMITTED. Each ``work`` reads what it changes again
    in a transaction of its own (or one statement), so trying it again is safe and
    finds what the winner left. Not inside a transaction of the caller's: the
    database rolled back all of it, and only the caller can start it again.
    """
    db = args[-1]
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return work(*args)
        except OperationalError as exc:
            if (
                attempt == DEADLOCK_ATTEMPTS
                or connections[db].in_atomic_block
                or not _lost_to_a_deadlock(exc)
            ):
                raise
            logger.info("%s lost a deadlock; trying it again (%d).", what, attempt)
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _lost_to_a_deadlock(error: OperationalError) -> bool:
    """Whether ``error`` is the database rolling a transaction back to break a
    deadlock (or, on PostgreSQL, a serialization failure): an error that says to try
    again, not that anything is wrong."""
    cause = error.__cause__
    if getattr(cause, "sqlstate", None) in ("40P01", "40001"):  # psycopg
        return True
    if getattr(cause, "pgcode", None) in ("40P01", "40001"):  # psycopg2
        return True
    args: tuple[Any, ...] = getattr(cause, "args", ())
    return args[:1] == (1213,)  # MySQL and MariaDB: ER_LOCK_DEADLOCK


def _old_revocations(now: datetime, db: str) -> QuerySet[Revocation]:
    """Rows of the revocation log older than twice the longest an access token lives:
    a process starting up reads one such span, and a poll looks for a missing row for
    one. Never the newest row: MySQL before 8.0 (and MariaDB before 10.2.4) numbers
    rows again from the highest one left after a restart, and every process would
    skip the numbers it has already passed."""
    cutoff = now - 2 * timedelta(seconds=revocation.gap_lifetime())
    rows = Revocation.objects.using(db)
    newest = rows.order_by("-id").values_list("id", flat=True).first() or 0
    return rows.filter(revoked_at__lt=cutoff).exclude(id=newest).order_by("id")


def _simplejwt_records(now: datetime) -> list[QuerySet[Any]]:
    """What the purge deletes of the simplejwt transition's records."""
    if not legacy.accepting(now):
        # Over: simplejwt tokens are refused whatever was recorded about them.
        return [ConvertedToken.objects.order_by("pk"), SimpleJWTCutoff.objects.order_by("pk")]
    # Records without an expiry (made before it was stored) wait for the end of the
    # transition. Cutoffs too: a token issued before one may live as long as
    # SIMPLE_JWT's REFRESH_TOKEN_LIFETIME was when it was issued, which nothing records.
    return [ConvertedToken.objects.expired(now - legacy.leeway()).order_by("expires_at")]


def _purge_rows_batch(rows: QuerySet[Any], batch_size: int, db: str) -> tuple[bool, int]:
    """Delete up to ``batch_size`` rows of ``rows`` (of a model nothing points to)."""
    with transaction.atomic(using=db):
        ids = list(rows.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return False, 0
        return True, rows.model._default_manager.using(db).filter(pk__in=ids)._raw_delete(db)


def _idle_since(cutoff: datetime) -> QuerySet[RefreshToken]:
    """The newest tokens of the families whose every token had expired before ``cutoff``.

    The newest token of a family is the unused one, and it expires last, so an idle
    family has an unused token that expired before then: the index on the tokens'
    expiry finds them. The NOT EXISTS confirms that no other token lives on.
    """
    unexpired = RefreshToken.objects.filter(family=OuterRef("family_id"), expires_at__gte=cutoff)
    return (
        RefreshToken.objects.filter(used_at__isnull=True, expires_at__lt=cutoff)
        .filter(~Exists(unexpired))
        .order_by("expires_at")
    )


def _spent_tokens(now: datetime) -> QuerySet[RefreshToken]:
    """Used, expired tokens of active families, oldest expiry first (see above)."""
    return (
        RefreshToken.objects.used()
        .expired(now)
        .filter(family__in=TokenFamily.objects.active(now))
        .order_by("expires_at")
    )


def _purge_families_batch(
    family_ids: QuerySet[Any], batch_size: int, db: str
) -> tuple[bool, int, int]:
    """Delete up to ``batch_size`` families of those ``family_ids`` (a one-column
    queryset) selects, with their tokens. Returns whether any was found, and how many
    families and tokens this call deleted."""
    with transaction.atomic(using=db):
        ids = {row[0] for row in family_ids[:batch_size]}
        if not ids:
            return False, 0, 0
        tokens = RefreshToken.objects.using(db).filter(family_id__in=ids).order_by()
        if not connections[db].features.can_defer_constraint_checks:
            # MySQL checks foreign keys row by row: a token still pointing at another
            # one of the batch would block its deletion. Elsewhere the check waits
            # for the commit, when the whole chain is gone.
            tokens.filter(rotated_from__isnull=False).update(rotated_from=None)
        # _raw_delete: one DELETE … WHERE id IN (…). QuerySet.delete() would load
        # every row to emulate rotated_from's SET_NULL and send signals per row.
        deleted_tokens = tokens._raw_delete(db)
        # The records of converted simplejwt tokens outlive their family (they keep the
        # old token spent): unlinked, as SET_NULL would, or the DELETE below would break
        # their foreign key (at once on MySQL, at the commit elsewhere).
        ConvertedToken.objects.using(db).filter(family_id__in=ids).update(family=None)
        families = TokenFamily.objects.using(db).filter(pk__in=ids).order_by()._raw_delete(db)
    return True, families, deleted_tokens


def _purge_tokens_batch(
    spent: QuerySet[RefreshToken], batch_size: int, db: str
) -> tuple[bool, int]:
    with transaction.atomic(using=db):
        ids = list(spent.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return False, 0
        # Their successors stay: unlink them first (what SET_NULL means).
        RefreshToken.objects.using(db).filter(rotated_from__in=ids).update(rotated_from=None)
        return True, RefreshToken.objects.using(db).filter(pk__in=ids).order_by()._raw_delete(db)
