from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url

SECRET_KEY = "tests-only-secret-key-with-enough-length-for-hs256-signing"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
STATIC_URL = "/static/"  # pytest-django's live server serves static files under it
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    # As in a project migrating from simplejwt (tests/test_legacy.py).
    "rest_framework_simplejwt.token_blacklist",
    "rotating_tokens",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

# SQLite by default; DATABASE_URL=postgres://… or mysql://… runs the same suite there.
DATABASES = {"default": dj_database_url.config(default="sqlite:///:memory:")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the browser tests' live server answers from threads of its own,
    # which must not share the tests' one in-memory connection (overlapping requests
    # would break each other's transactions). pytest-django adds the xdist worker's
    # name to it.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(__file__).parent / ".test-db.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Django 6.1's successor of EMAIL_BACKEND (ignored by 5.2, whose test runner swaps
# EMAIL_BACKEND for the in-memory one by itself): mail goes to django.core.mail.outbox.
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rotating_tokens.authentication.AccessTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "rotating_tokens.exceptions.exception_handler",
    # drf-spectacular (a test dependency) for tests/test_openapi.py and the fuzz tests,
    # set before any view is decorated with its schema.
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {},
}

ROTATING_TOKENS = {
    "REUSE_GRACE_PERIOD": timedelta(seconds=10),
    # The suite speaks the JSON contract; test_middleware and test_browser turn the
    # refresh cookie on (middleware and TRANSPORT) where they need it.
    "TRANSPORT": "body",
}

SILENCED_SYSTEM_CHECKS = ["rotating_tokens.W083"]  # LocMemCache is fine in one process
