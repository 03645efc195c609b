"""An adversarial review of revocation.py: each test is a way a committed revocation
could have been missed (or a refused family let in) that the review found, and fails
when the rule that closes it is deleted.

"Another process" revokes as in test_revocation.py: the family's row and a log row
committed by someone else, nothing applied to this process's memory or pushed.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from rotating_tokens import revocation, services
from rotating_tokens.models import Revocation, TokenFamily

from .test_revocation import (
    LONG,
    _publish,
    family,
    in_gaps,
    log_row,
    poll_now,
    redis_push,
    revoked_elsewhere,
)

__all__ = ["family", "redis_push"]  # fixtures, used by name

pytestmark = pytest.mark.django_db


@pytest.fixture
def long_interval(settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **LONG}


# Gaps: many numbers at once, more gaps than are kept, start-up ---------------------------


def test_a_large_revocation_that_commits_after_a_later_one_is_not_missed(
    long_interval, monkeypatch, family
):
    # A logout of every session numbers thousands of rows in one transaction; a single
    # logout numbered after them commits first. All of the first are gaps, not only the
    # last MAX_GAPS of them.
    monkeypatch.setattr(revocation, "MAX_GAPS", 3)
    log_row(1)
    poll_now()
    assert revocation.allows_access(family.pk)  # known: answered from memory from now on
    log_row(100)  # rows 2 to 99 are still to commit
    poll_now()
    revoked_elsewhere(family, number=2)  # the first of them
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_a_gap_given_up_for_memory_lets_no_revocation_in_it_through(
    long_interval, monkeypatch, family
):
    monkeypatch.setattr(revocation, "MAX_GAPS", 2)
    assert revocation.allows_access(family.pk)
    for number in (1, 3, 5, 7, 9):  # gaps 2, 4, 6 and 8: the oldest go
        log_row(number)
        poll_now()
    assert not in_gaps(2)
    revoked_elsewhere(family, number=2)  # commits after its gap was given up
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_facts_are_kept_again_once_a_gap_given_up_early_would_have_been(
    long_interval, monkeypatch, family, django_assert_num_queries
):
    monkeypatch.setattr(revocation, "MAX_GAPS", 1)
    for number in (1, 3, 5):
        log_row(number)
        poll_now()
    assert revocation.allows_access(family.pk)
    with django_assert_num_queries(1):  # not kept: its row is read again
        assert revocation.allows_access(family.pk)
    known = revocation._state()
    later = known.distrust_until + 1
    with mock.patch.object(revocation.time, "monotonic", return_value=later):
        known.synced_at = later
        assert revocation.allows_access(family.pk)
        with django_assert_num_queries(0):
            assert revocation.allows_access(family.pk)


def test_at_start_up_a_run_in_flight_below_the_last_rows_is_looked_for(long_interval, family):
    # Row 1 is old; rows 2 to 299 were numbered by a transaction still open, and row 300
    # committed before it when the process starts. Every one of them is a gap.
    Revocation.objects.create(
        id=1, family_id=uuid.uuid4(), revoked_at=timezone.now() - timedelta(days=1)
    )
    log_row(300)
    assert revocation.allows_access(family.pk)  # the first poll; the family known
    revoked_elsewhere(family, number=50)
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_a_jump_in_the_numbering_is_one_gap(long_interval):
    # A sequence set forward (a restore, an ALTER TABLE … AUTO_INCREMENT) costs no
    # loop over every number skipped.
    log_row(1)
    poll_now()
    log_row(1_000_000)
    poll_now()
    assert revocation._state().gaps[0][:2] == (2, 999_999)
    assert len(revocation._state().gaps) == 1


# What the process keeps ---------------------------------------------------------------------


def test_facts_read_again_replace_the_old_ones(long_interval, family, django_assert_num_queries):
    assert revocation.allows_access(family.pk)
    later = time.monotonic() + revocation.gap_lifetime() + 1
    with mock.patch.object(revocation.time, "monotonic", return_value=later):
        revocation._state().synced_at = later
        with django_assert_num_queries(1):  # too old: read again
            assert revocation.allows_access(family.pk)
        with django_assert_num_queries(0):  # and kept
            assert revocation.allows_access(family.pk)


def test_facts_read_again_never_replace_a_denial(long_interval, family):
    assert revocation.allows_access(family.pk)
    known = revocation._state()
    facts = revocation._read_facts(family.pk)
    assert facts is not None
    revocation.announce([family.pk])
    known.keep(family.pk, facts)  # a thread that read before the denial came
    assert not revocation.allows_access(family.pk)


def test_listeners_hear_of_what_a_poll_denied_before_it_failed(
    long_interval, monkeypatch, user, client_info
):
    monkeypatch.setattr(revocation, "POLL_BATCH", 2)
    revocation.refresh()
    families = [services.start_family(user, client_info).family for _ in range(3)]
    for one in families:
        revoked_elsewhere(one)
    heard: list[frozenset] = []
    real = revocation.Q
    calls = []

    def second_query_fails(**lookups):
        if "id__gte" in lookups:
            calls.append(lookups)
            if len(calls) == 2:
                raise ConnectionError("the database went away")
        return real(**lookups)

    revocation.add_listener(heard.append)
    try:
        with (
            mock.patch.object(revocation, "Q", second_query_fails),
            pytest.raises(ConnectionError),
        ):
            poll_now()
        poll_now()
    finally:
        revocation.remove_listener(heard.append)
    assert set().union(*heard) == {one.pk for one in families}


def test_a_forked_child_trusts_nothing_its_parent_knew(long_interval, family):
    assert revocation.allows_access(family.pk)
    parent = revocation._state()
    revocation._forget_after_fork()  # what os.register_at_fork runs in the child
    assert revocation._state() is not parent
    assert revocation._state().high is None  # polls again, from the start


def test_a_fork_while_another_thread_makes_the_state_does_not_lock_the_child():
    held = revocation._known_lock
    held.acquire()  # another thread of the parent, inside _new_state(), at the fork
    try:
        revocation._forget_after_fork()
        assert revocation._known_lock.acquire(blocking=False)
        revocation._known_lock.release()
    finally:
        held.release()


# A poll inside a transaction that reads a snapshot --------------------------------------

needs_server = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="REPEATABLE READ is a setting of the servers"
)


def _repeatable_read() -> object:
    """What Django holds as the connection's isolation level when OPTIONS say so."""
    if connection.vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        return IsolationLevel.REPEATABLE_READ
    return "repeatable read"


@needs_server
@pytest.mark.django_db(transaction=True)
def test_a_poll_inside_a_repeatable_read_transaction_does_not_count_as_one(
    long_interval, user, client_info
):
    family = services.start_family(user, client_info).family
    revocation.refresh()
    assert revocation.allows_access(family.pk)

    def revoke_in_another_connection():
        try:
            revoked_elsewhere(family)
        finally:
            connections.close_all()

    with (
        mock.patch.object(connection, "isolation_level", _repeatable_read(), create=True),
        transaction.atomic(),
    ):
        # As ATOMIC_REQUESTS with OPTIONS["isolation_level"] = "repeatable read": the
        # transaction reads its snapshot from its first query on.
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert TokenFamily.objects.filter(pk=family.pk, revoked_at__isnull=True).exists()
        thread = threading.Thread(target=revoke_in_another_connection)
        thread.start()
        thread.join()
        poll_now()  # committed before this poll started, but not in its snapshot
        assert revocation.allows_access(family.pk)  # this transaction's view
    # Outside, within the interval: a check must not rest on what that poll saw.
    assert not revocation.allows_access(family.pk)


def test_a_poll_asks_for_as_many_gaps_as_are_kept(long_interval, family):
    # Every other number missing (a database that numbers with a step of 2), as many
    # gaps as MAX_GAPS: one query still asks for them all, on every database.
    numbers = range(1, 2 * revocation.MAX_GAPS + 2, 2)
    Revocation.objects.bulk_create(
        [Revocation(id=n, family_id=uuid.uuid4(), revoked_at=timezone.now()) for n in numbers]
    )
    poll_now()
    assert revocation.allows_access(family.pk)
    assert len(revocation._state().gaps) == revocation.MAX_GAPS
    revoked_elsewhere(family, number=2)
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_a_numbering_that_starts_again_below_the_newest_row_seen_is_noticed(long_interval, family):
    # A failover to a replica that had not received rows 11 and 12 (or a restore of an
    # older backup): the new primary numbers the next revocations 11, 12… again.
    log_row(10)
    log_row(11)
    log_row(12)
    poll_now()
    assert revocation.allows_access(family.pk)
    Revocation.objects.filter(id__gt=10).delete()  # lost with the old primary
    revoked_elsewhere(family, number=11)
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_the_newest_row_numbered_again_for_another_family_is_noticed(long_interval, family):
    log_row(10)
    log_row(11)
    poll_now()
    assert revocation.allows_access(family.pk)
    Revocation.objects.filter(id=11).delete()  # lost with the old primary
    revoked_elsewhere(family, number=11)  # the same number, another revocation
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_a_poll_that_finds_the_newest_row_seen_goes_on_from_it(long_interval, family):
    log_row(10)
    poll_now()
    with mock.patch.object(revocation._Known, "_start") as start:
        poll_now()  # nothing new
        log_row(11)
        poll_now()
    assert not start.called
    assert revocation._state().high == 11


def test_in_memory_never_answers_from_facts_too_old_to_use(long_interval, family):
    assert revocation.allows_access(family.pk)
    later = time.monotonic() + revocation.gap_lifetime() + 1
    with mock.patch.object(revocation.time, "monotonic", return_value=later):
        revocation._state().synced_at = later
        assert revocation.allows_access_in_memory(family.pk) is None  # a thread reads it


def test_a_row_found_inside_a_run_keeps_the_numbers_on_both_sides(long_interval, family):
    log_row(1)
    poll_now()
    assert revocation.allows_access(family.pk)
    log_row(100)
    poll_now()  # the run 2-99
    log_row(50)
    poll_now()
    assert [gap[:2] for gap in revocation._state().gaps] == [(2, 49), (51, 99)]
    revoked_elsewhere(family, number=20)
    poll_now()
    assert not revocation.allows_access(family.pk)


# The push ----------------------------------------------------------------------------------


def test_a_message_decoded_to_text_is_read_as_well():
    # A client made with decode_responses=True gives str, not bytes.
    one, two = uuid.uuid4(), uuid.uuid4()
    assert revocation._parse(f"{one},{two}") == {one, two}


def test_listeners_hear_of_a_pushed_revocation(redis_push, family):
    heard: list[frozenset] = []
    revocation.add_listener(heard.append)
    try:
        assert revocation.allows_access(family.pk)
        _publish(redis_push, str(family.pk))
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            time.sleep(0.005)  # the message crosses a socket
            revocation.refresh()
    finally:
        revocation.remove_listener(heard.append)
    assert heard == [frozenset({family.pk})]


def test_a_revocation_is_logged_for_the_other_processes(long_interval, family):
    from rotating_tokens.models import RevokeReason

    assert revocation.allows_access(family.pk)
    with mock.patch.object(revocation, "announce"):  # nothing applied here at once
        services.revoke_family(family, RevokeReason.LOGOUT)
    revocation.reset()  # another process, starting: it learns from the log alone
    revocation.refresh()
    assert revocation.is_revoked(family.pk)
