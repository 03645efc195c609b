"""A copy of family states in each process, kept current by Redis.

Checking an access token's family in the shared cache costs every authenticated request
a round trip to Redis: about 0.2 ms here, as much as simplejwt's whole authentication
without its user query. Each process may instead keep the states it has read, provided
it hears of every revocation before it answers a request that could be affected:

- a revocation, once committed and its tombstone written, publishes the family ids on
  a Redis channel (``publish_revocations``);
- every process that keeps a copy subscribes to that channel, and before it trusts the
  copy it reads, without blocking, whatever has arrived on its subscription (one
  ``poll()`` system call when nothing has). Redis queues the message for every
  subscriber while it runs the PUBLISH and writes it out in the same pass as its answer
  to the revoking process, so by the time the revoking request's response reaches
  anyone, the message is on its way to every process: a request sent after the
  revocation was answered finds it there.

Where that could fail, the copy is dropped or bypassed, never trusted:

- the subscription is not confirmed yet, or its connection fails: not used (and
  emptied) until a new subscription is confirmed;
- redis-py reconnects behind our back (when the cache's OPTIONS allow retries): its
  connect callback empties the copy at once, since messages sent in between were lost;
- Redis has said nothing on the subscription for ``PING_INTERVAL + PONG_DEADLINE``
  (2 s; a PING goes out every second while requests come): not used until it speaks
  again. That bounds a silently dead connection (a partition, a host gone without a
  reset) to about two seconds;
- in any case an entry is trusted for ``FAMILY_STATE_LOCAL_TIMEOUT`` at most (10 s by
  default): the bound if Redis dropped a message with the connection alive, which it
  does not do on its own.

Across a network the ordering above is a race Redis wins by far (it writes the message
before the revoking process has even read its answer), not a law: a retransmitted packet
could deliver the message a few hundred milliseconds late.

Only with Django's RedisCache, the one cache backend that can push. Several threads of
one process share the copy (a lock guards it); a forked child starts its own.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .conf import app_settings

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

logger = logging.getLogger("rotating_tokens")

PUSHING_CACHES = ("django.core.cache.backends.redis.RedisCache",)
CHANNEL = "rotating_tokens:revoked"
PING_INTERVAL = 1.0  # seconds between PINGs on the subscription, while requests come
PONG_DEADLINE = 1.0  # how long its answer may take: silent for longer, not used
RETRY_INTERVAL = 1.0  # after a failure, seconds before subscribing again
MAX_ENTRIES = 50_000  # then the copy starts again from empty (about 19 MB)

# A family's state as the shared cache holds it: [good until (a timestamp), the owner's
# USER_ID_FIELD as access tokens carry it (services.user_id_claim)].
State = list[Any]


class LocalCopy:
    """Family states this process has read, with what it needs to know they are
    still true. ``get`` and ``put`` first read the revocations that have arrived."""

    def __init__(self, cache: BaseCache) -> None:
        self._cache = cache
        self._channel = cache.make_key(CHANNEL)
        self._lock = threading.Lock()
        self._entries: dict[uuid.UUID, tuple[float, State]] = {}
        # Bumped by every revocation heard of (and every reset): a state read from the
        # shared cache before a bump may be older than the revocation, so it is not kept.
        self._epoch = 0
        self._pubsub: Any = None
        self._subscribing = False
        self._confirmed = False
        self._last_heard = 0.0  # when Redis last said anything on the subscription
        self._last_ping = 0.0
        self._retry_at = 0.0
        # The subscription's socket, polled before each use: nothing to read (the
        # common case) costs one poll() instead of redis-py's read path (about 10 us).
        self._socket: Any = None
        self._poller: Any = None

    def get(self, family_id: uuid.UUID) -> tuple[State | None, int]:
        """The state this process holds for the family, if it can be trusted now (else
        None), and the epoch to hand back to ``put``."""
        if self._pubsub is None:
            self._subscribe()
        with self._lock:
            now = time.monotonic()
            if not self._sync(now):
                return None, self._epoch
            entry = self._entries.get(family_id)
            if entry is None:
                return None, self._epoch
            stored_at, state = entry
            if now - stored_at > app_settings.FAMILY_STATE_LOCAL_TIMEOUT.total_seconds():
                del self._entries[family_id]
                return None, self._epoch
            return state, self._epoch

    def put(self, family_id: uuid.UUID, state: State, epoch: int) -> None:
        """Keep a state read from the shared cache or the database, unless a revocation
        has been heard of since ``epoch`` (it may be the family's)."""
        with self._lock:
            now = time.monotonic()
            if not self._sync(now) or epoch != self._epoch:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[family_id] = (now, state)

    def forget(self, family_ids: Iterable[uuid.UUID]) -> None:
        """Drop families revoked by this process: it does not wait for its own message."""
        with self._lock:
            for family_id in family_ids:
                self._entries.pop(family_id, None)
            self._epoch += 1

    def close(self) -> None:
        with self._lock:
            self._reset()

    # The subscription ----------------------------------------------------------------

    def _subscribe(self) -> None:
        """Subscribe, outside the lock: connecting can take as long as the connect
        timeout, and meanwhile the other threads ask the shared cache."""
        with self._lock:
            if self._pubsub is not None or self._subscribing:
                return
            if time.monotonic() < self._retry_at:
                return
            self._subscribing = True
        pubsub = None
        try:
            client = self._cache._cache.get_client(write=True)  # type: ignore[attr-defined]
            pubsub = client.pubsub()
            pubsub.subscribe(self._channel)
            # redis-py reconnects (and subscribes again) by itself when the cache's
            # OPTIONS allow retries: whatever was published meanwhile is lost.
            pubsub.connection.register_connect_callback(self._reconnected)
        except Exception:
            logger.warning(
                "Cannot subscribe to family revocations; checking the shared cache.",
                exc_info=True,
            )
            _close_quietly(pubsub)
            pubsub = None
        with self._lock:
            self._subscribing = False
            if pubsub is None:
                self._retry_at = time.monotonic() + RETRY_INTERVAL
            else:
                self._pubsub = pubsub

    def _reconnected(self, connection: Any) -> None:
        # Called by redis-py inside one of our calls, which hold the lock.
        self._forget_all()

    def _sync(self, now: float) -> bool:
        """Read the revocations that have arrived; whether the copy can be trusted."""
        if self._pubsub is None:
            return False
        try:
            if self._has_news():
                while True:
                    message = self._pubsub.get_message(timeout=0)
                    if message is None:
                        break
                    self._handle(message, now)
            if now - self._last_ping >= PING_INTERVAL:
                self._pubsub.ping()
                self._last_ping = now
        except Exception:  # any failure of the subscription: stop trusting the copy
            logger.warning(
                "Lost the subscription to family revocations; checking the shared cache.",
                exc_info=True,
            )
            self._reset()
            self._retry_at = time.monotonic() + RETRY_INTERVAL
            return False
        # Silence for longer than a PING's round trip may take: a connection that died
        # without a word (a partition, a host gone). Not trusted until Redis answers.
        return self._confirmed and now - self._last_heard <= PING_INTERVAL + PONG_DEADLINE

    def _has_news(self) -> bool:
        """Whether the subscription may have something to read (never a false no)."""
        sock = getattr(self._pubsub.connection, "_sock", None)
        if sock is None or _poll is None:
            return True
        if sock is not self._socket:  # a new connection: watch its socket
            self._poller = _poll()
            self._poller.register(sock, _POLL_EVENTS)
            self._socket = sock
            return True
        return bool(self._poller.poll(0))

    def _handle(self, message: dict[str, Any], now: float) -> None:
        self._last_heard = now
        kind = message["type"]
        if kind == "message":
            for raw in bytes(message["data"]).split(b","):
                try:
                    self._entries.pop(uuid.UUID(raw.decode("ascii")), None)
                except ValueError:
                    continue
            self._epoch += 1
        elif kind == "subscribe":
            # The first confirmation, or one after redis-py reconnected on its own:
            # whatever was published in between is lost, so start from empty.
            self._entries.clear()
            self._epoch += 1
            self._confirmed = True

    def _forget_all(self) -> None:
        self._entries.clear()
        self._epoch += 1
        self._confirmed = False

    def _reset(self) -> None:
        self._forget_all()
        self._socket = self._poller = None
        _close_quietly(self._pubsub)
        self._pubsub = None


def _close_quietly(pubsub: Any) -> None:
    if pubsub is None:
        return
    try:
        pubsub.close()
    except Exception:  # already broken: nothing to release
        logger.debug("Closing the revocation subscription failed.", exc_info=True)


_poll = getattr(select, "poll", None)  # not on Windows: there every check reads
_POLL_EVENTS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP if _poll else 0


_copies: dict[tuple[Any, ...], LocalCopy] = {}
_copies_lock = threading.Lock()


def backend_path(cache: BaseCache) -> str:
    """The dotted path of a cache's backend, as CACHES names it."""
    backend = type(cache)
    return f"{backend.__module__}.{backend.__qualname__}"


def pushes(cache: BaseCache) -> bool:
    """Whether ``cache`` can tell every process of a revocation (Redis pub/sub)."""
    return backend_path(cache) in PUSHING_CACHES


def local_copy(alias: str, cache: BaseCache | None) -> LocalCopy | None:
    """This process's copy of the family states kept in the cache ``alias``, or None
    when there is none: the setting is off, or the cache cannot push revocations."""
    if cache is None or not app_settings.FAMILY_STATE_LOCAL_COPY or not pushes(cache):
        return None
    if len(getattr(cache, "_servers", ())) > 1:
        # Django reads from the replicas, which may not have a revocation's tombstone
        # yet when its message arrives: a state read there could be kept for seconds.
        return None
    # Per process (a forked child, such as a gunicorn worker, has its own), shared by
    # its threads (each has its own cache object), and new if the alias now names
    # other servers.
    key = (os.getpid(), alias, tuple(getattr(cache, "_servers", ())))
    copy = _copies.get(key)
    if copy is None:
        with _copies_lock:
            copy = _copies.setdefault(key, LocalCopy(cache))
    return copy


def publish_revocations(cache: BaseCache, family_ids: Iterable[Any]) -> None:
    """Tell every process that keeps a copy that these families are revoked. Called
    once the revocation has committed and its tombstones are written."""
    if not pushes(cache):
        return
    ids = [str(family_id) for family_id in family_ids]
    if not ids:
        return
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    channel = cache.make_key(CHANNEL)
    for start in range(0, len(ids), 1000):  # a logout-all of many sessions: a few messages
        client.publish(channel, ",".join(ids[start : start + 1000]))


def reset_local_copies() -> None:
    """Drop every copy (tests; settings changes)."""
    with _copies_lock:
        for copy in _copies.values():
            copy.close()
        _copies.clear()
