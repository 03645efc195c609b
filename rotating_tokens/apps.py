from __future__ import annotations

from importlib.util import find_spec

from django.apps import AppConfig, apps
from django.utils.translation import gettext_lazy as _


class RotatingTokensConfig(AppConfig):
    name = "rotating_tokens"
    verbose_name = _("Rotating refresh tokens")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .receivers import connect

        connect()  # revocation follows the account

        if apps.is_installed("django.contrib.admin"):
            # The user's page lists their sessions (the admin has imported every
            # app's admin.py by now when it is listed before this app).
            from .admin import show_families_on_user_pages

            show_families_on_user_pages()

        if find_spec("drf_spectacular") is not None:
            # Only where the project has it: the app itself never needs drf-spectacular.
            from . import openapi  # noqa: F401  (registers the OpenAPI extensions)
