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
        "device",
        "name",
        "remember",
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


# Devices and names ------------------------------------------------------------------

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def test_each_session_names_its_device_from_the_user_agent_of_its_last_use(api_client, user):
    laptop = login(user, agent=CHROME)
    phone = login(user, agent="curl/8.5.0")
    services.rotate(phone.refresh, services.Client("198.51.100.1", CHROME.replace("131", "132")))

    sessions = api_client.get(SESSIONS, **bearer(laptop)).json()

    assert {s["id"]: s["device"] for s in sessions} == {
        str(laptop.family.pk): "Chrome 131 on Linux",
        str(phone.family.pk): "Chrome 132 on Linux",
    }
    assert [s["name"] for s in sessions] == ["", ""]


def rename(api_client, pair, family_id, name, **extra):
    return api_client.patch(
        f"{SESSIONS}{family_id}/", {"name": name}, format="json", **bearer(pair), **extra
    )


def test_the_owner_names_a_session(api_client, user):
    laptop, phone = login(user, agent=CHROME), login(user)

    response = rename(api_client, laptop, phone.family.pk, "  Work laptop ")

    assert response.status_code == 200
    assert response.json()["name"] == "Work laptop"
    assert response.json()["id"] == str(phone.family.pk)
    assert response.json()["current"] is False
    assert TokenFamily.objects.get(pk=phone.family.pk).name == "Work laptop"
    listed = {s["id"]: s["name"] for s in api_client.get(SESSIONS, **bearer(laptop)).json()}
    assert listed[str(phone.family.pk)] == "Work laptop"


def test_a_name_is_stored_as_the_text_it_is(api_client, user):
    laptop = login(user)
    name = '<img src=x onerror="alert(1)"> & ü'

    assert rename(api_client, laptop, laptop.family.pk, name).json()["name"] == name
    assert TokenFamily.objects.get(pk=laptop.family.pk).name == name


@pytest.mark.parametrize(
    "name", ["x" * 65, "", "   ", "\t\n", 42, None, True, ["Work"], {"n": "Work"}, "a\x00b"]
)
def test_a_name_that_is_too_long_empty_or_not_a_string_is_a_400(api_client, user, name):
    laptop = login(user)
    rename(api_client, laptop, laptop.family.pk, "Before")

    response = rename(api_client, laptop, laptop.family.pk, name)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "name" in body
    assert TokenFamily.objects.get(pk=laptop.family.pk).name == "Before"


@pytest.mark.parametrize("name", ["é" * 64, "Work 💻", "Téléphone de Zoë"])
def test_names_up_to_64_characters_of_any_script_are_taken(api_client, user, name):
    laptop = login(user)

    assert rename(api_client, laptop, laptop.family.pk, name).status_code == 200
    assert TokenFamily.objects.get(pk=laptop.family.pk).name == name


def test_a_body_without_a_name_is_a_400(api_client, user):
    laptop = login(user)

    response = api_client.patch(
        f"{SESSIONS}{laptop.family.pk}/", {}, format="json", **bearer(laptop)
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_the_owner_reads_one_session(api_client, user):
    laptop = login(user, agent=CHROME)

    response = api_client.get(f"{SESSIONS}{laptop.family.pk}/", **bearer(laptop))

    assert response.status_code == 200
    assert response.json() == api_client.get(SESSIONS, **bearer(laptop)).json()[0]
    assert response.json()["device"] == "Chrome 131 on Linux"


def test_another_users_session_cannot_be_renamed_or_seen(api_client, user):
    mine = login(user)
    theirs = login(UserFactory(), agent=CHROME)
    seen = api_client.get(f"{SESSIONS}{theirs.family.pk}/", **bearer(mine))
    assert seen.status_code == 404
    assert seen.json()["code"] == "not_found"

    response = rename(api_client, mine, theirs.family.pk, "Mine now")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert TokenFamily.objects.get(pk=theirs.family.pk).name == ""
    listed = [s["id"] for s in api_client.get(SESSIONS, **bearer(mine)).json()]
    assert str(theirs.family.pk) not in listed
    # The same 404 as an id that does not exist: nothing tells them apart.
    unknown = rename(api_client, mine, uuid.uuid4(), "Mine now")
    assert unknown.json() == response.json()
    assert rename(api_client, mine, "not-a-uuid", "x").status_code == 404


def test_an_ended_session_cannot_be_renamed_or_read(api_client, user):
    laptop, ended = login(user), login(user)
    services.revoke_family(ended.family, RevokeReason.LOGOUT)

    assert rename(api_client, laptop, ended.family.pk, "Old phone").status_code == 404
    assert api_client.get(f"{SESSIONS}{ended.family.pk}/", **bearer(laptop)).status_code == 404


def test_renaming_needs_an_access_token(api_client, user):
    laptop = login(user)

    response = api_client.patch(f"{SESSIONS}{laptop.family.pk}/", {"name": "x"}, format="json")

    assert response.status_code == 401
    assert TokenFamily.objects.get(pk=laptop.family.pk).name == ""
