"""Tokens after any kind of login: the public API for a project's own views
(``issue_tokens`` and ``token_response``), ``POST token/session/``, and the hooks
``ACCESS_TOKEN_CLAIMS`` and ``CHECK_LOGIN``."""

from __future__ import annotations

import jwt
import pytest
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from rest_framework.test import APIClient

from rotating_tokens import services
from rotating_tokens.exceptions import LoginRefused
from rotating_tokens.models import TokenFamily

pytestmark = pytest.mark.django_db

OBTAIN, REFRESH = "/api/auth/token/", "/api/auth/token/refresh/"
SESSION_EXCHANGE = "/api/auth/token/session/"
OWN_VIEWS = ["/own/drf-login/", "/own/plain-login/"]
COOKIE = "__Secure-refresh_token"
COOKIE_MIDDLEWARE = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
BROWSER = {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_ORIGIN": "http://testserver"}
FOREIGN = {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_ORIGIN": "https://evil.example"}


def claims(access: str) -> dict:
    return jwt.decode(access, options={"verify_signature": False})


@pytest.fixture
def cookie_middleware(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "auto"}


# issue_tokens and token_response ---------------------------------------------------------


@pytest.mark.parametrize("path", OWN_VIEWS)
def test_own_view_answers_like_obtain_for_a_native_client(api_client, user, password, path):
    own = api_client.post(path, {"username": user.username}, format="json")
    obtain = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json"
    )
    assert own.status_code == 200
    assert own.json().keys() == obtain.json().keys()
    assert own["Cache-Control"] == obtain["Cache-Control"] == "no-store"
    body = own.json()
    assert body["refresh"].startswith("rtok_")
    assert claims(body["access"])["fam"] == str(TokenFamily.objects.order_by("created_at")[0].pk)
    # A family like any other: it refreshes, and records the client.
    assert api_client.post(REFRESH, {"refresh": body["refresh"]}, format="json").status_code == 200
    family = TokenFamily.objects.get(pk=claims(body["access"])["fam"])
    assert (family.ip_address, family.user_agent) == ("203.0.113.10", "pytest-client/1.0")


@pytest.mark.parametrize("path", OWN_VIEWS)
def test_own_view_answers_like_obtain_for_a_browser(cookie_middleware, user, password, path):
    browser = APIClient(enforce_csrf_checks=True, **BROWSER)
    own = browser.post(path, {"username": user.username}, format="json")
    obtain = browser.post(OBTAIN, {"username": user.username, "password": password}, format="json")
    assert own.status_code == obtain.status_code == 200
    assert own.json().keys() == obtain.json().keys()
    assert "refresh" not in own.json()
    assert own["Cache-Control"] == "no-store"
    cookie = own.cookies[COOKIE]
    assert cookie.value.startswith("rtok_") and cookie["httponly"]
    assert cookie["path"] == obtain.cookies[COOKIE]["path"] == "/api/auth/"
    assert "csrftoken" in own.cookies
    # The page refreshes by cookie, as after token/.
    browser.cookies[COOKIE] = cookie.value
    refreshed = browser.post(REFRESH, HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert refreshed.status_code == 200, refreshed.content


@pytest.mark.parametrize("path", OWN_VIEWS)
def test_own_view_of_a_login_not_remembered_sets_a_session_cookie(cookie_middleware, user, path):
    browser = APIClient(enforce_csrf_checks=True, **BROWSER)

    own = browser.post(path, {"username": user.username, "remember": False}, format="json")

    assert own.status_code == 200
    assert own.json()["remember"] is False
    cookie = own.cookies[COOKIE]
    assert cookie.value.startswith("rtok_")
    assert not cookie["max-age"] and not cookie["expires"]
    browser.cookies[COOKIE] = cookie.value
    refreshed = browser.post(REFRESH, HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert refreshed.status_code == 200, refreshed.content
    assert not refreshed.cookies[COOKIE]["max-age"] and not refreshed.cookies[COOKIE]["expires"]


@pytest.mark.parametrize("path", OWN_VIEWS)
def test_own_view_sets_no_cookie_for_another_sites_request(cookie_middleware, user, path):
    response = APIClient(**FOREIGN).post(path, {"username": user.username}, format="json")
    assert response.status_code == 200
    assert COOKIE not in response.cookies
    assert response.json()["refresh"].startswith("rtok_")


@pytest.mark.parametrize("path", OWN_VIEWS)
def test_own_view_without_the_middleware_keeps_the_body(settings, user, path):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "auto"}
    response = APIClient(**BROWSER).post(path, {"username": user.username}, format="json")
    assert response.json()["refresh"].startswith("rtok_")
    assert COOKIE not in response.cookies


# token/session/ ------------------------------------------------------------------------------


@pytest.fixture
def session_client(client, user, password):
    """A browser logged in through Django's own session login, holding a CSRF token."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/admin/login/")  # any page that sets the csrftoken cookie
    return browser


def csrf(browser) -> dict[str, str]:
    # And no body, as a page's fetch() sends it (the test client's default is multipart).
    return {
        "HTTP_X_CSRFTOKEN": browser.cookies["csrftoken"].value,
        "content_type": "application/json",
    }


def test_session_is_exchanged_for_a_token_family(session_client, user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "body"}
    response = session_client.post(SESSION_EXCHANGE, **csrf(session_client))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["refresh"].startswith("rtok_")
    assert response["Cache-Control"] == "no-store"
    family = TokenFamily.objects.get()
    assert family.user == user
    assert claims(body["access"])["fam"] == str(family.pk)
    # The session is over: one credential, not two.
    assert session_client.get("/admin/").status_code == 302
    assert "_auth_user_id" not in session_client.session


def test_session_can_be_kept_after_the_exchange(session_client, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "SESSION_EXCHANGE_ENDS_SESSION": False}
    assert session_client.post(SESSION_EXCHANGE, **csrf(session_client)).status_code == 200
    assert "_auth_user_id" in session_client.session


def test_session_exchange_needs_the_csrf_token(session_client):
    response = session_client.post(SESSION_EXCHANGE, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not TokenFamily.objects.exists()
    assert "_auth_user_id" in session_client.session


def test_session_exchange_from_another_site_is_refused(session_client):
    response = session_client.post(
        SESSION_EXCHANGE, HTTP_ORIGIN="https://evil.example", **csrf(session_client)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not TokenFamily.objects.exists()


def test_session_exchange_without_a_session_is_401(client):
    response = client.post(SESSION_EXCHANGE, content_type="application/json")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }


def test_session_exchange_puts_a_browsers_token_in_the_cookie(cookie_middleware, session_client):
    response = session_client.post(SESSION_EXCHANGE, **BROWSER, **csrf(session_client))
    assert response.status_code == 200, response.content
    assert "refresh" not in response.json()
    assert response.cookies[COOKIE].value.startswith("rtok_")


# ACCESS_TOKEN_CLAIMS -------------------------------------------------------------------------


def tenant_claims(user, family):
    return {"tenant": f"tenant-of-{user.username}", "family_started": family.created_at.isoformat()}


@pytest.mark.parametrize("hook", [tenant_claims, "tests.test_own_logins.tenant_claims"])
def test_extra_claims_are_in_every_access_token(api_client, user, password, settings, hook):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "ACCESS_TOKEN_CLAIMS": hook}
    login = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json"
    ).json()
    refreshed = api_client.post(REFRESH, {"refresh": login["refresh"]}, format="json").json()
    for access in (login["access"], refreshed["access"]):
        assert claims(access)["tenant"] == f"tenant-of-{user.username}"
        assert claims(access)["fam"]  # ours are still there
    assert (
        api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {refreshed['access']}").status_code
        == 200
    )


@pytest.mark.parametrize("claim", ["fam", "user_id", "exp", "token_type", "jti", "cnf"])
def test_extra_claims_cannot_replace_the_apps_own(user, client_info, settings, claim):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCESS_TOKEN_CLAIMS": lambda user, family: {claim: "forged"},
    }
    with pytest.raises(ImproperlyConfigured, match=claim):
        services.start_family(user, client_info)


# CHECK_LOGIN ------------------------------------------------------------------------------------


def require_verified_email(request, user):
    if not user.email.endswith("@verified.example"):
        raise LoginRefused(_("Verify your email address first."), code="email_not_verified")


def require_mfa(request, user):
    raise LoginRefused("A second factor is required.", code="mfa_required", status=401)


def test_check_login_refuses_with_the_apps_error_shape(api_client, user, password, settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "CHECK_LOGIN": "tests.test_own_logins.require_verified_email",
    }
    logged_in = []
    user_logged_in.connect(receiver := lambda sender, user, **kw: logged_in.append(user))
    try:
        response = api_client.post(
            OBTAIN, {"username": user.username, "password": password}, format="json"
        )
    finally:
        user_logged_in.disconnect(receiver)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Verify your email address first.",
        "code": "email_not_verified",
    }
    assert not TokenFamily.objects.exists()
    assert logged_in == []


def test_check_login_lets_the_right_users_in(api_client, user, password, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "CHECK_LOGIN": require_verified_email}
    user.email = "someone@verified.example"
    user.save()
    response = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200


def test_check_login_may_choose_the_status(api_client, user, password, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "CHECK_LOGIN": require_mfa}
    response = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (401, "mfa_required")


def test_check_login_is_not_asked_about_a_wrong_password(api_client, user, settings):
    asked = []
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "CHECK_LOGIN": lambda request, user: asked.append(user),
    }
    response = api_client.post(OBTAIN, {"username": user.username, "password": "x"}, format="json")
    assert response.json()["code"] == "invalid_credentials"
    assert asked == []
