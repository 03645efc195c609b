"""The allauth settings, with "rotating_tokens" forgotten in INSTALLED_APPS (the README
once showed that): test_install.py runs it in a subprocess."""

from __future__ import annotations

from tests.contrib_allauth.settings import *  # noqa: F403
from tests.contrib_allauth.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "rotating_tokens"]
ROOT_URLCONF = "tests.contrib_allauth.urls_without_app"
SILENCED_SYSTEM_CHECKS: list[str] = []
