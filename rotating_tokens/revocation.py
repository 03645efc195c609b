"""What each process knows of revoked families, and how it hears of them.

The database is the truth: a family is revoked when its ``revoked_at`` is committed,
and the same transaction writes a ``Revocation`` row, numbered by the database. Each
process answers the access check from memory:

- The facts of a family that never change (its owner and its absolute expiry) are
  read from the database once, the first time one of its access tokens comes.
- What does change, revocation, reaches the process as a deny-list: the families
  revoked within the longest time an access token of theirs can live. It is loaded at
  start-up, then kept current by reading the ``Revocation`` rows numbered after the
  last one seen, at most ``REVOCATION_POLL_INTERVAL`` apart: a check is never answered
  from a deny-list older than that (0: the family's row is read on every check).
- Redis, when there is one (``REVOCATION_PUSH``), pushes each revocation to every
  process the moment it commits, so a request sent after a logout was answered finds
  it in force everywhere. A push can only add to the deny-list, never take from it:
  whatever Redis does (fails, restarts, restores a snapshot, fails over, loses a
  message), the poll still bounds the delay.
- Without Redis, processes on one machine can share a bell (``REVOCATION_BELL``, a
  file): the process that revokes rings it once the revocation commits, and every
  check looks at it (one ``stat``), so a process that hears it polls before it
  answers. Like a push, it can only make a process poll sooner.
- The process that revokes applies its own revocation once it commits, before it
  answers.

Reading "the rows after the last one seen" naively misses rows: the database numbers a
row when it is inserted, and transactions commit in any order, so row 12 can be
visible while row 11 is still to commit (or was rolled back). The numbers skipped are
kept as gaps (runs of numbers: a large revocation numbers thousands at once) and asked
for again on every poll, until they appear or no access token alive when they were
skipped can still be (``gap_lifetime``). A gap given up sooner, for memory, is made up
for: until it would have been given up, facts are not kept (every check reads the
family's row). A poll inside a transaction that reads a snapshot (REPEATABLE READ) may
see an old state of the log: it adds what it read, but does not count as a poll. No
clock is compared with another server's: the poll follows the database's numbering,
and every time limit here is measured on this process's monotonic clock.

What is kept never allows more than the database would: a family this process has
never read, or whose row is gone, is refused; an entry dropped for memory is read
again. Threads of a process share what it knows; a forked child starts empty.
"""

from __future__ import annotations

import logging
import math
import os
import select
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.db import connections, router, transaction
from django.db.models import Max, Q
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings

from .conf import app_settings
from .models import Revocation, TokenFamily

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

logger = logging.getLogger("rotating_tokens")

CHANNEL = "rotating_tokens:revoked"
# How many rows one poll query reads at most (a logout-all of many sessions: a few).
POLL_BATCH = 5_000
# Gaps (runs of missing numbers) asked for at most: beyond, the oldest are given up,
# and facts are not kept until they would have been (a database that numbers with a
# step, such as a Galera cluster's auto_increment_increment, leaves many).
MAX_GAPS = 1_000
# At start-up, the numbers this far below the newest row that are missing count as
# gaps: a transaction that numbered its row just before may still commit it.
START_GAPS = 100
# Families whose facts are kept, at most; then the facts (never the deny-list) are
# dropped and read again as they come.
MAX_FACTS = 100_000
RETRY_INTERVAL = 1.0  # after the push fails, seconds before subscribing again

# The facts of a family that never change: (absolute expiry as a timestamp, the
# owner's USER_ID_FIELD as access tokens carry it, which field that was (read again if
# SIMPLE_JWT's USER_ID_FIELD names another one now), and until when they are used (a
# monotonic time): read again after gap_lifetime(), so that even a revocation the poll
# gave up on (a transaction that committed later than that) is in force then).
Facts = tuple[float, str, str, float]
# Row numbers not seen yet: the first, the last, and when to give up (monotonic).
Gap = tuple[int, int, float]
Listener = Callable[[frozenset[uuid.UUID]], None]


def gap_lifetime() -> float:
    """Seconds during which a missing row number is looked for, and a revoked family is
    kept on the deny-list: the longest an access token can live (with simplejwt's
    LEEWAY), and a minute for clock skew between the servers that issue and check it."""
    return app_settings.ACCESS_TOKEN_LIFETIME.total_seconds() + _leeway_seconds() + 60.0


def _leeway_seconds() -> float:
    leeway = simplejwt_settings.LEEWAY
    return leeway.total_seconds() if isinstance(leeway, timedelta) else float(leeway or 0)


# What this process knows --------------------------------------------------------------


class _Known:
    """The deny-list, the facts, and where the poll stands, for one process."""

    def __init__(self) -> None:
        # Serialises polls and every change to the deny-list; reads need no lock.
        self.lock = threading.RLock()
        # family id -> Facts, or a float: revoked, denied until this monotonic time.
        # One dict, so that facts read before a revocation can never replace its entry
        # (they go in with setdefault; a denial overwrites).
        self.entries: dict[uuid.UUID, Facts | float] = {}
        self.facts = 0  # how many entries are facts
        self.expiries: deque[tuple[float, uuid.UUID]] = deque()  # denials, in order
        self.high: int | None = None  # the highest row number seen; None: not started
        self.high_family: uuid.UUID | None = None  # that row's family (None: not read)
        self.gaps: list[Gap] = []  # in order of their numbers
        # A gap given up before its time may still commit: until then, no facts are kept.
        self.distrust_until = -math.inf
        self.synced_at = -math.inf  # monotonic time the last complete poll started
        # Monotonic time this process last heard the bell: a poll that started before
        # it may have missed what was rung, so it does not count.
        self.rang_at = -math.inf
        self.bell = _Bell()
        self.owner_field = ""  # services._owner_lookup() at the last poll
        self.push = _Push()

    # The deny-list

    def deny(
        self, family_ids: Iterable[uuid.UUID], *, until: float | None = None
    ) -> set[uuid.UUID]:
        """Put families on the deny-list; returns those that were not on it."""
        until = time.monotonic() + gap_lifetime() if until is None else until
        new = set()
        with self.lock:
            for family_id in family_ids:
                entry = self.entries.get(family_id)
                if type(entry) is not float:
                    new.add(family_id)
                    if entry is not None:
                        self.facts -= 1
                self.entries[family_id] = until
                self.expiries.append((until, family_id))
        return new

    def expire(self, now: float) -> None:
        """Drop denials whose family's access tokens have all expired. Not a rule of
        safety: a family no longer listed is read again, and found revoked."""
        with self.lock:
            while self.expiries and self.expiries[0][0] <= now:
                until, family_id = self.expiries.popleft()
                if self.entries.get(family_id) == until:
                    del self.entries[family_id]

    def forget(self, family_ids: Iterable[uuid.UUID]) -> None:
        """Drop the facts of families being revoked by this process, so that its next
        checks read their rows (inside the revoking transaction too) until the
        revocation commits and is denied. Denials stay."""
        with self.lock:
            for family_id in family_ids:
                if type(self.entries.get(family_id)) is tuple:
                    del self.entries[family_id]
                    self.facts -= 1

    def keep(self, family_id: uuid.UUID, facts: Facts) -> None:
        if time.monotonic() < self.distrust_until:
            return  # a gap given up early may still commit: read the row every time
        # Under the lock: a denial that came in since the facts were read must win, and
        # facts read again (too old, another USER_ID_FIELD) replace the old ones.
        with self.lock:
            if self.facts >= MAX_FACTS:
                self.entries = {k: v for k, v in self.entries.items() if type(v) is float}
                self.facts = 0
            entry = self.entries.get(family_id)
            if type(entry) is float:
                return
            if entry is None:
                self.facts += 1
            self.entries[family_id] = facts

    # The poll

    def poll(self, db: str, newly: set[uuid.UUID]) -> None:
        """Read the rows numbered after the last one seen, and the gaps; adds the
        families newly denied to ``newly`` as it goes (a poll that fails midway still
        says what it denied). The caller holds the lock."""
        now = time.monotonic()
        rows = Revocation.objects.using(db).order_by("id")
        if self.high is None:
            newly |= self._start(rows, now)
            return
        self.gaps = [gap for gap in self.gaps if gap[2] > now]
        # The newest row seen is asked for again: gone, or another family's, the log was
        # numbered again below it (a failover to a replica that lacked it, a restore
        # from a backup), and rows after the high mark would be skipped: start over.
        mark, confirmed = (self.high, self.high_family), self.high == 0
        while True:
            wanted = Q(id__gte=self.high)
            singles = [first for first, last, _ in self.gaps if first == last]
            if singles:  # one IN (…) for them: a database that numbers with a step
                wanted |= Q(id__in=singles)
            for first, last, _give_up_at in self.gaps:
                if first < last:
                    wanted |= Q(id__range=(first, last))
            batch = list(rows.filter(wanted).values_list("id", "family_id")[:POLL_BATCH])
            confirmed = confirmed or any(
                number == mark[0] and mark[1] in (None, family_id) for number, family_id in batch
            )
            news = [row for row in batch if row[0] != self.high]
            # Denied before the numbers move on: if the next query fails, what this one
            # read is not lost.
            newly |= self.deny(family_id for _, family_id in news)
            self._found([number for number, _ in news if number < self.high])
            for number, family_id in news:
                if number > self.high:
                    self._skipped(self.high + 1, number - 1, now)
                    self.high, self.high_family = number, family_id
            if len(batch) < POLL_BATCH:
                break
        if not confirmed:
            self.high, self.gaps = None, []
            newly |= self._start(rows, now)

    def _start(self, rows: Any, now: float) -> set[uuid.UUID]:
        """The first poll: the families revoked within an access token's life, and the
        newest row number. Later polls read what comes after."""
        since = timezone.now() - timedelta(seconds=gap_lifetime())
        recent = list(rows.filter(revoked_at__gte=since).values_list("id", "family_id"))
        newest = rows.aggregate(newest=Max("id"))["newest"] or 0
        present = {number for number, _ in recent if number < newest}
        low = min(min(present, default=newest), newest - START_GAPS)
        # A run of numbers still in flight can reach below that (a large revocation
        # that commits after a later one): the gap goes down to the row before it.
        below = rows.filter(id__lt=low).aggregate(below=Max("id"))["below"] or 0
        self.high, self.high_family = newest, dict(recent).get(newest)
        seen = below
        for number in sorted(present | {newest}):
            if number > seen:
                self._skipped(seen + 1, number - 1, now)
                seen = number
        return self.deny(family_id for _, family_id in recent)

    def _skipped(self, first: int, last: int, now: float) -> None:
        first = max(first, 1)
        if first > last:
            return
        give_up_at = now + gap_lifetime()
        self.gaps.append((first, last, give_up_at))
        while len(self.gaps) > MAX_GAPS:
            # The oldest given up before its time: until then, no facts are kept (and
            # those kept go), so a revocation in it that commits is read from its row.
            dropped = self.gaps.pop(0)
            self.distrust_until = max(self.distrust_until, dropped[2])
            self.entries = {k: v for k, v in self.entries.items() if type(v) is float}
            self.facts = 0

    def _found(self, numbers: list[int]) -> None:
        """Take the numbers that appeared out of the gaps."""
        if not numbers:
            return
        numbers.sort()
        gaps: list[Gap] = []
        index = 0
        for first, last, give_up_at in self.gaps:
            while index < len(numbers) and numbers[index] < first:
                index += 1
            while index < len(numbers) and numbers[index] <= last:
                if numbers[index] > first:
                    gaps.append((first, numbers[index] - 1, give_up_at))
                first = numbers[index] + 1
                index += 1
            if first <= last:
                gaps.append((first, last, give_up_at))
        self.gaps = gaps


_known: _Known | None = None
_known_lock = threading.Lock()
_listeners: list[Listener] = []


def _state() -> _Known:
    # No pid compared here (a system call per check): a fork empties it (below), and
    # where there is no fork there is nothing to compare.
    known = _known
    if known is None:
        return _new_state()
    return known


def _new_state() -> _Known:
    global _known
    with _known_lock:
        if _known is None:
            _known = _Known()
        return _known


def reset() -> None:
    """Forget everything this process knows (tests; a settings change)."""
    global _known
    with _known_lock:
        if _known is not None:
            _known.push.close()
        _known = None


def _forget_after_fork() -> None:
    # A forked child (a gunicorn worker) must not share its parent's subscription
    # socket, nor trust a poll made before the fork. Nor a lock another thread of the
    # parent held when it forked: no thread of the child would ever release it.
    global _known, _known_lock
    _known = None
    _known_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


# The checks ------------------------------------------------------------------------------


def _family_uuid(family_id: Any) -> uuid.UUID | None:
    if isinstance(family_id, uuid.UUID):
        return family_id
    try:
        return uuid.UUID(str(family_id))
    except ValueError:
        return None


def allows_access(family_id: Any, *, user_id: Any = None, now: datetime | None = None) -> bool:
    """Whether access tokens of this family are still good, and (when ``user_id`` is
    given) the family belongs to that user: a token that pairs one user with another
    user's family, which only someone holding the signing key could make, is refused.

    ``user_id`` is what an access token carries in ``USER_ID_CLAIM``: the user's
    ``SIMPLE_JWT["USER_ID_FIELD"]``, which need not be the primary key.

    Answered from memory when this process's deny-list is recent enough and it knows
    the family; otherwise reads the database (a poll, or the family's row)."""
    family = _family_uuid(family_id)
    if family is None:
        return False
    at = time.time() if now is None else now.timestamp()
    interval = app_settings.REVOCATION_POLL_INTERVAL.total_seconds()
    if interval <= 0:
        facts = _read_facts(family)
        return facts is not None and _facts_allow(facts, user_id, at)
    known = _refreshed(interval)
    entry = known.entries.get(family)
    clock = time.monotonic()
    if type(entry) is float:
        if entry > clock:
            return False
        known.expire(clock)
        entry = None
    if entry is None or not _usable(known, entry, clock):  # type: ignore[arg-type]
        facts = _read_facts(family)
        if facts is None:
            return False  # unknown (or revoked: now on the deny-list)
        known.keep(family, facts)
        entry = facts
    return _facts_allow(entry, user_id, at)  # type: ignore[arg-type]


def allows_access_in_memory(
    family_id: Any, *, user_id: Any = None, now: datetime | None = None
) -> bool | None:
    """``allows_access`` without any database query, for an event loop: None when the
    answer needs one (the deny-list is older than the poll interval, or the family is
    not known here); call ``allows_access`` in a thread then. Reads what Redis pushed
    (a non-blocking read of its socket)."""
    family = _family_uuid(family_id)
    if family is None:
        return False
    interval = app_settings.REVOCATION_POLL_INTERVAL.total_seconds()
    if interval <= 0:
        return None
    known = _state()
    known.bell.listen(known)
    if not _fresh(known, interval) or not known.push.receive(known, blocking=False):
        return None
    entry = known.entries.get(family)
    clock = time.monotonic()
    if entry is None:
        return None
    if type(entry) is float:
        return False if entry > clock else None
    if not _usable(known, entry, clock):  # type: ignore[arg-type]
        return None
    at = time.time() if now is None else now.timestamp()
    return _facts_allow(entry, user_id, at)  # type: ignore[arg-type]


def is_revoked(family_id: Any) -> bool:
    """Whether this process's deny-list holds the family (memory only: call
    ``refresh`` first for an answer at most one poll interval old)."""
    family = _family_uuid(family_id)
    if family is None:
        return False
    entry = _state().entries.get(family)
    return type(entry) is float


def refresh() -> None:
    """Bring this process's deny-list up to date: read what Redis pushed, and poll the
    database if the last poll started longer ago than the interval. A thread that
    finds another polling waits for it, since its answer must not be older."""
    _refreshed(app_settings.REVOCATION_POLL_INTERVAL.total_seconds())


def _refreshed(interval: float) -> _Known:
    known = _state()
    known.bell.listen(known)
    known.push.receive(known)
    if _fresh(known, interval):
        return known
    newly: set[uuid.UUID] = set()
    try:
        with known.lock:
            if not _fresh(known, interval):
                started = time.monotonic()
                # Read once per poll, not per check: a change of USER_ID_FIELD (which
                # in production comes with a restart) is seen within one interval.
                known.owner_field = _owner_lookup()
                # Where revocations write their rows (services.revoke_families).
                db = router.db_for_write(TokenFamily)
                known.poll(db, newly)
                if _reads_the_latest(db):
                    known.synced_at = started
                known.expire(started)
                known.push.ensure_subscribed()
    finally:
        _tell_listeners(newly)  # also what a poll that failed midway denied
    return known


def _reads_the_latest(db: str) -> bool:
    """Whether the poll just made saw every row committed before it started: always in
    autocommit, and inside a transaction at READ COMMITTED (PostgreSQL's default, and
    Django's on MySQL and MariaDB). At REPEATABLE READ or SERIALIZABLE a transaction
    reads the snapshot of its first query, which can be any age (a request under
    ATOMIC_REQUESTS that read before it checked, a long task): what such a poll read is
    applied, but the next check polls again."""
    connection = connections[db]
    if not connection.in_atomic_block or connection.vendor == "sqlite":
        return True  # SQLite: a writer waits for the transactions that read
    level = getattr(connection, "isolation_level", None)
    name = str(getattr(level, "name", level) or "").replace("_", " ").lower()
    return name in ("read committed", "read uncommitted")


def _fresh(known: _Known, interval: float) -> bool:
    # Strictly after the bell: a poll that started in the same tick of the clock may
    # have started before it.
    return known.synced_at > known.rang_at and time.monotonic() - known.synced_at < interval


def _read_facts(family: uuid.UUID) -> Facts | None:
    """The family's facts from its row; None if it is unknown, or revoked (then it
    goes on the deny-list). Read from the primary: a replica may lag behind a
    revocation."""
    from .services import user_id_claim

    owner = _owner_lookup()
    row = (
        TokenFamily.objects.using(router.db_for_write(TokenFamily))
        .filter(pk=family)
        .values_list("revoked_at", "expires_at", owner)
        .first()
    )
    if row is None:
        return None
    if row[0] is not None:
        # Denied for good, unless read inside a transaction: it may be that very
        # transaction's revocation, which could still roll back.
        in_transaction = connections[router.db_for_write(TokenFamily)].in_atomic_block
        if timedelta(0) < app_settings.REVOCATION_POLL_INTERVAL and not in_transaction:
            _state().deny([family])
        return None
    return (
        row[1].timestamp(),
        user_id_claim(row[2]),
        owner,
        time.monotonic() + gap_lifetime(),
    )


def _usable(known: _Known, facts: Facts, clock: float) -> bool:
    return facts[3] > clock and facts[2] == known.owner_field


def _owner_lookup() -> str:
    from .services import _owner_lookup

    return _owner_lookup()


def _facts_allow(facts: Facts, user_id: Any, at: float) -> bool:
    """Whether the facts allow an access token of ``user_id`` at ``at`` (a timestamp).
    ``user_id`` compares as ``services.user_id_claim`` writes it: ``str()`` of it."""
    good_until, owner = facts[0], facts[1]
    # An owner without a USER_ID_FIELD value ("") matches no token, not even one
    # without the claim.
    if user_id is not None and (not owner or str(user_id) != owner):
        return False
    return at < good_until


# Revoking ------------------------------------------------------------------------------


def record(family_ids: Collection[Any], *, db: str, now: datetime) -> None:
    """Log the revocation of these families, inside the transaction that revokes them
    (the caller's), and once it commits, apply it here and push it to every process.
    On a rollback nothing is logged, applied or pushed."""
    ids = [pk for pk in map(_family_uuid, family_ids) if pk is not None]
    if not ids:
        return
    Revocation.objects.using(db).bulk_create(
        [Revocation(family_id=pk, revoked_at=now) for pk in ids]
    )
    _state().forget(ids)
    transaction.on_commit(lambda: announce(ids), using=db)


def announce(family_ids: Collection[uuid.UUID]) -> None:
    """A committed revocation: on this process's deny-list at once (it does not wait
    for its own push), then pushed to the others."""
    known = _state()
    newly = known.deny(family_ids)
    known.bell.ring()
    known.push.publish(family_ids)
    _tell_listeners(newly)


# Listeners -----------------------------------------------------------------------------


def add_listener(callback: Listener) -> None:
    """Call ``callback(family_ids)`` with the families this process learns are revoked
    (by a poll, a push or its own revocation), from whichever thread learned it. For
    closing what a family holds open (WebSockets); the checks above need no listener."""
    if callback not in _listeners:
        _listeners.append(callback)


def remove_listener(callback: Listener) -> None:
    if callback in _listeners:
        _listeners.remove(callback)


def _tell_listeners(family_ids: set[uuid.UUID]) -> None:
    if not family_ids or not _listeners:
        return
    frozen = frozenset(family_ids)
    for callback in list(_listeners):
        try:
            callback(frozen)
        except Exception:  # one listener's failure must not stop the others
            logger.exception("A revocation listener failed.")


# The push --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushPath:
    """How revocations are pushed here, or why they are not (system checks say it)."""

    client: Any  # a redis-py client (Redis or RedisCluster), or None: the poll alone
    sharded: bool  # Redis Cluster: sharded pub/sub (SPUBLISH, SSUBSCRIBE)
    channel: str
    description: str


def push_path() -> PushPath:
    """What ``REVOCATION_PUSH`` gives: a Redis client to push with, or the reason
    there is none. Connects to nothing."""
    setting = app_settings.REVOCATION_PUSH
    if setting is None:
        return PushPath(None, False, CHANNEL, "REVOCATION_PUSH is None")
    if isinstance(setting, dict):
        return _push_from_url(setting)
    from django.conf import settings

    if setting not in settings.CACHES:
        return PushPath(None, False, CHANNEL, f"CACHES has no cache {setting!r}")
    cache = caches[setting]
    channel = cache.make_key(CHANNEL)
    client, why = redis_client(cache)
    if client is None:
        return PushPath(None, False, channel, f"the cache {setting!r} {why}")
    sharded = _is_cluster(client)
    kind = "sharded pub/sub on Redis Cluster" if sharded else "Redis pub/sub"
    return PushPath(client, sharded, channel, f"{kind} through the cache {setting!r} ({why})")


def _push_from_url(setting: dict[str, Any]) -> PushPath:
    import redis

    url = str(setting.get("URL"))
    options = dict(setting.get("OPTIONS") or {})
    options.setdefault("socket_timeout", 1.0)
    options.setdefault("socket_connect_timeout", 1.0)
    if setting.get("CLUSTER"):
        from redis.cluster import RedisCluster

        client: Any = RedisCluster.from_url(url, **options)
        return PushPath(client, True, CHANNEL, f"sharded pub/sub on the Redis Cluster at {url}")
    client = redis.Redis.from_url(url, **options)
    return PushPath(client, False, CHANNEL, f"Redis pub/sub on {url}")


def backend_path(cache: BaseCache) -> str:
    """The dotted path of a cache's backend, as CACHES names it."""
    backend = type(cache)
    return f"{backend.__module__}.{backend.__qualname__}"


def redis_client(cache: BaseCache) -> tuple[Any, str]:
    """The redis-py client behind a Django cache that is a Redis (Django's RedisCache,
    or django-redis with its default, herd or Sentinel client), and which; or None
    and why not."""
    path = backend_path(cache)
    if path == "django.core.cache.backends.redis.RedisCache":
        # The first server: the primary, where Django writes (and so do we).
        return cache._cache.get_client(write=True), "Django's RedisCache"  # type: ignore[attr-defined]
    if path.startswith("django_redis."):
        client = getattr(cache, "client", None)
        name = type(client).__name__
        if name == "ShardClient":
            return None, "is django-redis's ShardClient, whose keys live on several servers"
        try:
            redis_client = client.get_client(write=True)  # type: ignore[union-attr]
        except Exception as exc:  # not reachable now; it is used once it is
            return None, f"is django-redis ({name}) but failed to give a client: {exc}"
        return redis_client, f"django-redis's {name}"
    return None, f"is {path}, which cannot push"


def _is_cluster(client: Any) -> bool:
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover - redis-py without cluster support
        return False
    return isinstance(client, RedisCluster)


_poll = getattr(select, "poll", None)  # not on Windows: there every check reads the socket
_POLL_EVENTS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP if _poll else 0


class _Trouble:
    """The log of one way of reaching Redis: a warning with its traceback when it starts
    failing, a debug line for each later failure (a retry a second would otherwise write
    3,600 tracebacks an hour per process), and an info line once it works again."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, message: str, *args: Any) -> None:
        if self.failing:
            logger.debug("Still failing: " + message, *args, exc_info=True)
        else:
            logger.warning(message, *args, exc_info=True)
        self.failing = True

    def worked(self) -> None:
        if self.failing:
            logger.info("%s works again.", self.what)
            self.failing = False


class _Push:
    """This process's subscription to the revocation channel, and its publishing.

    Nothing here is trusted: a message adds families to the deny-list, a failure only
    means the poll alone keeps it current until the subscription is back."""

    def __init__(self) -> None:
        self.path: PushPath | None = None
        self.pubsub: Any = None
        self.retry_at = 0.0
        self.socket: Any = None
        self.poller: Any = None
        self.subscribing = _Trouble("The subscription to revocations")
        self.publishing = _Trouble("Pushing revocations")

    def _path(self) -> PushPath:
        if self.path is None:
            try:
                self.path = push_path()
            except Exception as exc:  # a Redis Cluster is asked for its nodes at once
                self.subscribing.failed(
                    "Cannot reach the Redis that pushes revocations; the poll alone keeps "
                    "them current until it can."
                )
                self.retry_at = time.monotonic() + RETRY_INTERVAL
                return PushPath(None, False, CHANNEL, f"cannot connect: {exc}")
        return self.path

    def ensure_subscribed(self) -> None:
        """Subscribe if not subscribed (called after a poll, holding the lock)."""
        if self.pubsub is not None or time.monotonic() < self.retry_at:
            return
        path = self._path()
        if path.client is None:
            if self.path is not None:
                self.retry_at = math.inf  # nothing to push with, for good
            return  # else: unreachable for now, and _path() set when to try again
        pubsub = None
        try:
            pubsub = path.client.pubsub()
            if path.sharded:
                pubsub.ssubscribe(path.channel)
            else:
                pubsub.subscribe(path.channel)
        except Exception:
            self.subscribing.failed(
                "Cannot subscribe to revocations (%s); the poll alone keeps them current.",
                path.description,
            )
            _close_quietly(pubsub)
            self.retry_at = time.monotonic() + RETRY_INTERVAL
            return
        self.pubsub = pubsub
        self.subscribing.worked()

    def receive(self, known: _Known, *, blocking: bool = True) -> bool:
        """Apply what has arrived on the subscription, without waiting for Redis.
        With ``blocking=False`` (an event loop), not even for another thread that holds
        the lock (polling the database): then False, and nothing was read."""
        pubsub = self.pubsub
        if pubsub is None or not self._has_news(pubsub):
            return True
        if not known.lock.acquire(blocking=blocking):
            return False
        families: set[uuid.UUID] = set()
        try:
            if self.pubsub is not pubsub:
                return True
            try:
                while True:
                    if self._path().sharded:
                        message = pubsub.get_sharded_message(timeout=0.0)
                    else:
                        message = pubsub.get_message(timeout=0.0)
                    if message is None:
                        break
                    if message.get("type") in ("message", "smessage"):
                        families.update(_parse(message.get("data")))
            except Exception:
                self.subscribing.failed(
                    "Lost the subscription to revocations; the poll alone keeps them "
                    "current until it is back."
                )
                self._drop()
                self.retry_at = time.monotonic() + RETRY_INTERVAL
            newly = known.deny(families) if families else set()
        finally:
            known.lock.release()
        _tell_listeners(newly)
        return True

    def _has_news(self, pubsub: Any) -> bool:
        """Whether the subscription may have something to read (never a false no)."""
        connection = getattr(pubsub, "connection", None)
        sock = getattr(connection, "_sock", None)
        if sock is None or _poll is None:
            return True
        if sock is not self.socket:  # a new connection: watch its socket
            self.poller = _poll()
            self.poller.register(sock, _POLL_EVENTS)
            self.socket = sock
            return True
        try:
            return bool(self.poller.poll(0))
        except RuntimeError:
            # "concurrent poll() invocation": a poll object refuses a second thread (an
            # event loop's check beside a request thread's, under ASGI or gthread).
            # Maybe news, then: the caller reads under the lock.
            return True

    def publish(self, family_ids: Collection[uuid.UUID]) -> None:
        """Tell every subscribed process. A failure is logged: the revocation is
        committed, and the poll brings it to every process within its interval."""
        path = self._path()
        if path.client is None:
            return
        ids = [str(pk) for pk in family_ids]
        try:
            for start in range(0, len(ids), 1000):
                message = ",".join(ids[start : start + 1000])
                if path.sharded:
                    path.client.spublish(path.channel, message)
                else:
                    path.client.publish(path.channel, message)
        except Exception:
            self.publishing.failed(
                "Could not push a revocation (%s); other processes apply it within "
                "REVOCATION_POLL_INTERVAL.",
                path.description,
            )
            return
        self.publishing.worked()

    def _drop(self) -> None:
        _close_quietly(self.pubsub)
        self.pubsub = self.socket = self.poller = None

    def close(self) -> None:
        self._drop()


def _parse(data: Any) -> set[uuid.UUID]:
    if isinstance(data, str):
        data = data.encode()
    families = set()
    for raw in bytes(data or b"").split(b","):
        try:
            families.add(uuid.UUID(raw.decode("ascii")))
        except ValueError:
            continue
    return families


def _close_quietly(pubsub: Any) -> None:
    if pubsub is None:
        return
    try:
        pubsub.close()
    except Exception:  # already broken: nothing to release
        logger.debug("Closing the revocation subscription failed.", exc_info=True)


# The bell: a push between the processes of one machine, without Redis ---------------

# Rings before the file is emptied and begun again (a byte each).
BELL_SIZE = 65_536


class _Bell:
    """``REVOCATION_BELL``: a file that the process which revoked appends a byte to
    once the revocation commits. Every check looks at it (a ``stat``, no read); one
    that finds it changed since this process last looked makes the next check poll.
    The ring comes after the commit, so that poll finds the revocation. A failure to
    ring or look, or a file that another user rings, only costs polls: the bound is
    still the poll interval."""

    def __init__(self) -> None:
        path = app_settings.REVOCATION_BELL
        self.path = os.fspath(path) if path else None
        self.seen: tuple[int, int, int] | None = None
        self.ringing = _Trouble("Ringing the revocation bell")

    def listen(self, known: _Known) -> None:
        if self.path is None:
            return
        try:
            stat = os.stat(self.path)
            heard: tuple[int, int, int] | None = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            heard = None
        if heard != self.seen:
            # rang_at first: a thread that finds ``seen`` already up to date must also
            # find the poll it needs.
            known.rang_at = time.monotonic()
            self.seen = heard

    def ring(self) -> None:
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size >= BELL_SIZE:
                    os.ftruncate(fd, 0)
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError:
            self.ringing.failed(
                "Could not ring the revocation bell %s; other processes apply the "
                "revocation within REVOCATION_POLL_INTERVAL.",
                self.path,
            )
            return
        self.ringing.worked()


# For checks and benchmarks -------------------------------------------------------------


def status() -> dict[str, Any]:
    """Which push path is in use and why, and the bound a revocation is in force within
    on every process."""
    interval = app_settings.REVOCATION_POLL_INTERVAL.total_seconds()
    path = push_path()
    bell = app_settings.REVOCATION_BELL
    if interval <= 0:
        bound = "at once: every check reads the family's row"
    elif path.client is not None:
        bound = (
            f"at once while Redis is healthy ({path.description}); within {interval:g} s "
            "(the poll) whatever Redis does"
        )
    elif bell:
        bound = (
            f"at once on this machine (the bell {os.fspath(bell)}); on other machines "
            f"within {interval:g} s (the poll; no push: {path.description})"
        )
    else:
        bound = f"within {interval:g} s (the poll; no push: {path.description})"
    return {
        "poll_interval": interval,
        "push": path.client is not None,
        "sharded": path.sharded,
        "path": path.description,
        "bell": os.fspath(bell) if bell else None,
        "bound": bound,
    }
