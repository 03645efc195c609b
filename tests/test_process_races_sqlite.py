"""The same race as test_process_races.py, on the example project's own database: SQLite.

SQLite has no row locks: the example project runs its transactions as ``BEGIN
IMMEDIATE`` (WAL, a 30 s busy timeout), so writers queue instead of failing with
"database is locked". 50 refreshes of one token sent at once to several gunicorn worker
processes must still give one rotation, and never a 503.

The server gets a SQLite file of its own (migrated like the demo), not the test
database, which is in memory; the test reads the file with the standard library.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from .test_process_races import RACERS, ROOT, _fire_at_once, _request, example_env, gunicorn

THIEF = {"User-Agent": "someone-else/1.0"}

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="the server runs on SQLite; the PostgreSQL and MariaDB runs have their own",
)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Callable[..., tuple[int, Path]]]:
    with contextlib.ExitStack() as stack:

        def start(*, grace_seconds: int) -> tuple[int, Path]:
            database = tmp_path / f"grace{grace_seconds}.sqlite3"
            env = example_env(tmp_path, f"sqlite:///{database}", grace_seconds)
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
                env=env,
                cwd=ROOT,
                check=True,
            )
            log = tmp_path / f"gunicorn{grace_seconds}.log"
            return stack.enter_context(gunicorn(env, log, "--workers=4")), database

        yield start


def _login(port: int) -> dict[str, str]:
    status, body = _request(
        port, "POST", "/api/auth/token/", {"username": "alice", "password": "alice-password"}
    )
    assert status == 200, body
    return body


def _family_state(database: Path) -> tuple[str | None, int]:
    """The revoke reason of the only family, and how many tokens it holds."""
    # sqlite3's own context manager commits but does not close.
    with contextlib.closing(sqlite3.connect(database)) as db:
        ((reason, tokens),) = db.execute(
            "SELECT f.revoke_reason, COUNT(t.id) FROM rotating_tokens_tokenfamily f"
            " JOIN rotating_tokens_refreshtoken t ON t.family_id = f.id GROUP BY f.id"
        ).fetchall()
    return reason or None, tokens


def test_concurrent_refreshes_without_grace_rotate_once_and_kill_the_family(sqlite_server):
    port, database = sqlite_server(grace_seconds=0)
    login = _login(port)

    results = _fire_at_once(port, login["refresh"])

    assert sorted(status for status, _ in results) == [200] + [401] * (RACERS - 1)
    assert {body["code"] for status, body in results if status == 401} <= {
        "token_reused",
        "token_revoked",
    }
    assert _family_state(database) == ("reuse_detected", 2)
    (winner,) = [body for status, body in results if status == 200]
    assert (
        _request(port, "POST", "/api/auth/token/refresh/", {"refresh": winner["refresh"]})[0] == 401
    )
    assert _request(port, "GET", "/api/me/", Authorization=f"Bearer {winner['access']}")[0] == 401


def test_concurrent_refreshes_in_grace_from_one_client_all_get_the_same_successor(sqlite_server):
    port, database = sqlite_server(grace_seconds=30)
    login = _login(port)

    results = _fire_at_once(port, login["refresh"])

    assert [status for status, _ in results] == [200] * RACERS
    (successor,) = {body["refresh"] for _, body in results}
    assert _family_state(database) == (None, 2)
    first_use = _request(port, "POST", "/api/auth/token/refresh/", {"refresh": successor})
    replay = _request(port, "POST", "/api/auth/token/refresh/", {"refresh": successor}, **THIEF)
    assert first_use[0] == 200
    assert (replay[0], replay[1]["code"]) == (401, "token_reused")
