"""Each process's copy of family states, kept current by Redis (local_state.py): it
spares the round trip, and never lets a revocation through."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import caches
from django.utils import timezone

from rotating_tokens import local_state, services
from rotating_tokens.models import RevokeReason, TokenFamily

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def _redis_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_state(settings) -> Iterator[object]:
    """The family-state cache on Redis, with a key prefix of its own (so a channel of
    its own too), and a fresh local copy."""
    settings.CACHES = {
        **settings.CACHES,
        "state": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_url(),
            "KEY_PREFIX": f"rt-test-{uuid.uuid4()}",
        },
    }
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "FAMILY_STATE_CACHE": "state"}
    local_state.reset_local_copies()
    yield caches["state"]
    local_state.reset_local_copies()
    caches["state"].clear()


@pytest.fixture
def login(user, client_info):
    return services.start_family(user, client_info)


def _copy(cache) -> local_state.LocalCopy:
    copy = local_state.local_copy("state", cache)
    assert copy is not None
    return copy


def _until_subscribed(copy: local_state.LocalCopy) -> None:
    """The first use subscribes; the copy is used once Redis has confirmed it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        copy.get(uuid.uuid4())
        if copy._confirmed:
            return
        time.sleep(0.005)  # waiting for Redis's answer, not moving time
    pytest.fail("the subscription was not confirmed in 5 s")


def _checked_from_the_copy(cache, family_id) -> bool:
    """Check the family, and fail if that asks Redis or the database."""
    with (
        mock.patch.object(cache, "get_many", wraps=cache.get_many) as get_many,
        mock.patch.object(services.TokenFamily, "objects", wraps=TokenFamily.objects) as rows,
    ):
        allowed = services.family_allows_access(family_id)
    if get_many.called or rows.filter.called:
        raise RoundTrip
    return allowed


class RoundTrip(Exception):
    """The check went past this process's copy."""


def _revoke_elsewhere(cache, family: TokenFamily, *, publish: bool = True) -> None:
    """What another process's revocation does: the database row, the tombstone, and
    (unless the message is lost) the message on its own connection to Redis."""
    TokenFamily.objects.filter(pk=family.pk).update(
        revoked_at=timezone.now(), revoke_reason=RevokeReason.ADMIN
    )
    cache.set(services._tombstone_key(family.pk), True, 600)
    cache.delete(services._state_key(family.pk))
    if publish:
        other = redis.Redis.from_url(_redis_url())
        try:
            other.publish(cache.make_key(local_state.CHANNEL), str(family.pk))
        finally:
            other.close()


def test_a_known_family_is_answered_without_a_round_trip(redis_state, login):
    copy = _copy(redis_state)
    _until_subscribed(copy)
    assert services.family_allows_access(login.family.pk)  # read once from Redis
    assert _checked_from_the_copy(redis_state, login.family.pk)


def test_another_process_revocation_is_heard_before_the_next_check(redis_state, login):
    _until_subscribed(_copy(redis_state))
    assert services.family_allows_access(login.family.pk)
    assert _checked_from_the_copy(redis_state, login.family.pk)

    _revoke_elsewhere(redis_state, login.family)

    assert not services.family_allows_access(login.family.pk)


def test_this_process_revocation_empties_its_copy_at_once(
    redis_state, login, django_capture_on_commit_callbacks
):
    _until_subscribed(_copy(redis_state))
    assert services.family_allows_access(login.family.pk)

    services.revoke_family(login.family, RevokeReason.ADMIN)  # not committed yet

    assert not services.family_allows_access(login.family.pk)


def test_revocation_is_published_once_committed(
    redis_state, login, django_capture_on_commit_callbacks
):
    listener = redis.Redis.from_url(_redis_url()).pubsub()
    listener.subscribe(redis_state.make_key(local_state.CHANNEL))
    assert listener.get_message(timeout=5)["type"] == "subscribe"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.revoke_family(login.family, RevokeReason.ADMIN)
    assert listener.get_message(timeout=0.2) is None  # not before the commit
    for callback in callbacks:
        callback()

    message = listener.get_message(timeout=5)
    assert message["type"] == "message"
    assert message["data"] == str(login.family.pk).encode()
    listener.close()


def test_a_state_read_before_a_revocation_is_not_kept(redis_state, login):
    # This process reads the family from Redis; another revokes it before the state
    # is kept. Kept, it would let the family's access tokens in for 10 seconds.
    _until_subscribed(_copy(redis_state))
    read = services._shared_state

    def read_then_revoked_elsewhere(cache, family_id):
        state = read(cache, family_id)
        _revoke_elsewhere(redis_state, login.family)
        return state

    with mock.patch.object(services, "_shared_state", read_then_revoked_elsewhere):
        assert services.family_allows_access(login.family.pk)  # what it read

    assert not services.family_allows_access(login.family.pk)


def _kill_subscription(copy: local_state.LocalCopy) -> None:
    """Cut this copy's own subscription from the server side (no one else's)."""
    host, port = copy._pubsub.connection._sock.getsockname()[:2]
    admin = redis.Redis.from_url(_redis_url())
    try:
        assert admin.client_kill(f"{host}:{port}")
    finally:
        admin.close()


def test_a_lost_subscription_stops_the_copy_being_trusted(redis_state, login):
    copy = _copy(redis_state)
    _until_subscribed(copy)
    assert services.family_allows_access(login.family.pk)
    # The subscription's connection drops (Redis restarted, a proxy timed it out),
    # and the revocation's message is lost with it.
    _kill_subscription(copy)
    _revoke_elsewhere(redis_state, login.family, publish=False)

    assert not services.family_allows_access(login.family.pk)
    # Subscribed again, the copy starts from empty: what it held before may be stale.
    copy._retry_at = 0.0
    _until_subscribed(copy)
    assert not services.family_allows_access(login.family.pk)


def test_a_reconnection_by_redis_py_empties_the_copy(redis_state, login):
    copy = _copy(redis_state)
    _until_subscribed(copy)
    assert services.family_allows_access(login.family.pk)
    # With retries in the cache's OPTIONS (retry_on_timeout, retry=...), redis-py
    # handles a lost connection inside the call that found it: disconnect, connect
    # (which subscribes again), read again. No error reaches the copy, and messages
    # published while it was away are lost.
    connection = copy._pubsub.connection
    connection.disconnect()
    _revoke_elsewhere(redis_state, login.family, publish=False)
    connection.connect()

    # Before Redis's new confirmation has been read (across a network, a round trip):
    with mock.patch.object(copy._pubsub, "get_message", return_value=None):
        assert not services.family_allows_access(login.family.pk)
    _until_subscribed(copy)
    assert not services.family_allows_access(login.family.pk)


def test_a_silent_subscription_stops_the_copy_being_trusted(redis_state, login, monkeypatch):
    copy = _copy(redis_state)
    _until_subscribed(copy)
    assert services.family_allows_access(login.family.pk)
    assert _checked_from_the_copy(redis_state, login.family.pk)
    # A connection that is silently dead (a partition): the PINGs go out, nothing comes
    # back. Two seconds of silence and the copy is not used.
    monkeypatch.setattr(copy, "_has_news", lambda: False)
    start = time.monotonic()
    with mock.patch.object(local_state.time, "monotonic", return_value=start + 1.5):
        assert _checked_from_the_copy(redis_state, login.family.pk)
    with (
        mock.patch.object(local_state.time, "monotonic", return_value=start + 2.5),
        pytest.raises(RoundTrip),
    ):
        _checked_from_the_copy(redis_state, login.family.pk)


def test_pings_keep_a_quiet_subscription_trusted(redis_state, login, monkeypatch):
    monkeypatch.setattr(local_state, "PING_INTERVAL", 0.0)
    copy = _copy(redis_state)
    _until_subscribed(copy)
    assert services.family_allows_access(login.family.pk)
    # No revocation for a while: the answers to the PINGs are what Redis says.
    heard = copy._last_heard
    deadline = time.monotonic() + 5
    while copy._last_heard == heard and time.monotonic() < deadline:
        copy.get(login.family.pk)
    assert copy._last_heard > heard


def test_an_entry_is_trusted_for_the_local_timeout_at_most(
    redis_state, login, settings, monkeypatch
):
    monkeypatch.setattr(local_state, "PONG_DEADLINE", 60.0)  # not what is tested here
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "FAMILY_STATE_LOCAL_TIMEOUT": timedelta(seconds=10),
    }
    copy = _copy(redis_state)
    _until_subscribed(copy)
    assert services.family_allows_access(login.family.pk)
    # Revoked with the message lost, the connection still up: the one case the copy
    # cannot see. The entry ages out.
    _revoke_elsewhere(redis_state, login.family, publish=False)
    start = time.monotonic()
    with mock.patch.object(local_state.time, "monotonic", return_value=start + 9):
        assert _checked_from_the_copy(redis_state, login.family.pk)
    with mock.patch.object(local_state.time, "monotonic", return_value=start + 10.5):
        assert not services.family_allows_access(login.family.pk)


def test_no_copy_before_the_subscription_is_confirmed(redis_state, login):
    with mock.patch.object(redis.client.PubSub, "subscribe"):  # the answer never comes
        for _ in range(3):
            assert services.family_allows_access(login.family.pk)
        with pytest.raises(RoundTrip):
            _checked_from_the_copy(redis_state, login.family.pk)


def test_a_forked_process_keeps_its_own_copy(redis_state):
    parent = _copy(redis_state)
    with mock.patch.object(local_state.os, "getpid", return_value=os.getpid() + 1):
        child = _copy(redis_state)
    assert child is not parent


def test_the_copy_follows_the_cache_servers(redis_state, settings):
    first = _copy(redis_state)
    settings.CACHES = {
        **settings.CACHES,
        "state": {**settings.CACHES["state"], "LOCATION": "redis://127.0.0.1:6379/14"},
    }
    assert _copy(caches["state"]) is not first


def test_no_copy_with_replicas(redis_state, settings):
    # Django reads from the replicas, which may lag behind the tombstone.
    settings.CACHES = {
        **settings.CACHES,
        "state": {**settings.CACHES["state"], "LOCATION": [_redis_url(), _redis_url()]},
    }
    assert local_state.local_copy("state", caches["state"]) is None


def test_subscribing_does_not_hold_up_other_threads(redis_state, login):
    copy = _copy(redis_state)
    entered, release = threading.Event(), threading.Event()
    real_pubsub = redis.Redis.pubsub

    def slow_pubsub(client, *args, **kwargs):
        entered.set()
        release.wait(5)
        return real_pubsub(client, *args, **kwargs)

    with mock.patch.object(redis.Redis, "pubsub", slow_pubsub):
        subscriber = threading.Thread(target=copy.get, args=(uuid.uuid4(),))
        subscriber.start()
        assert entered.wait(5)
        # Meanwhile this thread is answered from the shared cache, not kept waiting.
        assert services.family_allows_access(login.family.pk)
        release.set()
        subscriber.join(5)
    _until_subscribed(copy)


def test_no_copy_when_turned_off(redis_state, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "FAMILY_STATE_LOCAL_COPY": False}
    assert local_state.local_copy("state", redis_state) is None


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.filebased.FileBasedCache",
        "django.core.cache.backends.db.DatabaseCache",
    ],
)
def test_no_copy_without_a_cache_that_pushes(settings, tmp_path, backend):
    settings.CACHES = {
        **settings.CACHES,
        "state": {"BACKEND": backend, "LOCATION": str(tmp_path / "c")},
    }
    assert local_state.local_copy("state", caches["state"]) is None


def test_an_unknown_family_is_not_kept(redis_state):
    # A replica may not have a new family yet: refused this time, asked again next time.
    copy = _copy(redis_state)
    _until_subscribed(copy)
    family_id = uuid.uuid4()
    assert not services.family_allows_access(family_id)
    assert copy.get(family_id)[0] is None


# Across processes: the example project under gunicorn ----------------------------------


@pytest.mark.server_db
@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
    reason="the server processes need the test database on a server",
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoked_by", ["logout over HTTP", "this process"])
def test_revocation_reaches_every_worker_before_its_answer_does(
    tmp_path: Path, revoked_by: str, settings
):
    from .test_process_races import _database_url, _request, example_env, gunicorn

    # The server's cache, as the example project configures it from REDIS_URL.
    settings.CACHES = {
        **settings.CACHES,
        "state": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_url(),
        },
    }
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "FAMILY_STATE_CACHE": "state"}
    env = example_env(tmp_path, _database_url(), grace_seconds=10)
    env["REDIS_URL"] = _redis_url()
    pair = services.start_family(UserFactory(), services.Client("127.0.0.1", "t/1"))
    me = {"Authorization": f"Bearer {pair.access}"}
    with gunicorn(env, tmp_path / "gunicorn.log", "--workers=3") as port:
        # Each worker reads the family once and keeps it (fresh connections spread the
        # requests over the workers).
        for _ in range(60):
            assert _request(port, "GET", "/api/me/", **me)[0] == 200

        if revoked_by == "this process":
            services.revoke_family(pair.family, RevokeReason.ADMIN)  # autocommit: published
        else:
            status, _ = _request(port, "POST", "/api/auth/logout/", {"refresh": pair.refresh})
            assert status == 204

        answers = []
        for _ in range(60):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/me/", headers=me)
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read()).get("code")))
            conn.close()
    assert set(answers) == {(401, "token_revoked")}
