"""What Redis does to a revocation (revocation.py): nothing the poll does not undo.

Each test starts Redis servers of its own (tests/redis_servers.py) and does to them what
production does: pauses writes during a logout, kills and restores them from a snapshot
taken before it, fails a Sentinel master over, runs them as a Cluster; or has no Redis.

"Another process" is a second ``revocation._Known``, swapped in for the checks it makes
(:class:`OtherProcess`): a deny-list, a poll position and a Redis subscription of its
own, as a gunicorn worker has, while this process logs out through the API.

The poll bound is shown without a clock: with a long ``REVOCATION_POLL_INTERVAL`` the
other process still answers from memory (so the push really did not arrive), then with
a short one, once it is over, the same check must refuse.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from redis.backoff import NoBackoff
from redis.retry import Retry

from rotating_tokens import revocation, services
from rotating_tokens.models import RevokeReason, TokenFamily

from . import redis_servers
from .cluster_cache import ClusterRedisCache
from .factories import UserFactory

# Autocommit, as in production: a revocation commits, then is applied and pushed.
pytestmark = pytest.mark.django_db(transaction=True)

LOGOUT = "/api/auth/logout/"
SHORT = 0.2  # seconds: the poll interval once a test lets the poll run
# No retries: a client redis-py builds itself retries a timed-out command (10 times in
# redis-py 8; Django's RedisCache builds its pools without), which would turn a 0.5 s
# timeout into seconds of waiting for nothing.
CLIENT_OPTIONS = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.5,
    "retry": Retry(NoBackoff(), 0),
}


class OtherProcess:
    """Another process's memory of families, used inside ``with``."""

    def __init__(self) -> None:
        self.known = revocation._Known()
        self._saved: Any = None

    def __enter__(self) -> OtherProcess:
        self._saved = revocation._known
        revocation._known = self.known
        return self

    def __exit__(self, *exc: object) -> None:
        revocation._known = self._saved

    def allows(self, family: TokenFamily) -> bool:
        with self:
            return revocation.allows_access(family.pk)

    @property
    def subscribed(self) -> bool:
        return self.known.push.pubsub is not None

    def close(self) -> None:
        self.known.push.close()


@pytest.fixture
def other() -> Iterator[OtherProcess]:
    process = OtherProcess()
    yield process
    process.close()


def poll_interval(settings, seconds: float) -> None:
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REVOCATION_POLL_INTERVAL": seconds}


def push_through(settings, entry: dict[str, Any] | None, *, push: Any = "push") -> None:
    """``entry`` as the cache "push" (and ``REVOCATION_PUSH``), a long poll interval."""
    if entry is not None:
        settings.CACHES = {**settings.CACHES, "push": entry}
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "REVOCATION_PUSH": push,
        "REVOCATION_POLL_INTERVAL": 3600,
    }


def redis_cache(server: redis_servers.RedisServer) -> dict[str, Any]:
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": server.url(),
        "OPTIONS": dict(CLIENT_OPTIONS),
    }


def new_session() -> services.TokenPair:
    return services.start_family(UserFactory(), services.Client("127.0.0.1", "faults/1"))


def log_out(api_client, pair: Any) -> int:
    return api_client.post(LOGOUT, {"refresh": pair.refresh}, format="json").status_code


def known_everywhere(other: OtherProcess, pair: Any) -> None:
    """The other process and this one have read the family (and subscribed)."""
    assert other.allows(pair.family)
    assert revocation.allows_access(pair.family.pk)


def refused_after_the_interval(settings, other: OtherProcess, family: TokenFamily) -> None:
    poll_interval(settings, SHORT)
    time.sleep(SHORT * 1.5)  # the interval is over: the next check polls
    assert not other.allows(family)


def pushed(other: OtherProcess, family: TokenFamily) -> bool:
    """Whether the other process refuses the family within a few seconds, with a poll
    interval of an hour: only the push can tell it."""
    try:
        redis_servers.wait_for(lambda: not other.allows(family), 5, "the push")
    except TimeoutError:
        return False
    return True


# Redis pauses writes ---------------------------------------------------------------------


def test_a_logout_while_redis_pauses_writes_is_in_force_elsewhere_within_the_poll_interval(
    settings, redis_server, other, api_client
):
    push_through(settings, redis_cache(redis_server))
    pair = new_session()
    known_everywhere(other, pair)
    assert other.subscribed

    redis_server.pause_writes(30_000)  # what a failover does; PUBLISH waits too
    try:
        status = log_out(api_client, pair)
        assert status == 204  # committed; the push failed after the socket timeout
        assert not revocation.allows_access(pair.family.pk)  # the revoking process: at once
        assert other.allows(pair.family)  # the push never came: memory, not yet polled
        refused_after_the_interval(settings, other, pair.family)
    finally:
        redis_server.unpause()


def test_a_retried_logout_while_redis_pauses_writes_answers_and_holds(
    settings, redis_server, other, api_client
):
    push_through(settings, redis_cache(redis_server))
    pair = new_session()
    known_everywhere(other, pair)
    redis_server.pause_writes(30_000)
    try:
        assert log_out(api_client, pair) == 204
        # The client did not trust the answer and logs out again: no error, still revoked.
        assert log_out(api_client, pair) in (204, 401)
        refused_after_the_interval(settings, other, pair.family)
    finally:
        redis_server.unpause()


# Redis is killed, and restored from a snapshot taken before the logout ----------------


def test_after_redis_is_restored_from_a_pre_logout_snapshot_the_family_stays_refused(
    settings, redis_server, other, api_client
):
    # Everything the app keeps in a cache is in this Redis too (throttles, proofs).
    settings.CACHES = {"default": redis_cache(redis_server), "push": redis_cache(redis_server)}
    push_through(settings, None)
    pair = new_session()
    known_everywhere(other, pair)
    snapshot = redis_server.snapshot()

    assert log_out(api_client, pair) == 204
    assert pushed(other, pair.family)
    redis_server.kill()
    redis_server.restart(snapshot)

    assert not revocation.allows_access(pair.family.pk)
    assert not other.allows(pair.family)
    newcomer = OtherProcess()  # a worker that starts after the restore
    try:
        assert not newcomer.allows(pair.family)
    finally:
        newcomer.close()


def test_after_redis_is_killed_and_restored_pushes_reach_the_other_process_again(
    settings, redis_server, other
):
    push_through(settings, redis_cache(redis_server))
    first, second = new_session(), new_session()
    known_everywhere(other, first)
    known_everywhere(other, second)
    snapshot = redis_server.snapshot()
    redis_server.kill()

    services.revoke_family(first.family, RevokeReason.ADMIN)  # Redis is gone: not pushed
    assert other.allows(first.family)  # the push could not come
    refused_after_the_interval(settings, other, first.family)

    redis_server.restart(snapshot)
    # The broken subscription is noticed, dropped, and made again after a poll.
    time.sleep(revocation.RETRY_INTERVAL + SHORT)
    assert other.allows(second.family)
    time.sleep(revocation.RETRY_INTERVAL + SHORT)
    assert other.allows(second.family)
    poll_interval(settings, 3600)
    services.revoke_family(second.family, RevokeReason.ADMIN)
    assert pushed(other, second.family)


def test_a_logout_while_redis_is_down_answers_and_the_poll_holds(
    settings, redis_server, other, api_client
):
    push_through(settings, redis_cache(redis_server))
    pair = new_session()
    known_everywhere(other, pair)
    redis_server.kill()

    assert log_out(api_client, pair) == 204
    assert other.allows(pair.family)
    refused_after_the_interval(settings, other, pair.family)


# Sentinel ---------------------------------------------------------------------------------


def test_pushes_arrive_through_django_redis_sentinel_client_and_the_poll_holds_over_a_failover(
    settings, redis_sentinel, other
):
    pytest.importorskip("django_redis")
    from .test_revocation import revoked_elsewhere

    push_through(settings, redis_sentinel.django_redis_cache(**CLIENT_OPTIONS))
    assert "SentinelClient" in revocation.status()["path"]
    first, second, third = new_session(), new_session(), new_session()
    for pair in (first, second, third):
        known_everywhere(other, pair)
    assert other.subscribed

    services.revoke_family(first.family, RevokeReason.ADMIN)
    assert pushed(other, first.family)

    redis_sentinel.failover()
    # A revocation whose push was lost in the failover (committed, never published).
    revoked_elsewhere(second.family)
    assert other.allows(second.family)
    refused_after_the_interval(settings, other, second.family)
    # And the push works again, through the new master.
    poll_interval(settings, 3600)
    services.revoke_family(third.family, RevokeReason.ADMIN)
    assert pushed(other, third.family)


# Redis Cluster ----------------------------------------------------------------------------


def test_pushes_arrive_on_redis_cluster_through_sharded_pubsub(settings, redis_cluster, other):
    push_through(settings, None, push={"URL": redis_cluster.url(), "CLUSTER": True})
    status = revocation.status()
    assert status["push"] and status["sharded"]
    pair = new_session()
    known_everywhere(other, pair)
    assert other.subscribed

    services.revoke_family(pair.family, RevokeReason.ADMIN)

    assert pushed(other, pair.family)


@pytest.fixture
def cluster_cache(settings, redis_cluster):
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": f"{ClusterRedisCache.__module__}.{ClusterRedisCache.__qualname__}",
            "LOCATION": redis_cluster.url(),
            "OPTIONS": {"socket_timeout": 2},
        },
    }
    return caches["default"]


def test_throttle_counters_work_on_redis_cluster(cluster_cache, api_client, monkeypatch):
    from rotating_tokens.throttling import OptionalScopedRateThrottle

    monkeypatch.setattr(
        OptionalScopedRateThrottle, "THROTTLE_RATES", {"rotating_tokens_refresh": "2/minute"}
    )
    for _ in range(2):
        response = api_client.post("/api/auth/token/refresh/", {"refresh": "x"}, format="json")
        assert response.status_code == 401
    response = api_client.post("/api/auth/token/refresh/", {"refresh": "x"}, format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"


def test_dpop_replay_records_work_on_redis_cluster(cluster_cache, settings):
    from .test_cache_backends import _proof

    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP_REPLAY_CACHE": "default"}
    proof = _proof()
    assert services.proof_is_new(proof)
    assert not services.proof_is_new(proof)


# No Redis at all --------------------------------------------------------------------------


def test_without_redis_the_poll_alone_brings_a_logout_to_the_other_process(
    settings, tmp_path, other, api_client
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    push_through(settings, None, push="default")
    assert revocation.status()["push"] is False
    pair = new_session()
    known_everywhere(other, pair)

    assert log_out(api_client, pair) == 204
    assert not revocation.allows_access(pair.family.pk)
    assert other.allows(pair.family)  # nothing pushes: memory until the poll
    refused_after_the_interval(settings, other, pair.family)
