"""Settings of rotating_tokens, read live from ``settings.ROTATING_TOKENS``.

Every property looks the value up on each access, so ``override_settings`` works in
tests and nothing is frozen at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

DEFAULT_ACCESS_TOKEN_LIFETIME = timedelta(minutes=5)
DEFAULT_REFRESH_TOKEN_LIFETIME = timedelta(days=14)
DEFAULT_FAMILY_LIFETIME = timedelta(days=30)

DEFAULTS: dict[str, Any] = {
    # None: SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] if the project sets it, else 5 minutes.
    "ACCESS_TOKEN_LIFETIME": None,
    # None: derived from SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] if the project sets it
    # (simplejwt_refresh_lifetimes), else 14 and 30 days.
    "REFRESH_TOKEN_LIFETIME": None,
    "FAMILY_LIFETIME": None,
    # A login with "remember": false (a shared or borrowed computer): its family's
    # absolute lifetime, and how long it may sit idle (its refresh tokens' lifetime).
    "SESSION_FAMILY_LIFETIME": timedelta(hours=12),
    "SESSION_REFRESH_TOKEN_LIFETIME": timedelta(hours=1),
    "REUSE_GRACE_PERIOD": timedelta(seconds=10),
    "TOKEN_HASHER": "hmac-sha256",
    "TOKEN_PREFIX": "rtok_",
    "HASH_KEY": None,
    "HASH_KEY_FALLBACKS": [],
    # Public keys (PEM) of earlier access-token signing keys (keys.py).
    "VERIFYING_KEY_FALLBACKS": [],
    "CHECK_FAMILY_ON_ACCESS": True,
    # How revocations reach every process (revocation.py): the longest a process's
    # deny-list may be when it answers (0: the database on every check), and the cache
    # alias whose Redis pushes them at once (or {"URL": …, "CLUSTER": bool}; None: none).
    "REVOCATION_POLL_INTERVAL": timedelta(seconds=1),
    "REVOCATION_PUSH": "default",
    "REVOCATION_BELL": None,
    # Where used DPoP proofs are recorded when it is a Redis that never evicts (else the
    # database: services.replay_cache).
    "DPOP_REPLAY_CACHE": "default",
    "FAMILY_CLAIM": "fam",
    "LOGIN_THROTTLE_SCOPE": "rotating_tokens_login",
    "REFRESH_THROTTLE_SCOPE": "rotating_tokens_refresh",
    "USER_AGENT_MAX_LENGTH": 512,
    # How many reverse proxies in front of the app append to X-Forwarded-For. 0: the
    # header is ignored and the client's address is REMOTE_ADDR (see clients.py).
    "TRUSTED_PROXY_COUNT": 0,
    "PURGE_RETENTION": timedelta(days=7),
    "REVOKE_ON_PASSWORD_CHANGE": True,
    "MAX_FAMILIES_PER_USER": None,
    # Projects' own rules (callables or dotted paths), see docs/howto/own-views.md.
    "ACCESS_TOKEN_CLAIMS": None,
    "CHECK_LOGIN": None,
    "SESSION_EXCHANGE_ENDS_SESSION": True,
    # Sender-constrained tokens (DPoP, RFC 9449; dpop.py): "off", "optional", "required".
    "DPOP": "optional",
    "DPOP_ALGORITHMS": ("ES256", "EdDSA"),
    "DPOP_PROOF_MAX_AGE": timedelta(seconds=60),
    "DPOP_CLOCK_SKEW": timedelta(seconds=5),
    # Migrating from djangorestframework-simplejwt (legacy.py): an aware datetime.
    "ACCEPT_SIMPLEJWT_UNTIL": None,
    # The keys simplejwt signed refresh tokens with before SIMPLE_JWT's ALGORITHM or key
    # changed, still accepted for the conversion: [{"ALGORITHM": "HS256", "SIGNING_KEY":
    # …}, {"ALGORITHM": "RS256", "VERIFYING_KEY": <PEM public key>}, …].
    "SIMPLEJWT_LEGACY_KEYS": [],
    # The refresh cookie (rotating_tokens.middleware.RefreshTokenCookieMiddleware).
    "TRANSPORT": "auto",
    "REFRESH_COOKIE_NAME": None,
    "REFRESH_COOKIE_SECURE": True,
    "REFRESH_COOKIE_SAMESITE": "Strict",
    "REFRESH_COOKIE_PATH": None,
    "REFRESH_COOKIE_DOMAIN": None,
    # Notices (notices.py): how far back a login's device counts as known, and
    # whether the user gets an e-mail for a new device or a stolen token.
    "NEW_DEVICE_WINDOW": timedelta(days=90),
    "NEW_DEVICE_EMAIL": False,
    "REUSE_DETECTED_EMAIL": False,
    # None: DEFAULT_FROM_EMAIL.
    "NOTICE_FROM_EMAIL": None,
}

TRANSPORTS = ("cookie", "body", "both", "auto")

# Settings of earlier releases that no longer do anything, and what took their place
# (rotating_tokens.W081 names them).
OBSOLETE: dict[str, str] = {
    "FAMILY_STATE_CACHE": "REVOCATION_PUSH (the push) and DPOP_REPLAY_CACHE (used proofs)",
    "FAMILY_STATE_CACHE_TIMEOUT": "REVOCATION_POLL_INTERVAL",
    "FAMILY_STATE_LOCAL_COPY": "the deny-list every process keeps (always on)",
    "FAMILY_STATE_LOCAL_TIMEOUT": "REVOCATION_POLL_INTERVAL",
}

# The system checks of settings whose messages name them only through a placeholder
# ("{name} must be a positive timedelta."), for the settings reference; the checks that
# name a setting in their text are found there (docs/_ext/rt_reference.py), and a test
# keeps every id here a real one.
SETTING_CHECKS: dict[str, tuple[str, ...]] = {
    "ACCESS_TOKEN_LIFETIME": ("rotating_tokens.E004",),
    "REFRESH_TOKEN_LIFETIME": ("rotating_tokens.E004",),
    "FAMILY_LIFETIME": ("rotating_tokens.E004",),
    "SESSION_FAMILY_LIFETIME": ("rotating_tokens.E070",),
    "SESSION_REFRESH_TOKEN_LIFETIME": ("rotating_tokens.E070",),
    "NEW_DEVICE_WINDOW": ("rotating_tokens.E070",),
    "DPOP_PROOF_MAX_AGE": ("rotating_tokens.E042",),
    "DPOP_CLOCK_SKEW": ("rotating_tokens.E042",),
    "NEW_DEVICE_EMAIL": ("rotating_tokens.E071",),
    "REUSE_DETECTED_EMAIL": ("rotating_tokens.E071",),
}


def _seconds(value: Any) -> Any:
    """A number of seconds as a timedelta (anything else as it is, for the checks)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def _at_most(value: Any, limit: Any) -> Any:
    """The shorter of two lifetimes (anything that is not one as it is, for the checks)."""
    if isinstance(value, timedelta) and isinstance(limit, timedelta):
        return min(value, limit)
    return value


def _callable(value: Any) -> Any:
    """A callable, or the dotted path of one (imported on use: settings are read live,
    and the import system caches the module)."""
    return import_string(value) if isinstance(value, str) else value


def simplejwt_refresh_lifetimes() -> tuple[Any, Any] | None:
    """What ``SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]`` meant, as ``(idle lifetime,
    family lifetime)``, or None where the project does not set it.

    Without ``ROTATE_REFRESH_TOKENS`` (simplejwt's default) the one refresh token of a
    login was all a client had: the session ended that long after the login, however
    active the user was. That is a family lifetime, and no idle period can be longer.
    With it, every refresh handed out a new token living that long, and nothing
    bounded the session: that is an idle lifetime, under our usual family lifetime
    (or the same, if it is longer). Either way a project keeps the sessions it had,
    instead of a 1-day session turning into 14 days."""
    simple_jwt = getattr(settings, "SIMPLE_JWT", None) or {}
    theirs = simple_jwt.get("REFRESH_TOKEN_LIFETIME")
    if theirs is None:
        return None
    if not simple_jwt.get("ROTATE_REFRESH_TOKENS", False) or not isinstance(theirs, timedelta):
        return theirs, theirs  # (anything but a timedelta for E004 to report)
    return theirs, max(theirs, DEFAULT_FAMILY_LIFETIME)


class Settings:
    def _get(self, name: str) -> Any:
        user_settings = getattr(settings, "ROTATING_TOKENS", None) or {}
        return user_settings.get(name, DEFAULTS[name])

    @property
    def ACCESS_TOKEN_LIFETIME(self) -> timedelta:
        """How long an access token lives (never past its family's absolute expiry).
        Ours if set; else simplejwt's, so a project that configured
        ``SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]`` gets what it asked for; else 5 minutes."""
        value = self._get("ACCESS_TOKEN_LIFETIME")
        if value is None:
            simple_jwt = getattr(settings, "SIMPLE_JWT", None) or {}
            value = simple_jwt.get("ACCESS_TOKEN_LIFETIME") or DEFAULT_ACCESS_TOKEN_LIFETIME
        return value

    @property
    def REFRESH_TOKEN_LIFETIME(self) -> timedelta:
        """How long a refresh token lives unused: a client that does not refresh for
        this long logs in again. Ours if set; else what simplejwt's
        ``REFRESH_TOKEN_LIFETIME`` meant (``simplejwt_refresh_lifetimes``); else 14 days."""
        value = self._get("REFRESH_TOKEN_LIFETIME")
        if value is None:
            derived = simplejwt_refresh_lifetimes()
            value = derived[0] if derived else DEFAULT_REFRESH_TOKEN_LIFETIME
        return value

    @property
    def FAMILY_LIFETIME(self) -> timedelta:
        """How long a login lasts at most, however active the user is. Ours if set;
        else what simplejwt's ``REFRESH_TOKEN_LIFETIME`` meant; else 30 days."""
        value = self._get("FAMILY_LIFETIME")
        if value is None:
            derived = simplejwt_refresh_lifetimes()
            value = derived[1] if derived else DEFAULT_FAMILY_LIFETIME
        return value

    @property
    def SESSION_FAMILY_LIFETIME(self) -> timedelta:
        """The absolute lifetime of a family whose login said ``"remember": false``
        (never longer than ``FAMILY_LIFETIME``). Its refresh cookie is a session
        cookie, which the browser drops when it closes; but browsers that restore
        the last session keep session cookies for days, so the server ends the
        family anyway: 12 hours, a working day on a shared computer."""
        return _at_most(_seconds(self._get("SESSION_FAMILY_LIFETIME")), self.FAMILY_LIFETIME)

    @property
    def SESSION_REFRESH_TOKEN_LIFETIME(self) -> timedelta:
        """The idle timeout of such a family: how long each of its refresh tokens
        lives (never longer than ``REFRESH_TOKEN_LIFETIME``). An open page refreshes
        every few minutes; an hour without one means the page is gone."""
        return _at_most(
            _seconds(self._get("SESSION_REFRESH_TOKEN_LIFETIME")), self.REFRESH_TOKEN_LIFETIME
        )

    @property
    def REUSE_GRACE_PERIOD(self) -> timedelta:
        """How long after its first use a refresh token may be retried by the same
        client and get the same successor back: a timedelta or a number of seconds. 0
        turns retries off."""
        value = self._get("REUSE_GRACE_PERIOD")
        # A number of seconds works as well: 0 reads better than timedelta(0). (Not a
        # bool: True is an int in Python, and E005 refuses it.)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return timedelta(seconds=value)
        return value

    @property
    def TOKEN_HASHER(self) -> str:
        """How refresh-token secrets are hashed: "hmac-sha256" or "argon2". Each hash
        says which hasher made it, so changing this keeps old tokens working."""
        return self._get("TOKEN_HASHER")

    @property
    def TOKEN_PREFIX(self) -> str:
        """The prefix of raw refresh tokens, so secret scanners can recognise them."""
        return self._get("TOKEN_PREFIX")

    @property
    def HASH_KEY(self) -> str | None:
        """Key of the HMAC hasher; None derives one from SECRET_KEY, and
        SECRET_KEY_FALLBACKS keep verifying, so rotating SECRET_KEY logs nobody out."""
        return self._get("HASH_KEY")

    @property
    def HASH_KEY_FALLBACKS(self) -> list[str]:
        """Earlier values of HASH_KEY: hashes they made keep verifying (like
        SECRET_KEY_FALLBACKS), so changing HASH_KEY logs nobody out."""
        return list(self._get("HASH_KEY_FALLBACKS") or [])

    @property
    def VERIFYING_KEY_FALLBACKS(self) -> list[str | bytes]:
        """Public keys of earlier signing keys: still published in the JWKS and still
        accepted, while access tokens they signed may be alive."""
        return list(self._get("VERIFYING_KEY_FALLBACKS") or [])

    @property
    def CHECK_FAMILY_ON_ACCESS(self) -> bool:
        """``AccessTokenAuthentication`` refuses the access tokens of a revoked
        family at once (and those without a family claim)."""
        return self._get("CHECK_FAMILY_ON_ACCESS")

    @property
    def REVOCATION_POLL_INTERVAL(self) -> timedelta:
        """The longest time between two reads of the revocation log by a process that
        answers access checks: the bound on a revocation reaching it when nothing
        pushes it sooner. 0 reads the family's row on every check."""
        return _seconds(self._get("REVOCATION_POLL_INTERVAL"))

    @property
    def REVOCATION_PUSH(self) -> str | dict[str, Any] | None:
        """The cache alias whose Redis pushes revocations to every process at once
        (Django's RedisCache or django-redis), a Redis of its own
        (``{"URL": "redis://…", "CLUSTER": False, "OPTIONS": {…}}``), or None."""
        return self._get("REVOCATION_PUSH")

    @property
    def REVOCATION_BELL(self) -> str | None:
        """A file the processes of one machine share (its folder must exist): the
        process that revokes a family touches it, and the others, which look at it on
        every check, poll at once. Revocations then reach every process of the machine
        at once without Redis; None: only the push and the poll."""
        return self._get("REVOCATION_BELL")

    @property
    def DPOP_REPLAY_CACHE(self) -> str | None:
        """The cache alias used DPoP proofs are recorded in, when it is a Redis that
        never evicts; otherwise (and with None) the database."""
        return self._get("DPOP_REPLAY_CACHE")

    @property
    def FAMILY_CLAIM(self) -> str:
        """The name of the access-token claim that carries the family id."""
        return self._get("FAMILY_CLAIM")

    @property
    def LOGIN_THROTTLE_SCOPE(self) -> str:
        """The DRF throttle scope of ``token/`` (logins with a password)."""
        return self._get("LOGIN_THROTTLE_SCOPE")

    @property
    def REFRESH_THROTTLE_SCOPE(self) -> str:
        """The DRF throttle scope of ``token/refresh/`` and ``logout/``: a
        logout verifies a refresh token's secret just as a refresh does."""
        return self._get("REFRESH_THROTTLE_SCOPE")

    @property
    def USER_AGENT_MAX_LENGTH(self) -> int:
        """User agents are stored cut to this many characters."""
        return self._get("USER_AGENT_MAX_LENGTH")

    @property
    def TRUSTED_PROXY_COUNT(self) -> int:
        """How many reverse proxies in front of the app append to
        ``X-Forwarded-For``. 0: the header is ignored and the client's address is
        ``REMOTE_ADDR`` (``clients.client_address``)."""
        return self._get("TRUSTED_PROXY_COUNT")

    @property
    def PURGE_RETENTION(self) -> timedelta:
        """How long a family stays in the database after it is over (expired, idle or
        revoked), before ``purge_expired_tokens`` deletes it."""
        return self._get("PURGE_RETENTION")

    @property
    def REVOKE_ON_PASSWORD_CHANGE(self) -> bool:
        """A password change revokes the user's families, except that of the
        request that made it."""
        return self._get("REVOKE_ON_PASSWORD_CHANGE")

    @property
    def MAX_FAMILIES_PER_USER(self) -> int | None:
        """The most active families (devices) a user may have; a login beyond it
        revokes the least recently used ones. None: no limit."""
        return self._get("MAX_FAMILIES_PER_USER")

    @property
    def ACCESS_TOKEN_CLAIMS(self) -> Callable[..., Mapping[str, Any]] | None:
        """``(user, family) -> {claim: value}``, or its dotted path: extra claims of every
        access token (login and refresh). Claims the app sets itself cannot be replaced."""
        return _callable(self._get("ACCESS_TOKEN_CLAIMS"))

    @property
    def CHECK_LOGIN(self) -> Callable[..., None] | None:
        """``(request, user) -> None``, or its dotted path, raising
        ``exceptions.LoginRefused`` to refuse a password login that succeeded (email not
        verified, MFA required…)."""
        return _callable(self._get("CHECK_LOGIN"))

    @property
    def SESSION_EXCHANGE_ENDS_SESSION(self) -> bool:
        """``token/session/`` logs the Django session out once it has become tokens."""
        return self._get("SESSION_EXCHANGE_ENDS_SESSION")

    @property
    def DPOP(self) -> str:
        """ "off": logins ignore DPoP headers (families bound before keep needing
        proofs); "optional": a login with a valid proof binds its family to the proof's
        key; "required": a login without one is refused. Anything else counts as
        "required" (E040 says it): a typo must not turn the protection off."""
        value = self._get("DPOP")
        return value if value in ("off", "optional", "required") else "required"

    @property
    def DPOP_ALGORITHMS(self) -> tuple[str, ...]:
        """The JWS algorithms accepted in DPoP proofs; RS256, PS256, ES384… may be
        added. ``none`` and HMAC algorithms are refused (E041), whatever is listed."""
        value = self._get("DPOP_ALGORITHMS")
        return (value,) if isinstance(value, str) else tuple(value)

    @property
    def DPOP_PROOF_MAX_AGE(self) -> timedelta:
        """How old a DPoP proof's ``iat`` may be."""
        return _seconds(self._get("DPOP_PROOF_MAX_AGE"))

    @property
    def DPOP_CLOCK_SKEW(self) -> timedelta:
        """How far a proof's iat may be off the server's clock, either way: with the
        defaults a proof is accepted from iat - 5 s to iat + 65 s, and one dated more than
        5 s in the future is refused."""
        return _seconds(self._get("DPOP_CLOCK_SKEW"))

    @property
    def ACCEPT_SIMPLEJWT_UNTIL(self) -> datetime | None:
        """Until then, simplejwt refresh tokens are exchanged for families and simplejwt
        access tokens without a family are accepted (see legacy.py)."""
        return self._get("ACCEPT_SIMPLEJWT_UNTIL")

    @property
    def SIMPLEJWT_LEGACY_KEYS(self) -> list[dict[str, Any]]:
        """Earlier simplejwt signing keys, each ``{"ALGORITHM", "SIGNING_KEY"}`` (HMAC)
        or ``{"ALGORITHM", "VERIFYING_KEY"}`` (a public key): a simplejwt refresh token
        they signed still converts until ``ACCEPT_SIMPLEJWT_UNTIL``."""
        return list(self._get("SIMPLEJWT_LEGACY_KEYS") or [])

    @property
    def TRANSPORT(self) -> str:
        """How refresh tokens travel: "auto" (browsers: the cookie only; other
        clients: the JSON body), "cookie", "body" (the cookie middleware does nothing)
        or "both"."""
        return self._get("TRANSPORT")

    @property
    def REFRESH_COOKIE_SECURE(self) -> bool:
        """The ``Secure`` attribute of the refresh cookie."""
        return self._get("REFRESH_COOKIE_SECURE")

    @property
    def REFRESH_COOKIE_NAME(self) -> str:
        """``None`` picks a name: with ``Secure`` on, the ``__Secure-`` prefix makes
        browsers refuse the cookie unless it is Secure and set over HTTPS, so a
        network attacker cannot plant one. (``__Host-`` would also forbid a Path
        other than "/", and the cookie is scoped to the token endpoints.) Without
        ``Secure`` browsers reject that prefix, so the plain name is used."""
        name = self._get("REFRESH_COOKIE_NAME")
        if name:
            return name
        return "__Secure-refresh_token" if self.REFRESH_COOKIE_SECURE else "refresh_token"

    @property
    def REFRESH_COOKIE_SAMESITE(self) -> str:
        """The ``SameSite`` attribute of the refresh cookie: "Strict", "Lax"
        or "None" ("None" needs ``Secure``)."""
        return self._get("REFRESH_COOKIE_SAMESITE")

    @property
    def REFRESH_COOKIE_PATH(self) -> str | None:
        """``None``: the common prefix of the refresh and logout URLs (see middleware)."""
        return self._get("REFRESH_COOKIE_PATH")

    @property
    def REFRESH_COOKIE_DOMAIN(self) -> str | None:
        """The ``Domain`` attribute of the refresh cookie, e.g. "example.com"
        for an API on a sibling host; None: the host that answered."""
        return self._get("REFRESH_COOKIE_DOMAIN")

    @property
    def NEW_DEVICE_WINDOW(self) -> timedelta:
        """A login's device is new unless one of the user's families was used from
        it within this window (``notices.py`` says what a device is)."""
        return _seconds(self._get("NEW_DEVICE_WINDOW"))

    @property
    def NEW_DEVICE_EMAIL(self) -> bool:
        """E-mail the user when they log in from a new device."""
        return bool(self._get("NEW_DEVICE_EMAIL"))

    @property
    def REUSE_DETECTED_EMAIL(self) -> bool:
        """E-mail the user when one of their sessions is ended because a refresh
        token of it was used twice (stolen)."""
        return bool(self._get("REUSE_DETECTED_EMAIL"))

    @property
    def NOTICE_FROM_EMAIL(self) -> str:
        """The sender of the notice e-mails; None: ``DEFAULT_FROM_EMAIL``."""
        return self._get("NOTICE_FROM_EMAIL") or settings.DEFAULT_FROM_EMAIL


app_settings = Settings()
