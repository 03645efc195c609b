"""This process's open WebSockets by family, and what closes the revoked ones.

No channel layer is needed: every process keeps its own registry of the sockets it
serves, and hears of every revocation through ``revocation.py``, the same deny-list
the access check reads:

- a listener (``revocation.add_listener``) closes a family's sockets the moment this
  process learns of its revocation: its own (a logout it served), one Redis pushed
  (``REVOCATION_PUSH``), or one its poll read;
- while the event loop has sockets, a task brings the deny-list up to date
  (``revocation.refresh``, in a thread: it polls the database once the deny-list is
  ``REVOCATION_POLL_INTERVAL`` old) four times an interval, and closes the sockets of
  any family on it. That is the bound without Redis, and it catches a revocation heard
  of between a socket's check and its registration here.

A revocation by any process (a logout on another device, reuse detected, a password
change, an admin's revoke) is in the database once committed, so every process closes
its sockets within an interval and a quarter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import Protocol

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

from rotating_tokens import revocation
from rotating_tokens.conf import app_settings

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
    _forget_closed_loops()
    sockets = _loops.get(loop)
    if sockets is None:
        sockets = _loops[loop] = _LoopSockets(loop)
    sockets.families.setdefault(family_id, set()).add(socket)
    revocation.add_listener(_heard_of)  # once: a listener already added is not added again
    if sockets.task is None or sockets.task.done():
        sockets.task = loop.create_task(_watch(sockets), name="rotating_tokens: revoked sockets")


def _forget_closed_loops() -> None:
    # A loop that was closed with sockets still registered (a test's, a server's that
    # stopped): its sockets are gone with it.
    for loop in [loop for loop in _loops if loop.is_closed()]:
        _loops.pop(loop, None)


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
    _forget_closed_loops()
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
    """Seconds between two looks at the deny-list: a quarter of
    ``REVOCATION_POLL_INTERVAL``, at least 50 ms. ``refresh`` polls the database only
    once the deny-list is an interval old, so a look that finds it just short of that
    changes nothing; looking at a whole interval's pace could then leave a revocation
    unseen for nearly two. A quarter bounds it to an interval and a quarter, at four
    memory lookups a second and still one query."""
    return max(app_settings.REVOCATION_POLL_INTERVAL.total_seconds() / 4, 0.05)


async def _watch(sockets: _LoopSockets) -> None:
    while sockets.families:
        await asyncio.sleep(poll_interval())
        if not sockets.families:
            break
        try:
            await sync_to_async(_refresh_in_thread)()
        except Exception:  # the database is down: try again next interval
            logger.warning("Could not bring the revocation deny-list up to date.", exc_info=True)
            continue
        _close_on_loop(sockets, {f for f in sockets.families if revocation.is_revoked(f)})
    if _loops.get(sockets.loop) is sockets and not sockets.families:
        with contextlib.suppress(KeyError):
            del _loops[sockets.loop]


def _refresh_in_thread() -> None:
    # Outside any request: nothing else closes this thread's connection when it is too
    # old or broken, as request_started and request_finished do for a request's. Not
    # inside a transaction (a test's), whose connection closing would end it.
    if not any(c.in_atomic_block for c in connections.all(initialized_only=True)):
        close_old_connections()
    revocation.refresh()


def _heard_of(family_ids: frozenset[uuid.UUID]) -> None:
    close_families(family_ids)
