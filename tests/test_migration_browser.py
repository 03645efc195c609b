"""A browser app from the simplejwt days, once the cookie middleware is on: what it
gets by default ("auto"), and TRANSPORT "both", which keeps the body for it during
the transition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

from rotating_tokens.models import TokenFamily

pytestmark = pytest.mark.django_db

COOKIE_MIDDLEWARE = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
COOKIE = "__Secure-refresh_token"
REFRESH = "/api/auth/token/refresh/"


def _migrating(settings, transport: str) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
        "TRANSPORT": transport,
    }


@pytest.fixture
def page() -> APIClient:
    """The SPA's fetch(): a browser says where the request comes from, and is held to
    Django's CSRF check."""
    return APIClient(
        enforce_csrf_checks=True,
        HTTP_ORIGIN="http://testserver",
        HTTP_SEC_FETCH_SITE="same-origin",
        HTTP_USER_AGENT="browser/1.0",
    )


def _post(page: APIClient, data: dict, **extra):
    return page.post(REFRESH, data, format="json", **extra)


def test_auto_moves_the_converted_token_into_the_cookie_and_sets_csrftoken(settings, page, user):
    _migrating(settings, "auto")
    simple = str(SimpleJWTRefreshToken.for_user(user))

    response = _post(page, {"refresh": simple})

    assert response.status_code == 200, response.content
    # What the browser app changes: `refresh` is no longer in the body...
    assert "refresh" not in response.json()
    assert response.cookies[COOKIE].value.startswith("rtok_")
    # ...and it refreshes with an empty body, echoing csrftoken. That cookie comes with
    # the conversion: this page never logged in through token/.
    csrftoken = response.cookies["csrftoken"].value
    assert csrftoken

    again = _post(page, {}, HTTP_X_CSRFTOKEN=csrftoken)

    assert again.status_code == 200, again.content
    assert TokenFamily.objects.get().tokens.count() == 2
    # Without the header the cookie is not used.
    assert _post(page, {}).json()["code"] == "csrf_failed"


def test_both_keeps_the_body_for_a_browser_app_during_the_transition(settings, page, user):
    _migrating(settings, "both")
    simple = str(SimpleJWTRefreshToken.for_user(user))

    first = _post(page, {"refresh": simple})

    # The app goes on reading `refresh` from the body and posting it back, unchanged.
    assert first.status_code == 200, first.content
    raw = first.json()["refresh"]
    assert raw.startswith("rtok_")
    second = _post(page, {"refresh": raw})
    assert second.status_code == 200, second.content
    assert second.json()["refresh"] != raw
    # The cookie is there too, for when the app moves to it.
    assert second.cookies[COOKIE].value == second.json()["refresh"]


def test_a_conversion_by_a_non_browser_client_sets_no_csrftoken(settings, user):
    _migrating(settings, "auto")
    simple = str(SimpleJWTRefreshToken.for_user(user))

    response = APIClient().post(REFRESH, {"refresh": simple}, format="json")

    assert response.status_code == 200
    assert response.json()["refresh"].startswith("rtok_")
    assert "csrftoken" not in response.cookies
