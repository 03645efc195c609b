"""This process's open WebSockets by family, and the task that closes revoked ones.

No channel layer is needed: every process keeps its own registry of the sockets it
serves, and one task per event loop asks, every ``REVOCATION_POLL_INTERVAL``, which of
their families no longer allow access (``revoked_among``: one query for all of them),
then closes those sockets with 4401. A revocation made by any process (a logout on
another device, reuse detected, a password change, an admin's revoke) is in the
database once committed, so every process closes its sockets within one interval and
a query. The task runs only while the loop has sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from django.utils import timezone

from rotating_tokens.conf import app_settings
from rotating_tokens.models import TokenFamily

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger("rotating_tokens")


class Socket(Protocol):
    async def close_unauthenticated(self) -> None: ...


class _LoopSockets:
    """The sockets of one event loop (a server process has one; tests make many)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.families: dict[uuid.UUID, set[Socket]] = {}
        self.task: asyncio.Task[None] | None = None


_loops: dict[asyncio.AbstractEventLoop, _LoopSockets] = {}


def register(socket: Socket, family_id: uuid.UUID) -> None:
    """Watch ``socket`` until ``unregister``: closed when ``family_id`` is revoked.
    Called on the socket's own event loop."""
    loop = asyncio.get_running_loop()
    sockets = _loops.get(loop)
    if sockets is None:
        sockets = _loops[loop] = _LoopSockets(loop)
    sockets.families.setdefault(family_id, set()).add(socket)
    if sockets.task is None or sockets.task.done():
        sockets.task = loop.create_task(_watch(sockets), name="rotating_tokens: revoked sockets")


def unregister(socket: Socket, family_id: uuid.UUID) -> None:
    for sockets in list(_loops.values()):
        members = sockets.families.get(family_id)
        if members is not None:
            members.discard(socket)
            if not members:
                del sockets.families[family_id]


def open_families() -> dict[uuid.UUID, int]:
    """How many open sockets each family has in this process (for tests and metrics)."""
    counts: dict[uuid.UUID, int] = {}
    for sockets in _loops.values():
        for family_id, members in sockets.families.items():
            counts[family_id] = counts.get(family_id, 0) + len(members)
    return counts


def close_families(family_ids: Iterable[uuid.UUID]) -> None:
    """Close, with 4401, this process's sockets of these families, from any thread
    (the listener of revocations calls it from wherever it heard of them)."""
    wanted = set(family_ids)
    for sockets in list(_loops.values()):
        if sockets.loop.is_closed():
            continue
        sockets.loop.call_soon_threadsafe(_close_on_loop, sockets, wanted)


def _close_on_loop(sockets: _LoopSockets, family_ids: set[uuid.UUID]) -> None:
    for family_id in family_ids & sockets.families.keys():
        for socket in sockets.families.pop(family_id, set()):
            sockets.loop.create_task(socket.close_unauthenticated())


def poll_interval() -> float:
    """Seconds between two looks at the families of open sockets."""
    interval: timedelta = getattr(app_settings, "REVOCATION_POLL_INTERVAL", timedelta(seconds=1))
    return interval.total_seconds()


async def _watch(sockets: _LoopSockets) -> None:
    while sockets.families:
        await asyncio.sleep(poll_interval())
        watched = list(sockets.families)
        if not watched:
            break
        try:
            revoked = await sync_to_async(_revoked_among_in_thread)(watched)
        except Exception:  # the database is down: try again next interval
            logger.warning("Could not check the families of open sockets.", exc_info=True)
            continue
        _close_on_loop(sockets, revoked)
    if _loops.get(sockets.loop) is sockets and not sockets.families:
        with contextlib.suppress(KeyError):
            del _loops[sockets.loop]


def _revoked_among_in_thread(family_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    # Outside any request: nothing else closes this thread's connection when it is too
    # old or broken, as request_started and request_finished do for a request's. Not
    # inside a transaction (a test's), whose connection closing would end it.
    if not any(c.in_atomic_block for c in connections.all(initialized_only=True)):
        close_old_connections()
    return revoked_among(family_ids)


def revoked_among(
    family_ids: Iterable[uuid.UUID], *, now: datetime | None = None
) -> set[uuid.UUID]:
    """Those of ``family_ids`` that no longer allow access: revoked, expired, or gone
    (purged). One query, whatever their number; the database is the truth."""
    family_ids = set(family_ids)
    if not family_ids:
        return set()
    now = now or timezone.now()
    live = set(
        TokenFamily.objects.filter(pk__in=family_ids, revoked_at=None, expires_at__gt=now)
        .values_list("pk", flat=True)
        .order_by()
    )
    return family_ids - live
