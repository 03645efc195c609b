"""RefreshTokenCookieMiddleware: the refresh token in an HttpOnly cookie, and CSRF."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import get_script_prefix, set_script_prefix
from django.utils import translation
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from rotating_tokens.middleware import refresh_cookie_path
from rotating_tokens.models import TokenFamily

from .factories import UserFactory

pytestmark = pytest.mark.django_db

COOKIE_MIDDLEWARE = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
SECURE_NAME = "__Secure-refresh_token"
OBTAIN, REFRESH, LOGOUT = "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"


def _cookie_settings(settings, **rotating_tokens):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "TRANSPORT": "cookie",
        **rotating_tokens,
    }


@pytest.fixture
def cookie_mode(settings):
    _cookie_settings(settings)


@pytest.fixture
def browser() -> APIClient:
    """A client that, like a browser, is held to Django's CSRF check."""
    return APIClient(
        enforce_csrf_checks=True, HTTP_USER_AGENT="browser/1.0", REMOTE_ADDR="203.0.113.20"
    )


def login(client, user, password, **extra):
    response = client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json", **extra
    )
    assert response.status_code == 200, response.content
    return response


def csrf_header(client) -> dict[str, str]:
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def is_deleted(response, name=SECURE_NAME) -> bool:
    cookie = response.cookies.get(name)
    return cookie is not None and cookie.value == "" and cookie["max-age"] == 0


# Obtain and refresh responses --------------------------------------------------------


def test_obtain_moves_refresh_token_into_httponly_cookie(cookie_mode, browser, user, password):
    response = login(browser, user, password)
    body = response.json()
    assert "refresh" not in body
    assert set(body) == {
        "access",
        "access_expires_at",
        "refresh_expires_at",
        "token_type",
        "remember",
    }
    cookie = response.cookies[SECURE_NAME]
    assert cookie.value.startswith("rtok_")
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/auth/"
    assert cookie["domain"] == ""


def test_cookie_lives_as_long_as_the_refresh_token(cookie_mode, browser, user, password):
    response = login(browser, user, password)
    cookie = response.cookies[SECURE_NAME]
    lifetime = timedelta(days=14).total_seconds()
    assert lifetime - 5 <= cookie["max-age"] <= lifetime
    assert cookie["expires"]
    assert parse_datetime(response.json()["refresh_expires_at"]) is not None


def test_obtain_sets_the_csrftoken_cookie(cookie_mode, browser, user, password):
    response = login(browser, user, password)
    assert response.cookies["csrftoken"].value


def test_refresh_from_cookie_with_csrf_header_rotates(cookie_mode, browser, user, password):
    first = login(browser, user, password).cookies[SECURE_NAME].value
    response = browser.post(REFRESH, **csrf_header(browser))
    assert response.status_code == 200, response.content
    assert "refresh" not in response.json()
    second = response.cookies[SECURE_NAME].value
    assert second.startswith("rtok_") and second != first
    assert response["Cache-Control"] == "no-store"


def test_refresh_from_cookie_without_csrf_token_is_refused(cookie_mode, browser, user, password):
    login(browser, user, password)
    response = browser.post(REFRESH)
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert SECURE_NAME not in response.cookies  # a forged request deletes nothing
    # The token was not used: the real page can still refresh with it.
    assert browser.post(REFRESH, **csrf_header(browser)).status_code == 200


def test_refresh_from_cookie_with_wrong_csrf_token_is_refused(cookie_mode, browser, user, password):
    login(browser, user, password)
    response = browser.post(REFRESH, HTTP_X_CSRFTOKEN="x" * 32)
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"


def test_refresh_from_cookie_from_foreign_origin_is_refused(cookie_mode, browser, user, password):
    login(browser, user, password)
    response = browser.post(REFRESH, HTTP_ORIGIN="https://evil.example", **csrf_header(browser))
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"


def test_body_token_needs_no_csrf(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="both")
    raw = login(browser, user, password).json()["refresh"]
    browser.cookies.clear()
    response = browser.post(REFRESH, {"refresh": raw}, format="json")
    assert response.status_code == 200


def test_body_token_takes_precedence_over_cookie(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="both")
    cookie_token = login(browser, user, password).cookies[SECURE_NAME].value
    other = APIClient(HTTP_USER_AGENT="browser/1.0", REMOTE_ADDR="203.0.113.20")
    body_token = login(other, user, password).json()["refresh"]
    response = browser.post(REFRESH, {"refresh": body_token}, format="json")
    assert response.status_code == 200
    # The cookie's token was left alone: it still rotates (it was not used).
    assert browser.post(REFRESH, {"refresh": cookie_token}, format="json").status_code == 200
    # And the body's was the one used: presenting it again from another client is reuse.
    replay = APIClient(HTTP_USER_AGENT="thief/1.0").post(
        REFRESH, {"refresh": body_token}, format="json"
    )
    assert replay.json()["code"] == "token_reused"


# Deleting the cookie --------------------------------------------------------------------


def test_refused_refresh_from_cookie_deletes_cookie(cookie_mode, browser, user, password):
    first = login(browser, user, password).cookies[SECURE_NAME].value
    assert browser.post(REFRESH, **csrf_header(browser)).status_code == 200
    # The browser still sends the old (used) token: reuse, the family dies.
    browser.cookies[SECURE_NAME] = first
    response = browser.post(REFRESH, HTTP_USER_AGENT="elsewhere/2.0", **csrf_header(browser))
    assert response.status_code == 401
    assert response.json()["code"] == "token_reused"
    assert is_deleted(response)
    cookie = response.cookies[SECURE_NAME]
    assert cookie["path"] == "/api/auth/" and cookie["httponly"] and cookie["secure"]


@pytest.mark.parametrize("value", ["garbage", "rtok_" + "A" * 59])
def test_invalid_cookie_is_deleted(cookie_mode, browser, user, password, value):
    login(browser, user, password)
    browser.cookies[SECURE_NAME] = value
    response = browser.post(REFRESH, **csrf_header(browser))
    assert response.json()["code"] == "token_invalid"
    assert is_deleted(response)


def test_refused_body_token_equal_to_cookie_deletes_it(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="both", REUSE_GRACE_PERIOD=timedelta(0))
    raw = login(browser, user, password).json()["refresh"]
    assert browser.post(REFRESH, {"refresh": raw}, format="json").status_code == 200
    browser.cookies[SECURE_NAME] = raw
    response = browser.post(REFRESH, {"refresh": raw}, format="json")
    assert response.json()["code"] == "token_reused"
    assert is_deleted(response)


def test_missing_token_deletes_the_cookie(cookie_mode, browser):
    response = browser.post(REFRESH)
    assert response.json()["code"] == "token_missing"
    assert is_deleted(response)


def test_refused_body_token_other_than_cookie_deletes_it(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="both")
    login(browser, user, password)
    response = browser.post(REFRESH, {"refresh": "garbage"}, format="json")
    assert response.json()["code"] == "token_invalid"
    assert is_deleted(response)


def test_logout_with_cookie_revokes_family_and_deletes_cookie(cookie_mode, browser, user, password):
    login(browser, user, password)
    response = browser.post(LOGOUT, **csrf_header(browser))
    assert response.status_code == 204
    assert is_deleted(response)
    assert TokenFamily.objects.get().revoked_at is not None


def test_logout_with_cookie_needs_csrf(cookie_mode, browser, user, password):
    login(browser, user, password)
    response = browser.post(LOGOUT)
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert SECURE_NAME not in response.cookies
    assert TokenFamily.objects.get().revoked_at is None


def test_logout_with_another_body_token_deletes_cookie(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="both")
    login(browser, user, password)
    response = browser.post(
        LOGOUT, {"refresh": "garbage"}, format="json", HTTP_SEC_FETCH_SITE="same-origin"
    )
    assert response.status_code == 204
    assert is_deleted(response)
    assert TokenFamily.objects.get().revoked_at is None


def form(data: dict[str, str]) -> dict[str, str]:
    """The arguments of a test client post that sends ``data`` as an HTML form does."""
    return {"data": urlencode(data), "content_type": "application/x-www-form-urlencoded"}


# Another site's page: Sec-Fetch-Site cross-site or same-site with an Origin that is not
# trusted, or (older browsers, plain HTTP) no Sec-Fetch-Site and a foreign Origin.
FOREIGN = {
    "cross-site": {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_ORIGIN": "https://evil.example"},
    "same-site": {"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_ORIGIN": "https://evil.testserver"},
    "Origin only": {"HTTP_ORIGIN": "https://evil.example"},
    "null Origin": {"HTTP_ORIGIN": "null"},
}


@pytest.mark.parametrize("site", FOREIGN)
def test_foreign_form_posting_its_own_token_keeps_cookie(settings, browser, user, password, site):
    _cookie_settings(settings, TRANSPORT="both")
    login(browser, user, password)
    logout = browser.post(LOGOUT, **form({"refresh": "garbage"}), **FOREIGN[site])
    refresh = browser.post(REFRESH, **form({"refresh": "garbage"}), **FOREIGN[site])
    assert (logout.status_code, refresh.status_code) == (204, 401)
    assert SECURE_NAME not in logout.cookies
    assert SECURE_NAME not in refresh.cookies
    assert TokenFamily.objects.get().revoked_at is None


@pytest.mark.parametrize("transport", ["cookie", "auto", "both"])
@pytest.mark.parametrize("site", FOREIGN)
def test_foreign_page_cannot_plant_its_session_through_refresh(
    settings, browser, user, password, site, transport
):
    # Login CSRF through refresh: the attacker's page auto-submits a form carrying the
    # attacker's own refresh token. The victim's browser must not get its cookie.
    _cookie_settings(settings, TRANSPORT=transport)
    victim_cookie = login(browser, user, password).cookies[SECURE_NAME].value
    attacker = UserFactory()
    attackers_login = APIClient().post(
        OBTAIN, {"username": attacker.username, "password": password}, format="json"
    )
    attackers_token = attackers_login.cookies[SECURE_NAME].value

    response = browser.post(REFRESH, **form({"refresh": attackers_token}), **FOREIGN[site])

    assert SECURE_NAME not in response.cookies
    assert browser.cookies[SECURE_NAME].value == victim_cookie
    # The refresh itself is the attacker's business: the answer stays in the body,
    # where the token came from (another site's page cannot read it without CORS).
    assert response.status_code == 200
    assert response.json()["refresh"].startswith("rtok_")


@pytest.mark.parametrize("site", FOREIGN)
def test_foreign_page_cannot_log_in_through_obtain(settings, browser, user, password, site):
    _cookie_settings(settings, TRANSPORT="auto")
    response = browser.post(
        OBTAIN, **form({"username": user.username, "password": password}), **FOREIGN[site]
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert SECURE_NAME not in response.cookies
    assert not TokenFamily.objects.exists()


def test_spa_on_a_trusted_sibling_origin_gets_the_cookie(settings, user, password):
    # app.example.com calls the API on api.example.com, listed in CSRF_TRUSTED_ORIGINS.
    _cookie_settings(settings, TRANSPORT="auto")
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com"]
    spa = APIClient(
        enforce_csrf_checks=True,
        HTTP_HOST="api.example.com",
        HTTP_SEC_FETCH_SITE="same-site",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_REFERER="https://app.example.com/",
    )
    response = spa.post(
        OBTAIN, {"username": user.username, "password": password}, format="json", secure=True
    )
    assert response.status_code == 200
    assert "refresh" not in response.json()
    first = response.cookies[SECURE_NAME].value
    refreshed = spa.post(REFRESH, secure=True, **csrf_header(spa))
    assert refreshed.status_code == 200, refreshed.content
    assert refreshed.cookies[SECURE_NAME].value not in ("", first)
    logout = spa.post(LOGOUT, secure=True, **csrf_header(spa))
    assert logout.status_code == 204
    assert is_deleted(logout)
    assert TokenFamily.objects.get().revoked_at is not None


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_ORIGIN": "http://testserver"},
        {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_ORIGIN": "http://testserver"},
        {"HTTP_SEC_FETCH_SITE": "same-origin"},
    ],
    ids=["own Origin, no Sec-Fetch-Site", "same-origin", "Sec-Fetch-Site only"],
)
def test_own_pages_get_the_cookie_only(settings, browser, user, password, headers):
    _cookie_settings(settings, TRANSPORT="auto")
    response = login(browser, user, password, **headers)
    assert "refresh" not in response.json()
    assert response.cookies[SECURE_NAME].value.startswith("rtok_")


@pytest.mark.urls("tests.urls_included_twice")
@pytest.mark.parametrize("prefix", ["/api/auth/", "/api/v2/auth/", "/old/", "/new/"])
def test_cookie_path_is_that_of_the_prefix_that_answered(
    cookie_mode, browser, user, password, prefix
):
    response = browser.post(
        f"{prefix}token/", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200
    assert response.cookies[SECURE_NAME]["path"] == prefix
    refreshed = browser.post(f"{prefix}token/refresh/", **csrf_header(browser))
    assert refreshed.status_code == 200, refreshed.content
    assert refreshed.cookies[SECURE_NAME]["path"] == prefix
    logout = browser.post(f"{prefix}logout/", **csrf_header(browser))
    assert logout.status_code == 204
    assert is_deleted(logout)
    assert logout.cookies[SECURE_NAME]["path"] == prefix


# TRANSPORT ----------------------------------------------------------------------------------


def test_transport_both_sets_cookie_and_keeps_body(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="both")
    response = login(browser, user, password)
    assert response.json()["refresh"] == response.cookies[SECURE_NAME].value


def test_transport_body_ignores_the_cookie(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="body")
    response = login(browser, user, password)
    assert response.json()["refresh"].startswith("rtok_")
    assert SECURE_NAME not in response.cookies
    browser.cookies[SECURE_NAME] = response.json()["refresh"]
    refused = browser.post(REFRESH)
    assert refused.json()["code"] == "token_missing"
    assert SECURE_NAME not in refused.cookies


def test_auto_transport_gives_browsers_the_cookie_only(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="auto")
    response = login(browser, user, password, HTTP_SEC_FETCH_SITE="same-origin")
    assert "refresh" not in response.json()
    assert response.cookies[SECURE_NAME].value.startswith("rtok_")
    refreshed = browser.post(REFRESH, HTTP_SEC_FETCH_SITE="same-origin", **csrf_header(browser))
    assert refreshed.status_code == 200
    assert "refresh" not in refreshed.json()


def test_auto_transport_gives_other_clients_cookie_and_body(settings, browser, user, password):
    _cookie_settings(settings, TRANSPORT="auto")
    response = login(browser, user, password)
    assert response.json()["refresh"] == response.cookies[SECURE_NAME].value
    refreshed = browser.post(REFRESH, {"refresh": response.json()["refresh"]}, format="json")
    assert refreshed.json()["refresh"] == refreshed.cookies[SECURE_NAME].value


def test_without_middleware_cookie_is_never_read(settings, browser, user, password):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "cookie"}
    raw = login(browser, user, password).json()["refresh"]
    browser.cookies[SECURE_NAME] = raw
    assert browser.post(REFRESH).json()["code"] == "token_missing"


# Login CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_login_from_another_sites_page_needs_csrf(cookie_mode, browser, user, password, site):
    response = browser.post(
        OBTAIN,
        **form({"username": user.username, "password": password}),
        HTTP_SEC_FETCH_SITE=site,
        HTTP_ORIGIN="https://evil.example",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not TokenFamily.objects.exists()


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_login_from_own_page_needs_no_csrf_token(cookie_mode, browser, user, password, site):
    login(browser, user, password, HTTP_SEC_FETCH_SITE=site)


# Cookie attributes --------------------------------------------------------------------------


def test_cookie_attributes_follow_settings(settings, browser, user, password):
    _cookie_settings(
        settings,
        REFRESH_COOKIE_SECURE=False,
        REFRESH_COOKIE_SAMESITE="Lax",
        REFRESH_COOKIE_DOMAIN="example.com",
        REFRESH_COOKIE_PATH="/api/",
    )
    cookie = login(browser, user, password).cookies["refresh_token"]
    assert cookie["secure"] == ""
    assert cookie["samesite"] == "Lax"
    assert cookie["domain"] == "example.com"
    assert cookie["path"] == "/api/"
    assert cookie["httponly"] is True


def test_cookie_name_setting(settings, browser, user, password):
    _cookie_settings(settings, REFRESH_COOKIE_NAME="__Host-rt", REFRESH_COOKIE_PATH="/")
    cookie = login(browser, user, password).cookies["__Host-rt"]
    assert cookie["path"] == "/" and cookie["secure"] is True


def test_default_name_has_secure_prefix_only_when_secure(settings):
    _cookie_settings(settings)
    from rotating_tokens.conf import app_settings

    assert app_settings.REFRESH_COOKIE_NAME == "__Secure-refresh_token"
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REFRESH_COOKIE_SECURE": False}
    assert app_settings.REFRESH_COOKIE_NAME == "refresh_token"


def test_default_path_is_read_from_the_urlconf(settings):
    assert refresh_cookie_path() == "/api/auth/"
    settings.ROOT_URLCONF = "tests.urls_mounted_elsewhere"
    assert refresh_cookie_path() == "/accounts/v2/"
    settings.ROOT_URLCONF = "tests.urls"
    assert refresh_cookie_path() == "/api/auth/"


def test_default_path_follows_the_script_prefix():
    # A project served under a path of its own (SCRIPT_NAME, FORCE_SCRIPT_NAME).
    before = get_script_prefix()
    set_script_prefix("/mounted/")
    try:
        assert refresh_cookie_path() == "/mounted/api/auth/"
    finally:
        set_script_prefix(before)
    assert refresh_cookie_path() == "/api/auth/"


def test_default_path_follows_the_language_of_i18n_urls(settings):
    settings.ROOT_URLCONF = "tests.urls_i18n"
    with translation.override("fr"):
        assert refresh_cookie_path() == "/fr/api/auth/"
    with translation.override("de"):
        assert refresh_cookie_path() == "/de/api/auth/"


# Hostile requests from another site (found by attacking the example project) -------------


def _foreign_login_headers(browser) -> dict[str, str]:
    browser.cookies["csrftoken"] = "A" * 32
    return {"HTTP_SEC_FETCH_SITE": "cross-site"}  # and no Origin: not a real browser


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded; charset=latin-1", "username=x&password=y"),
        ("application/x-www-form-urlencoded; charset=rot13", "username=x&password=y"),
        ("application/x-www-form-urlencoded", "&".join(f"f{i}=x" for i in range(2000))),
        ("application/x-www-form-urlencoded", "x=" + "y" * (3 << 20)),
    ],
    ids=["latin-1", "unknown charset", "too many fields", "too large"],
)
def test_foreign_login_is_refused_without_reading_the_body(
    cookie_mode, browser, content_type, body
):
    # Django's CSRF check would read the form for a token first, and such bodies make
    # that read fail: a 500, or Django's HTML 400.
    response = browser.post(
        OBTAIN, body, content_type=content_type, **_foreign_login_headers(browser)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not TokenFamily.objects.exists()


@pytest.mark.parametrize("content_type", ["*/*", "application/*", "*/x-www-form-urlencoded"])
def test_foreign_login_with_a_wildcard_content_type_is_refused(
    cookie_mode, browser, user, password, content_type
):
    # DRF parses a body whose client-sent content type is a wildcard: the login CSRF
    # check must not take it for a body the view refuses.
    response = browser.post(
        OBTAIN,
        f'{{"username": "{user.username}", "password": "{password}"}}',
        content_type=content_type,
        **FOREIGN["cross-site"],
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not TokenFamily.objects.exists()


def test_foreign_request_cannot_use_the_cookie_even_with_the_csrf_token(
    cookie_mode, browser, user, password
):
    login(browser, user, password)
    response = browser.post(
        REFRESH,
        HTTP_SEC_FETCH_SITE="cross-site",
        content_type="application/json",
        **csrf_header(browser),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not TokenFamily.objects.get().tokens.filter(used_at__isnull=False).exists()
