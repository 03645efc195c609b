"""ASGI and async: the cookie middleware runs without a thread under ASGI, and the async
check keeps the database and the cache off the event loop."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from asgiref.sync import SyncToAsync, async_to_sync, iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse
from django.test import AsyncClient

from rotating_tokens import access, revocation, services
from rotating_tokens.exceptions import AccessRefused
from rotating_tokens.middleware import COOKIE_MIDDLEWARE, RefreshTokenCookieMiddleware
from rotating_tokens.models import RevokeReason

from .dpop_client import DPoPKey

pytestmark = pytest.mark.django_db

BASE = "http://testserver"
ME = "/api/me/"
NAME = "__Secure-refresh_token"  # the cookie's name (tests/settings.py)


@pytest.fixture
def cookie_middleware(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "cookie"}


def _ours(methods) -> list:
    # SyncToAsync keeps the wrapped method's __self__.
    return [
        m for m in methods if isinstance(getattr(m, "__self__", None), RefreshTokenCookieMiddleware)
    ]


def test_under_asgi_the_cookie_middleware_needs_no_thread(cookie_middleware):
    handler = ASGIHandler()  # loads the middleware chain in async mode
    # Django wraps a sync method of a middleware in an async chain in sync_to_async: a
    # thread for every request. Ours must be coroutine functions of the instance.
    (view_method,) = _ours(handler._view_middleware)
    (template_method,) = _ours(handler._template_response_middleware)
    for method in (view_method, template_method):
        assert not isinstance(method, SyncToAsync)
        assert iscoroutinefunction(method)


def test_under_wsgi_the_cookie_middleware_stays_sync(cookie_middleware):
    handler = WSGIHandler()
    (view_method,) = _ours(handler._view_middleware)
    assert not iscoroutinefunction(view_method)


def test_the_middleware_is_a_coroutine_function_with_an_async_get_response():
    async def get_response(request):
        return HttpResponse()

    assert RefreshTokenCookieMiddleware.sync_capable
    assert RefreshTokenCookieMiddleware.async_capable
    assert iscoroutinefunction(RefreshTokenCookieMiddleware(get_response))
    assert not iscoroutinefunction(RefreshTokenCookieMiddleware(lambda request: HttpResponse()))


@pytest.mark.django_db(transaction=True)
def test_the_refresh_cookie_works_under_asgi(cookie_middleware, user, password):
    async def scenario():
        browser = AsyncClient()
        login = await browser.post(
            "/api/auth/token/",
            {"username": user.username, "password": password},
            content_type="application/json",
        )
        assert login.status_code == 200
        assert "refresh" not in login.json()  # in the cookie only
        cookie = login.cookies[NAME]
        assert cookie.value and cookie["httponly"]
        csrf = login.cookies["csrftoken"].value
        refreshed = await browser.post(
            "/api/auth/token/refresh/",
            content_type="application/json",
            headers={"x-csrftoken": csrf},
        )
        assert refreshed.status_code == 200, refreshed.content
        assert refreshed.cookies[NAME].value not in ("", cookie.value)
        logout = await browser.post(
            "/api/auth/logout/", content_type="application/json", headers={"x-csrftoken": csrf}
        )
        assert logout.status_code == 204
        assert logout.cookies[NAME].value == ""  # deleted

    async_to_sync(scenario)()


def _off_the_loop(function):
    """``function``, failing if it is ever called on a thread running an event loop."""

    def guarded(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return function(*args, **kwargs)
        raise AssertionError(f"{function.__name__} ran on the event loop")

    return guarded


@pytest.fixture
def guarded(monkeypatch):
    """The calls that may touch the database or the cache, guarded."""
    monkeypatch.setattr(revocation, "allows_access", _off_the_loop(revocation.allows_access))
    monkeypatch.setattr(revocation, "refresh", _off_the_loop(revocation.refresh))
    monkeypatch.setattr(services, "proof_is_new", _off_the_loop(services.proof_is_new))
    monkeypatch.setattr(access, "user_of", _off_the_loop(access.user_of))


def test_the_async_check_reads_nothing_on_the_event_loop(guarded, user, client_info):
    login = services.start_family(user, client_info)
    granted = async_to_sync(access.aauthenticate_request)(
        f"Bearer {login.access}", method="GET", url=BASE + ME
    )
    assert granted is not None
    assert granted.user == user
    assert granted.family_id == login.family.pk


def test_the_async_check_of_a_bound_token_reads_nothing_on_the_event_loop(
    guarded, api_client, user, password
):
    key = DPoPKey()
    login = api_client.post(
        "/api/auth/token/",
        {"username": user.username, "password": password},
        format="json",
        HTTP_DPOP=key.proof("POST", BASE + "/api/auth/token/"),
    ).json()
    proof = key.proof("GET", BASE + ME, access=login["access"])
    granted = async_to_sync(access.aauthenticate_request)(
        f"DPoP {login['access']}", proof, method="GET", url=BASE + ME
    )
    assert granted is not None and granted.user == user
    with pytest.raises(AccessRefused) as replayed:  # the jti was recorded, off the loop too
        async_to_sync(access.aauthenticate_request)(
            f"DPoP {login['access']}", proof, method="GET", url=BASE + ME
        )
    assert replayed.value.code == "dpop_invalid"


def test_the_async_check_refuses_a_revoked_family(guarded, user, client_info):
    login = services.start_family(user, client_info)
    services.revoke_family(login.family, RevokeReason.ADMIN)
    with pytest.raises(AccessRefused) as refused:
        async_to_sync(access.aauthenticate_request)(
            f"Bearer {login.access}", method="GET", url=BASE + ME
        )
    assert refused.value.code == "token_revoked"
    assert refused.value.status_code == 401


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz", "Token abc"])
def test_a_request_without_our_token_is_not_ours_to_refuse(authorization):
    assert access.authenticate_request(authorization, method="GET", url=BASE + ME) is None
    assert (
        async_to_sync(access.aauthenticate_request)(authorization, method="GET", url=BASE + ME)
        is None
    )


def test_the_access_unpacks_as_user_token_and_family(user, client_info):
    login = services.start_family(user, client_info)
    granted_user, token, family_id = access.authenticate_request(
        f"Bearer {login.access}".encode(), method="GET", url=BASE + ME
    )
    assert granted_user == user
    assert str(token) == login.access
    assert family_id == login.family.pk


def test_a_refusal_carries_the_challenge_of_the_drf_views(user, client_info, settings):
    with pytest.raises(AccessRefused) as refused:
        access.authenticate_request("Bearer nope", method="GET", url=BASE + ME)
    assert refused.value.code == "token_not_valid"
    assert refused.value.www_authenticate.startswith('Bearer realm="api", DPoP algs="')
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "off"}
    assert refused.value.www_authenticate == 'Bearer realm="api"'


def test_a_poll_of_the_subscription_by_two_threads_at_once_is_news_not_an_error():
    # Under ASGI the event loop's in-memory check and a request thread's check poll
    # the same subscription; select.poll refuses the second caller with RuntimeError.
    push = revocation._Push()
    sock = object()
    pubsub = mock.Mock()
    pubsub.connection._sock = sock
    push.socket = sock
    push.poller = mock.Mock()
    push.poller.poll.side_effect = RuntimeError("concurrent poll() invocation")
    assert push._has_news(pubsub) is True
