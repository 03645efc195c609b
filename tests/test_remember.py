"""'Remember me': a login with ``"remember": false`` is a session that ends when the
browser closes (a session cookie) and, on the server, after SESSION_FAMILY_LIFETIME."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client as DjangoClient
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from rotating_tokens import services
from rotating_tokens.conf import app_settings
from rotating_tokens.exceptions import TokenExpired
from rotating_tokens.models import TokenFamily
from rotating_tokens.views import issue_tokens

pytestmark = pytest.mark.django_db

COOKIE_MIDDLEWARE = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
COOKIE = "__Secure-refresh_token"
OBTAIN, REFRESH = "/api/auth/token/", "/api/auth/token/refresh/"
SESSION_EXCHANGE = "/api/auth/token/session/"


@pytest.fixture
def cookie_mode(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "cookie"}


@pytest.fixture
def browser() -> APIClient:
    return APIClient(
        enforce_csrf_checks=True, HTTP_USER_AGENT="browser/1.0", REMOTE_ADDR="203.0.113.20"
    )


def login(client, user, password, **body):
    response = client.post(
        OBTAIN, {"username": user.username, "password": password, **body}, format="json"
    )
    assert response.status_code == 200, response.content
    return response


def is_session_cookie(response) -> bool:
    cookie = response.cookies[COOKIE]
    return cookie.value.startswith("rtok_") and not cookie["max-age"] and not cookie["expires"]


def test_unremembered_login_gets_a_session_cookie_on_login_and_every_refresh(
    cookie_mode, browser, user, password
):
    response = login(browser, user, password, remember=False)

    assert is_session_cookie(response)
    assert response.json()["remember"] is False
    csrf = {"HTTP_X_CSRFTOKEN": browser.cookies["csrftoken"].value}
    for _ in range(2):
        refreshed = browser.post(REFRESH, **csrf)
        assert refreshed.status_code == 200, refreshed.content
        assert is_session_cookie(refreshed)
        assert refreshed.json()["remember"] is False


def test_remembered_login_keeps_a_cookie_that_outlives_the_browser(
    cookie_mode, browser, user, password
):
    for body in ({}, {"remember": True}):
        response = login(browser, user, password, **body)
        assert response.cookies[COOKIE]["max-age"] > 0
        assert response.json()["remember"] is True


def test_unremembered_family_lives_session_family_lifetime_and_idles_out_sooner(
    api_client, user, password
):
    before = timezone.now()
    response = login(api_client, user, password, remember=False)
    after = timezone.now()

    family = TokenFamily.objects.get()
    assert family.remember is False
    assert before + timedelta(hours=12) <= family.expires_at <= after + timedelta(hours=12)
    refresh_expires_at = parse_datetime(response.json()["refresh_expires_at"])
    # The truth: the idle timeout of such a family, not REFRESH_TOKEN_LIFETIME.
    assert before + timedelta(hours=1) <= refresh_expires_at <= after + timedelta(hours=1)
    assert refresh_expires_at == family.tokens.get().expires_at


def test_an_unremembered_family_ends_after_its_lifetime_however_active(user, client_info):
    now = timezone.now()
    pair = services.start_family(user, client_info, now=now, remember=False)
    # Refreshed every 50 minutes: never idle, but over after 12 hours.
    at = now
    while at + timedelta(minutes=50) < now + timedelta(hours=12):
        at += timedelta(minutes=50)
        pair = services.rotate(pair.refresh, client_info, now=at)
        assert pair.refresh_expires_at <= now + timedelta(hours=12)
    with pytest.raises(TokenExpired):
        services.rotate(pair.refresh, client_info, now=now + timedelta(hours=12))


def test_an_unremembered_family_idles_out_after_its_own_timeout(user, client_info):
    now = timezone.now()
    pair = services.start_family(user, client_info, now=now, remember=False)
    with pytest.raises(TokenExpired):
        services.rotate(pair.refresh, client_info, now=now + timedelta(hours=1, seconds=1))


def test_session_lifetimes_are_settings_and_never_longer_than_the_remembered_ones(
    settings, user, client_info
):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "SESSION_FAMILY_LIFETIME": 3600 * 48,
        "SESSION_REFRESH_TOKEN_LIFETIME": timedelta(minutes=20),
        "FAMILY_LIFETIME": timedelta(hours=24),
    }
    now = timezone.now()
    pair = services.start_family(user, client_info, now=now, remember=False)
    assert pair.family.expires_at == now + timedelta(hours=24)
    assert pair.refresh_expires_at == now + timedelta(minutes=20)
    lifetime = app_settings.SESSION_FAMILY_LIFETIME
    assert lifetime == timedelta(hours=24)


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None, [], {"x": False}])
def test_a_remember_that_is_not_a_boolean_is_a_400(api_client, user, password, value):
    response = api_client.post(
        OBTAIN,
        {"username": user.username, "password": password, "remember": value},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "remember" in body
    assert not TokenFamily.objects.exists()


def test_a_form_login_may_say_remember_false(api_client, user, password):
    response = api_client.post(
        OBTAIN,
        urlencode({"username": user.username, "password": password, "remember": "false"}),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200, response.content
    assert TokenFamily.objects.get().remember is False


def test_issue_tokens_takes_remember(rf, user):
    request = rf.post("/login/", HTTP_USER_AGENT="browser/1.0")

    pair = issue_tokens(request, user, remember=False)

    assert pair.family.remember is False
    assert pair.family.expires_at - pair.family.created_at == timedelta(hours=12)
    assert issue_tokens(request, user).family.remember is True


def test_session_exchange_takes_remember(settings, user):
    browser = DjangoClient(enforce_csrf_checks=False)
    browser.force_login(user)

    response = browser.post(SESSION_EXCHANGE, {"remember": False}, content_type="application/json")

    assert response.status_code == 200, response.content
    assert response.json()["remember"] is False
    assert TokenFamily.objects.get().remember is False


def test_session_exchange_refuses_a_remember_that_is_not_a_boolean(user):
    browser = DjangoClient()
    browser.force_login(user)

    response = browser.post(SESSION_EXCHANGE, {"remember": "0"}, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not TokenFamily.objects.exists()
