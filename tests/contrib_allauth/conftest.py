"""These tests need django-allauth and their own settings:

    pytest tests/contrib_allauth --ds=tests.contrib_allauth.settings

Under any other settings (the suite's ``pytest``) they are not collected."""

from __future__ import annotations

import os

SETTINGS = "tests.contrib_allauth.settings"

if os.environ.get("DJANGO_SETTINGS_MODULE") != SETTINGS:
    collect_ignore_glob = ["test_*.py"]
