"""Across processes: the example project under gunicorn with 3 workers, each answering
from its own deny-list (revocation.py). PostgreSQL and MariaDB, as the other gunicorn
tests (the server processes need the test database on a server)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from rotating_tokens import services
from rotating_tokens.models import RevokeReason

from .factories import UserFactory

pytestmark = [
    pytest.mark.server_db,
    pytest.mark.skipif(
        django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
        reason="the server processes need the test database on a server",
    ),
    pytest.mark.django_db(transaction=True),
]


def _redis_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def _answers(port: int, headers: dict[str, str], count: int) -> list[tuple[int, str | None]]:
    """``count`` reads, each on a new connection (gunicorn spreads them over workers)."""
    answers = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/me/", headers=headers)
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read()).get("code")))
        conn.close()
    return answers


@pytest.mark.parametrize("revoked_by", ["logout over HTTP", "another process"])
def test_with_redis_a_revocation_reaches_every_worker_before_its_answer_does(
    tmp_path: Path, revoked_by: str, settings
):
    from .test_process_races import _database_url, _request, example_env, gunicorn

    # This process pushes through the Redis the server's workers subscribe to.
    settings.CACHES = {
        **settings.CACHES,
        "push": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_url(),
        },
    }
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "REVOCATION_PUSH": "push",
        "REVOCATION_POLL_INTERVAL": 3600,
    }
    env = example_env(tmp_path, _database_url(), grace_seconds=10)
    # The push alone: no bell, no poll.
    env.update(REDIS_URL=_redis_url(), REVOCATION_POLL_SECONDS="3600", REVOCATION_BELL="")
    pair = services.start_family(UserFactory(), services.Client("127.0.0.1", "t/1"))
    me = {"Authorization": f"Bearer {pair.access}"}
    with gunicorn(env, tmp_path / "gunicorn.log", "--workers=3") as port:
        # Every worker reads the family once and knows it (and has subscribed).
        assert set(_answers(port, me, 60)) == {(200, None)}
        if revoked_by == "another process":
            services.revoke_family(pair.family, RevokeReason.ADMIN)  # autocommit: pushed
        else:
            status, _ = _request(port, "POST", "/api/auth/logout/", {"refresh": pair.refresh})
            assert status == 204
        answers = _answers(port, me, 60)
    assert set(answers) == {(401, "token_revoked")}


def test_without_redis_every_worker_refuses_within_the_poll_interval(tmp_path: Path):
    from .test_process_races import _database_url, _request, example_env, gunicorn

    env = example_env(tmp_path, _database_url(), grace_seconds=10)  # the file cache
    env.update(REVOCATION_POLL_SECONDS="1", REVOCATION_BELL="")  # the poll alone
    pair = services.start_family(UserFactory(), services.Client("127.0.0.1", "t/1"))
    me = {"Authorization": f"Bearer {pair.access}"}
    with gunicorn(env, tmp_path / "gunicorn.log", "--workers=3") as port:
        assert set(_answers(port, me, 60)) == {(200, None)}
        status, _ = _request(port, "POST", "/api/auth/logout/", {"refresh": pair.refresh})
        assert status == 204
        time.sleep(1.2)  # the bound: REVOCATION_POLL_INTERVAL, and a margin
        answers = _answers(port, me, 60)
    assert set(answers) == {(401, "token_revoked")}


def test_with_the_poll_alone_a_revocation_waits_for_it(tmp_path: Path):
    """The counterpart of the tests above: with a long interval and no push, another
    worker still answers from what it knew. What makes the tests above pass is the push
    or the poll, not something else."""
    from .test_process_races import _database_url, example_env, gunicorn

    env = example_env(tmp_path, _database_url(), grace_seconds=10)
    env.update(REVOCATION_POLL_SECONDS="3600", REVOCATION_BELL="")
    pair = services.start_family(UserFactory(), services.Client("127.0.0.1", "t/1"))
    me = {"Authorization": f"Bearer {pair.access}"}
    with gunicorn(env, tmp_path / "gunicorn.log", "--workers=3") as port:
        assert set(_answers(port, me, 60)) == {(200, None)}
        services.revoke_family(pair.family, RevokeReason.ADMIN)  # nothing pushes it
        answers = _answers(port, me, 30)
    assert (200, None) in answers


@pytest.mark.parametrize("revoked_by", ["logout over HTTP", "another process"])
def test_without_redis_the_bell_brings_a_revocation_to_every_worker_before_its_answer(
    tmp_path: Path, revoked_by: str, settings
):
    """One machine, no Redis, and a poll interval no test waits for: what makes every
    worker refuse at once is the bell (REVOCATION_BELL), which the process that revoked
    rang after the commit, the HTTP worker or this test's own process."""
    from .test_process_races import _database_url, _request, example_env, gunicorn

    env = example_env(tmp_path, _database_url(), grace_seconds=10)  # the file cache
    env["REVOCATION_POLL_SECONDS"] = "3600"
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "REVOCATION_BELL": env["REVOCATION_BELL"],
        "REVOCATION_PUSH": None,
    }
    pair = services.start_family(UserFactory(), services.Client("127.0.0.1", "t/1"))
    me = {"Authorization": f"Bearer {pair.access}"}
    with gunicorn(env, tmp_path / "gunicorn.log", "--workers=3") as port:
        assert set(_answers(port, me, 60)) == {(200, None)}
        if revoked_by == "another process":
            services.revoke_family(pair.family, RevokeReason.ADMIN)  # autocommit: rung
        else:
            status, _ = _request(port, "POST", "/api/auth/logout/", {"refresh": pair.refresh})
            assert status == 204
        answers = _answers(port, me, 60)
    assert set(answers) == {(401, "token_revoked")}
