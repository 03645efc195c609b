"""Django Ninja, with this app's access tokens (``docs/howto/ninja.md``).

::

    from ninja import NinjaAPI
    from rotating_tokens.contrib.ninja import AccessTokenAuth, add_exception_handler

    api = NinjaAPI(auth=AccessTokenAuth())  # AsyncAccessTokenAuth() for async operations
    add_exception_handler(api)  # refusals as {"detail", "code"} with WWW-Authenticate

Both auth classes check the token with ``rotating_tokens.access`` (signature, expiry,
family, owner, DPoP binding, user), as the DRF views do. Needs the ``ninja`` extra.
"""

from __future__ import annotations

from .auth import (
    AccessTokenAuth,
    AccessTokenRefused,
    AsyncAccessTokenAuth,
    add_exception_handler,
)

__all__ = ["AccessTokenAuth", "AccessTokenRefused", "AsyncAccessTokenAuth", "add_exception_handler"]
