"""System checks of the refresh cookie (rotating_tokens.E010-E019, W010-W019)."""

from __future__ import annotations

import pytest

from rotating_tokens.checks import check_refresh_cookie

COOKIE_MIDDLEWARE = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"


@pytest.fixture
def cookie_settings(settings):
    settings.DEBUG = False
    settings.MIDDLEWARE = [SESSION, CSRF, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {"TRANSPORT": "cookie"}
    return settings


def ids() -> list[str]:
    return [message.id for message in check_refresh_cookie()]


def configure(settings, **values):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **values}


def test_sound_cookie_settings_pass(cookie_settings):
    assert ids() == []


@pytest.mark.parametrize("transport", ["cookie", "both", "auto", "body"])
def test_known_transports_pass(cookie_settings, transport):
    configure(cookie_settings, TRANSPORT=transport)
    assert ids() == []


def test_unknown_transport_is_e010(cookie_settings):
    configure(cookie_settings, TRANSPORT="header")
    assert "rotating_tokens.E010" in ids()


@pytest.mark.parametrize("samesite", ["Lax", "strict", "None"])
def test_valid_samesite_passes(cookie_settings, samesite):
    configure(cookie_settings, REFRESH_COOKIE_SAMESITE=samesite)
    assert ids() == []


@pytest.mark.parametrize("samesite", ["Loose", None, True])
def test_invalid_samesite_is_e011(cookie_settings, samesite):
    configure(cookie_settings, REFRESH_COOKIE_SAMESITE=samesite)
    assert ids() == ["rotating_tokens.E011"]


def test_samesite_none_without_secure_is_e012(cookie_settings):
    cookie_settings.DEBUG = True
    configure(cookie_settings, REFRESH_COOKIE_SAMESITE="None", REFRESH_COOKIE_SECURE=False)
    assert ids() == ["rotating_tokens.E012"]


@pytest.mark.parametrize(
    "values",
    [
        {"REFRESH_COOKIE_NAME": "__Secure-rt", "REFRESH_COOKIE_SECURE": False},
        {"REFRESH_COOKIE_NAME": "__Host-rt"},  # path scoped to the endpoints
        {
            "REFRESH_COOKIE_NAME": "__Host-rt",
            "REFRESH_COOKIE_PATH": "/",
            "REFRESH_COOKIE_DOMAIN": "example.com",
        },
    ],
)
def test_cookie_name_prefix_browsers_reject_is_e013(cookie_settings, values):
    cookie_settings.DEBUG = True
    configure(cookie_settings, **values)
    assert ids() == ["rotating_tokens.E013"]


def test_host_prefix_with_root_path_passes(cookie_settings):
    configure(cookie_settings, REFRESH_COOKIE_NAME="__Host-rt", REFRESH_COOKIE_PATH="/")
    assert ids() == []


def test_csrf_middleware_missing_is_e014(cookie_settings):
    cookie_settings.MIDDLEWARE = [SESSION, COOKIE_MIDDLEWARE]
    assert ids() == ["rotating_tokens.E014"]


@pytest.mark.parametrize("transport", ["cookie", "both", "auto"])
def test_cookie_transport_without_middleware_is_w010(cookie_settings, transport):
    configure(cookie_settings, TRANSPORT=transport)
    cookie_settings.MIDDLEWARE = [SESSION, CSRF]
    assert ids() == ["rotating_tokens.W010"]


def test_body_transport_without_middleware_passes(cookie_settings):
    configure(cookie_settings, TRANSPORT="body")
    cookie_settings.MIDDLEWARE = [SESSION, CSRF]
    assert ids() == []


def test_insecure_cookie_without_debug_is_w011(cookie_settings):
    configure(cookie_settings, REFRESH_COOKIE_SECURE=False)
    assert ids() == ["rotating_tokens.W011"]


def test_insecure_cookie_with_debug_passes(cookie_settings):
    cookie_settings.DEBUG = True
    configure(cookie_settings, REFRESH_COOKIE_SECURE=False)
    assert ids() == []


@pytest.mark.parametrize(
    "order", [[COOKIE_MIDDLEWARE, SESSION, CSRF], [SESSION, COOKIE_MIDDLEWARE, CSRF]]
)
def test_middleware_before_session_or_csrf_is_w012(cookie_settings, order):
    cookie_settings.MIDDLEWARE = order
    assert ids() == ["rotating_tokens.W012"]
