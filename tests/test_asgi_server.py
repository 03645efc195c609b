"""The example project under ``uvicorn example_project.asgi:application --workers 3``,
from outside, as a client sees it: login, ``/api/me/`` (DRF), ``/api/async/me/`` (an
async view), ``/api/ninja/me`` (Django Ninja) and ``ws://…/ws/me/`` (Channels) accept
the token, refuse it with the app's ``code`` after a logout, and close the socket with
4401. PostgreSQL and MariaDB, as the other server tests (tests/test_process_races.py)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from . import test_process_races as races
from .dpop_client import DPoPKey
from .factories import PASSWORD, UserFactory

pytestmark = races.pytestmark  # PostgreSQL and MariaDB only

READS = ("/api/me/", "/api/async/me/", "/api/ninja/me")
WAIT = 30  # seconds a step may take at most on a loaded machine: not a timing assertion


@contextlib.contextmanager
def uvicorn(env: dict[str, str], log_path: Path) -> Iterator[int]:
    port = races._free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
            [
                sys.executable,
                "-m",
                "uvicorn",
                "example_project.asgi:application",
                "--workers=3",
                f"--port={port}",
            ],
            env=env,
            cwd=races.ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(600):
                if process.poll() is not None:
                    pytest.fail(f"uvicorn exited:\n{log_path.read_text()}")
                try:
                    races._request(port, "GET", "/api/me/")
                    if races.listens(log_path, port):  # ours, not another run's
                        break
                except OSError:
                    pass
                time.sleep(0.1)  # waiting for the server to listen, not moving time
            else:
                pytest.fail(f"uvicorn did not start in 60 s:\n{log_path.read_text()}")
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def server(transactional_db, tmp_path) -> Iterator[int]:
    env = races.example_env(tmp_path, races._database_url(), grace_seconds=10)
    env["DJANGO_PASSWORD_HASHERS"] = "django.contrib.auth.hashers.MD5PasswordHasher"
    with uvicorn(env, tmp_path / "uvicorn.log") as port:
        yield port


def _login(port: int, user, key: DPoPKey | None = None) -> dict:
    headers = {"DPoP": key.proof("POST", f"http://127.0.0.1:{port}/api/auth/token/")} if key else {}
    status, tokens = races._request(
        port,
        "POST",
        "/api/auth/token/",
        {"username": user.username, "password": PASSWORD},
        **headers,
    )
    assert status == 200, tokens
    return tokens


@contextlib.contextmanager
def _authenticated(port: int, message: dict):
    """A socket to ws/me/ that sent ``message`` first."""
    with connect(f"ws://127.0.0.1:{port}/ws/me/", open_timeout=WAIT) as socket:
        socket.send(json.dumps(message))
        yield socket


def _close_code(socket) -> int | None:
    try:
        socket.recv(timeout=WAIT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


def test_every_path_accepts_the_token_and_refuses_it_after_logout(server):
    user = UserFactory()
    tokens = _login(server, user)
    bearer = {"Authorization": f"Bearer {tokens['access']}"}
    for path in READS:
        assert races._request(server, "GET", path, **bearer) == (
            200,
            {"id": user.pk, "username": user.username},
        ), path
    with _authenticated(server, {"type": "authenticate", "access": tokens["access"]}) as socket:
        assert json.loads(socket.recv(timeout=WAIT)) == {
            "type": "authenticated",
            "user": {"id": user.pk, "username": user.username},
        }
        logout = races._request(server, "POST", "/api/auth/logout/", {"refresh": tokens["refresh"]})
        assert logout[0] == 204
        assert _close_code(socket) == 4401  # whichever worker holds the socket
    for path in READS:
        # Each worker has heard of the logout by its next poll at the latest.
        for _ in range(WAIT * 10):
            status, body = races._request(server, "GET", path, **bearer)
            if status != 200:
                break
            time.sleep(0.1)
        assert (status, body["code"]) == (401, "token_revoked"), path


def test_a_bound_token_needs_its_proof_on_every_path(server):
    user = UserFactory()
    key = DPoPKey()
    tokens = _login(server, user, key)
    access = tokens["access"]
    for path in READS:
        status, body = races._request(server, "GET", path, Authorization=f"DPoP {access}")
        assert (status, body["code"]) == (401, "dpop_invalid"), path
        status, body = races._request(server, "GET", path, Authorization=f"Bearer {access}")
        assert (status, body["code"]) == (401, "dpop_required"), path
        proof = key.proof("GET", f"http://127.0.0.1:{server}{path}", access=access)
        status, body = races._request(
            server, "GET", path, Authorization=f"DPoP {access}", DPoP=proof
        )
        assert status == 200, (path, body)
    with _authenticated(server, {"type": "authenticate", "access": access}) as socket:
        assert _close_code(socket) == 4401
    proof = key.proof("GET", f"http://127.0.0.1:{server}/ws/me/", access=access)
    message = {"type": "authenticate", "access": access, "dpop": proof}
    with _authenticated(server, message) as socket:
        assert json.loads(socket.recv(timeout=WAIT))["type"] == "authenticated"


def test_a_bad_token_on_the_socket_closes_it_with_4401(server):
    with _authenticated(server, {"type": "authenticate", "access": "junk"}) as socket:
        assert _close_code(socket) == 4401
