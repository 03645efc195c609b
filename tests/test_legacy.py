"""Switching from djangorestframework-simplejwt without logging anyone out:
``ACCEPT_SIMPLEJWT_UNTIL`` (legacy.py, services.rotate)."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken as SimpleJWTAccessToken
from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

from rotating_tokens import services, signals
from rotating_tokens.models import ConvertedToken, RevokeReason, TokenFamily

pytestmark = pytest.mark.django_db

REFRESH, ME = "/api/auth/token/refresh/", "/api/me/"


@pytest.fixture
def migrating(settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
    }


@pytest.fixture
def simple_refresh(user) -> str:
    """A refresh token the project's simplejwt views issued before the switch."""
    return str(SimpleJWTRefreshToken.for_user(user))


def refresh(api_client, raw, **extra):
    return api_client.post(REFRESH, {"refresh": raw}, format="json", **extra)


def assert_refused(response, code):
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code


def test_simplejwt_refresh_token_is_exchanged_for_a_family(
    migrating, api_client, user, simple_refresh
):
    response = refresh(api_client, simple_refresh)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["refresh"].startswith("rtok_")
    family = TokenFamily.objects.get()
    assert (family.user, family.ip_address) == (user, "203.0.113.10")
    converted = ConvertedToken.objects.get()
    assert converted.family == family
    assert converted.jti == SimpleJWTRefreshToken(simple_refresh, verify=False)["jti"]
    # And the client goes on with ours.
    assert api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {body['access']}").status_code == 200
    assert refresh(api_client, body["refresh"]).status_code == 200


def test_converted_token_is_blacklisted_in_simplejwt_too(migrating, api_client, simple_refresh):
    refresh(api_client, simple_refresh)
    jti = SimpleJWTRefreshToken(simple_refresh, verify=False)["jti"]
    assert BlacklistedToken.objects.filter(token__jti=jti).exists()


def test_conversion_without_the_blacklist_app(migrating, api_client, simple_refresh):
    with mock.patch("rotating_tokens.legacy.apps.is_installed", return_value=False):
        assert refresh(api_client, simple_refresh).status_code == 200
    assert not BlacklistedToken.objects.exists()


def test_second_presentation_is_reuse_and_kills_the_family(migrating, api_client, simple_refresh):
    alerts = []

    def receiver(family, token, **kwargs):
        alerts.append((family.pk, token))

    first = refresh(api_client, simple_refresh).json()
    signals.token_reuse_detected.connect(receiver)
    try:
        assert_refused(refresh(api_client, simple_refresh), "token_reused")
    finally:
        signals.token_reuse_detected.disconnect(receiver)
    family = TokenFamily.objects.get()
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED
    assert alerts == [(family.pk, None)]
    assert_refused(refresh(api_client, first["refresh"]), "token_revoked")
    assert api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {first['access']}").status_code == 401


def test_expired_simplejwt_token_is_token_expired(migrating, api_client, user, time_machine):
    simple = str(SimpleJWTRefreshToken.for_user(user))
    time_machine.move_to(timezone.now() + timedelta(days=2), tick=False)  # simplejwt: 1 day
    assert_refused(refresh(api_client, simple), "token_expired")
    assert not TokenFamily.objects.exists()


@pytest.mark.parametrize("case", ["access token", "bad signature", "not a JWT", "no jti"])
def test_not_a_valid_simplejwt_refresh_token_is_token_invalid(
    migrating, api_client, user, simple_refresh, case
):
    if case == "access token":
        raw = str(SimpleJWTAccessToken.for_user(user))
    elif case == "bad signature":
        head, payload, signature = simple_refresh.split(".")
        raw = f"{head}.{payload}.{signature[::-1]}"
    elif case == "not a JWT":
        raw = "a.b.c"
    else:
        token = SimpleJWTRefreshToken.for_user(user)
        del token["jti"]
        raw = str(token)
    assert_refused(refresh(api_client, raw), "token_invalid")
    assert not TokenFamily.objects.exists()


def test_blacklisted_simplejwt_token_is_token_revoked(migrating, api_client, simple_refresh):
    SimpleJWTRefreshToken(simple_refresh).blacklist()  # logged out before the switch
    assert_refused(refresh(api_client, simple_refresh), "token_revoked")
    assert not TokenFamily.objects.exists()


def test_simplejwt_token_of_an_inactive_user_is_token_revoked(
    migrating, api_client, user, simple_refresh
):
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert_refused(refresh(api_client, simple_refresh), "token_revoked")


def test_simplejwt_token_of_a_deleted_user_is_token_invalid(
    migrating, api_client, user, simple_refresh
):
    user.delete()
    assert_refused(refresh(api_client, simple_refresh), "token_invalid")


@pytest.mark.parametrize("until", [None, "past"])
def test_outside_the_transition_simplejwt_tokens_are_invalid(
    api_client, user, simple_refresh, settings, until
):
    if until == "past":
        settings.ROTATING_TOKENS = {
            **settings.ROTATING_TOKENS,
            "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() - timedelta(seconds=1),
        }
    assert_refused(refresh(api_client, simple_refresh), "token_invalid")
    access = str(SimpleJWTAccessToken.for_user(user))
    assert_refused(api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}"), "token_invalid")
    assert not TokenFamily.objects.exists()


def test_simplejwt_access_tokens_work_during_the_transition(migrating, api_client, user):
    access = str(SimpleJWTAccessToken.for_user(user))
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response.status_code == 200
    assert response.json()["username"] == user.username


def test_conversion_through_the_service_is_the_same(migrating, user, simple_refresh, client_info):
    pair = services.rotate(simple_refresh, client_info)
    assert pair.family.user == user
    with pytest.raises(services.TokenReused):
        services.rotate(simple_refresh, client_info)
