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
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from django.conf import settings

from .test_process_races import RACERS, ROOT, _fire_at_once, _free_port, _request

THIEF = {"User-Agent": "someone-else/1.0"}

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="the server runs on SQLite; the PostgreSQL and MariaDB runs have their own",
)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Callable[..., tuple[int, Path]]]:
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[BinaryIO] = []

    def start(*, grace_seconds: int) -> tuple[int, Path]:
        database = tmp_path / f"grace{grace_seconds}.sqlite3"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(
            PYTHONPATH=str(ROOT),
            DJANGO_SETTINGS_MODULE="example_project.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=settings.SECRET_KEY,
            DATABASE_URL=f"sqlite:///{database}",
            CACHE_DIR=str(tmp_path / "cache"),
            REUSE_GRACE_SECONDS=str(grace_seconds),
            LOGIN_THROTTLE_RATE="",
            REFRESH_THROTTLE_RATE="",
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            env=env,
            cwd=ROOT,
            check=True,
        )
        port = _free_port()
        log = (tmp_path / f"gunicorn{grace_seconds}.log").open("wb")
        logs.append(log)
        process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "gunicorn",
                "example_project.wsgi:application",
                "--workers=4",
                "--backlog=256",
                f"--bind=127.0.0.1:{port}",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        for _ in range(600):
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited:\n{Path(log.name).read_text()}")
            try:
                _request(port, "GET", "/api/me/")
                return port, database
            except OSError:
                time.sleep(0.1)  # waiting for the server to listen, not moving time
        pytest.fail("gunicorn did not start in 60 s")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)
    for log in logs:
        log.close()


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
