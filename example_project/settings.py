"""Settings of the demo. A deployment can ``from example_project.settings import *``
and override what it needs; everything that differs between machines comes from the
environment:

- ``DJANGO_DEBUG`` (default 1): 0 turns debug off (and the refresh cookie's Secure flag on).
- ``DJANGO_SECRET_KEY``: required when debug is off.
- ``DATABASE_URL`` (default SQLite in the project folder): ``postgres://…`` or ``mysql://…``.
- ``REDIS_URL``: a shared cache, which also pushes revocations to every worker; without
  it a file cache shared by the processes of this machine holds the throttles' counters.
- ``REVOCATION_BELL`` (default a file in the temporary folder): the file the workers of
  this machine ring and watch, so that a revocation is in force on all of them at once
  without Redis; an empty value turns it off. ``REVOCATION_POLL_SECONDS`` (default 1):
  the poll interval, the bound across machines when Redis does not push.
- ``REDIS_SOCKET_TIMEOUT`` (default 1): seconds the Redis client waits for a
  connection or an answer before it gives up.
- ``DEMO_CACHE=database``: Django's database cache instead (its table is made by
  ``migrate``), the way a project without Redis or Memcached shares one cache.
- ``JWT_PRIVATE_KEY_FILE``: a PEM private key (RSA, EC P-256 or Ed25519) to sign access
  tokens with instead of SECRET_KEY (HS256); ``JWT_ALGORITHM`` (default RS256, ES256 or
  EdDSA by the key) names the algorithm. Then ``/api/auth/jwks/`` and
  ``/.well-known/jwks.json`` publish the public key for other services, and
  ``JWT_PREVIOUS_PUBLIC_KEY_FILES`` (comma-separated PEM files) lists the public keys
  of earlier signing keys, still published and accepted (key rotation).
- ``TRUSTED_PROXY_COUNT`` (default 0): how many reverse proxies in front of the demo
  append to X-Forwarded-For; 0 ignores the header (the client's address is REMOTE_ADDR).
- ``ACCESS_TOKEN_SECONDS`` (default 300): the access token lifetime; the browser demo
  uses a short one to show silent refreshes.
- ``REUSE_GRACE_SECONDS`` (default 10): the grace period for retries; 0 turns it off.
- ``SESSION_FAMILY_SECONDS`` (default 43200, the app's 12 hours): how long a login with
  ``"remember": false`` lives (``SESSION_FAMILY_LIFETIME``).
- ``NOTICE_EMAILS=1``: e-mail users about a login from a new device and a stolen token
  (``scripts/demo.sh`` sets it); ``DJANGO_EMAIL_BACKEND`` (default the console): where
  those e-mails go.
- ``DJANGO_PASSWORD_HASHERS``: comma-separated hasher paths (the first hashes new
  passwords); the benchmark names a fast one on both sides to leave the password check
  out of its login figures. Unset: Django's defaults.
- ``REFRESH_TOKEN_TRANSPORT`` (default "auto", the app's default): how refresh tokens
  travel, "cookie", "body", "both" or "auto" (see docs/tutorials/browser-spa.md).
- ``ACCEPT_SIMPLEJWT_UNTIL``: an ISO 8601 date and time with its offset
  (``2027-01-15T00:00:00+00:00``): until then, refresh tokens of simplejwt signed with
  the same key convert once (docs/howto/migrate-from-simplejwt.md); simplejwt's URLs are
  answered under ``/api/token/`` (``rotating_tokens.simplejwt_urls``) in any case.
- ``JWT_USER_ID_FIELD`` (default: simplejwt's, the pk ``id``): the user field access
  tokens carry in their ``user_id`` claim (``SIMPLE_JWT["USER_ID_FIELD"]``), e.g.
  ``username``, as a project whose tokens must not show the primary key does. It must
  be unique: Django's ``email`` is not.

``SIMPLE_JWT`` is always a dict here, so a project importing these settings can add to
it (``SIMPLE_JWT["USER_ID_FIELD"] = ...``) or replace it.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dj_database_url

import rotating_tokens

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in {"1", "true", "yes", "on"}
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")
    SECRET_KEY = "django-insecure-rotating-tokens-demo-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"] + [
    host for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rotating_tokens",
    "drf_spectacular",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After SessionMiddleware and CsrfViewMiddleware: the refresh token in an HttpOnly
    # cookie for browsers, guarded by Django's CSRF check.
    "rotating_tokens.middleware.RefreshTokenCookieMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # 0 under ASGI (asgi.py): see DJANGO_DB_POOL below.
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if (
    os.environ.get("DJANGO_DB_POOL") == "1"
    and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
):
    # Under ASGI each request's sync code (a DRF view, the user query) runs in a
    # thread of that request's own: a persistent connection per thread would never be
    # reused, and a new one per request costs a connect. psycopg's pool shares them.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 10}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn workers share the file: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no deadlock on lock upgrade), and the
    # timeout makes writers queue instead of failing with "database is locked". The
    # connection is kept as on the servers (DJANGO_CONN_MAX_AGE): a new one reads and
    # parses the whole schema again at its first query, on every request.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

if os.environ.get("DEMO_CACHE") == "database":
    # Django's database cache (its table is made by the demo's migrations).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "demo_cache",
        }
    }
elif os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            # A Redis that stops answering (paused for a failover, gone) must cost a
            # request about a second, not hang the worker: redis-py waits forever by
            # default. (The clients of Django's RedisCache do not retry a command.)
            "OPTIONS": {
                "socket_timeout": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "1")),
                "socket_connect_timeout": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "1")),
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.environ.get(
                "CACHE_DIR", str(Path(tempfile.gettempdir()) / "rotating-tokens-demo-cache")
            ),
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Comma-separated hasher paths, the first for new passwords. The benchmark
# (benchmarks/compare_simplejwt.py) names a fast one here and in its simplejwt peer, so
# that its login figures leave the password check aside. Unset: Django's hashers.
if os.environ.get("DJANGO_PASSWORD_HASHERS"):
    PASSWORD_HASHERS = os.environ["DJANGO_PASSWORD_HASHERS"].split(",")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rotating_tokens.authentication.AccessTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "rotating_tokens.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Generous, so that test suites and benchmarks from one address are not throttled;
    # a real site would set something like "10/minute" for logins.
    "DEFAULT_THROTTLE_RATES": {
        # An empty value turns the throttle off (the benchmark does).
        "rotating_tokens_login": os.environ.get("LOGIN_THROTTLE_RATE", "600/minute") or None,
        "rotating_tokens_refresh": os.environ.get("REFRESH_THROTTLE_RATE", "6000/minute") or None,
    },
}

# The OpenAPI schema at /api/schema/ (drf-spectacular; the app describes its endpoints).
SPECTACULAR_SETTINGS = {
    "TITLE": "django-rotating-tokens example API",
    "DESCRIPTION": "Refresh-token rotation with token families and reuse detection.",
    "VERSION": rotating_tokens.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
}

ROTATING_TOKENS = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=int(os.environ.get("ACCESS_TOKEN_SECONDS", "300"))),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=14),
    "FAMILY_LIFETIME": timedelta(days=30),
    "REUSE_GRACE_PERIOD": timedelta(seconds=int(os.environ.get("REUSE_GRACE_SECONDS", "10"))),
    # "auto" (the app's default): browsers get the refresh token in the HttpOnly cookie
    # only; curl, scripts and apps get it in the JSON body as well, so the README's
    # curl walk-through keeps working.
    "TRANSPORT": os.environ.get("REFRESH_TOKEN_TRANSPORT", "auto"),
    # 0: X-Forwarded-For is ignored, the client's address is REMOTE_ADDR.
    "TRUSTED_PROXY_COUNT": int(os.environ.get("TRUSTED_PROXY_COUNT", "0")),
    # Secure is off only when DEBUG is on, so that the demo works over plain
    # http://127.0.0.1:8000; any deployment (DEBUG off) gets a Secure cookie.
    "REFRESH_COOKIE_SECURE": not DEBUG,
    # "remember": false logins (the demo's unticked "Remember me").
    "SESSION_FAMILY_LIFETIME": timedelta(
        seconds=int(os.environ.get("SESSION_FAMILY_SECONDS", str(12 * 3600)))
    ),
    # The user hears of a login from a new device and of a stolen token (printed on
    # the console: EMAIL_BACKEND below). Off unless asked for (scripts/demo.sh does):
    # the benchmarks measure logins without the device lookup.
    "NEW_DEVICE_EMAIL": os.environ.get("NOTICE_EMAILS") == "1",
    "REUSE_DETECTED_EMAIL": os.environ.get("NOTICE_EMAILS") == "1",
    # How old each worker's list of revoked families may be when it answers (the bound
    # when no Redis pushes a revocation sooner; 0: the database on every request).
    "REVOCATION_POLL_INTERVAL": float(os.environ.get("REVOCATION_POLL_SECONDS", "1")),
    # The workers of this machine hear of a revocation at once, with Redis or without
    # (REVOCATION_BELL="": off, the push and the poll alone).
    "REVOCATION_BELL": os.environ.get(
        "REVOCATION_BELL", str(Path(tempfile.gettempdir()) / "rotating-tokens-demo.bell")
    )
    or None,
}

EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = "security@demo.invalid"

# simplejwt's settings: filled in below from the environment (signing key, user id).
SIMPLE_JWT: dict[str, Any] = {}

if os.environ.get("ACCEPT_SIMPLEJWT_UNTIL"):
    ROTATING_TOKENS["ACCEPT_SIMPLEJWT_UNTIL"] = datetime.fromisoformat(
        os.environ["ACCEPT_SIMPLEJWT_UNTIL"]
    )

if os.environ.get("JWT_PRIVATE_KEY_FILE"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    _private_pem = Path(os.environ["JWT_PRIVATE_KEY_FILE"]).read_bytes()
    _private_key = serialization.load_pem_private_key(_private_pem, password=None)
    if isinstance(_private_key, ec.EllipticCurvePrivateKey):
        _default_algorithm = "ES256"
    elif isinstance(_private_key, ed25519.Ed25519PrivateKey):
        _default_algorithm = "EdDSA"
    else:
        _default_algorithm = "RS256"
    SIMPLE_JWT.update(
        ALGORITHM=os.environ.get("JWT_ALGORITHM", _default_algorithm),
        SIGNING_KEY=_private_pem.decode(),
        VERIFYING_KEY=_private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )
    ROTATING_TOKENS["VERIFYING_KEY_FALLBACKS"] = [
        Path(name).read_text()
        for name in os.environ.get("JWT_PREVIOUS_PUBLIC_KEY_FILES", "").split(",")
        if name
    ]

if os.environ.get("JWT_USER_ID_FIELD"):
    SIMPLE_JWT["USER_ID_FIELD"] = os.environ["JWT_USER_ID_FIELD"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"rotating_tokens": {"handlers": ["console"], "level": "INFO"}},
}
