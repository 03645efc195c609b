"""Faults, seen over HTTP: the database failing in the middle of a rotation, the cache
going away, and a client whose response to a refresh was lost."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.test import override_settings
from django.utils import timezone

from rotating_tokens import crypto, services
from rotating_tokens.models import RefreshToken, Revocation, RevokeReason, TokenFamily
from rotating_tokens.throttling import OptionalScopedRateThrottle

from .db_faults import (
    a_deadlock,
    failing_statements,
    failing_successor_insert,
    next_lookup_key,
    successor_insert,
)
from .factories import RefreshTokenFactory

REFRESH = "/api/auth/token/refresh/"
THIEF = {"HTTP_USER_AGENT": "someone-else/1.0"}


def _refresh(api_client, raw: str, **extra: Any):
    return api_client.post(REFRESH, {"refresh": raw}, format="json", **extra)


def _login(api_client, user, password) -> dict[str, Any]:
    response = api_client.post(
        "/api/auth/token/", {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _token_of(raw: str) -> RefreshToken:
    return RefreshToken.objects.get(lookup_key=crypto.parse_token(raw).lookup_key)


def _assert_service_unavailable(response) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "The service is temporarily unavailable. Please try again.",
        "code": "service_unavailable",
    }
    assert response["Retry-After"]
    assert b"Traceback" not in response.content


def _assert_works_exactly_once(api_client, raw: str) -> None:
    assert _refresh(api_client, raw).status_code == 200
    replay = _refresh(api_client, raw, **THIEF)
    assert (replay.status_code, replay.json()["code"]) == (401, "token_reused")


# The database fails mid-rotation --------------------------------------------------------


# In autocommit, as a request runs (the views are never inside ATOMIC_REQUESTS), and
# inside a transaction of the caller's (the test's own, which stays usable).
@pytest.mark.parametrize(
    "in_transaction",
    [
        pytest.param(False, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
        pytest.param(True, marks=pytest.mark.django_db, id="in a transaction"),
    ],
)
@pytest.mark.parametrize(
    "failure",
    [
        OperationalError("server closed the connection unexpectedly"),
        # What Django raises on a closed connection: not a DatabaseError.
        InterfaceError("connection already closed"),
        # The database itself refuses the successor's INSERT, after the claim ran.
        None,
    ],
    ids=["OperationalError", "InterfaceError", "IntegrityError"],
)
def test_database_error_inside_the_rotation_answers_503_and_changes_nothing(
    api_client, user, password, failure, in_transaction, claim
):
    raw = _login(api_client, user, password)["refresh"]
    assert connection.in_atomic_block == in_transaction

    if failure is None:
        fault = next_lookup_key(crypto.parse_token(raw).lookup_key)
    else:
        fault = failing_successor_insert(failure)
    with fault:
        response = _refresh(api_client, raw)

    _assert_service_unavailable(response)
    token = _token_of(raw)
    assert token.used_at is None  # the claiming UPDATE was rolled back
    assert RefreshToken.objects.filter(family=token.family).count() == 1
    assert token.family.revoked_at is None
    _assert_works_exactly_once(api_client, raw)


@pytest.mark.django_db
def test_database_error_inside_the_login_answers_503_and_leaves_no_family(
    api_client, user, password, login_insert
):
    failure = OperationalError("server closed the connection unexpectedly")

    # The token's INSERT fails: after the family's in the ORM's transaction, or the
    # one statement that inserts both on PostgreSQL.
    with failing_successor_insert(failure):
        response = api_client.post(
            "/api/auth/token/", {"username": user.username, "password": password}, format="json"
        )

    _assert_service_unavailable(response)
    assert not TokenFamily.objects.exists()
    assert not RefreshToken.objects.exists()


# The database breaks a deadlock by rolling a write back ---------------------------------
#
# A refresh racing a logout-all, or two logouts of one user, can lock rows in opposite
# orders; InnoDB then rolls one back (error 1213), PostgreSQL too (40P01). Nothing of
# it was written, so the write is made again instead of answering 503. The deadlock is
# raised in place of the statement (tests/test_purge.py has a real one between two
# connections, and what counts as one on each driver).


def _family_update() -> str:
    return f"UPDATE {connection.ops.quote_name(TokenFamily._meta.db_table)} "


@pytest.mark.django_db(transaction=True)
def test_a_rotation_the_database_rolls_back_to_break_a_deadlock_is_made_again(
    api_client, user, password, claim, caplog
):
    raw = _login(api_client, user, password)["refresh"]

    with (
        caplog.at_level("INFO", logger="rotating_tokens"),
        failing_statements(successor_insert(), a_deadlock(), times=2) as refused,
    ):
        response = _refresh(api_client, raw)

    assert response.status_code == 200, response.content
    assert len(refused) == 2
    assert "A refresh lost a deadlock; trying it again (2)" in caplog.text
    token = _token_of(raw)
    assert token.used_at is not None
    # One successor, the one the answer holds: the chain did not fork.
    (successor,) = RefreshToken.objects.filter(family=token.family).exclude(pk=token.pk)
    assert successor == _token_of(response.json()["refresh"])
    _assert_works_exactly_once(api_client, response.json()["refresh"])


@pytest.mark.django_db(transaction=True)
def test_a_rotation_that_keeps_losing_deadlocks_answers_503_and_changes_nothing(
    api_client, user, password, claim
):
    raw = _login(api_client, user, password)["refresh"]

    with failing_statements(successor_insert(), a_deadlock(), times=1000) as refused:
        response = _refresh(api_client, raw)

    _assert_service_unavailable(response)
    assert len(refused) == services.DEADLOCK_ATTEMPTS
    token = _token_of(raw)
    assert token.used_at is None
    assert RefreshToken.objects.filter(family=token.family).count() == 1
    _assert_works_exactly_once(api_client, raw)


@pytest.mark.django_db
def test_a_deadlock_inside_the_callers_transaction_is_not_retried(
    api_client, user, password, claim
):
    # The database rolled back the caller's whole transaction: only the caller can
    # start it again (a view of a project's own in ATOMIC_REQUESTS, say).
    raw = _login(api_client, user, password)["refresh"]
    assert connection.in_atomic_block

    with failing_statements(successor_insert(), a_deadlock(), times=1) as refused:
        response = _refresh(api_client, raw)

    _assert_service_unavailable(response)
    assert len(refused) == 1


@pytest.mark.django_db(transaction=True)
def test_a_logout_the_database_rolls_back_to_break_a_deadlock_is_made_again(
    api_client, user, password
):
    tokens = _login(api_client, user, password)

    with failing_statements(_family_update(), a_deadlock(), times=1) as refused:
        response = api_client.post(
            "/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json"
        )

    assert response.status_code == 204, response.content
    assert len(refused) == 1
    family = _token_of(tokens["refresh"]).family
    assert family.revoke_reason == RevokeReason.LOGOUT
    assert list(Revocation.objects.values_list("family_id", flat=True)) == [family.pk]
    assert _me(api_client, tokens["access"]).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_logout_all_the_database_rolls_back_to_break_a_deadlock_is_made_again(
    api_client, user, password
):
    first, second = _login(api_client, user, password), _login(api_client, user, password)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['access']}")

    with failing_statements(_family_update(), a_deadlock(), times=1) as refused:
        response = api_client.post("/api/auth/logout/all/")
    api_client.credentials()

    assert response.status_code in (200, 204), response.content
    assert len(refused) == 1
    families = {_token_of(tokens["refresh"]).family for tokens in (first, second)}
    assert {family.revoke_reason for family in families} == {RevokeReason.LOGOUT_ALL}
    assert set(Revocation.objects.values_list("family_id", flat=True)) == {
        family.pk for family in families
    }
    assert _me(api_client, second["access"]).status_code == 401


def _terminate_postgresql_backend(admin, pid: int) -> None:
    with admin.cursor() as cursor:
        # Returns once the backend has exited (10 s at most), its transaction rolled back.
        cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
        assert cursor.fetchone() == (True,)


def _kill_mariadb_connection(admin, connection_id: int) -> None:
    with admin.cursor() as cursor:
        cursor.execute("KILL CONNECTION %s", [connection_id])
        # KILL returns before the server has ended the thread: wait until it is gone,
        # as pg_terminate_backend does with its timeout.
        for _ in range(1000):
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
                [connection_id],
            )
            if cursor.fetchone() == (0,):
                return
            time.sleep(0.01)  # waiting for the server, not moving time
    pytest.fail(f"connection {connection_id} outlived KILL CONNECTION")


def _waits_on_postgresql_lock(admin, pid: int) -> bool:
    with admin.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() == ("Lock",)


def _waits_on_mariadb_lock(admin, connection_id: int) -> bool:
    # Running its INSERT, which the blocker makes wait. (Not INNODB_TRX: InnoDB refreshes
    # it only when nobody read it for 0.1 s, so a poll would see it stale for ever.)
    # The comparison is the server's: INFO holds the statement with its binary
    # parameters inlined, which is not always valid UTF-8 to read back.
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT INFO LIKE 'INSERT INTO%%' FROM information_schema.PROCESSLIST WHERE ID = %s",
            [connection_id],
        )
        return cursor.fetchone() == (1,)


class _Blocker(threading.Thread):
    """Holds, in a transaction of its own connection, an uncommitted token with
    ``lookup_key``: a successor inserted with that key waits for this transaction,
    after its claim ran. Rolled back on ``release``."""

    def __init__(self, family: TokenFamily, lookup_key: str) -> None:
        super().__init__()
        self.family, self.lookup_key = family, lookup_key
        self.holding, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                RefreshTokenFactory(family=self.family, lookup_key=self.lookup_key)
                self.holding.set()
                self.release.wait(60)
                transaction.set_rollback(True)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.holding.set()
            connection.close()


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("own_id_query", "waits_on_lock", "kill"),
    [
        pytest.param(
            "SELECT pg_backend_pid()",
            _waits_on_postgresql_lock,
            _terminate_postgresql_backend,
            marks=pytest.mark.skipif(
                connection.vendor != "postgresql", reason="pg_terminate_backend"
            ),
            id="postgresql",
        ),
        pytest.param(
            "SELECT CONNECTION_ID()",
            _waits_on_mariadb_lock,
            _kill_mariadb_connection,
            marks=pytest.mark.skipif(connection.vendor != "mysql", reason="KILL CONNECTION"),
            id="mariadb",
        ),
    ],
)
def test_connection_dropped_inside_the_rotation_answers_503_and_changes_nothing(
    api_client, user, password, own_id_query, waits_on_lock, kill, claim
):
    """The server process or thread behind the request's connection ends (a crash, a
    failover) after the claim ran and while the successor's INSERT is under way: in
    the ORM's transaction, or inside the one statement of PostgreSQL."""
    raw = _login(api_client, user, password)["refresh"]
    with connection.cursor() as cursor:
        cursor.execute(own_id_query)
        (own_id,) = cursor.fetchone()
    # The successor's INSERT will wait for another transaction holding its lookup key:
    # the moment to end this connection, from a third one.
    lookup_key = crypto.make_token()[1].lookup_key
    blocker = _Blocker(_token_of(raw).family, lookup_key)
    blocker.start()
    blocker.holding.wait(60)
    assert blocker.error is None

    killed: list[bool | BaseException] = []

    def drop_connection_while_it_waits() -> None:
        admin = connections.create_connection("default")
        try:
            for _ in range(1000):
                if waits_on_lock(admin, own_id):
                    kill(admin, own_id)
                    killed.append(True)
                    return
                time.sleep(0.01)  # waiting for the request to reach the INSERT
        except BaseException as exc:  # reported by the test, not lost in the thread
            killed.append(exc)
        finally:
            blocker.release.set()
            admin.close()

    killer = threading.Thread(target=drop_connection_while_it_waits)
    killer.start()
    try:
        with next_lookup_key(lookup_key):
            response = _refresh(api_client, raw)
    finally:
        blocker.release.set()
        killer.join()
        blocker.join()
    assert blocker.error is None
    assert killed == [True], "the request's connection was never seen waiting, or not ended"
    # What the end of a request does (the test client skips it): the dead connection
    # is closed, and the next query opens a new one.
    close_old_connections()

    _assert_service_unavailable(response)
    token = _token_of(raw)  # on a new connection
    assert token.used_at is None
    assert RefreshToken.objects.filter(family=token.family).count() == 1
    _assert_works_exactly_once(api_client, raw)


# The cache is down -----------------------------------------------------------------------


class RedisServer:
    """A redis-server of this test's own, on a port of its own, to be killed."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = next(port for port in range(6390, 6400) if _port_is_free(port))
        self.process = subprocess.Popen(  # noqa: S603  (a fixed program and arguments)
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        break
                    time.sleep(0.05)  # waiting for the server to listen, not moving time
        finally:
            client.close()
        self.kill()
        pytest.fail("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def redis_cache(tmp_path: Path) -> Iterator[RedisServer]:
    """Django's RedisCache as the default cache (throttles, the push and the replay
    store), on a server the test can kill."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
        }
    }
    with override_settings(CACHES=caches, ROTATING_TOKENS={"CHECK_FAMILY_ON_ACCESS": True}):
        yield server
    server.kill()


def _me(api_client, access: str):
    return api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {access}")


@pytest.mark.django_db
def test_access_tokens_work_from_the_database_while_the_cache_is_down(
    redis_cache, api_client, user, password
):
    pair = _login(api_client, user, password)
    assert _me(api_client, pair["access"]).status_code == 200  # the family is known

    redis_cache.kill()

    assert _me(api_client, pair["access"]).status_code == 200
    refreshed = _refresh(api_client, pair["refresh"])
    assert refreshed.status_code == 200
    assert _me(api_client, refreshed.json()["access"]).status_code == 200


@pytest.mark.django_db
def test_revocation_is_honoured_while_the_cache_is_down(redis_cache, api_client, user, password):
    pair = _login(api_client, user, password)
    assert _me(api_client, pair["access"]).status_code == 200

    redis_cache.kill()
    logout = api_client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json")

    assert logout.status_code == 204
    response = _me(api_client, pair["access"])
    assert (response.status_code, response.json()["code"]) == (401, "token_revoked")


@pytest.mark.django_db
def test_reuse_revokes_the_family_while_the_cache_is_down(redis_cache, api_client, user, password):
    pair = _login(api_client, user, password)
    assert _refresh(api_client, pair["refresh"]).status_code == 200
    assert _me(api_client, pair["access"]).status_code == 200

    redis_cache.kill()
    replay = _refresh(api_client, pair["refresh"], **THIEF)

    assert (replay.status_code, replay.json()["code"]) == (401, "token_reused")
    assert _me(api_client, pair["access"]).json()["code"] == "token_revoked"


@pytest.mark.django_db
def test_throttled_login_and_refresh_keep_working_while_the_cache_is_down(
    redis_cache, api_client, user, password
):
    rates = {"rotating_tokens_login": "100/minute", "rotating_tokens_refresh": "100/minute"}
    with mock.patch.object(OptionalScopedRateThrottle, "THROTTLE_RATES", rates):
        pair = _login(api_client, user, password)

        redis_cache.kill()

        assert _refresh(api_client, pair["refresh"]).status_code == 200
        _login(api_client, user, password)


# A response lost on the way to the client --------------------------------------------------


@pytest.mark.django_db
@override_settings(ROTATING_TOKENS={"REUSE_GRACE_PERIOD": timedelta(seconds=10)})
def test_lost_response_retried_inside_grace_carries_on(time_machine, api_client, user, password):
    time_machine.move_to(timezone.now(), tick=False)
    first = _login(api_client, user, password)["refresh"]
    lost = _refresh(api_client, first).json()  # the client never sees this
    time_machine.shift(timedelta(seconds=9))

    retry = _refresh(api_client, first)

    assert retry.status_code == 200
    assert retry.json()["refresh"] == lost["refresh"]
    carried_on = _refresh(api_client, retry.json()["refresh"])
    assert carried_on.status_code == 200
    assert _refresh(api_client, carried_on.json()["refresh"]).status_code == 200
    assert TokenFamily.objects.get().revoked_at is None


@pytest.mark.django_db
@override_settings(ROTATING_TOKENS={"REUSE_GRACE_PERIOD": timedelta(seconds=10)})
def test_lost_response_retried_after_grace_is_reuse(time_machine, api_client, user, password):
    time_machine.move_to(timezone.now(), tick=False)
    first = _login(api_client, user, password)["refresh"]
    lost = _refresh(api_client, first).json()
    time_machine.shift(timedelta(seconds=10))

    retry = _refresh(api_client, first)

    assert (retry.status_code, retry.json()["code"]) == (401, "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED
    after = _refresh(api_client, lost["refresh"])
    assert (after.status_code, after.json()["code"]) == (401, "token_revoked")
