"""Races across processes: the example project under gunicorn, several worker
processes with several threads each, against the test database, and 50 refreshes of
one token sent at the same moment over separate connections.

Only on PostgreSQL and MariaDB: SQLite serialises writers, so there is no race to see.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from rotating_tokens import services
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily

from .factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent
RACERS = 50
USER_AGENT = "race-client/1.0"
SERVER_ENGINES = ("django.db.backends.postgresql", "django.db.backends.mysql")

pytestmark = [
    pytest.mark.server_db,
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] not in SERVER_ENGINES,
        reason="needs PostgreSQL or MariaDB (DATABASE_URL)",
    ),
]


def _database_url() -> str:
    """The URL of the test database, for the server processes."""
    db = connection.settings_dict
    scheme = "postgres" if connection.vendor == "postgresql" else "mysql"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}{port}/{db['NAME']}"


def _request(
    port: int, method: str, path: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            method,
            path,
            json.dumps(body) if body is not None else None,
            {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _free_port() -> int:
    # Ports 8300-8399 are this suite's; the xdist worker picks where it starts looking.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    start = 8340 + 10 * (int(worker) % 6)
    for port in range(start, 8400):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 8340-8399")


def example_env(tmp_path: Path, database_url: str, grace_seconds: int) -> dict[str, str]:
    """The environment of an example project server for these tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=database_url,
        CACHE_DIR=str(tmp_path / "cache"),
        # The workers' bell, as the example project rings one by default: this test's own.
        REVOCATION_BELL=str(tmp_path / "revocations.bell"),
        REUSE_GRACE_SECONDS=str(grace_seconds),
        LOGIN_THROTTLE_RATE="",
        REFRESH_THROTTLE_RATE="",
    )
    return env


def listens(log_path: Path, port: int) -> bool:
    """Whether the server writing ``log_path`` says it is listening on ``port`` (gunicorn:
    "Listening at: http://127.0.0.1:…", uvicorn: "running on http://127.0.0.1:…")."""
    return f"http://127.0.0.1:{port}" in log_path.read_text(errors="replace")


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log_path: Path, *options: str) -> Iterator[int]:
    """The example project under gunicorn with ``options``; yields its port once it
    answers, and stops it on exit."""
    port = _free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
            [
                sys.executable,
                "-m",
                "gunicorn",
                "example_project.wsgi:application",
                "--backlog=256",
                f"--bind=127.0.0.1:{port}",
                *options,
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(600):
                if process.poll() is not None:
                    pytest.fail(f"gunicorn exited:\n{log_path.read_text()}")
                try:
                    _request(port, "GET", "/api/me/")
                    # Ours, not another suite's server on the same port (two runs at once).
                    if listens(log_path, port):
                        break
                except OSError:
                    pass
                time.sleep(0.1)  # waiting for the server to listen, not moving time
            else:
                pytest.fail(f"gunicorn did not start in 60 s:\n{log_path.read_text()}")
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def example_server(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start the example project under gunicorn on the test database; returns its port.

    ``transactional_db`` makes the rows a test writes committed, so the server's
    processes see them; the server stops before the tables are flushed.
    """
    with contextlib.ExitStack() as stack:

        def start(*, grace_seconds: int) -> int:
            env = example_env(tmp_path, _database_url(), grace_seconds)
            # Several processes with several threads each: the requests meet in the
            # database.
            return stack.enter_context(
                gunicorn(
                    env,
                    tmp_path / "gunicorn.log",
                    "--preload",
                    "--workers=3",
                    "--worker-class=gthread",
                    "--threads=6",
                )
            )

        yield start


def _fire_at_once(port: int, raw: str) -> list[tuple[int, dict[str, Any]]]:
    """RACERS requests refreshing ``raw``, each on its own connection, released together."""
    barrier = threading.Barrier(RACERS)
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def racer() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        barrier.wait()
        conn.request(
            "POST",
            "/api/auth/token/refresh/",
            json.dumps({"refresh": raw}),
            {"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        response = conn.getresponse()
        result = (response.status, json.loads(response.read()))
        conn.close()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == RACERS
    return results


def _login() -> services.TokenPair:
    return services.start_family(UserFactory(), services.Client("127.0.0.1", USER_AGENT))


def test_concurrent_refreshes_without_grace_rotate_once_and_kill_the_family(example_server):
    port = example_server(grace_seconds=0)
    pair = _login()

    results = _fire_at_once(port, pair.refresh)

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [401] * (RACERS - 1)
    assert {body["code"] for status, body in results if status == 401} <= {
        "token_reused",
        "token_revoked",
    }
    family = TokenFamily.objects.get(pk=pair.family.pk)
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED
    assert RefreshToken.objects.filter(family=family).count() == 2  # one rotation
    (winner,) = [body for status, body in results if status == 200]
    refresh = _request(port, "POST", "/api/auth/token/refresh/", {"refresh": winner["refresh"]})
    assert refresh[0] == 401
    me = _request(port, "GET", "/api/me/", Authorization=f"Bearer {winner['access']}")
    assert me[0] == 401


def test_concurrent_refreshes_in_grace_from_one_client_all_get_the_same_successor(
    example_server,
):
    port = example_server(grace_seconds=30)
    pair = _login()

    results = _fire_at_once(port, pair.refresh)

    assert [status for status, _ in results] == [200] * RACERS
    successors = {body["refresh"] for _, body in results}
    assert len(successors) == 1
    family = TokenFamily.objects.get(pk=pair.family.pk)
    assert family.revoked_at is None
    assert RefreshToken.objects.filter(family=family).count() == 2  # one rotation
    (successor,) = successors
    me = _request(port, "GET", "/api/me/", Authorization=f"Bearer {results[-1][1]['access']}")
    assert me[0] == 200

    first_use = _request(port, "POST", "/api/auth/token/refresh/", {"refresh": successor})
    replay = _request(
        port,
        "POST",
        "/api/auth/token/refresh/",
        {"refresh": successor},
        **{"User-Agent": "someone-else/1.0"},
    )

    assert first_use[0] == 200
    assert (replay[0], replay[1]["code"]) == (401, "token_reused")
