"""The suite's settings with a custom user model (tests/custom_user/models.py): a UUID
primary key, ``USERNAME_FIELD = "email"``, and ``SIMPLE_JWT["USER_ID_FIELD"]`` set to
another unique field. django-allauth's headless app client is installed too, so the
strategy runs on that model::

    pytest tests/custom_user --ds=tests.custom_user.settings
"""

from __future__ import annotations

from tests.contrib_allauth.settings import *  # noqa: F403
from tests.contrib_allauth.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.custom_user"]
AUTH_USER_MODEL = "custom_user.User"
SIMPLE_JWT = {"USER_ID_FIELD": "public_id"}
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # this app's token/ (email + password)
    "allauth.account.auth_backends.AuthenticationBackend",
]

# allauth on a user model without a username.
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = False
