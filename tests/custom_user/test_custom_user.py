"""A project with its own user model (tests/custom_user/models.py): UUID primary key,
email as USERNAME_FIELD, ``SIMPLE_JWT["USER_ID_FIELD"] = "public_id"`` (issue 16,
bug 1). End to end over HTTP: every path that pairs a token with its user."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.management import call_command
from django.test import Client as HttpClient
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

from rotating_tokens.contrib.allauth.strategy import FAMILY_SESSION_KEY, _session_store
from rotating_tokens.models import ConvertedToken, RevokeReason, TokenFamily
from tests.factories import PASSWORD
from tests.jwt_settings import set_simplejwt_setting

pytestmark = pytest.mark.django_db

AUTH, ME, APP = "/api/auth", "/api/me/", "/_allauth/app/v1"
User = get_user_model()


def test_the_settings_are_the_ones_this_matrix_is_for():
    assert User._meta.label == "custom_user.User"
    assert isinstance(User._meta.pk, type(User._meta.get_field("public_id")))  # both UUIDs
    assert User.USERNAME_FIELD == "email"
    assert simplejwt_settings.USER_ID_FIELD == "public_id"


@pytest.fixture
def user(db: Any) -> Any:
    return User.objects.create_user("ada@example.com", PASSWORD)


def _client(user_agent: str = "pytest-client/1.0", ip: str = "203.0.113.10") -> APIClient:
    return APIClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)


def _login(client: APIClient, user: Any) -> dict[str, Any]:
    response = client.post(
        f"{AUTH}/token/", {"email": user.email, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _refresh(client: APIClient, raw: str) -> Any:
    return client.post(f"{AUTH}/token/refresh/", {"refresh": raw}, format="json")


def _me(access: str) -> Any:
    return _client().get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")


def _claims(access: str) -> dict[str, Any]:
    return jwt.decode(access, options={"verify_signature": False})


def _assert_refused(response: Any, code: str = "token_revoked") -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code


# Login, read, refresh --------------------------------------------------------------------


def test_login_read_and_refresh(state_store, user):
    tokens = _login(_client(), user)
    claims = _claims(tokens["access"])
    assert claims["user_id"] == str(user.public_id)
    assert claims["user_id"] != str(user.pk)
    for _ in range(2):  # the second finds the cached state, where there is a cache
        response = _me(tokens["access"])
        assert response.status_code == 200, response.content
        assert response.json() == {"id": str(user.pk), "username": user.email}
    refreshed = _refresh(_client(), tokens["refresh"])
    assert refreshed.status_code == 200, refreshed.content
    assert _me(refreshed.json()["access"]).status_code == 200


@pytest.mark.parametrize("field", ["id", "email", "public_id"])
def test_any_unique_user_id_field_logs_in_reads_and_refreshes(
    monkeypatch, state_store, user, field
):
    # The UUID primary key itself (no join), an email, a second UUID.
    set_simplejwt_setting(monkeypatch, "USER_ID_FIELD", field)
    tokens = _login(_client(), user)
    assert _claims(tokens["access"])["user_id"] == str(getattr(user, field))
    for _ in range(2):
        assert _me(tokens["access"]).status_code == 200
    refreshed = _refresh(_client(), tokens["refresh"])
    assert refreshed.status_code == 200, refreshed.content
    assert _me(refreshed.json()["access"]).status_code == 200


def test_retry_within_the_grace_period_gets_the_same_successor(user):
    client = _client()
    tokens = _login(client, user)
    first = _refresh(client, tokens["refresh"]).json()
    retry = _refresh(client, tokens["refresh"])
    assert retry.status_code == 200, retry.content
    assert retry.json()["refresh"] == first["refresh"]
    assert _me(retry.json()["access"]).status_code == 200


def test_reuse_kills_the_family_and_its_access_tokens(user):
    tokens = _login(_client(), user)
    newest = _refresh(_client(), tokens["refresh"]).json()
    replay = _refresh(_client("thief/1.0", "198.51.100.66"), tokens["refresh"])
    _assert_refused(replay, "token_reused")
    assert TokenFamily.objects.get(user=user).revoke_reason == RevokeReason.REUSE_DETECTED
    _assert_refused(_me(tokens["access"]))
    _assert_refused(_me(newest["access"]))
    assert _refresh(_client(), newest["refresh"]).status_code == 401


def test_a_token_pairing_this_user_with_another_users_family_is_refused(user):
    victim = User.objects.create_user("bob@example.com", PASSWORD)
    theirs = _login(_client(), victim)
    mine = _login(_client(), user)
    assert _me(theirs["access"]).status_code == 200
    # Only a holder of the signing key could make it: this user, the victim's family.
    borrowing = AccessToken(mine["access"])
    borrowing["fam"] = _claims(theirs["access"])["fam"]
    _assert_refused(_me(str(borrowing)))


# Sessions, logout ------------------------------------------------------------------------


def test_sessions_list_current_and_revoke(user):
    other = User.objects.create_user("bob@example.com", PASSWORD)
    _login(_client(), other)  # not listed
    first, second = _login(_client(), user), _login(_client(), user)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {second['access']}"}
    response = _client().get(f"{AUTH}/sessions/", **auth)
    assert response.status_code == 200, response.content
    sessions = {s["id"]: s["current"] for s in response.json()}
    assert sessions == {
        _claims(first["access"])["fam"]: False,
        _claims(second["access"])["fam"]: True,
    }
    revoked = _client().delete(f"{AUTH}/sessions/{_claims(first['access'])['fam']}/", **auth)
    assert revoked.status_code == 204
    _assert_refused(_me(first["access"]))
    assert _me(second["access"]).status_code == 200


def test_logout_ends_the_family(user):
    tokens = _login(_client(), user)
    response = _client().post(f"{AUTH}/logout/", {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 204
    _assert_refused(_me(tokens["access"]))
    assert TokenFamily.objects.get(user=user).revoke_reason == RevokeReason.LOGOUT


def test_logout_all_ends_every_family(user):
    first, second = _login(_client(), user), _login(_client(), user)
    response = _client().post(
        f"{AUTH}/logout/all/", HTTP_AUTHORIZATION=f"Bearer {second['access']}"
    )
    assert response.status_code == 204
    _assert_refused(_me(first["access"]))
    _assert_refused(_me(second["access"]))


@pytest.mark.parametrize("change", ["password", "deactivation"])
def test_account_change_ends_the_users_families(user, change):
    tokens = _login(_client(), user)
    user = User.objects.get(pk=user.pk)
    if change == "password":
        user.set_password("a new password")
    else:
        user.is_active = False
    user.save()
    assert TokenFamily.objects.get(user=user).revoked_at is not None
    assert _me(tokens["access"]).status_code == 401
    assert _refresh(_client(), tokens["refresh"]).status_code == 401


# The simplejwt transition ----------------------------------------------------------------


def test_a_simplejwt_token_of_this_user_converts_once(migrating, user):
    simple = str(SimpleJWTRefreshToken.for_user(user))  # as the project's simplejwt made it
    assert _claims(simple)["user_id"] == str(user.public_id)
    response = _refresh(_client(), simple)
    assert response.status_code == 200, response.content
    body = response.json()
    assert ConvertedToken.objects.get().family.user == user
    assert _me(body["access"]).status_code == 200
    assert _refresh(_client(), body["refresh"]).status_code == 200
    _assert_refused(_refresh(_client(), simple), "token_reused")


@pytest.fixture
def migrating(settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
    }


@pytest.mark.parametrize("claim", ["5", 5, "not-a-uuid", ["x"]])
def test_a_simplejwt_refresh_token_whose_user_id_is_not_of_the_field_is_invalid(migrating, claim):
    # Signed with the project's key before USER_ID_FIELD changed (an int pk), say.
    simple = SimpleJWTRefreshToken()
    simple["user_id"] = claim
    response = _refresh(_client(), str(simple))
    _assert_refused(response, "token_invalid")
    assert not TokenFamily.objects.exists()


@pytest.mark.parametrize("claim", ["5", "not-a-uuid", ["x"]])
def test_a_simplejwt_access_token_whose_user_id_is_not_of_the_field_is_refused(migrating, claim):
    access = AccessToken()  # no family: a simplejwt access token, during the transition
    access["user_id"] = claim
    _assert_refused(_me(str(access)), "user_not_found")


# The admin -------------------------------------------------------------------------------


def test_admin_lists_searches_and_revokes_families(user):
    admin = User.objects.create_superuser("admin@example.com", PASSWORD)
    tokens = _login(_client(), user)
    browser = HttpClient()
    browser.force_login(admin)
    url = "/admin/rotating_tokens/tokenfamily/"
    response = browser.get(url, {"q": "ada@"})
    assert response.status_code == 200
    family = TokenFamily.objects.get(user=user)
    assert str(family.pk) in response.content.decode()
    other = _login(_client(), user)  # a second family of the same user
    response = browser.post(
        url, {"action": "revoke_all_families_of_users", "_selected_action": [str(family.pk)]}
    )
    assert response.status_code == 302
    assert not TokenFamily.objects.filter(user=user, revoked_at__isnull=True).exists()
    _assert_refused(_me(tokens["access"]))
    _assert_refused(_me(other["access"]))


# django-allauth's headless app client ---------------------------------------------------


def _allauth_login(app: HttpClient, user: Any) -> dict[str, Any]:
    response = app.post(
        f"{APP}/auth/login",
        {"email": user.email, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()["meta"]


def test_allauth_login_session_refresh_and_logout(user):
    app = HttpClient(HTTP_USER_AGENT="pytest-app/1.0", REMOTE_ADDR="203.0.113.20")
    meta = _allauth_login(app, user)
    bearer = {"Authorization": f"Bearer {meta['access_token']}"}
    assert _claims(meta["access_token"])["user_id"] == str(user.public_id)
    # The access token finds the family's session, whose user is named by pk.
    session = HttpClient().get(f"{APP}/auth/session", headers=bearer)
    assert session.status_code == 200, session.content
    assert session.json()["data"]["user"]["email"] == user.email
    assert _me(meta["access_token"]).status_code == 200
    refreshed = app.post(
        f"{APP}/tokens/refresh",
        {"refresh_token": meta["refresh_token"]},
        content_type="application/json",
    )
    assert refreshed.status_code == 200, refreshed.content
    access = refreshed.json()["data"]["access_token"]
    assert _me(access).status_code == 200
    response = HttpClient().delete(
        f"{APP}/auth/session", headers={"Authorization": f"Bearer {access}"}
    )
    assert response.status_code == 401  # allauth: no longer authenticated
    assert TokenFamily.objects.get(user=user).revoke_reason == RevokeReason.LOGOUT
    _assert_refused(_me(access))


@pytest.mark.parametrize("named", ["another user", "no user"])
def test_allauth_session_of_another_users_family_is_refused(user, named):
    meta = _allauth_login(HttpClient(), user)
    family_id = _claims(meta["access_token"])["fam"]
    victim = User.objects.create_user("bob@example.com", PASSWORD)
    session = _session_store(meta["session_token"])
    assert session[FAMILY_SESSION_KEY] == family_id
    assert session[SESSION_KEY] == str(user.pk)
    # A session that names another user than its family's, or one that does not exist.
    session[SESSION_KEY] = str(victim.pk if named == "another user" else uuid.uuid4())
    session.save()
    response = HttpClient().get(
        f"{APP}/auth/session", headers={"X-Session-Token": meta["session_token"]}
    )
    assert response.status_code == 410


def test_migrations_match_the_models_with_this_user_model():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
