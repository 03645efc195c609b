"""The refresh token in an HttpOnly cookie, for browsers.

JavaScript must never be able to read a browser's refresh token (an XSS could then steal
a whole session, not just a five-minute access token). ``RefreshTokenCookieMiddleware``
keeps it in a cookie that only the refresh and logout endpoints receive:

- a 200 from obtain or refresh: the refresh token moves from the body into the cookie
  (in "cookie" transport the body loses it and keeps ``refresh_expires_at``);
- a request to refresh or logout whose body carries no token: the views take the
  cookie's, after Django's CSRF check (``refresh_token_from_cookie``);
- a logout, or a refused refresh (any 401): the cookie is deleted, so a browser never
  keeps a dead cookie (unless another site's page sent the request with a token of
  its own: see ``_CookieState.may_delete``).

Place it after ``SessionMiddleware`` and ``CsrfViewMiddleware`` in ``MIDDLEWARE``.
"""

from __future__ import annotations

import os.path
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from rest_framework import status
from rest_framework.authentication import CSRFCheck
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from .conf import app_settings

# Views say which endpoint they are with this class attribute ("obtain", "refresh",
# "logout"), so subclasses and projects that mount the views elsewhere keep working.
ROLE_ATTRIBUTE = "refresh_cookie_role"
_STATE_ATTRIBUTE = "_rotating_tokens_cookie"
# Sec-Fetch-Site values of a request started by another site's page.
_FOREIGN_SITES = ("cross-site", "same-site")


@dataclass
class _CookieState:
    role: str
    value: str | None
    # The request's refresh token was the cookie's (taken from it, or equal to it).
    used: bool = False
    # Sec-Fetch-Site says another site's page started the request.
    foreign: bool = False

    def may_delete(self) -> bool:
        """A form on another site may post ``refresh=garbage`` to logout
        (a body token needs no CSRF token); its 204 must not log the browser out by
        deleting the cookie. Any other logout or refused refresh deletes it."""
        return self.used or not self.foreign


class RefreshTokenCookieMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        state: _CookieState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if state is not None and state.may_delete():
            refused = state.role == "refresh" and response.status_code == 401
            logged_out = state.role == "logout" and response.status_code == 204
            if refused or logged_out:
                delete_refresh_cookie(response)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponseBase | None:
        role = getattr(getattr(view_func, "view_class", None), ROLE_ATTRIBUTE, None)
        if role is None or app_settings.TRANSPORT == "body":
            return None
        name = app_settings.REFRESH_COOKIE_NAME
        foreign = request.META.get("HTTP_SEC_FETCH_SITE") in _FOREIGN_SITES
        state = _CookieState(role, request.COOKIES.get(name) or None, foreign=foreign)
        setattr(request, _STATE_ATTRIBUTE, state)
        if role == "obtain" and foreign:
            # Login CSRF: a form on another site could log the browser into the
            # attacker's account, and the cookie would keep it there. A login from
            # another site's page must pass the CSRF check (trusted origin and token).
            reason = csrf_failure_reason(request)
            if reason:
                return csrf_failed_response(reason)
        return None

    def process_template_response(self, request: HttpRequest, response: Any) -> Any:
        # Runs before the DRF Response is rendered, so ``data`` can still change.
        state: _CookieState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if (
            state is None
            or state.role not in ("obtain", "refresh")
            or response.status_code != status.HTTP_200_OK
            or not isinstance(getattr(response, "data", None), Mapping)
            or not response.data.get("refresh")
        ):
            return response
        data = dict(response.data)
        expires_at = parse_datetime(str(data.get("refresh_expires_at", "")))
        set_refresh_cookie(response, data["refresh"], expires_at)
        if not body_carries_token(request):
            del data["refresh"]
        response.data = data
        if state.role == "obtain":
            # The csrftoken cookie the page echoes in X-CSRFToken when it refreshes.
            get_token(request)
        return response


def body_carries_token(request: HttpRequest) -> bool:
    """Whether the refresh token also stays in the JSON body of this response.

    "auto": browsers send ``Sec-Fetch-Site`` on every request and page scripts cannot
    set it, so a request with it is a browser's and gets the cookie only; any other
    client (curl, a mobile app, a server) gets the cookie and the body.
    """
    transport = app_settings.TRANSPORT
    if transport == "auto":
        return "HTTP_SEC_FETCH_SITE" not in request.META
    return transport in ("both", "body")


def refresh_cookie_path() -> str:
    """``REFRESH_COOKIE_PATH``, or the longest path prefix shared by the refresh and
    logout URLs, looked up in the current URLconf on each call (never at import)."""
    if app_settings.REFRESH_COOKIE_PATH:
        return app_settings.REFRESH_COOKIE_PATH
    try:
        urls = [reverse("rotating_tokens:refresh"), reverse("rotating_tokens:logout")]
    except NoReverseMatch:
        return "/"
    # Characters, then cut back to the last "/": "/api/auth/token/refresh/" and
    # "/api/auth/logout/" give "/api/auth/".
    prefix = os.path.commonprefix(urls)  # noqa: RUF071
    return prefix[: prefix.rfind("/") + 1] or "/"


def _cookie_attributes() -> dict[str, Any]:
    return {
        "path": refresh_cookie_path(),
        "domain": app_settings.REFRESH_COOKIE_DOMAIN,
        "secure": app_settings.REFRESH_COOKIE_SECURE,
        "httponly": True,
        "samesite": app_settings.REFRESH_COOKIE_SAMESITE,
    }


def set_refresh_cookie(response: HttpResponseBase, raw: str, expires_at: datetime | None) -> None:
    """Max-Age and Expires end when the refresh token does."""
    name, attributes = app_settings.REFRESH_COOKIE_NAME, _cookie_attributes()
    if expires_at is None:
        max_age = int(app_settings.REFRESH_TOKEN_LIFETIME.total_seconds())
        response.set_cookie(name, raw, max_age=max_age, **attributes)
    else:
        # Django turns a datetime into both Expires and Max-Age.
        response.set_cookie(name, raw, expires=expires_at, **attributes)


def delete_refresh_cookie(response: HttpResponseBase) -> None:
    # Same attributes as when it was set: a browser only replaces a cookie with the
    # same name, domain and path (and a Secure one only from a Secure Set-Cookie).
    response.set_cookie(
        app_settings.REFRESH_COOKIE_NAME,
        "",
        max_age=0,
        expires="Thu, 01 Jan 1970 00:00:00 GMT",
        **_cookie_attributes(),
    )


def csrf_failure_reason(request: HttpRequest | Request) -> str | None:
    """Django's CSRF check (``CsrfViewMiddleware``: trusted origin and the
    ``X-CSRFToken`` header matching the csrftoken cookie), run the way DRF's
    ``SessionAuthentication.enforce_csrf`` runs it. ``None`` when it passes."""

    def no_response(request: HttpRequest) -> HttpResponse:  # never called
        raise AssertionError

    check = CSRFCheck(no_response)
    check.process_request(request)
    return check.process_view(request, None, (), {})  # type: ignore[arg-type,return-value]


def csrf_failed_response(reason: str) -> JsonResponse:
    return JsonResponse(
        {"detail": f"CSRF Failed: {reason}", "code": "csrf_failed"},
        status=status.HTTP_403_FORBIDDEN,
    )


def refresh_token_from_cookie(request: Request) -> str | None:
    """The cookie's refresh token, for a refresh or logout request whose body has none.

    A cookie is sent by the browser whoever started the request, so using it needs
    the CSRF check; a token in the body is not subject to it (another site cannot
    know it). Raises 403 ``csrf_failed``. ``None`` without the middleware or cookie.
    """
    state: _CookieState | None = getattr(request._request, _STATE_ATTRIBUTE, None)
    if state is None or not state.value:
        return None
    reason = csrf_failure_reason(request)
    if reason:
        raise PermissionDenied(detail=f"CSRF Failed: {reason}", code="csrf_failed")
    state.used = True
    return state.value


def note_body_token(request: Request, raw: object) -> None:
    """A body token identical to the cookie's counts as the cookie's (its sender knows
    the cookie), so a logout or a refused refresh with it deletes the cookie."""
    state: _CookieState | None = getattr(request._request, _STATE_ATTRIBUTE, None)
    if state is not None and state.value and raw == state.value:
        state.used = True
