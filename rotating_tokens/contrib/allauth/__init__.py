"""django-allauth's headless "app" client, with this app's tokens.

One setting::

    HEADLESS_TOKEN_STRATEGY = "rotating_tokens.contrib.allauth.strategy.RotatingTokenStrategy"

See ``strategy.py``. Needs the ``allauth`` extra (``django-allauth[mfa]`` 65.x).
"""
