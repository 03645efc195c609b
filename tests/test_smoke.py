from __future__ import annotations

import pytest

from rotating_tokens import services
from rotating_tokens.exceptions import TokenReused

pytestmark = pytest.mark.django_db


def test_login_refresh_and_replay(api_client, user, password):
    login = api_client.post(
        "/api/auth/token/", {"username": user.username, "password": password}, format="json"
    )
    assert login.status_code == 200, login.content
    first = login.json()["refresh"]
    refreshed = api_client.post("/api/auth/token/refresh/", {"refresh": first}, format="json")
    assert refreshed.status_code == 200
    api_client.credentials(HTTP_USER_AGENT="thief/1.0")
    replay = api_client.post(
        "/api/auth/token/refresh/", {"refresh": first}, format="json", HTTP_USER_AGENT="thief"
    )
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_reused"


def test_factory_raw_token_rotates(client_info):
    from .factories import RefreshTokenFactory

    token = RefreshTokenFactory()
    pair = services.rotate(token.raw, client_info)
    with pytest.raises(TokenReused):
        services.rotate(token.raw, services.Client("198.51.100.1", "other"))
    assert pair.family == token.family
