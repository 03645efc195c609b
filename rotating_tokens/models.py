from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


# The longest name a user can give one of their sessions.
NAME_MAX_LENGTH = 64


class RevokeReason(models.TextChoices):
    LOGOUT = "logout", _("logout")
    LOGOUT_ALL = "logout_all", _("logout everywhere")
    REUSE_DETECTED = "reuse_detected", _("reuse detected")
    ADMIN = "admin", _("revoked by an administrator")
    PASSWORD_CHANGE = "password_change", _("password change")
    USER_DEACTIVATED = "user_deactivated", _("user deactivated")
    EVICTED = "evicted", _("too many sessions")


class TokenFamilyQuerySet(models.QuerySet["TokenFamily"]):
    def for_user(self, user: AbstractBaseUser) -> TokenFamilyQuerySet:
        return self.filter(user=user)  # type: ignore[misc]  # any AUTH_USER_MODEL; the stubs assume auth.User

    def revoked(self) -> TokenFamilyQuerySet:
        return self.filter(revoked_at__isnull=False)

    def active(self, now: datetime | None = None) -> TokenFamilyQuerySet:
        """Families that can still refresh: not revoked, not past their absolute
        expiry, and holding an unused token that has not expired (not idle)."""
        now = now or timezone.now()
        live_token = RefreshToken.objects.filter(
            family=OuterRef("pk"), used_at__isnull=True, expires_at__gt=now
        )
        return self.filter(Exists(live_token), revoked_at__isnull=True, expires_at__gt=now)

    def expired(self, now: datetime | None = None) -> TokenFamilyQuerySet:
        """Families past their absolute expiry, or idle: every token has expired."""
        now = now or timezone.now()
        unexpired_token = RefreshToken.objects.filter(family=OuterRef("pk"), expires_at__gt=now)
        return self.filter(Q(expires_at__lte=now) | ~Exists(unexpired_token))

    def with_last_use(self) -> TokenFamilyQuerySet:
        """Annotate when, from where and by what the family was last used.

        The newest token of a family records the request that created it (the login
        or the latest refresh), so the last use is read from it instead of being
        written to the family on every refresh: one statement less per refresh.
        """
        newest = RefreshToken.objects.filter(family=OuterRef("pk")).order_by("-issued_at", "-pk")
        return self.annotate(
            last_used_at=Subquery(newest.values("issued_at")[:1]),
            last_ip_address=Subquery(newest.values("ip_address")[:1]),
            last_user_agent=Subquery(newest.values("user_agent")[:1]),
        )


class TokenFamily(models.Model):
    """One login: the chain of refresh tokens rotated from it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="token_families",
        verbose_name=_("user"),
    )
    created_at = models.DateTimeField(_("created"))
    expires_at = models.DateTimeField(
        _("absolute expiry"),
        db_index=True,
        help_text=_("No refresh is possible past this time, however active the user is."),
    )
    ip_address = models.GenericIPAddressField(_("IP address at login"), null=True, blank=True)
    user_agent = models.CharField(_("user agent at login"), max_length=512, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, db_index=True)
    revoke_reason = models.CharField(
        _("revoke reason"), max_length=32, choices=RevokeReason.choices, blank=True
    )
    # The RFC 7638 thumbprint of the DPoP key the family is bound to (not secret),
    # or "" for a family of bearer tokens.
    dpop_jkt = models.CharField(_("DPoP key thumbprint"), max_length=64, blank=True, default="")
    # False: the login said "remember": false. The family lives SESSION_FAMILY_LIFETIME
    # and its refresh cookie, on every refresh too, is a session cookie.
    remember = models.BooleanField(_("remembered"), default=True)
    # What its owner calls the device ("Work laptop"); plain text, escaped when shown.
    name = models.CharField(_("name"), max_length=NAME_MAX_LENGTH, blank=True, default="")

    objects: ClassVar[TokenFamilyQuerySet] = TokenFamilyQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("token family")
        verbose_name_plural = _("token families")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="rt_family_user_created")]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_bound(self) -> bool:
        """Bound to a DPoP key: every use of its tokens needs a proof signed with it."""
        return bool(self.dpop_jkt)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now


class RefreshTokenQuerySet(models.QuerySet["RefreshToken"]):
    def for_user(self, user: AbstractBaseUser) -> RefreshTokenQuerySet:
        return self.filter(family__user=user)  # type: ignore[misc]  # any AUTH_USER_MODEL; the stubs assume auth.User

    def used(self) -> RefreshTokenQuerySet:
        return self.filter(used_at__isnull=False)

    def active(self, now: datetime | None = None) -> RefreshTokenQuerySet:
        now = now or timezone.now()
        return self.filter(
            used_at__isnull=True,
            expires_at__gt=now,
            family__revoked_at__isnull=True,
            family__expires_at__gt=now,
        )

    def expired(self, now: datetime | None = None) -> RefreshTokenQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())


class RefreshToken(models.Model):
    """One issued refresh token. The raw token is never stored: only a lookup key
    (not secret) and a hash of the secret part."""

    family = models.ForeignKey(
        TokenFamily, on_delete=models.CASCADE, related_name="tokens", verbose_name=_("family")
    )
    lookup_key = models.CharField(_("lookup key"), max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(_("secret hash"), max_length=255, editable=False)
    issued_at = models.DateTimeField(_("issued"))
    expires_at = models.DateTimeField(_("expires"), db_index=True)
    used_at = models.DateTimeField(_("used"), null=True, blank=True)
    rotated_from = models.OneToOneField(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rotated_to",
        verbose_name=_("rotated from"),
    )
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    # This token, encrypted under a key derived from the secret of the token it was
    # rotated from, so a retry of that token inside the grace period gets it back.
    # Erased when this token is used. See crypto.seal_successor.
    sealed = models.BinaryField(null=True, blank=True, editable=False)

    objects: ClassVar[RefreshTokenQuerySet] = RefreshTokenQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("refresh token")
        verbose_name_plural = _("refresh tokens")
        ordering = ["issued_at", "pk"]
        indexes = [models.Index(fields=["family", "issued_at"], name="rt_token_family_issued")]

    def __str__(self) -> str:
        # Not the lookup key: the admin and logs have no use for any part of a token.
        return f"refresh token #{self.pk}"

    @property
    def is_used(self) -> bool:
        return self.used_at is not None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now


class ConvertedTokenQuerySet(models.QuerySet["ConvertedToken"]):
    def expired(self, before: datetime) -> ConvertedTokenQuerySet:
        """Records of simplejwt tokens that expired before ``before``: presented again,
        they are refused as expired before their record is looked at."""
        return self.filter(expires_at__lt=before)


class ConvertedToken(models.Model):
    """A djangorestframework-simplejwt refresh token that was spent while the project
    migrated (``ACCEPT_SIMPLEJWT_UNTIL``): exchanged for a family, or logged out. Its
    ``jti`` is unique, so the exchange happens once; presented again, the token is
    reuse (or, logged out, revoked).

    The record outlives its family (purged, deleted by an administrator, or with its
    user): it is what keeps the old token spent. It goes only once the simplejwt token
    itself has expired, or the transition is over (``services.purge``)."""

    jti = models.CharField(_("JWT id"), max_length=255, unique=True, editable=False)
    family = models.ForeignKey(
        TokenFamily,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="converted_tokens",
        verbose_name=_("family"),
    )
    converted_at = models.DateTimeField(_("spent"))
    # The simplejwt token's own expiry (its exp claim). NULL for the records made
    # before it was stored: those are kept until the transition is over.
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True, db_index=True)
    logged_out = models.BooleanField(
        _("logged out"),
        default=False,
        help_text=_("Spent by a logout (or simplejwt's blacklist URL), not converted."),
    )

    objects: ClassVar[ConvertedTokenQuerySet] = ConvertedTokenQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("spent simplejwt token")
        verbose_name_plural = _("spent simplejwt tokens")

    def __str__(self) -> str:
        return f"simplejwt token {self.jti}"


class SimpleJWTCutoff(models.Model):
    """ "The simplejwt refresh tokens of this user issued before ``ended_before`` are
    ended": written during the transition when the user's password changes or the
    account is deactivated (receivers.py), as their families are revoked. simplejwt
    tokens carry no family, so this is how those events reach the ones not yet
    converted; a reactivation does not bring them back."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("user"),
    )
    ended_before = models.DateTimeField(_("tokens issued before this are ended"), db_index=True)

    class Meta:
        verbose_name = _("simplejwt token cutoff")
        verbose_name_plural = _("simplejwt token cutoffs")

    def __str__(self) -> str:
        return f"simplejwt tokens of user #{self.user_id} issued before {self.ended_before}"


class UsedDPoPProof(models.Model):
    """A DPoP proof already presented, kept until it would be too old to be accepted,
    so it is never accepted twice. Used unless ``DPOP_REPLAY_CACHE`` is a Redis that
    does not evict; see ``services.proof_is_new``."""

    key = models.CharField(max_length=64, primary_key=True)  # Proof.replay_key
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("used DPoP proof")
        verbose_name_plural = _("used DPoP proofs")

    def __str__(self) -> str:
        return self.key


class KnownDevice(models.Model):
    """A device its user logged in from, and when last (notices.py): a later login
    from it within ``NEW_DEVICE_WINDOW`` is not from a new device. Kept apart from the
    families, which are purged soon after they end."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    # A SHA-256 of devices.device_key (browser, system, model): fixed length, and no
    # second copy of what the families already record.
    key = models.CharField(_("device key"), max_length=64)
    last_login_at = models.DateTimeField(_("last login"))

    class Meta:
        verbose_name = _("known device")
        verbose_name_plural = _("known devices")
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="rt_known_device_user_key")
        ]

    def __str__(self) -> str:
        return f"device {self.key[:8]} of user {self.user_id}"


class Revocation(models.Model):
    """A family revoked (or deleted), in the order the database numbered it: the log
    every process reads to keep its deny-list current (revocation.py). Written in the
    transaction that revokes the family, so it exists exactly when the revocation
    does. ``family_id`` is not a foreign key: the row must outlive a deleted family."""

    id = models.BigAutoField(primary_key=True)
    family_id = models.UUIDField()
    revoked_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("revocation")
        verbose_name_plural = _("revocations")

    def __str__(self) -> str:
        return f"revocation #{self.id} of family {self.family_id}"
