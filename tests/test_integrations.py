"""Every integration answers an access token as the DRF views do: the async decorator,
adrf's views (with the async and the sync class), and Django Ninja's sync and async
auth, against ``GET /api/me/`` (DRF), scenario by scenario: status, body and
``WWW-Authenticate`` must be the same. They all call ``access.authenticate_request``
(or its async twin); a check missing from one of them makes its column differ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from rotating_tokens import services
from rotating_tokens.models import RevokeReason, TokenFamily

from .dpop_client import DPoPKey
from .factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_async")]

BASE = "http://testserver"
OBTAIN = "/api/auth/token/"
DRF = "/api/me/"
INTEGRATIONS = [
    "/api/async/me/",
    "/api/sync/me/",
    "/api/adrf/me/",
    "/api/adrf/sync-auth/me/",
    "/api/ninja/me",
    "/api/ninja/async/me",
]


class Case:
    """Sets up one scenario, then makes the request's headers for a given path."""

    def __init__(self, api_client, user, password, client_info) -> None:
        self.api_client, self.user, self.password = api_client, user, password
        self.client_info = client_info

    def bearer(self) -> str:
        return services.start_family(self.user, self.client_info).access

    def bound(self, key: DPoPKey) -> str:
        response = self.api_client.post(
            OBTAIN,
            {"username": self.user.username, "password": self.password},
            format="json",
            HTTP_DPOP=key.proof("POST", BASE + OBTAIN),
        )
        assert response.status_code == 200, response.content
        return response.json()["access"]


def _good(case: Case) -> Callable[[str], dict[str, str]]:
    access = case.bearer()
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def _revoked(case: Case) -> Callable[[str], dict[str, str]]:
    login = services.start_family(case.user, case.client_info)
    services.revoke_family(login.family, RevokeReason.ADMIN)
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {login.access}"}


def _logged_out(case: Case) -> Callable[[str], dict[str, str]]:
    login = services.start_family(case.user, case.client_info)
    services.logout(login.refresh)
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {login.access}"}


def _nothing(case: Case) -> Callable[[str], dict[str, str]]:
    return lambda path: {}


def _garbage(case: Case) -> Callable[[str], dict[str, str]]:
    return lambda path: {"HTTP_AUTHORIZATION": "Bearer not-a-jwt"}


def _three_parts(case: Case) -> Callable[[str], dict[str, str]]:
    return lambda path: {"HTTP_AUTHORIZATION": "Bearer a b"}


def _another_users_family(case: Case) -> Callable[[str], dict[str, str]]:
    login = services.start_family(case.user, case.client_info)
    token = AccessToken(login.access)  # type: ignore[arg-type]
    token["user_id"] = str(UserFactory().pk)  # re-signed with the key: only a key holder could
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _without_family(case: Case) -> Callable[[str], dict[str, str]]:
    token = AccessToken.for_user(case.user)  # simplejwt's own, no family claim
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _bound_as_bearer(case: Case) -> Callable[[str], dict[str, str]]:
    access = case.bound(DPoPKey())
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def _bound_without_proof(case: Case) -> Callable[[str], dict[str, str]]:
    access = case.bound(DPoPKey())
    return lambda path: {"HTTP_AUTHORIZATION": f"DPoP {access}"}


def _bound_with_proof(case: Case) -> Callable[[str], dict[str, str]]:
    key = DPoPKey()
    access = case.bound(key)
    return lambda path: {
        "HTTP_AUTHORIZATION": f"DPoP {access}",
        "HTTP_DPOP": key.proof("GET", BASE + path, access=access),
    }


def _bound_with_proof_of_another_url(case: Case) -> Callable[[str], dict[str, str]]:
    key = DPoPKey()
    access = case.bound(key)
    return lambda path: {
        "HTTP_AUTHORIZATION": f"DPoP {access}",
        "HTTP_DPOP": key.proof("GET", BASE + "/api/elsewhere/", access=access),
    }


def _bound_with_another_keys_proof(case: Case) -> Callable[[str], dict[str, str]]:
    access = case.bound(DPoPKey())
    other = DPoPKey()
    return lambda path: {
        "HTTP_AUTHORIZATION": f"DPoP {access}",
        "HTTP_DPOP": other.proof("GET", BASE + path, access=access),
    }


def _bound_with_proof_without_ath(case: Case) -> Callable[[str], dict[str, str]]:
    key = DPoPKey()
    access = case.bound(key)
    return lambda path: {
        "HTTP_AUTHORIZATION": f"DPoP {access}",
        "HTTP_DPOP": key.proof("GET", BASE + path),
    }


def _unbound_as_dpop(case: Case) -> Callable[[str], dict[str, str]]:
    access = case.bearer()
    return lambda path: {"HTTP_AUTHORIZATION": f"DPoP {access}"}


def _inactive_user_unchecked_family(case: Case) -> Callable[[str], dict[str, str]]:
    access = case.bearer()
    # update() sends no signal: the family stays, the user is inactive.
    get_user_model().objects.filter(pk=case.user.pk).update(is_active=False)
    return lambda path: {"HTTP_AUTHORIZATION": f"Bearer {access}"}


SCENARIOS: dict[str, tuple[Callable[[Case], Callable[[str], dict[str, str]]], int, str | None]] = {
    "good": (_good, 200, None),
    "revoked": (_revoked, 401, "token_revoked"),
    "logged out": (_logged_out, 401, "token_revoked"),
    "no token": (_nothing, 401, "not_authenticated"),
    "not a JWT": (_garbage, 401, "token_not_valid"),
    "three parts": (_three_parts, 401, "bad_authorization_header"),
    "another user's family": (_another_users_family, 401, "token_revoked"),
    "no family": (_without_family, 401, "token_invalid"),
    "bound, as Bearer": (_bound_as_bearer, 401, "dpop_required"),
    "bound, no proof": (_bound_without_proof, 401, "dpop_invalid"),
    "bound, proof": (_bound_with_proof, 200, None),
    "bound, proof of another URL": (_bound_with_proof_of_another_url, 401, "dpop_invalid"),
    "bound, another key's proof": (_bound_with_another_keys_proof, 401, "dpop_invalid"),
    "bound, proof without ath": (_bound_with_proof_without_ath, 401, "dpop_invalid"),
    "unbound, as DPoP": (_unbound_as_dpop, 401, "token_invalid"),
}


def _answer(api_client, path: str, headers: dict[str, str]) -> tuple[int, Any, str | None]:
    response = api_client.get(path, **headers)
    return response.status_code, response.json(), response.headers.get("WWW-Authenticate")


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("path", INTEGRATIONS)
def test_each_integration_answers_as_the_drf_view(
    scenario, path, api_client, user, password, client_info
):
    setup, status, code = SCENARIOS[scenario]
    headers = setup(Case(api_client, user, password, client_info))
    expected = _answer(api_client, DRF, headers(DRF))
    assert expected[0] == status, expected
    if code is not None:
        assert expected[1]["code"] == code
    answer = _answer(api_client, path, headers(path))
    if status == 200:
        assert answer[0] == 200, answer
        assert {"id": answer[1]["id"], "username": answer[1]["username"]} == expected[1]
    else:
        assert answer == expected


@pytest.mark.parametrize("path", [DRF, *INTEGRATIONS])
def test_a_replayed_proof_is_refused_everywhere(path, api_client, user, password, client_info):
    key = DPoPKey()
    access = Case(api_client, user, password, client_info).bound(key)
    headers = {
        "HTTP_AUTHORIZATION": f"DPoP {access}",
        "HTTP_DPOP": key.proof("GET", BASE + path, access=access),
    }
    assert api_client.get(path, **headers).status_code == 200
    again = api_client.get(path, **headers)
    assert again.status_code == 401
    assert again.json()["code"] == "dpop_invalid"
    assert again.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')


@pytest.mark.parametrize("path", [DRF, *INTEGRATIONS])
def test_an_inactive_user_is_refused_everywhere(
    path, api_client, user, password, client_info, settings
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "CHECK_FAMILY_ON_ACCESS": False}
    headers = _inactive_user_unchecked_family(Case(api_client, user, password, client_info))
    response = api_client.get(path, **headers(path))
    assert response.status_code == 401
    assert response.json()["code"] == "user_inactive"


@pytest.mark.parametrize("path", [DRF, *INTEGRATIONS])
def test_a_deleted_user_is_refused_everywhere(
    path, api_client, user, password, client_info, settings
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "CHECK_FAMILY_ON_ACCESS": False}
    access = services.start_family(user, client_info).access
    TokenFamily.objects.all().delete()
    get_user_model().objects.filter(pk=user.pk).delete()
    response = api_client.get(path, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response.status_code == 401
    assert response.json()["code"] == "user_not_found"


def test_the_decorator_gives_the_view_the_family(api_client, user, client_info):
    login = services.start_family(user, client_info)
    body = api_client.get("/api/sync/me/", HTTP_AUTHORIZATION=f"Bearer {login.access}").json()
    # And records it, so that a password change made by this request spares it.
    assert body["family"] == body["current_family"] == str(login.family.pk)


def test_a_decorated_view_takes_posts_without_a_csrf_token(user, client_info):
    from django.test import Client

    login = services.start_family(user, client_info)
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/api/async/post/", HTTP_AUTHORIZATION=f"Bearer {login.access}")
    assert response.status_code == 200
    assert response.json() == {"family": str(login.family.pk)}


def test_ninja_without_the_handler_still_answers_401_not_500(api_client, user, client_info):
    login = services.start_family(user, client_info)
    services.revoke_family(login.family, RevokeReason.ADMIN)
    response = api_client.get("/api/bare-ninja/me", HTTP_AUTHORIZATION=f"Bearer {login.access}")
    assert response.status_code == 401
    assert response.json() == {"detail": "This session has ended. Please log in again."}
