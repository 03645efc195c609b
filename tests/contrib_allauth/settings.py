"""tests.settings with django-allauth's headless app client on this app's tokens.

pytest tests/contrib_allauth --ds=tests.contrib_allauth.settings
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "allauth",
    "allauth.account",
    "allauth.headless",
    "allauth.mfa",
]
MIDDLEWARE = [*MIDDLEWARE, "allauth.account.middleware.AccountMiddleware"]
ROOT_URLCONF = "tests.contrib_allauth.urls"
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]

# The one setting the integration needs.
HEADLESS_TOKEN_STRATEGY = "rotating_tokens.contrib.allauth.strategy.RotatingTokenStrategy"
HEADLESS_ONLY = True
HEADLESS_CLIENTS = ("app",)
HEADLESS_FRONTEND_URLS = {
    "account_confirm_email": "https://app.example.com/verify-email/{key}",
    "account_reset_password_from_key": "https://app.example.com/password/reset/{key}",
    "account_signup": "https://app.example.com/signup",
}

ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
ACCOUNT_RATE_LIMITS = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# Django 6.1's successor of EMAIL_BACKEND (ignored by 5.2, whose test runner swaps
# EMAIL_BACKEND for the in-memory one by itself).
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
