"""Access tokens on plain Django views, sync or async: ``@access_token_required``.

The view runs with ``request.user`` (and ``request.auser()``) the token's user,
``request.auth`` the validated token and ``request.access`` the whole
``access.Access`` (user, token, family id). Without a good token it does not run: the
answer is a 401 (503 if the DPoP replay store is down) with the app's body,
``{"detail", "code"}``, and the ``WWW-Authenticate`` challenge the DRF views send.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.http import JsonResponse

from .access import Access, aauthenticate_http_request, authenticate_http_request, not_authenticated
from .exceptions import AccessRefused
from .services import set_current_family

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

View = TypeVar("View", bound=Callable[..., Any])


def access_token_required(view: View) -> View:
    """Let only requests with a good access token (``Authorization: Bearer`` or, for
    a bound token, ``DPoP`` with its proof) into ``view``; async views stay async.

    The view is exempt from Django's CSRF check, as DRF's views are: the token comes
    in a header, which another site's page cannot make a browser send."""
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                access = await aauthenticate_http_request(request)
                if access is None:
                    raise not_authenticated()
            except AccessRefused as refused:
                return refusal_response(refused)
            grant(request, access)
            return await view(request, *args, **kwargs)

        wrapper: Any = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                access = authenticate_http_request(request)
                if access is None:
                    raise not_authenticated()
            except AccessRefused as refused:
                return refusal_response(refused)
            grant(request, access)
            return view(request, *args, **kwargs)

        wrapper = sync_wrapper
    wrapper.csrf_exempt = True
    return wrapper


def grant(request: HttpRequest, access: Access) -> None:
    """Make ``access`` the request's: its user, its token, and the family that a
    password change made by this request spares."""
    user: AbstractBaseUser = access.user

    async def auser() -> AbstractBaseUser:
        return user

    request.user = user  # type: ignore[assignment]
    request.auser = auser  # type: ignore[assignment]
    request.auth = access.token  # type: ignore[attr-defined]
    request.access = access  # type: ignore[attr-defined]
    set_current_family(access.family_id)


def refusal_response(refused: AccessRefused) -> JsonResponse:
    """The answer to a refused access token: ``{"detail", "code"}``, its status, and
    ``WWW-Authenticate`` on a 401."""
    response = JsonResponse(refused.as_dict(), status=refused.status_code)
    challenge = refused.www_authenticate
    if challenge is not None:
        response["WWW-Authenticate"] = challenge
    return response
