from __future__ import annotations

import uuid

import pytest

from rotating_tokens import services
from rotating_tokens.models import RevokeReason, TokenFamily

from .factories import UserFactory

pytestmark = pytest.mark.django_db

SESSIONS = "/api/auth/sessions/"


def login(user, ip="198.51.100.1", agent="laptop/1.0") -> services.TokenPair:
    return services.start_family(user, services.Client(ip, agent))


def bearer(pair: services.TokenPair) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {pair.access}"}


def test_lists_the_users_active_sessions_newest_first_with_the_current_one_marked(api_client, user):
    laptop = login(user)
    phone = login(user, "198.51.100.2", "phone/1.0")
    services.rotate(phone.refresh, services.Client("203.0.113.5", "phone/1.1"))
    ended = login(user)
    services.revoke_family(ended.family, RevokeReason.LOGOUT)
    login(UserFactory())  # someone else's

    response = api_client.get(SESSIONS, **bearer(laptop))

    assert response.status_code == 200
    sessions = response.json()
    assert [s["id"] for s in sessions] == [str(phone.family.pk), str(laptop.family.pk)]
    assert [s["current"] for s in sessions] == [False, True]
    assert set(sessions[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "expires_at",
        "ip_address",
        "user_agent",
        "current",
        "dpop_jkt",
    }
    assert sessions[0]["dpop_jkt"] is None  # bearer families
    # Where and with what it was last used, not where it logged in.
    assert (sessions[0]["ip_address"], sessions[0]["user_agent"]) == ("203.0.113.5", "phone/1.1")
    assert sessions[0]["last_used_at"] > sessions[0]["created_at"]


def test_listing_needs_an_access_token(api_client):
    response = api_client.get(SESSIONS)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_deleting_a_session_revokes_it_and_its_access_tokens(api_client, user):
    laptop, phone = login(user), login(user)

    response = api_client.delete(f"{SESSIONS}{phone.family.pk}/", **bearer(laptop))

    assert response.status_code == 204
    family = TokenFamily.objects.get(pk=phone.family.pk)
    assert family.revoke_reason == "logout"
    assert api_client.get("/api/me/", **bearer(phone)).status_code == 401
    assert api_client.get("/api/me/", **bearer(laptop)).status_code == 200


def test_deleting_the_current_session_logs_this_device_out(api_client, user):
    laptop = login(user)

    assert api_client.delete(f"{SESSIONS}{laptop.family.pk}/", **bearer(laptop)).status_code == 204

    assert api_client.get(SESSIONS, **bearer(laptop)).status_code == 401


@pytest.mark.parametrize("whose", ["another user's", "unknown", "malformed", "numeric"])
def test_another_users_session_and_an_unknown_one_look_the_same(api_client, user, whose):
    mine = login(user)
    theirs = login(UserFactory())
    family_id = {
        "another user's": theirs.family.pk,
        "unknown": uuid.uuid4(),
        "malformed": "not-a-uuid",
        "numeric": "1",
    }[whose]

    response = api_client.delete(f"{SESSIONS}{family_id}/", **bearer(mine))

    assert response.status_code == 404
    assert response.json() == {"detail": "No such session.", "code": "not_found"}
    assert TokenFamily.objects.get(pk=theirs.family.pk).revoked_at is None


def test_a_malformed_session_id_without_an_access_token_is_401(api_client):
    response = api_client.delete(f"{SESSIONS}not-a-uuid/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
