"""The example project under gunicorn with ``JWT_USER_ID_FIELD=username``: access
tokens name the user by username, not by pk, and every worker still logs in, reads,
refreshes and detects reuse (issue 16, bug 1). PostgreSQL and MariaDB, as the other
gunicorn tests (tests/test_process_races.py)."""

from __future__ import annotations

import os
import socket
import time

import jwt
import pytest

from . import test_process_races as races
from .factories import PASSWORD, UserFactory

pytestmark = races.pytestmark  # PostgreSQL and MariaDB only


@pytest.mark.parametrize("cache", ["file", "redis"])
def test_a_project_keyed_by_username_logs_in_reads_refreshes_and_detects_reuse(
    transactional_db, tmp_path, cache
):
    user = UserFactory()
    env = races.example_env(tmp_path, races._database_url(), grace_seconds=10)
    if cache == "redis":  # and revocations pushed to every worker
        try:
            socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        except OSError:
            pytest.skip("no Redis on 127.0.0.1:6379")
        env["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    env.update(
        JWT_USER_ID_FIELD="username",
        # The password was hashed with the suite's hasher.
        DJANGO_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
    )
    with races.gunicorn(env, tmp_path / "gunicorn.log", "--workers=3") as port:
        status, tokens = races._request(
            port, "POST", "/api/auth/token/", {"username": user.username, "password": PASSWORD}
        )
        assert status == 200, tokens
        claims = jwt.decode(tokens["access"], options={"verify_signature": False})
        assert claims["user_id"] == user.username
        bearer = {"Authorization": f"Bearer {tokens['access']}"}
        for _ in range(6):  # several workers, the cached state too
            status, me = races._request(port, "GET", "/api/me/", **bearer)
            assert (status, me) == (200, {"id": user.pk, "username": user.username})
        status, refreshed = races._request(
            port, "POST", "/api/auth/token/refresh/", {"refresh": tokens["refresh"]}
        )
        assert status == 200, refreshed
        new_bearer = {"Authorization": f"Bearer {refreshed['access']}"}
        assert races._request(port, "GET", "/api/me/", **new_bearer)[0] == 200
        # The first token again, from another client: reuse, the family dies.
        status, body = races._request(
            port,
            "POST",
            "/api/auth/token/refresh/",
            {"refresh": tokens["refresh"]},
            **{"User-Agent": "thief/1.0"},
        )
        assert (status, body["code"]) == (401, "token_reused")
        # In force on the worker that detected it at once, on the others by their next
        # poll (REVOCATION_POLL_INTERVAL, 1 s) when no Redis pushes it.
        deadline = time.monotonic() + (0.5 if cache == "redis" else 3)
        for headers in (bearer, new_bearer):
            while True:
                status, body = races._request(port, "GET", "/api/me/", **headers)
                if status != 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert (status, body["code"]) == (401, "token_revoked")
        for headers in (bearer, new_bearer) * 3:  # and stays so on every worker
            status, body = races._request(port, "GET", "/api/me/", **headers)
            assert (status, body["code"]) == (401, "token_revoked")
