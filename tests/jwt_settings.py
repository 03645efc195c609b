"""simplejwt's settings in tests."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings

from rotating_tokens import services


def set_simplejwt_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    """Change one of simplejwt's settings for a test, as a project sets it at startup.

    simplejwt's reload on ``setting_changed`` makes a new ``api_settings`` object in
    its settings module, which the modules that imported the old one (its tokens and
    authentication, this app) never see: the value is set on every object in use."""
    import rest_framework_simplejwt.authentication
    import rest_framework_simplejwt.settings
    import rest_framework_simplejwt.tokens

    from rotating_tokens import access, legacy

    holders = {
        id(module_settings): module_settings
        for module_settings in (
            simplejwt_settings,
            services.simplejwt_settings,
            access.simplejwt_settings,
            legacy.simplejwt_settings,
            rest_framework_simplejwt.settings.api_settings,
            rest_framework_simplejwt.tokens.api_settings,
            rest_framework_simplejwt.authentication.api_settings,
        )
    }
    for holder in holders.values():
        # Not yet read, the attribute is not there: undone by deleting it.
        monkeypatch.setattr(holder, name, value, raising=False)
