"""A copy of family states in each process, kept current by Redis.

Checking an access token's family in the shared cache costs every authenticated request
a round trip to Redis: about 0.2 ms here, as much as simplejwt's whole authentication
without its user query. Each process may instead keep the states it has read, provided
it hears of every revocation before it answers a request that could be affected:

- a revocation, once committed and its tombstone written, publishes the family ids on
  a Redis channel (``publish_revocations``);
- every process that keeps a copy subscribes to that channel, and before it trusts the
  copy it reads, without blocking, whatever has arrived on its subscription (one
  ``poll()`` system call when nothing has). Redis hands the message to every subscriber
  before it answers the revoking process's PUBLISH, so by the time the revoking
  request's response reaches anyone, the message is on its way to every process: a
  request sent after the revocation was answered finds it there.

Where that could fail, the copy is dropped or bypassed, never trusted:

- the subscription is not confirmed yet, or its connection fails: not used (and
  emptied) until a new subscription is confirmed;
- the connection is re-established behind our back (redis-py reconnects and
  re-subscribes): the new confirmation empties the copy, since messages sent in
  between were lost;
- a PING sent on the subscription is unanswered after ``PONG_DEADLINE``: not used
  until the answer comes (a connection that is silently dead);
- in any case an entry is trusted for ``FAMILY_STATE_LOCAL_TIMEOUT`` at most (10 s by
  default): the bound on staleness if Redis dropped a message without the connection
  failing, which it does not do on its own.

Only with Django's RedisCache, the one cache backend that can push. Several threads of
one process share the copy (a lock guards it); a forked child starts its own.
"""

from __future__ import annotations

import logging
import os
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
PONG_DEADLINE = 1.0  # a PING unanswered for longer: the copy is not used
RETRY_INTERVAL = 1.0  # after a failure, seconds before subscribing again
MAX_ENTRIES = 50_000  # then the copy starts again from empty (about 19 MB)

# A family's state as the shared cache holds it: [good until (a timestamp), owner's pk].
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
        self._confirmed = False
        self._ping_sent_at: float | None = None
        self._last_ping = 0.0
        self._retry_at = 0.0

    @property
    def epoch(self) -> int:
        return self._epoch

    def get(self, family_id: uuid.UUID) -> tuple[State | None, int]:
        """The state this process holds for the family, if it can be trusted now (else
        None), and the epoch to hand back to ``put``."""
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

    def _sync(self, now: float) -> bool:
        """Read the revocations that have arrived; whether the copy can be trusted."""
        if self._pubsub is None:
            if now < self._retry_at:
                return False
            self._subscribe(now)
            return False  # not before the subscription is confirmed
        try:
            while True:
                message = self._pubsub.get_message(timeout=0)
                if message is None:
                    break
                self._handle(message)
            if self._ping_sent_at is None and now - self._last_ping >= PING_INTERVAL:
                self._pubsub.ping()
                self._ping_sent_at = self._last_ping = now
        except Exception:  # any failure of the subscription: stop trusting the copy
            logger.warning(
                "Lost the subscription to family revocations; checking the shared cache.",
                exc_info=True,
            )
            self._reset()
            self._retry_at = now + RETRY_INTERVAL
            return False
        if self._ping_sent_at is not None and now - self._ping_sent_at > PONG_DEADLINE:
            return False
        return self._confirmed

    def _subscribe(self, now: float) -> None:
        try:
            client = self._cache._cache.get_client(write=True)  # type: ignore[attr-defined]
            self._pubsub = client.pubsub()
            self._pubsub.subscribe(self._channel)
        except Exception:
            logger.warning(
                "Cannot subscribe to family revocations; checking the shared cache.",
                exc_info=True,
            )
            self._reset()
            self._retry_at = now + RETRY_INTERVAL

    def _handle(self, message: dict[str, Any]) -> None:
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
        elif kind == "pong":
            self._ping_sent_at = None

    def _reset(self) -> None:
        self._entries.clear()
        self._epoch += 1
        self._confirmed = False
        self._ping_sent_at = None
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # already broken: nothing to release
                logger.debug("Closing the revocation subscription failed.", exc_info=True)
            self._pubsub = None


_copies: dict[tuple[Any, ...], LocalCopy] = {}
_copies_lock = threading.Lock()


def pushes(cache: BaseCache) -> bool:
    """Whether ``cache`` can tell every process of a revocation (Redis pub/sub)."""
    backend = type(cache)
    return f"{backend.__module__}.{backend.__qualname__}" in PUSHING_CACHES


def local_copy(alias: str, cache: BaseCache | None) -> LocalCopy | None:
    """This process's copy of the family states kept in the cache ``alias``, or None
    when there is none: the setting is off, or the cache cannot push revocations."""
    if cache is None or not app_settings.FAMILY_STATE_LOCAL_COPY or not pushes(cache):
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
