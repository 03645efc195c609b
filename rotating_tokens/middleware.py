"""The refresh token in an HttpOnly cookie, for browsers.

JavaScript must never be able to read a browser's refresh token (an XSS could then steal
a whole session, not just a five-minute access token). ``RefreshTokenCookieMiddleware``
keeps it in a cookie that only the refresh and logout endpoints receive:

- a 200 from obtain or refresh: the refresh token moves from the body into the cookie
  (in "cookie" transport the body loses it and keeps ``refresh_expires_at``);
- a request to refresh or logout whose body carries no token: the views take the
  cookie's, after Django's CSRF check (``refresh_token_from_cookie``);
- a logout, or a refused refresh (any 401): the cookie is deleted, so a browser never
  keeps a dead cookie.

A request that another site's page started (``started_by_another_site``) never sets
or deletes the refresh cookie, on any endpoint, and its answer is left as the view
made it: otherwise a form on an attacker's page could post the attacker's own refresh
token to ``token/refresh/`` and plant the attacker's session in the victim's browser
(login CSRF), or post ``refresh=garbage`` to ``logout/`` to log the victim out.

Place it after ``SessionMiddleware`` and ``CsrfViewMiddleware`` in ``MIDDLEWARE``.
"""

from __future__ import annotations

import functools
import os.path
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.urls import (
    NoReverseMatch,
    URLResolver,
    get_resolver,
    get_script_prefix,
    get_urlconf,
    reverse,
)
from django.utils.dateparse import parse_datetime
from django.utils.translation import get_language
from rest_framework import status
from rest_framework.authentication import CSRFCheck
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.utils.mediatypes import media_type_matches

from .conf import app_settings

COOKIE_MIDDLEWARE = f"{__name__}.RefreshTokenCookieMiddleware"
# Views say which endpoint they are with this class attribute ("obtain", "refresh",
# "logout"), so subclasses and projects that mount the views elsewhere keep working.
ROLE_ATTRIBUTE = "refresh_cookie_role"
_STATE_ATTRIBUTE = "_rotating_tokens_cookie"
# Sec-Fetch-Site values of a request started by another site's page.
_FOREIGN_SITES = ("cross-site", "same-site")
ANOTHER_SITE = "another site's page started this request."


@dataclass
class _CookieState:
    role: str
    value: str | None
    # Another site's page started the request: the cookie is never deleted (nor set:
    # deliver_refresh_token asks again).
    foreign: bool = False
    # The view changed nothing the cookie's token stands for (keep_refresh_cookie).
    keep: bool = False


class RefreshTokenCookieMiddleware:
    """Sync and async: under ASGI (an async ``get_response``) it is a coroutine
    function, and so are its ``process_view`` and ``process_template_response``, so
    Django runs none of it in a thread (``adapt_method_mode`` would hop to one for every
    sync method of a middleware in an async chain). None of it does I/O."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view  # type: ignore[method-assign,assignment]
            self.process_template_response = self._aprocess_template_response  # type: ignore[method-assign]

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        return self._finish(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return self._finish(request, await self.get_response(request))

    async def _aprocess_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponseBase | None:
        return RefreshTokenCookieMiddleware.process_view(
            self, request, view_func, view_args, view_kwargs
        )

    async def _aprocess_template_response(self, request: HttpRequest, response: Any) -> Any:
        return RefreshTokenCookieMiddleware.process_template_response(self, request, response)

    def _finish(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        state: _CookieState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if state is not None and not state.foreign and not state.keep:
            refused = state.role == "refresh" and response.status_code == 401
            # 200: simplejwt's blacklist URL (views.SimpleJWTBlacklistView).
            logged_out = state.role == "logout" and response.status_code in (200, 204)
            if refused or logged_out:
                delete_refresh_cookie(response, request=request)
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
        if _has_unsupported_body(request):
            # The view answers 415 without reading the body; the CSRF check below
            # would read it (a multipart upload, to disk) looking for a form token.
            return None
        name = app_settings.REFRESH_COOKIE_NAME
        foreign = started_by_another_site(request)
        state = _CookieState(role, request.COOKIES.get(name) or None, foreign=foreign)
        setattr(request, _STATE_ATTRIBUTE, state)
        if role == "obtain" and foreign:
            # Login CSRF: a form on another site could log the browser into the
            # attacker's account. Django's CSRF check could only fail here (the Origin
            # is not trusted, by definition of "another site"), and it would read the
            # body for a form token first, which a hostile body can make fail with an
            # HTML 400 or a 500: refuse without reading anything.
            return csrf_failed_response(ANOTHER_SITE)
        return None

    def process_template_response(self, request: HttpRequest, response: Any) -> Any:
        # Runs before the DRF Response is rendered, so ``data`` can still change.
        state: _CookieState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if (
            state is None
            or state.role not in ("obtain", "refresh")
            or response.status_code != status.HTTP_200_OK
            or not isinstance(getattr(response, "data", None), Mapping)
        ):
            return response
        response.data = deliver_refresh_token(
            request, response, response.data, login=state.role == "obtain"
        )
        return response


def deliver_refresh_token(
    request: HttpRequest, response: HttpResponseBase, data: Mapping[str, Any], *, login: bool
) -> dict[str, Any]:
    """Put the refresh token of a token answer where this client keeps it, and return
    the body to send: the cookie for a browser (without ``refresh`` in the body), the
    body (and a cookie it ignores) for any other client, as ``TRANSPORT`` says.

    Another site's request gets neither cookie nor change (see the module docstring).
    ``login``: also make sure the ``csrftoken`` cookie is set, which the page echoes in
    ``X-CSRFToken`` when it refreshes by cookie.
    """
    data = dict(data)
    if (
        app_settings.TRANSPORT == "body"
        or not data.get("refresh")
        or started_by_another_site(request)
    ):
        return data
    expires_at = parse_datetime(str(data.get("refresh_expires_at", "")))
    # A family whose login said "remember": false keeps a session cookie on every
    # refresh as well (the answer says so for the family), or the first refresh would
    # make it outlive the browser.
    session = data.get("remember") is False
    set_refresh_cookie(response, data["refresh"], expires_at, request=request, session=session)
    if not body_carries_token(request):
        del data["refresh"]
    if login or (is_browser(request) and settings.CSRF_COOKIE_NAME not in request.COOKIES):
        # The page echoes csrftoken in X-CSRFToken to refresh by cookie. A login sets
        # it; so does the first cookie a browser gets otherwise (a simplejwt token
        # converted by token/refresh/: that page never logged in here), or its next
        # refresh by cookie would be refused for want of it. Other clients refresh by
        # body and need none on every refresh.
        get_token(request)
    return data


def _has_unsupported_body(request: HttpRequest) -> bool:
    """A body the views will refuse with 415, found as DRF finds it (so a wildcard
    content type that DRF would parse as JSON counts as JSON here too). An empty body
    is no body, whatever its content type (wsgiref says text/plain when a bodiless
    fetch() says nothing): DRF reads none when CONTENT_LENGTH is absent or 0."""
    from .parsers import TOKEN_ENDPOINT_PARSERS

    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) <= 0:
            return False
    except ValueError:
        return False
    content_type = request.META.get("CONTENT_TYPE", "")
    return not any(
        media_type_matches(parser.media_type, content_type) for parser in TOKEN_ENDPOINT_PARSERS
    )


def started_by_another_site(request: HttpRequest) -> bool:
    """Whether another site's page started this request (a form post or a fetch).

    A browser says so in ``Sec-Fetch-Site`` (``cross-site`` or ``same-site``), which
    page scripts cannot set; such a request is still the site's own when its
    ``Origin`` is trusted (an SPA on app.example.com calling api.example.com, listed
    in ``CSRF_TRUSTED_ORIGINS``). Browsers that send no ``Sec-Fetch-Site`` (older
    ones, and any over plain HTTP to a name other than localhost) still send
    ``Origin`` on a POST: one that is neither this site's origin nor trusted is
    another site. Origins are compared by Django's own CSRF rule.
    """
    origin = request.META.get("HTTP_ORIGIN")
    trusted = origin is not None and origin_is_trusted(request)
    site = request.META.get("HTTP_SEC_FETCH_SITE")
    if site in _FOREIGN_SITES:
        return not trusted
    return site is None and origin is not None and not trusted


def origin_is_trusted(request: HttpRequest) -> bool:
    """``Origin`` is this site's (scheme and host, behind ``SECURE_PROXY_SSL_HEADER``
    as Django sees them) or in ``CSRF_TRUSTED_ORIGINS``: ``CsrfViewMiddleware``'s
    test, so the two can never disagree."""
    return CsrfViewMiddleware(_never_called)._origin_verified(request)  # type: ignore[attr-defined]


def _never_called(request: HttpRequest) -> HttpResponse:
    raise AssertionError


def is_browser(request: HttpRequest) -> bool:
    """A browser: it sends ``Sec-Fetch-Site`` on every request, and ``Origin`` on
    every POST, cross-origin or not, since 2020 (Chrome 80, Firefox 70, Safari 13);
    page scripts can set neither. curl, mobile apps and servers send neither."""
    return "HTTP_SEC_FETCH_SITE" in request.META or "HTTP_ORIGIN" in request.META


def body_carries_token(request: HttpRequest) -> bool:
    """Whether the refresh token also stays in the JSON body of this response.

    "auto" (the default): a browser's request gets the cookie only, so page
    JavaScript never sees the refresh token; any other client (curl, a mobile app,
    a server) gets it in the body as well, and ignores the cookie.
    """
    transport = app_settings.TRANSPORT
    if transport == "auto":
        return not is_browser(request)
    return transport in ("both", "body")


def refresh_cookie_path(request: HttpRequest | None = None) -> str:
    """``REFRESH_COOKIE_PATH``, or the longest path prefix shared by the refresh and
    logout URLs, looked up in the current URLconf on each call (never at import).

    With ``request``, the URLs are those of the ``include()`` that answered it: a
    project that mounts the app under an old and a new prefix gets, on each, a
    cookie that reaches that prefix's refresh and logout.
    """
    if app_settings.REFRESH_COOKIE_PATH:
        return app_settings.REFRESH_COOKIE_PATH
    match = getattr(request, "resolver_match", None)
    namespace = match.namespace if match is not None else None
    try:
        prefix = _shared_prefix(
            get_resolver(get_urlconf()), namespace, get_script_prefix(), get_language()
        )
    except NoReverseMatch:
        return "/"
    if request is None or match is None or request.path.startswith(prefix):
        return prefix
    # Included twice under one namespace, reverse() found the other include: take
    # this request's own path and cut off what follows the prefix in the view's URL.
    try:
        own = reverse(f"rotating_tokens:{match.url_name}", current_app=namespace)
    except NoReverseMatch:
        return prefix
    suffix = own[len(prefix) :]
    if suffix and request.path.endswith(suffix):
        return request.path[: -len(suffix)] or "/"
    return prefix


@functools.lru_cache(maxsize=64)
def _shared_prefix(
    resolver: URLResolver, namespace: str | None, script_prefix: str, language: str | None
) -> str:
    """The longest path prefix of the refresh and logout URLs. Remembered for the
    URLconf (its resolver, which Django replaces when the URLconf changes), the script
    prefix and the language that ``reverse()`` reads: reversing the two URLs took
    42 us of every refresh and login, against 8 us now (measured)."""
    urls = [
        reverse("rotating_tokens:refresh", current_app=namespace),
        reverse("rotating_tokens:logout", current_app=namespace),
    ]
    # Characters, then cut back to the last "/": "/api/auth/token/refresh/" and
    # "/api/auth/logout/" give "/api/auth/".
    prefix = os.path.commonprefix(urls)  # noqa: RUF071
    return prefix[: prefix.rfind("/") + 1] or "/"


def _cookie_attributes(request: HttpRequest | None) -> dict[str, Any]:
    return {
        "path": refresh_cookie_path(request),
        "domain": app_settings.REFRESH_COOKIE_DOMAIN,
        "secure": app_settings.REFRESH_COOKIE_SECURE,
        "httponly": True,
        "samesite": app_settings.REFRESH_COOKIE_SAMESITE,
    }


def set_refresh_cookie(
    response: HttpResponseBase,
    raw: str,
    expires_at: datetime | None,
    *,
    request: HttpRequest | None = None,
    session: bool = False,
) -> None:
    """Max-Age and Expires end when the refresh token does. Pass the request being
    answered, so the cookie's path is that of its URLs (see refresh_cookie_path).
    ``session``: neither, so the browser drops the cookie when it closes (the family
    still ends on the server at ``expires_at``)."""
    name, attributes = app_settings.REFRESH_COOKIE_NAME, _cookie_attributes(request)
    if session:
        response.set_cookie(name, raw, **attributes)
    elif expires_at is None:
        max_age = int(app_settings.REFRESH_TOKEN_LIFETIME.total_seconds())
        response.set_cookie(name, raw, max_age=max_age, **attributes)
    else:
        # Django turns a datetime into both Expires and Max-Age.
        response.set_cookie(name, raw, expires=expires_at, **attributes)


def delete_refresh_cookie(
    response: HttpResponseBase, *, request: HttpRequest | None = None
) -> None:
    # Same attributes as when it was set: a browser only replaces a cookie with the
    # same name, domain and path (and a Secure one only from a Secure Set-Cookie).
    response.set_cookie(
        app_settings.REFRESH_COOKIE_NAME,
        "",
        max_age=0,
        expires="Thu, 01 Jan 1970 00:00:00 GMT",
        **_cookie_attributes(request),
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


def keep_refresh_cookie(request: Request | HttpRequest) -> None:
    """Tell the middleware not to delete the cookie after this request (a logout of
    a DPoP-bound family without a proof by its key changes nothing)."""
    state: _CookieState | None = getattr(
        getattr(request, "_request", request), _STATE_ATTRIBUTE, None
    )
    if state is not None:
        state.keep = True


def refresh_token_from_cookie(request: Request) -> str | None:
    """The cookie's refresh token, for a refresh or logout request whose body has none.

    A cookie is sent by the browser whoever started the request, so using it needs
    the CSRF check; a token in the body is not subject to it (another site cannot
    know it). Raises 403 ``csrf_failed``. ``None`` without the middleware or cookie.
    """
    state: _CookieState | None = getattr(request._request, _STATE_ATTRIBUTE, None)
    if state is None or not state.value:
        return None
    # Another site's request may not use the cookie, whatever token it echoes: its
    # answer would not replace the cookie it used up.
    reason = ANOTHER_SITE if state.foreign else csrf_failure_reason(request)
    if reason:
        raise PermissionDenied(detail=f"CSRF Failed: {reason}", code="csrf_failed")
    return state.value
