"""Access tokens follow their family: ``AccessTokenAuthentication`` behind GET /api/me/."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import caches
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from rotating_tokens import services
from rotating_tokens.models import RevokeReason

from .factories import UserFactory

pytestmark = pytest.mark.django_db

ME = "/api/me/"


@pytest.fixture
def login(user, client_info):
    return services.start_family(user, client_info)


def _me(api_client, access: str):
    return api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")


def _assert_refused(response, code: str) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code


def test_access_token_authenticates_its_user(api_client, login, user):
    response = _me(api_client, login.access)
    assert response.status_code == 200
    assert response.json() == {"id": user.pk, "username": user.username}


def test_revoked_family_refuses_its_access_token_at_once(api_client, login):
    services.revoke_family(login.family, RevokeReason.ADMIN)
    _assert_refused(_me(api_client, login.access), "token_revoked")


def test_revocation_is_seen_although_the_state_was_cached(api_client, login):
    assert _me(api_client, login.access).status_code == 200
    services.logout(login.refresh)
    _assert_refused(_me(api_client, login.access), "token_revoked")


def test_reuse_kills_every_access_token_of_the_family(api_client, login, client_info):
    refreshed = services.rotate(login.refresh, client_info)
    for access in (login.access, refreshed.access):
        assert _me(api_client, access).status_code == 200
    with pytest.raises(services.TokenReused):
        services.rotate(login.refresh, services.Client("198.51.100.7", "thief/1.0"))
    for access in (login.access, refreshed.access):
        _assert_refused(_me(api_client, access), "token_revoked")


def test_logout_all_kills_access_tokens_of_every_family(api_client, user, client_info):
    logins = [services.start_family(user, client_info) for _ in range(2)]
    for login in logins:
        assert _me(api_client, login.access).status_code == 200
    response = api_client.post(
        "/api/auth/logout/all/", HTTP_AUTHORIZATION=f"Bearer {logins[0].access}"
    )
    assert response.status_code == 204
    for login in logins:
        _assert_refused(_me(api_client, login.access), "token_revoked")


def test_revocation_of_one_family_spares_the_others(api_client, user, client_info):
    kept, revoked = (services.start_family(user, client_info) for _ in range(2))
    services.logout(revoked.refresh)
    assert _me(api_client, kept.access).status_code == 200


@override_settings(ROTATING_TOKENS={"CHECK_FAMILY_ON_ACCESS": False})
def test_family_check_can_be_turned_off(api_client, login, django_assert_num_queries):
    services.revoke_family(login.family, RevokeReason.ADMIN)
    with django_assert_num_queries(1):  # the user, not the family
        assert _me(api_client, login.access).status_code == 200


def test_access_token_without_family_claim_is_invalid_not_revoked(api_client, user):
    # An old simplejwt token has no family that could have ended.
    response = _me(api_client, str(AccessToken.for_user(user)))
    _assert_refused(response, "token_invalid")
    assert response.json()["detail"] == "The access token is not valid."


def _borrowing_token(user, family) -> str:
    """An access token of ``user`` carrying ``family``'s id: only someone holding the
    signing key could make one."""
    access = AccessToken.for_user(user)
    access["fam"] = str(family.pk)
    return str(access)


def test_access_token_with_another_users_family_is_refused(api_client, user, client_info):
    victims_family = services.start_family(UserFactory(), client_info).family
    _assert_refused(_me(api_client, _borrowing_token(user, victims_family)), "token_revoked")


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 60})
def test_family_owner_is_checked_from_what_the_process_knows_too(api_client, user, client_info):
    victim = services.start_family(UserFactory(), client_info)
    assert _me(api_client, victim.access).status_code == 200  # the family is now known
    with CaptureQueriesContext(connection) as queries:
        response = _me(api_client, _borrowing_token(user, victim.family))
    _assert_refused(response, "token_revoked")
    assert not [q for q in queries if "rotating_tokens_tokenfamily" in q["sql"]]


@override_settings(ROTATING_TOKENS={"CHECK_FAMILY_ON_ACCESS": False})
def test_access_token_without_family_claim_passes_when_the_check_is_off(api_client, user):
    assert _me(api_client, str(AccessToken.for_user(user))).status_code == 200


@pytest.mark.parametrize("claim", ["not-a-uuid", 12, ["x"], "00000000-0000-0000-0000-000000000000"])
def test_access_token_with_bad_or_unknown_family_is_refused(api_client, user, claim):
    access = AccessToken.for_user(user)
    access["fam"] = claim
    _assert_refused(_me(api_client, str(access)), "token_revoked")


def test_tampered_access_token_is_refused(api_client, login):
    header, payload, signature = login.access.split(".")
    forged = AccessToken(login.access)
    forged["user_id"] = str(int(forged["user_id"]) + 1)
    forged_payload = str(forged).split(".")[1]
    _assert_refused(_me(api_client, f"{header}.{forged_payload}.{signature}"), "token_not_valid")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    _assert_refused(_me(api_client, f"{header}.{payload}.{flipped}"), "token_not_valid")


def test_refresh_token_is_not_an_access_token(api_client, login):
    _assert_refused(_me(api_client, login.refresh), "token_not_valid")


def test_access_token_expires_after_its_lifetime(api_client, time_machine, user, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    login = services.start_family(user, client_info)
    time_machine.shift(timedelta(minutes=5) - timedelta(seconds=1))
    assert _me(api_client, login.access).status_code == 200
    time_machine.shift(timedelta(seconds=1))
    _assert_refused(_me(api_client, login.access), "token_not_valid")


def test_access_token_dies_with_its_family_expiry(api_client, time_machine, user, client_info):
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    login = services.start_family(user, client_info)
    pair = login
    for days in (13, 13, 4):
        time_machine.shift(timedelta(days=days) - timedelta(minutes=1 if days == 4 else 0))
        pair = services.rotate(pair.refresh, client_info)
    late = pair
    assert late.access_expires_at == login.family.expires_at
    assert late.access_expires_at <= login.family.expires_at
    assert _me(api_client, late.access).status_code == 200
    time_machine.shift(timedelta(minutes=1))
    assert _me(api_client, late.access).status_code == 401


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 60})
def test_a_family_known_to_the_process_saves_the_query(
    api_client, login, django_assert_num_queries
):
    # The first request starts the deny-list (its rows, the newest number, the row
    # before a run that may be in flight) and reads
    # the family; the next ones only read the user, as simplejwt does.
    with django_assert_num_queries(5):
        assert _me(api_client, login.access).status_code == 200
    for _ in range(2):
        with django_assert_num_queries(1):
            assert _me(api_client, login.access).status_code == 200


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 0})
def test_without_a_poll_interval_every_request_reads_the_family(
    api_client, login, django_assert_num_queries
):
    for _ in range(2):
        with django_assert_num_queries(2):  # the family, then the user, every time
            assert _me(api_client, login.access).status_code == 200
    services.revoke_family(login.family, RevokeReason.ADMIN)
    _assert_refused(_me(api_client, login.access), "token_revoked")


def test_a_failing_cache_falls_back_to_the_database(api_client, login):
    cache = caches["default"]
    with (
        mock.patch.object(cache, "get", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "set", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "add", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "set_many", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "delete_many", side_effect=ConnectionError("cache down")),
    ):
        assert _me(api_client, login.access).status_code == 200
        services.revoke_family(login.family, RevokeReason.ADMIN)
        _assert_refused(_me(api_client, login.access), "token_revoked")


def test_rolled_back_revocation_leaves_access_tokens_working(
    api_client, login, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True),
        contextlib.suppress(RuntimeError),
        transaction.atomic(),
    ):
        services.revoke_family(login.family, RevokeReason.ADMIN)
        raise RuntimeError("rolled back")
    assert _me(api_client, login.access).status_code == 200
