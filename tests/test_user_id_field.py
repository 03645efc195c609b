"""``SIMPLE_JWT["USER_ID_FIELD"]`` other than the primary key (issue 16, bug 1).

Access tokens carry that field in ``USER_ID_CLAIM``; the family state must hold the
same value, or every authenticated request is a 401 ``token_revoked``. Here with
``auth.User`` and its unique ``username``; tests/custom_user runs a whole project on a
UUID-keyed user model.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt.tokens import AccessToken

from rotating_tokens import revocation, services
from rotating_tokens.models import TokenFamily

from .factories import PASSWORD, UserFactory
from .jwt_settings import set_simplejwt_setting

pytestmark = pytest.mark.django_db

AUTH = "/api/auth"
ME = "/api/me/"


@pytest.fixture
def by_username(settings, monkeypatch):
    settings.SIMPLE_JWT = {"USER_ID_FIELD": "username"}  # as the project would say it
    set_simplejwt_setting(monkeypatch, "USER_ID_FIELD", "username")


def _login(api_client, user) -> dict:
    response = api_client.post(
        f"{AUTH}/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _bearer(access: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def test_access_token_works_when_user_id_field_is_not_the_pk(
    api_client, by_username, state_store, user
):
    tokens = _login(api_client, user)
    assert AccessToken(tokens["access"])["user_id"] == user.username
    for _ in range(2):  # the second read finds the cached state, where there is a cache
        response = api_client.get(ME, **_bearer(tokens["access"]))
        assert response.status_code == 200, response.content
        assert response.json() == {"id": user.pk, "username": user.username}
    refreshed = api_client.post(
        f"{AUTH}/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert refreshed.status_code == 200, refreshed.content
    assert api_client.get(ME, **_bearer(refreshed.json()["access"])).status_code == 200


def test_sessions_list_marks_the_current_family_when_user_id_field_is_not_the_pk(
    api_client, by_username, user
):
    first, second = _login(api_client, user), _login(api_client, user)
    UserFactory()  # someone else's sessions are not listed
    response = api_client.get(f"{AUTH}/sessions/", **_bearer(second["access"]))
    assert response.status_code == 200, response.content
    sessions = response.json()
    if isinstance(sessions, dict):  # paginated
        sessions = sessions["results"]
    assert len(sessions) == 2
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    assert str(current[0]["id"]) == AccessToken(second["access"])["fam"]
    revoked = api_client.delete(
        f"{AUTH}/sessions/{AccessToken(first['access'])['fam']}/", **_bearer(second["access"])
    )
    assert revoked.status_code == 204
    assert api_client.get(ME, **_bearer(first["access"])).json()["code"] == "token_revoked"
    assert api_client.get(ME, **_bearer(second["access"])).status_code == 200


def test_logout_all_when_user_id_field_is_not_the_pk(api_client, by_username, user):
    tokens = _login(api_client, user)
    response = api_client.post(f"{AUTH}/logout/all/", **_bearer(tokens["access"]))
    assert response.status_code == 204
    refused = api_client.get(ME, **_bearer(tokens["access"]))
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"


def test_another_users_family_is_refused_when_user_id_field_is_not_the_pk(
    api_client, by_username, state_store, user, client_info
):
    victim = services.start_family(UserFactory(), client_info)
    assert api_client.get(ME, **_bearer(victim.access)).status_code == 200  # cached, if any
    # What only a holder of the signing key could make: this user, the victim's family.
    borrowing = AccessToken.for_user(user)
    borrowing["fam"] = str(victim.family.pk)
    refused = api_client.get(ME, **_bearer(str(borrowing)))
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"


def test_a_token_naming_the_owner_by_pk_is_refused_when_user_id_field_is_not_the_pk(
    by_username, user, client_info
):
    family = services.start_family(user, client_info).family
    assert revocation.allows_access(family.pk, user_id=user.username)
    assert not revocation.allows_access(family.pk, user_id=user.pk)
    assert not revocation.allows_access(family.pk, user_id="")


def test_owner_without_a_user_id_value_matches_no_token(user, client_info):
    family = services.start_family(user, client_info).family
    facts = (family.expires_at.timestamp(), services.user_id_claim(None), "user_id", 0.0)
    assert not revocation._facts_allow(facts, "", family.created_at)
    assert not revocation._facts_allow(facts, "None", family.created_at)
    assert revocation._facts_allow(facts, None, family.created_at)  # no owner asked


def test_user_id_claim_compares_int_and_uuid_values_as_the_claim_writes_them():
    value = uuid.uuid4()
    assert services.user_id_claim(value) == str(value)
    assert services.user_id_claim(7) == "7"


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 0})
def test_state_of_a_pk_keyed_project_joins_no_user_table(user, client_info):
    family = services.start_family(user, client_info).family
    with CaptureQueriesContext(connection) as queries:
        assert revocation.allows_access(family.pk, user_id=user.pk)
    (query,) = queries
    assert TokenFamily._meta.db_table in query["sql"]
    assert user._meta.db_table not in query["sql"]  # the foreign key is the owner


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 0})
def test_state_of_a_project_keyed_by_another_field_is_one_query(by_username, user, client_info):
    family = services.start_family(user, client_info).family
    with CaptureQueriesContext(connection) as queries:
        assert revocation.allows_access(family.pk, user_id=user.username)
    assert len(queries) == 1  # the family and its owner's field, joined


def test_token_user_id_reads_the_field_only_when_it_is_not_the_pk(
    by_username, user, monkeypatch, django_assert_num_queries
):
    with django_assert_num_queries(2):
        assert services.token_user_id(user.pk) == user.username
        assert services.token_user_id(str(user.pk)) == user.username  # as a session has it
    with django_assert_num_queries(1):
        assert services.token_user_id(user.pk + 1000) is None
    with django_assert_num_queries(0):
        assert services.token_user_id("not-a-pk") is None
    set_simplejwt_setting(monkeypatch, "USER_ID_FIELD", "id")
    with django_assert_num_queries(0):
        assert services.token_user_id(user.pk) == str(user.pk)


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 60})
def test_what_the_process_knows_of_a_family_compares_the_user_id_field_too(
    api_client, by_username, user, client_info, django_assert_num_queries
):
    mine = services.start_family(user, client_info)
    victim = services.start_family(UserFactory(), client_info)
    for pair in (mine, victim):  # read, then known to this process
        assert api_client.get(ME, **_bearer(pair.access)).status_code == 200
    with django_assert_num_queries(1):  # the user only: the family is known
        assert api_client.get(ME, **_bearer(mine.access)).status_code == 200
    borrowing = AccessToken.for_user(user)
    borrowing["fam"] = str(victim.family.pk)
    with CaptureQueriesContext(connection) as queries:
        refused = api_client.get(ME, **_bearer(str(borrowing)))
    assert refused.json()["code"] == "token_revoked"
    assert not [q for q in queries if TokenFamily._meta.db_table in q["sql"]]


@override_settings(ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 60})
def test_a_family_known_before_user_id_field_changed_is_read_again(
    api_client, monkeypatch, user, client_info
):
    before = services.start_family(user, client_info)
    assert api_client.get(ME, **_bearer(before.access)).status_code == 200  # known: by pk
    # The project switches to usernames; the family lives on, and its next access token
    # names the user by username.
    set_simplejwt_setting(monkeypatch, "USER_ID_FIELD", "username")
    after = services.rotate(before.refresh, client_info)
    assert AccessToken(after.access)["user_id"] == user.username
    assert api_client.get(ME, **_bearer(after.access)).status_code == 200
    services.logout(after.refresh)
    refused = api_client.get(ME, **_bearer(after.access))
    assert refused.json()["code"] == "token_revoked"
