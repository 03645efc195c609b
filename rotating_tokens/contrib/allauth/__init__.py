"""django-allauth's headless "app" client, with this app's tokens.

One setting::

    HEADLESS_TOKEN_STRATEGY = "rotating_tokens.contrib.allauth.strategy.RotatingTokenStrategy"

See ``strategy.py``. Needs the ``allauth`` extra (``django-allauth[headless]`` 65.x), and
``rotating_tokens`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

# allauth imports the strategy on its first request, long after `manage.py check` has run,
# and no check of ours is registered where the app is not installed: so the mistake is
# named here, before strategy.py imports the models (whose own RuntimeError says nothing
# of allauth). Only once the registry is ready: is_installed() cannot answer before.
if apps.ready and not apps.is_installed("rotating_tokens"):
    raise ImproperlyConfigured(
        "HEADLESS_TOKEN_STRATEGY names rotating_tokens.contrib.allauth, which needs "
        '"rotating_tokens" in INSTALLED_APPS (its models hold the token families): add it, '
        "as the docs' django-allauth guide shows."
    )
