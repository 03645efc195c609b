"""Every cache a project may name as REVOCATION_PUSH and DPOP_REPLAY_CACHE, each on a
real store: LocMem, the file cache, the database cache and Redis (the shared server, on
REDIS_URL's database, or one of the test's own where the test changes its
configuration).

- A revocation that rolls back changes nothing: its push waits for the commit.
- A used DPoP proof stays refused for as long as it could be accepted, whatever the
  cache drops: the records live in a store that never evicts (services.replay_cache).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.core.cache import caches
from django.db import transaction
from rest_framework.test import APIClient

from rotating_tokens import dpop, revocation, services
from rotating_tokens.models import RevokeReason, TokenFamily, UsedDPoPProof

from .conftest import DATABASE_CACHE_TABLE
from .dpop_client import DPoPKey

BASE = "http://testserver"
OBTAIN, ME = "/api/auth/token/", "/api/me/"


def _shared_redis_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def _cache_config(backend: str, tmp_path: Path) -> dict[str, Any]:
    if backend == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if backend == "file":
        return {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    if backend == "database":
        return {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": DATABASE_CACHE_TABLE,
        }
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _shared_redis_url(),
        # Keys (and the revocation channel) of this test's own on the shared server.
        "KEY_PREFIX": f"rt-test-{uuid.uuid4()}",
    }


def _use_state_cache(settings, config: dict[str, Any], **rotating_tokens: Any) -> None:
    settings.CACHES = {**settings.CACHES, "state": config}
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "REVOCATION_PUSH": "state",
        "DPOP_REPLAY_CACHE": "state",
        **rotating_tokens,
    }


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    # Each test's servers are asked afresh whether they evict, and what the process
    # knows of families does not outlive the test.
    services._never_evicts.clear()
    revocation.reset()
    yield
    services._never_evicts.clear()
    revocation.reset()


@pytest.fixture(params=["locmem", "file", "database", "redis"])
def state_cache(request, settings, tmp_path) -> Iterator[str]:
    _use_state_cache(settings, _cache_config(request.param, tmp_path))
    yield request.param
    _clear_state_cache()


def _clear_state_cache() -> None:
    cache = caches["state"]
    if revocation.backend_path(cache).endswith("RedisCache"):
        # Only this test's keys: clear() would empty the database other tests use.
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        for key in client.scan_iter(match=f"{cache.key_prefix}:*"):
            client.delete(key)
    else:
        cache.clear()


def login(api_client: APIClient, user, password, key: DPoPKey | None = None) -> dict:
    headers = key.headers("POST", BASE + OBTAIN) if key else {}
    response = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json", **headers
    )
    assert response.status_code == 200, response.content
    return response.json()


def me(api_client: APIClient, access: str, proof: str | None = None):
    if proof is None:
        return api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
    return api_client.get(ME, HTTP_AUTHORIZATION=f"DPoP {access}", HTTP_DPOP=proof)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


# A revocation that rolls back --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_revocation_leaves_access_tokens_working(
    state_cache, api_client, user, password
):
    pair = login(api_client, user, password)
    assert me(api_client, pair["access"]).status_code == 200  # the family is known
    family = TokenFamily.objects.get()

    with pytest.raises(RuntimeError), transaction.atomic():
        services.revoke_family(family, RevokeReason.LOGOUT)
        raise RuntimeError("the rest of the operation failed")

    family.refresh_from_db()
    assert family.revoked_at is None
    assert me(api_client, pair["access"]).status_code == 200
    assert me(api_client, pair["access"]).status_code == 200  # and from memory again

    # The same revocation, committed, is honoured at once on the same backend.
    services.revoke_family(family, RevokeReason.LOGOUT)
    assert_error(me(api_client, pair["access"]), 401, "token_revoked")


# The replay store -----------------------------------------------------------------------------


def _bound(api_client, user, password, key: DPoPKey) -> str:
    return login(api_client, user, password, key)["access"]


def _me_proof(key: DPoPKey, access: str, **kwargs: Any) -> str:
    return key.proof("GET", BASE + ME, access=access, **kwargs)


def _replay_key(proof: str) -> str:
    header = jwt.get_unverified_header(proof)
    claims = jwt.decode(proof, options={"verify_signature": False})
    return dpop.Proof(
        jkt=dpop.jwk_thumbprint(header["jwk"]),
        jti=claims["jti"],
        iat=claims["iat"],
        htm="GET",
        htu="",
        alg="ES256",
        accepted_until=0.0,
    ).replay_key


@pytest.mark.django_db
def test_a_proof_presented_twice_is_refused_the_second_time(
    state_cache, api_client, user, password
):
    key = DPoPKey()
    access = _bound(api_client, user, password, key)
    proof = _me_proof(key, access)

    assert me(api_client, access, proof).status_code == 200
    assert_error(me(api_client, access, proof), 401, "dpop_invalid")
    assert me(api_client, access, _me_proof(key, access)).status_code == 200  # a new one

    # Where the record went: a Redis that does not evict (the shared server's policy is
    # noeviction), else the table.
    in_cache = caches["state"].get(f"rotating_tokens:dpop:{_replay_key(proof)}") is not None
    in_table = UsedDPoPProof.objects.filter(key=_replay_key(proof)).exists()
    assert (in_cache, in_table) == ((True, False) if state_cache == "redis" else (False, True))


@pytest.mark.django_db
def test_ten_captured_proofs_stay_refused_after_400_requests_on_a_database_cache(
    settings, api_client, user, password
):
    # Django's DatabaseCache culls past MAX_ENTRIES (300 by default; 30 here, so 40
    # requests do what 400 do there), and the first keys it culls are, in key order,
    # "rotating_tokens:dpop:…".
    config = _cache_config("database", Path())
    _use_state_cache(settings, {**config, "OPTIONS": {"MAX_ENTRIES": 30}})
    key = DPoPKey()
    access = _bound(api_client, user, password, key)
    captured = [_me_proof(key, access) for _ in range(10)]
    for proof in captured:
        assert me(api_client, access, proof).status_code == 200

    # The attacker's own account: each login and read caches one more family state.
    for _ in range(20):
        own = login(api_client, user, password)
        assert me(api_client, own["access"]).status_code == 200

    for proof in captured:
        assert_error(me(api_client, access, proof), 401, "dpop_invalid")


@pytest.mark.django_db
@pytest.mark.parametrize(("skew", "age"), [(5, 62), (0, 57)], ids=["skew 5 s", "no skew"])
def test_a_proof_used_just_after_a_second_boundary_stays_refused_to_its_last_instant(
    own_redis, settings, api_client, user, password, skew, age
):
    # The black-box case: used 62 s after its iat, just after a second boundary, and
    # replayed 2.5 s later, still inside its window (iat + 60 s + 5 s of skew). A
    # fractional timeout (2.95 s) that Redis truncates (2 s) would drop the record at
    # 64.05 s. Without any skew, and so without the margin it adds, the timeout itself
    # must be rounded up. A real Redis, since its clock is what drops it: one of the
    # test's own, which no other test can empty while it waits.
    own_redis("--maxmemory", "0")
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP_CLOCK_SKEW": skew}
    key = DPoPKey()
    access = _bound(api_client, user, password, key)
    time.sleep(math.ceil(time.time()) - time.time() + 0.05)  # just after a boundary
    proof = _me_proof(key, access, iat=math.floor(time.time()) - age)
    assert me(api_client, access, proof).status_code == 200

    time.sleep(2.5)
    assert_error(me(api_client, access, proof), 401, "dpop_invalid")


def _verified(key: DPoPKey, *, now: float, iat: float) -> dpop.Proof:
    url = "https://api.example/"
    return dpop.verify_proof(key.proof("GET", url, iat=iat), method="GET", url=url, now=now)


@pytest.mark.django_db
def test_records_outlive_the_window_on_every_clock(settings):
    # The last instant any process accepts the proof is iat + max age + skew on its own
    # clock; a process whose clock is up to the skew behind still accepts it then.
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP_CLOCK_SKEW": 5}
    iat = 1_800_000_000
    proof = _verified(DPoPKey(), now=iat + 62.05, iat=iat)
    assert proof.accepted_until == iat + 65
    expiry = services.replay_record_expiry(proof)
    assert expiry == datetime.fromtimestamp(iat + 70, tz=dt_timezone.utc)
    fractional = dataclasses.replace(proof, iat=iat + 0.4, accepted_until=iat + 65.4)
    assert services.replay_record_expiry(fractional).timestamp() == iat + 71  # rounded up


@pytest.mark.django_db
def test_database_records_survive_a_purge_while_their_proof_is_acceptable(time_machine):
    key = DPoPKey()
    iat = 1_800_000_000
    time_machine.move_to(datetime.fromtimestamp(iat + 62.2, tz=dt_timezone.utc), tick=False)
    proof = _verified(key, now=time.time(), iat=iat)
    assert services.proof_is_new(proof)

    # The purge runs while another process, whose clock is behind, may still accept it.
    time_machine.move_to(datetime.fromtimestamp(iat + 69.5, tz=dt_timezone.utc), tick=False)
    services.purge()
    assert not services.proof_is_new(proof)

    time_machine.move_to(datetime.fromtimestamp(iat + 70.5, tz=dt_timezone.utc), tick=False)
    services.purge()
    assert not UsedDPoPProof.objects.filter(key=proof.replay_key).exists()  # then it goes


# Redis servers of the test's own, configured as a project's may be ---------------------------


class OwnRedis:
    """A redis-server on a port of its own, started with ``arguments``."""

    def __init__(self, tmp_path: Path, *arguments: str) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = _free_port()
        self.process = subprocess.Popen(  # noqa: S603  (a fixed program and arguments)
            [
                shutil.which("redis-server") or "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
                *arguments,
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        self.client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                # Ours, not another test's that took the port first.
                if self.client.info("server")["process_id"] == self.process.pid:
                    return
                break
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)  # waiting for the server to listen, not moving time
        self.stop()
        pytest.fail("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait()


def _free_port() -> int:
    # One the system just handed out: two tests running at once do not pick the same.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_redis(settings, tmp_path):
    servers: list[OwnRedis] = []

    def start(*arguments: str) -> OwnRedis:
        server = OwnRedis(tmp_path, *arguments)
        servers.append(server)
        _use_state_cache(
            settings,
            {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url},
        )
        return server

    yield start
    for server in servers:
        server.stop()


def _proof() -> dpop.Proof:
    return _verified(DPoPKey(), now=time.time(), iat=time.time())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "arguments",
    [
        ("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"),
        ("--maxmemory", "100mb", "--maxmemory-policy", "volatile-ttl"),
        ("--rename-command", "CONFIG", ""),  # a managed Redis that refuses CONFIG
    ],
    ids=["allkeys-lru", "volatile-ttl", "CONFIG refused"],
)
def test_a_redis_that_may_evict_never_holds_the_records(own_redis, arguments, caplog):
    server = own_redis(*arguments)
    proof = _proof()
    assert services.proof_is_new(proof)
    assert services.replay_cache() is None
    assert "recorded in the database instead" in caplog.text
    server.client.flushall()  # what an eviction does to the keys of a cache
    assert not services.proof_is_new(proof)
    assert UsedDPoPProof.objects.filter(key=proof.replay_key).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "arguments",
    [("--maxmemory", "100mb", "--maxmemory-policy", "noeviction"), ("--maxmemory", "0")],
    ids=["noeviction", "no maxmemory"],
)
def test_a_redis_that_never_evicts_holds_the_records_in_one_round_trip(
    own_redis, arguments, django_assert_num_queries
):
    server = own_redis(*arguments)
    proof = _proof()
    expiry = services.replay_record_expiry(proof).timestamp()
    before = time.time()
    with django_assert_num_queries(0):
        assert services.proof_is_new(proof)
        assert not services.proof_is_new(proof)
    assert services.replay_cache() is caches["state"]
    ttl = server.client.ttl(f":1:rotating_tokens:dpop:{proof.replay_key}")
    # Until the record's expiry, give or take Redis's rounding to whole seconds.
    assert expiry - time.time() - 1 <= ttl <= expiry - before + 1


@pytest.mark.django_db
def test_the_eviction_policy_is_asked_once_per_process(own_redis, monkeypatch):
    import redis

    own_redis("--maxmemory", "0")
    asked: list[object] = []
    config_get = redis.Redis.config_get

    def counting(self, *args, **kwargs):
        asked.append(args)
        return config_get(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "config_get", counting)
    for _ in range(3):
        assert services.proof_is_new(_proof())
    assert len(asked) == 1


@pytest.mark.django_db
def test_a_redis_that_cannot_be_asked_refuses_proofs_until_it_answers(own_redis):
    server = own_redis("--maxmemory", "0")
    server.stop()
    proof = _proof()
    with pytest.raises(services.ReplayStoreUnavailable):
        services.proof_is_new(proof)
    assert not UsedDPoPProof.objects.filter(key=proof.replay_key).exists()  # no switching
    assert services._never_evicts == {}  # asked again next time


@pytest.mark.django_db
@pytest.mark.parametrize(
    "arguments",
    [("--maxmemory", "0"), ("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")],
    ids=["never evicts", "may evict"],
)
def test_django_redis_holds_the_records_only_if_it_never_evicts(
    own_redis, settings, arguments, django_assert_num_queries
):
    server = own_redis(*arguments)
    settings.CACHES = {
        **settings.CACHES,
        "state": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url},
    }
    proof = _proof()
    never_evicts = arguments == ("--maxmemory", "0")
    with django_assert_num_queries(0) if never_evicts else contextlib.nullcontext():
        assert services.proof_is_new(proof)
        assert not services.proof_is_new(proof)
    assert (services.replay_cache() is caches["state"]) is never_evicts
    assert UsedDPoPProof.objects.filter(key=proof.replay_key).exists() is not never_evicts
