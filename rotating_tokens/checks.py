from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Info, Tags, Warning, register
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils import timezone

from .conf import DEFAULTS, OBSOLETE, app_settings, simplejwt_refresh_lifetimes
from .crypto import HASHERS
from .middleware import COOKIE_MIDDLEWARE
from .revocation import backend_path

# Caches whose entries only the process that wrote them can see.
PROCESS_LOCAL_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)

MAX_GRACE_PERIOD = timedelta(minutes=1)
LIFETIMES = ("ACCESS_TOKEN_LIFETIME", "REFRESH_TOKEN_LIFETIME", "FAMILY_LIFETIME")


@register(Tags.security)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    user_settings = getattr(settings, "ROTATING_TOKENS", None) or {}
    if not isinstance(user_settings, dict):
        return [Error("ROTATING_TOKENS must be a dict.", id="rotating_tokens.E001")]
    unknown = sorted(set(user_settings) - set(DEFAULTS) - set(OBSOLETE))
    if unknown:
        errors.append(
            Error(
                f"Unknown ROTATING_TOKENS setting(s): {', '.join(unknown)}.",
                hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="rotating_tokens.E002",
            )
        )
    if app_settings.TOKEN_HASHER not in HASHERS:
        errors.append(
            Error(
                f"Unknown TOKEN_HASHER {app_settings.TOKEN_HASHER!r}.",
                hint=f"Use one of: {', '.join(HASHERS)}.",
                id="rotating_tokens.E003",
            )
        )
    bad_lifetimes = [
        name
        for name in LIFETIMES
        if not isinstance(getattr(app_settings, name), timedelta)
        or getattr(app_settings, name) <= timedelta(0)
    ]
    for name in bad_lifetimes:
        source = name
        if user_settings.get(name) is None and name != "ACCESS_TOKEN_LIFETIME":
            # Derived from simplejwt's (conf.simplejwt_refresh_lifetimes): say where.
            source = f"{name} (from SIMPLE_JWT['REFRESH_TOKEN_LIFETIME'])"
        elif user_settings.get(name) is None:
            source = f"{name} (from SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'])"
        errors.append(Error(f"{source} must be a positive timedelta.", id="rotating_tokens.E004"))
    grace = app_settings.REUSE_GRACE_PERIOD  # a number of seconds comes as a timedelta
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        errors.append(
            Error(
                "REUSE_GRACE_PERIOD must be a timedelta or a number of seconds, zero or more.",
                id="rotating_tokens.E005",
            )
        )
    elif grace > MAX_GRACE_PERIOD:
        errors.append(
            Warning(
                f"REUSE_GRACE_PERIOD is {grace}: a stolen refresh token can be replayed "
                "without detection for that long.",
                hint="Keep it under a minute; a few seconds cover lost responses and tabs.",
                id="rotating_tokens.W001",
            )
        )
    if not {"REFRESH_TOKEN_LIFETIME", "FAMILY_LIFETIME"} & set(bad_lifetimes) and (
        app_settings.REFRESH_TOKEN_LIFETIME > app_settings.FAMILY_LIFETIME
    ):
        errors.append(
            Warning(
                "REFRESH_TOKEN_LIFETIME is longer than FAMILY_LIFETIME: refresh tokens "
                "will expire with their family, earlier than the setting says.",
                id="rotating_tokens.W002",
            )
        )
    if "ACCESS_TOKEN_LIFETIME" not in bad_lifetimes:
        errors.extend(_check_access_token_lifetime(user_settings))
    errors.extend(_check_hash_key_fallbacks())
    errors.extend(_check_trusted_proxy_count())
    errors.extend(_check_accept_simplejwt_until())
    return errors


def _is_set(user_settings: dict[str, Any], name: str) -> bool:
    return user_settings.get(name) is not None


def _check_access_token_lifetime(user_settings: dict[str, Any]) -> list[CheckMessage]:
    ours = user_settings.get("ACCESS_TOKEN_LIFETIME")
    theirs = (getattr(settings, "SIMPLE_JWT", None) or {}).get("ACCESS_TOKEN_LIFETIME")
    if ours is None or theirs is None or ours == theirs:
        return []
    return [
        Warning(
            f"ROTATING_TOKENS['ACCESS_TOKEN_LIFETIME'] ({ours}) and "
            f"SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'] ({theirs}) differ: access tokens "
            "issued by this app live as long as the first says.",
            hint="Set the lifetime in one place. Without ROTATING_TOKENS's, simplejwt's is used.",
            id="rotating_tokens.W005",
        )
    ]


def _check_hash_key_fallbacks() -> list[CheckMessage]:
    user_settings = getattr(settings, "ROTATING_TOKENS", None) or {}
    fallbacks = user_settings.get("HASH_KEY_FALLBACKS", [])
    if isinstance(fallbacks, (list, tuple)) and all(
        isinstance(key, str) and key for key in fallbacks
    ):
        return []
    return [
        Error("HASH_KEY_FALLBACKS must be a list of non-empty strings.", id="rotating_tokens.E007")
    ]


def _check_trusted_proxy_count() -> list[CheckMessage]:
    count = app_settings.TRUSTED_PROXY_COUNT
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return [
            Error(
                "TRUSTED_PROXY_COUNT must be a whole number of 0 or more.",
                id="rotating_tokens.E008",
            )
        ]
    return []


def _check_accept_simplejwt_until() -> list[CheckMessage]:
    until = app_settings.ACCEPT_SIMPLEJWT_UNTIL
    if until is None or (isinstance(until, datetime) and until.tzinfo is not None):
        return []
    return [
        Error(
            "ACCEPT_SIMPLEJWT_UNTIL must be None or an aware datetime.",
            hint="For example datetime(2027, 3, 1, tzinfo=timezone.utc).",
            id="rotating_tokens.E009",
        )
    ]


@register(Tags.security, deploy=True)
def check_throttle_rates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A deploy check: a scope without a rate is not throttled
    (``OptionalScopedRateThrottle``), which is right for runserver and tests, and
    wrong on a server, where logins could guess passwords as fast as it answers."""
    from rest_framework.settings import api_settings

    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    rates = api_settings.DEFAULT_THROTTLE_RATES
    rates = rates if isinstance(rates, dict) else {}
    scopes = {
        "LOGIN_THROTTLE_SCOPE": (app_settings.LOGIN_THROTTLE_SCOPE, "token/"),
        "REFRESH_THROTTLE_SCOPE": (
            app_settings.REFRESH_THROTTLE_SCOPE,
            "token/refresh/ and logout/",
        ),
    }
    unthrottled = {name: scope for name, scope in scopes.items() if not rates.get(scope[0])}
    if not unthrottled:
        return []
    which = "; ".join(
        f"{name} {scope!r} ({endpoints})" for name, (scope, endpoints) in unthrottled.items()
    )
    return [
        Warning(
            f"No rate in REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'] for {which}: those "
            "endpoints are not throttled, so a client can try passwords (or refresh "
            "tokens) as fast as the server answers.",
            hint="Set a rate for each scope, e.g. {'"
            + app_settings.LOGIN_THROTTLE_SCOPE
            + "': '10/minute', '"
            + app_settings.REFRESH_THROTTLE_SCOPE
            + "': '60/minute'}.",
            id="rotating_tokens.W006",
        )
    ]


@register(Tags.security, deploy=True)
def check_client_address(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Explain, at deploy time, where the client's address comes from: the login and
    refresh throttles, the grace period and the session records all use it."""
    from rest_framework.settings import api_settings

    count = app_settings.TRUSTED_PROXY_COUNT
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return []  # E008 says it
    drf_count = api_settings.NUM_PROXIES
    if drf_count is not None and drf_count != count:
        return [
            Warning(
                f"REST_FRAMEWORK['NUM_PROXIES'] is {drf_count} but "
                f"ROTATING_TOKENS['TRUSTED_PROXY_COUNT'] is {count}: this app finds the "
                "client's address by its own setting, so its throttles, grace period and "
                "session records see another address than your other DRF throttles.",
                hint="Set TRUSTED_PROXY_COUNT to the number of reverse proxies in front of "
                "the app, the same as NUM_PROXIES.",
                id="rotating_tokens.W004",
            )
        ]
    if count == 0:
        return [
            Info(
                "The client's address is REMOTE_ADDR: X-Forwarded-For is ignored, because "
                "any client can write it (TRUSTED_PROXY_COUNT is 0).",
                hint="Behind reverse proxies that append to X-Forwarded-For (nginx, a load "
                "balancer), set TRUSTED_PROXY_COUNT to their number; otherwise every client "
                "shares the proxy's address, and one throttle budget.",
                id="rotating_tokens.I001",
            )
        ]
    return []


# The refresh cookie (E010-E019, W010-W019) ------------------------------------------

CSRF_MIDDLEWARE = "django.middleware.csrf.CsrfViewMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
SAMESITE_VALUES = ("strict", "lax", "none")


@register(Tags.security)
def check_refresh_cookie(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .conf import TRANSPORTS

    errors: list[CheckMessage] = []
    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    transport = app_settings.TRANSPORT
    if transport not in TRANSPORTS:
        errors.append(
            Error(
                f"Unknown TRANSPORT {transport!r}.",
                hint=f"Use one of: {', '.join(TRANSPORTS)}.",
                id="rotating_tokens.E010",
            )
        )
    samesite = app_settings.REFRESH_COOKIE_SAMESITE
    secure = app_settings.REFRESH_COOKIE_SECURE
    if not isinstance(samesite, str) or samesite.lower() not in SAMESITE_VALUES:
        errors.append(
            Error(
                f"REFRESH_COOKIE_SAMESITE is {samesite!r}.",
                hint='Use "Strict" (default), "Lax" or "None".',
                id="rotating_tokens.E011",
            )
        )
    elif samesite.lower() == "none" and not secure:
        errors.append(
            Error(
                "REFRESH_COOKIE_SAMESITE is 'None' but REFRESH_COOKIE_SECURE is off: "
                "browsers reject such a cookie.",
                id="rotating_tokens.E012",
            )
        )
    errors.extend(_check_cookie_name(secure))
    if transport == "body":
        return errors
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if COOKIE_MIDDLEWARE not in middleware:
        errors.append(
            Warning(
                f"TRANSPORT is {transport!r} but {COOKIE_MIDDLEWARE} is not in MIDDLEWARE: "
                "refresh tokens travel in response bodies, where JavaScript can read them.",
                hint='Add the middleware, or set TRANSPORT to "body" if no browser uses the API.',
                id="rotating_tokens.W010",
            )
        )
        return errors
    if not secure and not settings.DEBUG:
        errors.append(
            Warning(
                "REFRESH_COOKIE_SECURE is off while DEBUG is off: the refresh cookie can "
                "travel over plain HTTP.",
                id="rotating_tokens.W011",
            )
        )
    position = middleware.index(COOKIE_MIDDLEWARE)
    if CSRF_MIDDLEWARE not in middleware:
        errors.append(
            Error(
                f"{CSRF_MIDDLEWARE} is not in MIDDLEWARE: the csrftoken cookie that guards "
                "the refresh cookie is never set.",
                id="rotating_tokens.E014",
            )
        )
    elif any(
        name in middleware and middleware.index(name) > position
        for name in (CSRF_MIDDLEWARE, SESSION_MIDDLEWARE)
    ):
        errors.append(
            Warning(
                f"{COOKIE_MIDDLEWARE} comes before SessionMiddleware or CsrfViewMiddleware.",
                hint="Put it after both.",
                id="rotating_tokens.W012",
            )
        )
    return errors


def _check_cookie_name(secure: bool) -> list[CheckMessage]:
    name = app_settings.REFRESH_COOKIE_NAME
    if name.startswith("__Host-") and (
        not secure or app_settings.REFRESH_COOKIE_PATH != "/" or app_settings.REFRESH_COOKIE_DOMAIN
    ):
        reason = "a __Host- cookie needs Secure, REFRESH_COOKIE_PATH '/' and no domain"
    elif name.startswith("__Secure-") and not secure:
        reason = "a __Secure- cookie needs REFRESH_COOKIE_SECURE"
    else:
        return []
    return [
        Error(
            f"REFRESH_COOKIE_NAME is {name!r}, which browsers will reject: {reason}.",
            id="rotating_tokens.E013",
        )
    ]


# Operations: purge, eviction, password changes (E020-E029, W020-W029) ---------------


@register(Tags.security)
def check_operations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    errors: list[CheckMessage] = []
    retention = app_settings.PURGE_RETENTION
    if not isinstance(retention, timedelta) or retention < timedelta(0):
        errors.append(
            Error("PURGE_RETENTION must be a timedelta of zero or more.", id="rotating_tokens.E020")
        )
    limit = app_settings.MAX_FAMILIES_PER_USER
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        errors.append(
            Error(
                "MAX_FAMILIES_PER_USER must be None (no limit) or a whole number of 1 or more.",
                id="rotating_tokens.E021",
            )
        )
    revoke = app_settings.REVOKE_ON_PASSWORD_CHANGE
    if not isinstance(revoke, bool):
        errors.append(
            Error("REVOKE_ON_PASSWORD_CHANGE must be True or False.", id="rotating_tokens.E022")
        )
    elif not revoke:
        errors.append(
            Warning(
                "REVOKE_ON_PASSWORD_CHANGE is off: whoever holds a stolen refresh token "
                "stays logged in after the user changes the password.",
                id="rotating_tokens.W020",
            )
        )
    return errors


# Signing keys and the JWKS (E030-E039, I030) ----------------------------------------


@register(Tags.security)
def check_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from . import keys

    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    fallbacks = app_settings.VERIFYING_KEY_FALLBACKS
    if not fallbacks:
        return []
    if not keys.is_asymmetric():
        return [
            Error(
                "VERIFYING_KEY_FALLBACKS is set, but SIMPLE_JWT['ALGORITHM'] is symmetric: "
                "there are no public keys to fall back to.",
                id="rotating_tokens.E030",
            )
        ]
    errors: list[CheckMessage] = []
    for index, pem in enumerate(fallbacks):
        try:
            keys.fallback_jwk(pem)
        except Exception:
            errors.append(
                Error(
                    f"VERIFYING_KEY_FALLBACKS[{index}] is not a PEM public key of the kind "
                    "SIMPLE_JWT['ALGORITHM'] signs with.",
                    id="rotating_tokens.E031",
                )
            )
    return errors


@register(Tags.security, deploy=True)
def check_jwks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from . import keys

    if keys.is_asymmetric():
        return []
    return [
        Info(
            "jwks/ answers 404: access tokens are signed with a symmetric algorithm "
            "(SIMPLE_JWT['ALGORITHM']), whose key is a secret no other service should hold.",
            hint="For other services to verify access tokens, sign with RS256, ES256 or "
            "EdDSA (SIMPLE_JWT's SIGNING_KEY and VERIFYING_KEY).",
            id="rotating_tokens.I030",
        )
    ]


# DPoP (E040-E049) ------------------------------------------------------------------------

DPOP_MODES = ("off", "optional", "required")


@register(Tags.security)
def check_dpop(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .dpop import UnsupportedAlgorithm, validate_algorithms

    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    errors: list[CheckMessage] = []
    mode = (user_settings or {}).get("DPOP", "optional")
    if mode not in DPOP_MODES:
        errors.append(
            Error(
                f"DPOP is {mode!r}; it counts as 'required' until you fix it.",
                hint=f"Use one of: {', '.join(DPOP_MODES)}.",
                id="rotating_tokens.E040",
            )
        )
    try:
        validate_algorithms(app_settings.DPOP_ALGORITHMS)
    except (UnsupportedAlgorithm, TypeError) as exc:
        errors.append(
            Error(
                f"DPOP_ALGORITHMS: {exc}",
                hint="Asymmetric JWS algorithms only, e.g. ES256 and EdDSA; never none or HS*.",
                id="rotating_tokens.E041",
            )
        )
    for name in ("DPOP_PROOF_MAX_AGE", "DPOP_CLOCK_SKEW"):
        value = getattr(app_settings, name)
        if not isinstance(value, timedelta) or value < timedelta(0):
            errors.append(
                Error(
                    f"{name} must be a timedelta or a number of seconds, zero or more.",
                    id="rotating_tokens.E042",
                )
            )
    return errors


@register(Tags.security)
def check_simplejwt_authentication(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """simplejwt's ``JWTAuthentication``, or any subclass of it but ours
    (``JWTStatelessUserAuthentication``, a project's own), verifies only the signature
    and expiry of an access token: it accepts one whose family was revoked (a logout,
    reuse detection, a password change) until it expires, and a DPoP-bound one as a
    Bearer token, without a proof. Whatever ``DPOP`` says: the first hole is there
    with DPoP off too."""
    from rest_framework.settings import api_settings

    warnings: list[CheckMessage] = []
    try:
        defaults = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    except ImportError:
        defaults = []  # DRF reports a path it cannot import when a request needs it
    for cls in _foreign_jwt_authentications(defaults):
        warnings.append(_w040(cls, "is in DEFAULT_AUTHENTICATION_CLASSES"))
    for view, cls in _views_with_foreign_jwt_authentication():
        warnings.append(_w040(cls, f"authenticates the view {view}"))
    return warnings


def _w040(cls: type, where: str) -> Warning:
    return Warning(
        f"{_dotted(cls)} {where}: like simplejwt's JWTAuthentication it checks only the "
        "signature and expiry of an access token, so it keeps accepting the access tokens "
        "of a logged-out or revoked session until they expire, and takes a DPoP-bound "
        "token as a Bearer token, without a proof.",
        hint="Use rotating_tokens.authentication.AccessTokenAuthentication (or a subclass).",
        id="rotating_tokens.W040",
    )


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _foreign_jwt_authentications(classes: Any) -> list[type]:
    """Those of ``classes`` that are simplejwt's JWTAuthentication or a subclass of it,
    but not ours (AccessTokenAuthentication subclasses it)."""
    from rest_framework_simplejwt.authentication import JWTAuthentication

    from .authentication import AccessTokenAuthentication

    return [
        cls
        for cls in classes
        if isinstance(cls, type)
        and issubclass(cls, JWTAuthentication)
        and not issubclass(cls, AccessTokenAuthentication)
    ]


def _views_with_foreign_jwt_authentication() -> list[tuple[str, type]]:
    """(view, class) for each DRF view of the URLconf whose own
    ``authentication_classes`` has one (a view that keeps the default is covered by
    the DEFAULT_AUTHENTICATION_CLASSES warning)."""
    from rest_framework.settings import api_settings

    defaults: set[Any] = set(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    found: dict[tuple[str, type], None] = {}  # ordered, without duplicates
    for view in _url_views():
        classes = getattr(view, "authentication_classes", None)
        if not isinstance(classes, (list, tuple)):
            continue
        for cls in _foreign_jwt_authentications(classes):
            if cls not in defaults:
                found[(_dotted(view), cls)] = None
    return list(found)


def _url_views() -> list[type]:
    """The class of every class-based view the URLconf routes to, in URLconf order,
    each once. Only views found by walking the URLconf: one the project builds at
    request time is out of reach."""
    from django.urls import URLPattern, URLResolver, get_resolver

    views: dict[type, None] = {}
    try:
        stack = list(get_resolver().url_patterns)[::-1]
        while stack:
            pattern = stack.pop()
            if isinstance(pattern, URLResolver):
                stack.extend(list(pattern.url_patterns)[::-1])
            elif isinstance(pattern, URLPattern):
                # DRF's as_view() sets ``cls`` (viewsets too); Django's ``view_class``.
                callback = pattern.callback
                view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
                if isinstance(view, type):
                    views[view] = None
    except Exception:
        return []  # a URLconf that does not import: Django's own URL checks say so
    return list(views)


@register(Tags.security)
def check_dpop_holes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Settings under which a DPoP-bound token loses its binding somewhere."""
    from .services import replay_cache_candidate

    if app_settings.DPOP == "off":
        return []
    errors: list[CheckMessage] = []
    # Only a Redis can keep the records out of the database (services.replay_cache),
    # and only when it does not evict, which the check does not connect to ask.
    shared = replay_cache_candidate() is not None
    sqlite_atomic = [
        alias
        for alias, database in settings.DATABASES.items()
        if database.get("ATOMIC_REQUESTS") and "sqlite3" in database.get("ENGINE", "")
    ]
    if sqlite_atomic and not shared:
        errors.append(
            Warning(
                "ATOMIC_REQUESTS is on for SQLite and used DPoP proofs are recorded in the "
                "database: a request of yours that answers an error rolls back the record "
                "of its proof, which could then be replayed within its minute.",
                hint="Set DPOP_REPLAY_CACHE to a Redis whose maxmemory-policy is noeviction "
                "(or without maxmemory), or turn ATOMIC_REQUESTS off. Memcached and the "
                "database cache evict, so they never hold the records.",
                id="rotating_tokens.W041",
            )
        )
    return errors


# How revocations reach every process (E080-E089, W080-W089, I080) ------------------

MAX_POLL_INTERVAL = timedelta(seconds=10)
PUSH_KEYS = {"URL", "CLUSTER", "OPTIONS"}


@register()
def check_revocation_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    errors: list[CheckMessage] = []
    interval = app_settings.REVOCATION_POLL_INTERVAL
    if not isinstance(interval, timedelta) or interval < timedelta(0):
        errors.append(
            Error(
                "REVOCATION_POLL_INTERVAL must be a timedelta or a number of seconds, "
                "zero or more.",
                hint="It bounds how old a process's list of revoked families may be "
                "when it answers; 0 reads the family's row on every request.",
                id="rotating_tokens.E080",
            )
        )
    push = app_settings.REVOCATION_PUSH
    if isinstance(push, dict):
        url = push.get("URL")
        if (
            set(push) - PUSH_KEYS
            or not isinstance(url, str)
            or not url.startswith(("redis://", "rediss://", "unix://"))
            or not isinstance(push.get("CLUSTER", False), bool)
            or not isinstance(push.get("OPTIONS", {}), dict)
        ):
            errors.append(
                Error(
                    "REVOCATION_PUSH must be a cache alias, None, or "
                    '{"URL": "redis://…", "CLUSTER": bool, "OPTIONS": {…}}.',
                    id="rotating_tokens.E081",
                )
            )
    elif push is not None and (not isinstance(push, str) or push not in settings.CACHES):
        errors.append(
            Error(
                f"REVOCATION_PUSH names the cache {push!r}, which CACHES does not define.",
                hint="Name a Redis cache of CACHES, give a Redis URL, or None for the poll alone.",
                id="rotating_tokens.E081",
            )
        )
    bell = app_settings.REVOCATION_BELL
    if bell is not None and (
        not isinstance(bell, (str, os.PathLike)) or not os.path.isdir(os.path.dirname(bell) or ".")
    ):
        errors.append(
            Error(
                f"REVOCATION_BELL must be the path of a file in a folder that exists: {bell!r}.",
                hint="A file that every process of the machine can write, such as one in "
                "the folder of a file cache; or None.",
                id="rotating_tokens.E083",
            )
        )
    replay = app_settings.DPOP_REPLAY_CACHE
    if replay is not None and (not isinstance(replay, str) or replay not in settings.CACHES):
        errors.append(
            Error(
                f"DPOP_REPLAY_CACHE names the cache {replay!r}, which CACHES does not define.",
                hint="Name a cache of CACHES, or None to record used proofs in the database.",
                id="rotating_tokens.E082",
            )
        )
    obsolete = sorted(set(user_settings or {}) & set(OBSOLETE))
    for name in obsolete:
        errors.append(
            Warning(
                f"ROTATING_TOKENS[{name!r}] is no longer used: revocation no longer rests "
                "on a cache.",
                hint=f"Remove it; what replaces it: {OBSOLETE[name]}.",
                id="rotating_tokens.W081",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_revocation_reach(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A deploy check: how soon a revocation is in force on every process, and why
    (never a silent degradation to the poll alone)."""
    from . import revocation

    interval = app_settings.REVOCATION_POLL_INTERVAL
    if not app_settings.CHECK_FAMILY_ON_ACCESS or not isinstance(interval, timedelta):
        return []
    push = app_settings.REVOCATION_PUSH
    if interval < timedelta(0) or (
        push is not None and not isinstance(push, dict) and push not in settings.CACHES
    ):
        return []  # E080, E081 say it
    try:
        status = revocation.status()
    except Exception as exc:  # a Redis Cluster is asked for its nodes at once
        return [
            Warning(
                f"Revocations cannot be pushed now: the Redis of REVOCATION_PUSH cannot be "
                f"reached ({exc}). Each process learns of them by the poll alone, within "
                f"{interval.total_seconds():g} s, until it can.",
                id="rotating_tokens.W080",
            )
        ]
    messages: list[CheckMessage] = []
    if push is not None and not status["push"]:
        reach = (
            "The processes of this machine hear the bell (REVOCATION_BELL); other "
            "machines learn of them"
            if status["bell"]
            else "Each process learns of them"
        )
        messages.append(
            Warning(
                f"Revocations are not pushed: {status['path']}. {reach} by the poll "
                f"alone, within {interval.total_seconds():g} s.",
                hint="Name a Redis cache (Django's RedisCache or django-redis) in "
                "REVOCATION_PUSH, or set it to None to say the poll is enough.",
                id="rotating_tokens.W080",
            )
        )
    if interval > MAX_POLL_INTERVAL:
        messages.append(
            Warning(
                f"REVOCATION_POLL_INTERVAL is {interval}: when Redis fails, a revoked "
                "session's access tokens keep working that long on other processes.",
                hint="Keep it at a few seconds; the poll is one indexed query per interval "
                "per process.",
                id="rotating_tokens.W082",
            )
        )
    messages.append(
        Info(
            f"A revocation is in force on every process {status['bound']}.",
            id="rotating_tokens.I080",
        )
    )
    return messages


@register(Tags.security, deploy=True)
def check_throttle_cache(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A deploy check: DRF's throttles count in the default cache."""
    if "default" not in settings.CACHES:
        return []
    if backend_path(caches["default"]) in PROCESS_LOCAL_CACHES:
        return [
            Warning(
                "The default cache is local to each process, and DRF's throttles (the "
                "login and refresh rates) count in it: with N processes a rate allows N "
                "times as many requests.",
                hint="Use a cache all processes share (Redis, Memcached, the database, or a "
                "file cache on one machine).",
                id="rotating_tokens.W083",
            )
        ]
    return []


# Migrating from simplejwt, and the integrations (E060-E069, W060-W069) -------------

SESSION_LIFETIMES = ("REFRESH_TOKEN_LIFETIME", "FAMILY_LIFETIME")


@register(Tags.security)
def check_migration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    errors: list[CheckMessage] = []
    errors.extend(_check_simplejwt_refresh_lifetime(user_settings or {}))
    errors.extend(_check_simplejwt_legacy_keys(user_settings or {}))
    errors.extend(_check_transition_transport())
    errors.extend(_check_simplejwt_views())
    errors.extend(_check_user_id_field())
    return errors


def _check_simplejwt_views() -> list[CheckMessage]:
    """simplejwt's own token views still routed: they issue and refresh simplejwt
    tokens beside the app's, which no family, rotation or revocation ever covers (and
    during the transition, its refresh view would keep old tokens alive instead of
    converting them)."""
    from rest_framework_simplejwt.views import TokenViewBase

    return [
        Warning(
            f"The URLconf routes to {_dotted(view)}: simplejwt's own view issues, refreshes "
            "or checks simplejwt tokens beside this app's, outside any family, so logout, "
            "reuse detection and revocation never reach them.",
            hint="Mount rotating_tokens.simplejwt_urls at simplejwt's old prefix instead "
            "(docs: 'Migrate from djangorestframework-simplejwt').",
            id="rotating_tokens.W063",
        )
        for view in _url_views()
        if issubclass(view, TokenViewBase)
    ]


def _check_user_id_field() -> list[CheckMessage]:
    """Access tokens name their user by SIMPLE_JWT's USER_ID_FIELD, and the family check
    compares it with the family's owner: a field that two users may share (Django's
    ``email``) would let a token of one pass as the other's, and simplejwt's own lookup
    of the user fails with a 500 on it."""
    from django.contrib.auth import get_user_model
    from django.core.exceptions import FieldDoesNotExist
    from rest_framework_simplejwt.settings import api_settings as simplejwt_settings

    name = simplejwt_settings.USER_ID_FIELD
    model = get_user_model()
    if name == "pk":
        return []
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        problem = "is not a field of"
    else:
        unique = getattr(field, "concrete", False) and getattr(field, "unique", False)
        problem = "" if unique and not field.many_to_many else "is not a unique field of"
    if not problem:
        return []
    return [
        Error(
            f'SIMPLE_JWT["USER_ID_FIELD"] ({name!r}) {problem} {model._meta.label}: access '
            "tokens name their user by it, so it must name exactly one user.",
            hint="Use the primary key (simplejwt's default) or a unique field that never "
            "changes, such as a UUID.",
            id="rotating_tokens.E064",
        )
    ]


def _transition_is_over() -> bool:
    """ACCEPT_SIMPLEJWT_UNTIL was set and has passed (E009 reports a bad value)."""
    until = app_settings.ACCEPT_SIMPLEJWT_UNTIL
    return isinstance(until, datetime) and until.tzinfo is not None and until <= timezone.now()


def _check_transition_transport() -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if (
        app_settings.TRANSPORT != "both"
        or COOKIE_MIDDLEWARE not in middleware
        or not _transition_is_over()
    ):
        return []
    return [
        Warning(
            'TRANSPORT is still "both" after ACCEPT_SIMPLEJWT_UNTIL: browsers get their '
            "refresh token in the response body too, where page JavaScript (and an XSS) "
            "can read it.",
            hint='Once the browser app refreshes by cookie, remove TRANSPORT ("auto"); see '
            "the docs' 'Migrate from djangorestframework-simplejwt'.",
            id="rotating_tokens.W062",
        )
    ]


LEGACY_KEY_FIELDS = ("ALGORITHM", "SIGNING_KEY", "VERIFYING_KEY")


def _check_simplejwt_legacy_keys(user_settings: dict[str, Any]) -> list[CheckMessage]:
    entries = user_settings.get("SIMPLEJWT_LEGACY_KEYS") or []
    if not isinstance(entries, (list, tuple)):
        return [
            Error(
                "SIMPLEJWT_LEGACY_KEYS must be a list of dicts.",
                hint='For example [{"ALGORITHM": "HS256", "SIGNING_KEY": <the old key>}].',
                id="rotating_tokens.E061",
            )
        ]
    errors: list[CheckMessage] = []
    for index, entry in enumerate(entries):
        problem = _legacy_key_problem(entry)
        if problem:
            errors.append(
                Error(
                    f"SIMPLEJWT_LEGACY_KEYS[{index}]: {problem}",
                    hint='{"ALGORITHM": "HS256", "SIGNING_KEY": <the secret>} for an HMAC key, '
                    '{"ALGORITHM": "RS256", "VERIFYING_KEY": <the PEM public key>} otherwise.',
                    id="rotating_tokens.E061",
                )
            )
    if entries and (app_settings.ACCEPT_SIMPLEJWT_UNTIL is None or _transition_is_over()):
        errors.append(
            Warning(
                "SIMPLEJWT_LEGACY_KEYS is set, but simplejwt tokens are no longer "
                "accepted (ACCEPT_SIMPLEJWT_UNTIL is unset or past): the old keys "
                "verify nothing.",
                hint="Remove them from the settings (and the secrets from wherever they are kept).",
                id="rotating_tokens.W061",
            )
        )
    return errors


def _legacy_key_problem(entry: Any) -> str | None:
    import jwt
    from rest_framework_simplejwt.backends import ALLOWED_ALGORITHMS

    if not isinstance(entry, dict):
        return "must be a dict."
    unknown = sorted(set(map(str, entry)) - set(LEGACY_KEY_FIELDS))
    if unknown:
        return f"unknown key(s) {', '.join(unknown)}; known: {', '.join(LEGACY_KEY_FIELDS)}."
    algorithm = entry.get("ALGORITHM")
    if algorithm not in ALLOWED_ALGORITHMS:
        return f"ALGORITHM {algorithm!r} is not one simplejwt signs with."
    if algorithm.startswith("HS"):
        key = entry.get("SIGNING_KEY")
        return None if isinstance(key, (str, bytes)) and key else "an HMAC key needs SIGNING_KEY."
    key = entry.get("VERIFYING_KEY")
    try:
        prepared = jwt.get_algorithm_by_name(algorithm).prepare_key(key)
    except Exception:
        prepared = None
    if not hasattr(prepared, "verify"):  # private keys sign, public keys verify
        return f"VERIFYING_KEY must be a PEM public key for {algorithm}."
    return None


def _check_simplejwt_refresh_lifetime(user_settings: dict[str, Any]) -> list[CheckMessage]:
    derived = simplejwt_refresh_lifetimes()
    if derived is None:
        return []
    ours = [user_settings.get(name) for name in SESSION_LIFETIMES]
    if not all(isinstance(value, timedelta) for value in (*derived, *(v for v in ours if v))):
        return []  # E004 says it
    differ = [
        name
        for name, own, simplejwt in zip(SESSION_LIFETIMES, ours, derived, strict=True)
        if own is not None and own != simplejwt
    ]
    if not differ:
        return []
    theirs = getattr(settings, "SIMPLE_JWT", {})["REFRESH_TOKEN_LIFETIME"]
    return [
        Warning(
            f"SIMPLE_JWT['REFRESH_TOKEN_LIFETIME'] is {theirs}, but ROTATING_TOKENS sets "
            f"{' and '.join(differ)} otherwise: a login now lasts "
            f"{app_settings.FAMILY_LIFETIME} at most and {app_settings.REFRESH_TOKEN_LIFETIME} "
            f"unused, where simplejwt gave it {derived[1]} and {derived[0]}.",
            hint="Set the lifetimes in one place: without ROTATING_TOKENS's, simplejwt's is "
            "used (see the docs' 'Migrate from djangorestframework-simplejwt').",
            id="rotating_tokens.W060",
        )
    ]


ALLAUTH_STRATEGY = "rotating_tokens.contrib.allauth.strategy.RotatingTokenStrategy"
ALLAUTH_MIDDLEWARE = "allauth.account.middleware.AccountMiddleware"
CLIENT_SIDE_SESSIONS = "django.contrib.sessions.backends.signed_cookies"


@register(Tags.security)
def check_allauth_strategy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """What the allauth strategy needs, found before its first request fails. (That
    ``rotating_tokens`` is in INSTALLED_APPS no check of ours can tell: without it
    this module is never imported. The strategy's package refuses then, with
    ImproperlyConfigured, on allauth's first request.)"""
    if not _uses_our_allauth_strategy():
        return []
    errors: list[CheckMessage] = []
    if getattr(settings, "SESSION_ENGINE", "") == CLIENT_SIDE_SESSIONS:
        errors.append(
            Error(
                "HEADLESS_TOKEN_STRATEGY is RotatingTokenStrategy but SESSION_ENGINE keeps "
                "sessions in the client's cookie: a family's allauth session could not be "
                "ended when the family is revoked, and every allauth request would fail.",
                hint="Use the db or cached_db session engine.",
                id="rotating_tokens.E062",
            )
        )
    if ALLAUTH_MIDDLEWARE not in list(getattr(settings, "MIDDLEWARE", None) or []):
        errors.append(
            Error(
                f"HEADLESS_TOKEN_STRATEGY is RotatingTokenStrategy but {ALLAUTH_MIDDLEWARE} "
                "is not in MIDDLEWARE: allauth's refresh endpoint cannot reach the request, "
                "and a refused DPoP login could not be answered.",
                id="rotating_tokens.E063",
            )
        )
    return errors


def _uses_our_allauth_strategy() -> bool:
    path = getattr(settings, "HEADLESS_TOKEN_STRATEGY", None)
    if not isinstance(path, str) or not path:
        return False
    if path == ALLAUTH_STRATEGY:
        return True
    if not path.startswith(("rotating_tokens.", "allauth.")):
        # A project's own strategy may subclass ours: importing it is what allauth
        # will do anyway (a path that does not import is allauth's to report).
        from django.utils.module_loading import import_string

        try:
            strategy = import_string(path)
            from rotating_tokens.contrib.allauth.strategy import RotatingTokenStrategy
        except Exception:
            return False
        return isinstance(strategy, type) and issubclass(strategy, RotatingTokenStrategy)
    return False


# Sessions people understand: remember me, notices (E070-E079) ----------------------------

NOTICE_TEMPLATES = {
    "NEW_DEVICE_EMAIL": "new_device",
    "REUSE_DETECTED_EMAIL": "reuse_detected",
}


@register()
def check_sessions_and_notices(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user_settings = getattr(settings, "ROTATING_TOKENS", None)
    if user_settings is not None and not isinstance(user_settings, dict):
        return []  # E001 says it
    errors: list[CheckMessage] = []
    for name in ("SESSION_FAMILY_LIFETIME", "SESSION_REFRESH_TOKEN_LIFETIME", "NEW_DEVICE_WINDOW"):
        value = getattr(app_settings, name)  # a number of seconds comes as a timedelta
        if not isinstance(value, timedelta) or value <= timedelta(0):
            errors.append(
                Error(
                    f"{name} must be a positive timedelta or number of seconds.",
                    id="rotating_tokens.E070",
                )
            )
    for name, kind in NOTICE_TEMPLATES.items():
        if not getattr(app_settings, name):
            continue
        for part in ("subject", "message"):
            template = f"rotating_tokens/email/{kind}_{part}.txt"
            try:
                get_template(template)
            except TemplateDoesNotExist:
                errors.append(
                    Error(
                        f"{name} is on, but the template {template} cannot be found: "
                        "no e-mail could be sent.",
                        hint="Enable APP_DIRS in TEMPLATES, or put your own version of it "
                        "in a templates folder.",
                        id="rotating_tokens.E071",
                    )
                )
    return errors
