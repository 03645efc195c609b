"""``/api/ninja/``: a Django Ninja API beside the DRF one, with the app's Ninja auth.

The token endpoints stay the app's DRF views (``/api/auth/``, mounted in urls.py): a
Ninja project includes them beside its API, and both read the same tokens."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import NinjaAPI

from rotating_tokens.contrib.ninja import (
    AccessTokenAuth,
    AsyncAccessTokenAuth,
    add_exception_handler,
)

api = NinjaAPI(urls_namespace="demo-ninja", title="django-rotating-tokens Ninja example")
add_exception_handler(api)


@api.get("/me", auth=AsyncAccessTokenAuth())
async def me(request: HttpRequest) -> dict[str, object]:
    """Who the access token belongs to (an async operation)."""
    user = request.auth.user  # type: ignore[attr-defined]  # the auth's Access
    return {"id": user.pk, "username": user.get_username()}


@api.get("/sync/me", auth=AccessTokenAuth())
def sync_me(request: HttpRequest) -> dict[str, object]:
    """The same, as a sync operation."""
    user = request.auth.user  # type: ignore[attr-defined]
    return {"id": user.pk, "username": user.get_username()}
