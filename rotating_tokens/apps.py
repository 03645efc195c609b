from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RotatingTokensConfig(AppConfig):
    name = "rotating_tokens"
    verbose_name = _("Rotating refresh tokens")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .receivers import connect

        connect()  # revocation follows the account
