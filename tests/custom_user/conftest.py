"""These tests need their own settings (a custom user model):

    pytest tests/custom_user --ds=tests.custom_user.settings

Under any other settings (the suite's ``pytest``) they are not collected."""

from __future__ import annotations

import os

SETTINGS = "tests.custom_user.settings"

if os.environ.get("DJANGO_SETTINGS_MODULE") != SETTINGS:
    collect_ignore_glob = ["test_*.py"]
