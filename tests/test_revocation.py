"""What each process knows of revoked families (revocation.py): the rules that keep its
deny-list true, each with a test that fails when the rule is deleted.

"Another process" revokes here as one would: the family's row and a log row committed
by someone else, with nothing applied to this process's memory or pushed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from rotating_tokens import revocation, services
from rotating_tokens.models import Revocation, RevokeReason, TokenFamily

from .factories import UserFactory

pytestmark = pytest.mark.django_db

LONG = {"REVOCATION_POLL_INTERVAL": 3600}  # no poll unless a test forces one


@pytest.fixture
def long_interval(settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **LONG}


@pytest.fixture
def family(user, client_info):
    return services.start_family(user, client_info).family


def revoked_elsewhere(family: TokenFamily, *, number: int | None = None) -> Revocation:
    """What another process's revocation leaves in the database."""
    now = timezone.now()
    TokenFamily.objects.filter(pk=family.pk).update(revoked_at=now, revoke_reason="logout")
    return Revocation.objects.create(id=number, family_id=family.pk, revoked_at=now)


def log_row(number: int) -> Revocation:
    """A log row of some other family (numbering only)."""
    return Revocation.objects.create(id=number, family_id=uuid.uuid4(), revoked_at=timezone.now())


def in_gaps(number: int) -> bool:
    return any(first <= number <= last for first, last, _ in revocation._state().gaps)


def poll_now() -> None:
    """As if the interval had passed since the last poll."""
    revocation._state().synced_at = -float("inf")
    revocation.refresh()


# The poll ------------------------------------------------------------------------------


def test_a_revocation_by_another_process_is_in_force_after_the_next_poll(long_interval, family):
    assert revocation.allows_access(family.pk)  # known now: no more queries for it
    revoked_elsewhere(family)
    assert revocation.allows_access(family.pk)  # not polled yet: the interval is long
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_a_check_polls_when_the_last_poll_is_older_than_the_interval(settings, family):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REVOCATION_POLL_INTERVAL": 1}
    assert revocation.allows_access(family.pk)
    revoked_elsewhere(family)
    known = revocation._state()
    with mock.patch.object(revocation.time, "monotonic", return_value=known.synced_at + 0.5):
        assert revocation.allows_access(family.pk)  # within the interval: memory
    with mock.patch.object(revocation.time, "monotonic", return_value=known.synced_at + 1.0):
        assert not revocation.allows_access(family.pk)  # the interval is over: polled


def test_a_row_that_commits_after_a_later_one_is_not_missed(long_interval, family, user):
    # The database numbered row 11 first, but row 12 committed before it: a poll that
    # only asked for rows after the highest one seen would skip 11 for ever.
    log_row(10)
    poll_now()
    assert revocation._state().high == 10
    assert revocation.allows_access(family.pk)
    log_row(12)
    poll_now()
    assert in_gaps(11)
    revoked_elsewhere(family, number=11)  # commits late
    poll_now()
    assert not revocation.allows_access(family.pk)
    assert not in_gaps(11)


def test_a_gap_is_given_up_once_no_access_token_of_its_time_can_live(long_interval):
    log_row(1)
    poll_now()
    log_row(3)
    poll_now()
    assert in_gaps(2)
    later = time.monotonic() + revocation.gap_lifetime() + 1
    with mock.patch.object(revocation.time, "monotonic", return_value=later):
        poll_now()
    assert not in_gaps(2)


def test_at_start_up_numbers_missing_below_the_newest_row_are_gaps(long_interval, family):
    # Rows 1 and 3 are there when the process starts; 2 may still commit.
    log_row(1)
    log_row(3)
    assert revocation.allows_access(family.pk)  # the first poll
    assert in_gaps(2)
    revoked_elsewhere(family, number=2)
    poll_now()
    assert not revocation.allows_access(family.pk)


def test_at_start_up_recent_revocations_are_loaded(
    long_interval, family, django_assert_num_queries
):
    revoked_elsewhere(family)
    revocation.refresh()  # start-up: the recent rows and the newest number
    assert revocation.is_revoked(family.pk)
    with django_assert_num_queries(0):
        assert not revocation.allows_access(family.pk)


def test_many_rows_are_read_in_batches(long_interval, monkeypatch, user, client_info):
    monkeypatch.setattr(revocation, "POLL_BATCH", 2)
    revocation.refresh()
    families = [services.start_family(user, client_info).family for _ in range(5)]
    for one in families:
        assert revocation.allows_access(one.pk)
        revoked_elsewhere(one)
    poll_now()
    assert not any(revocation.allows_access(one.pk) for one in families)


def test_what_a_poll_read_before_its_next_query_failed_is_kept(
    long_interval, monkeypatch, user, client_info
):
    monkeypatch.setattr(revocation, "POLL_BATCH", 2)
    revocation.refresh()
    families = [services.start_family(user, client_info).family for _ in range(3)]
    for one in families:
        revoked_elsewhere(one)
    real = revocation.Q
    calls = []

    def second_query_fails(**lookups):  # each batch's query starts with Q(id__gte=…)
        if "id__gte" in lookups:
            calls.append(lookups)
            if len(calls) == 2:
                raise ConnectionError("the database went away")
        return real(**lookups)

    with (
        mock.patch.object(revocation, "Q", second_query_fails),
        pytest.raises(ConnectionError),
    ):
        poll_now()
    known = revocation._state()
    assert all(revocation.is_revoked(one.pk) for one in families[:2])
    assert known.high == Revocation.objects.order_by("id")[1].id
    poll_now()
    assert revocation.is_revoked(families[2].pk)


def test_a_poll_reads_the_primary(long_interval, family):
    with mock.patch.object(revocation.router, "db_for_write", return_value="default") as chosen:
        poll_now()
    assert chosen.called


# What the process keeps -------------------------------------------------------------------


def test_facts_read_before_a_revocation_do_not_replace_its_denial(long_interval, family):
    # A thread reads the family (live), another applies its revocation, then the first
    # keeps what it read: the denial must win.
    real = revocation._read_facts

    def read_then_revoked(family_id):
        facts = real(family_id)
        revocation.announce([family_id])
        return facts

    with mock.patch.object(revocation, "_read_facts", read_then_revoked):
        assert revocation.allows_access(family.pk)  # what it read
    assert not revocation.allows_access(family.pk)


def test_the_revoking_process_applies_its_revocation_when_it_commits(
    long_interval, family, django_capture_on_commit_callbacks
):
    assert revocation.allows_access(family.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_family(family, RevokeReason.LOGOUT)
    assert revocation.is_revoked(family.pk)
    assert not revocation.allows_access(family.pk)


def test_inside_the_revoking_transaction_the_family_is_read_again(long_interval, family):
    assert revocation.allows_access(family.pk)
    with contextlib.suppress(RuntimeError), transaction.atomic():
        services.revoke_family(family, RevokeReason.LOGOUT)
        assert not revocation.allows_access(family.pk)  # its own row says revoked
        raise RuntimeError("rolled back")
    assert not revocation.is_revoked(family.pk)  # nothing kept of what rolled back
    assert revocation.allows_access(family.pk)


def test_a_denial_that_expires_reads_the_family_again(long_interval, family):
    assert revocation.allows_access(family.pk)
    revoked_elsewhere(family)
    poll_now()
    later = time.monotonic() + revocation.gap_lifetime() + 1
    with mock.patch.object(revocation.time, "monotonic", return_value=later):
        revocation._state().synced_at = later
        assert not revocation.allows_access(family.pk)  # the row says revoked


def test_facts_dropped_for_memory_keep_every_denial(long_interval, monkeypatch, user, client_info):
    monkeypatch.setattr(revocation, "MAX_FACTS", 3)
    denied = services.start_family(user, client_info).family
    assert revocation.allows_access(denied.pk)
    revoked_elsewhere(denied)
    poll_now()
    for _ in range(5):  # more families than facts are kept
        assert revocation.allows_access(services.start_family(user, client_info).family.pk)
    known = revocation._state()
    assert len([v for v in known.entries.values() if type(v) is tuple]) <= 3
    assert revocation.is_revoked(denied.pk)


def test_facts_are_read_again_once_a_missed_revocation_would_be_over(long_interval, family):
    # Even a revocation whose row the poll gave up on (it committed later than a gap is
    # looked for) is in force once the facts are that old.
    assert revocation.allows_access(family.pk)
    TokenFamily.objects.filter(pk=family.pk).update(revoked_at=timezone.now())  # no log row
    poll_now()
    assert revocation.allows_access(family.pk)
    later = time.monotonic() + revocation.gap_lifetime() + 1
    with mock.patch.object(revocation.time, "monotonic", return_value=later):
        revocation._state().synced_at = later
        assert not revocation.allows_access(family.pk)


def test_an_unknown_family_is_refused_and_not_kept(long_interval):
    unknown = uuid.uuid4()
    assert not revocation.allows_access(unknown)
    assert unknown not in revocation._state().entries
    assert not revocation.allows_access("not-a-uuid")


def test_a_deleted_family_is_refused_by_the_processes_that_knew_it(
    long_interval, user, client_info, django_capture_on_commit_callbacks
):
    other = UserFactory()
    family = services.start_family(other, client_info).family
    assert revocation.allows_access(family.pk)
    revocation.reset()  # as another process would: it knows the family, not the deletion
    assert revocation.allows_access(family.pk)
    known = revocation._state()
    with mock.patch.object(revocation, "announce"):  # nothing applied here at once
        other.delete()
    assert revocation._state() is known
    poll_now()
    assert not revocation.allows_access(family.pk)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_starts_empty(long_interval, family):
    assert revocation.allows_access(family.pk)
    assert revocation._known is not None
    pid = os.fork()
    if pid == 0:  # the child: what the parent knew is gone
        os._exit(0 if revocation._known is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert revocation._known is not None  # the parent keeps its own


def test_the_owner_is_compared_from_memory(long_interval, family, user):
    assert revocation.allows_access(family.pk, user_id=user.pk)
    assert not revocation.allows_access(family.pk, user_id=user.pk + 1)
    assert not revocation.allows_access(family.pk, user_id="")


def test_a_family_past_its_expiry_is_refused_from_memory(long_interval, family):
    assert revocation.allows_access(family.pk)
    assert not revocation.allows_access(family.pk, now=family.expires_at)


# Without a database query (the event loop) ------------------------------------------------


def test_in_memory_answers_only_what_memory_can(settings, family, user):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **LONG}
    assert revocation.allows_access_in_memory(family.pk) is None  # never polled
    assert revocation.allows_access(family.pk)
    assert revocation.allows_access_in_memory(family.pk, user_id=user.pk) is True
    assert revocation.allows_access_in_memory(family.pk, user_id="someone") is False
    assert revocation.allows_access_in_memory(uuid.uuid4()) is None  # not known here
    revocation.announce([family.pk])
    assert revocation.allows_access_in_memory(family.pk) is False
    revocation._state().synced_at = -float("inf")  # the poll is due
    assert revocation.allows_access_in_memory(family.pk) is None
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REVOCATION_POLL_INTERVAL": 0}
    assert revocation.allows_access_in_memory(family.pk) is None


# Listeners -------------------------------------------------------------------------------


def test_listeners_hear_of_each_revocation_once(long_interval, family, user, client_info):
    heard: list[frozenset] = []

    def broken(family_ids):
        raise RuntimeError("one listener fails")

    revocation.add_listener(broken)
    revocation.add_listener(heard.append)
    try:
        revocation.refresh()
        revoked_elsewhere(family)
        poll_now()
        poll_now()  # nothing new
        other = services.start_family(user, client_info).family
        revocation.announce([other.pk])
        revocation.announce([other.pk])  # already denied
    finally:
        revocation.remove_listener(broken)
        revocation.remove_listener(heard.append)
    assert heard == [frozenset({family.pk}), frozenset({other.pk})]


# The push --------------------------------------------------------------------------------


def _redis_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["RedisCache", "django-redis"])
def redis_push(request, settings):
    backend = {
        "RedisCache": "django.core.cache.backends.redis.RedisCache",
        "django-redis": "django_redis.cache.RedisCache",
    }[request.param]
    settings.CACHES = {
        **settings.CACHES,
        "push": {
            "BACKEND": backend,
            "LOCATION": _redis_url(),
            "KEY_PREFIX": f"rt-test-{uuid.uuid4()}",  # a channel of this test's own
        },
    }
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **LONG, "REVOCATION_PUSH": "push"}
    revocation.reset()
    revocation.refresh()  # polls, then subscribes
    known = revocation._state()
    _until_subscribed(known)
    return known


def _until_subscribed(known) -> None:
    client = known.push.path.client
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if client.pubsub_numsub(known.push.path.channel)[0][1] >= 1:
            return
        time.sleep(0.01)
    raise AssertionError("not subscribed")


def _publish(known, message: str) -> None:
    known.push.path.client.publish(known.push.path.channel, message)


def test_a_pushed_revocation_is_in_force_before_the_next_poll(redis_push, family):
    assert revocation.allows_access(family.pk)
    revoked_elsewhere(family)
    _publish(redis_push, str(family.pk))
    deadline = time.monotonic() + 5
    while revocation.allows_access(family.pk) and time.monotonic() < deadline:
        time.sleep(0.005)  # the message crosses a socket
    assert not revocation.allows_access(family.pk)


def test_a_push_only_ever_denies(redis_push, family):
    assert revocation.allows_access(family.pk)
    _publish(redis_push, "not-a-uuid,,\xff")
    time.sleep(0.05)
    assert revocation.allows_access(family.pk)


def test_the_revoking_process_pushes_once_it_commits(
    redis_push, family, django_capture_on_commit_callbacks
):
    listener = redis_push.push.path.client.pubsub()
    listener.subscribe(redis_push.push.path.channel)
    try:
        listener.get_message(timeout=1)  # the confirmation
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.revoke_family(family, RevokeReason.LOGOUT)
        assert listener.get_message(timeout=0.1) is None  # not before the commit
        for callback in callbacks:
            callback()
        message = listener.get_message(timeout=1)
    finally:
        listener.close()
    assert message["data"].decode() == str(family.pk)


def test_the_event_loop_never_waits_for_a_thread_that_polls(redis_push, family):
    assert revocation.allows_access(family.pk)
    _publish(redis_push, str(family.pk))
    time.sleep(0.05)  # the message has arrived
    locked = threading.Event()
    release = threading.Event()

    def poll_in_a_thread():
        with redis_push.lock:
            locked.set()
            release.wait(5)

    thread = threading.Thread(target=poll_in_a_thread)
    thread.start()
    try:
        locked.wait(5)
        assert revocation.allows_access_in_memory(family.pk) is None  # ask a thread
    finally:
        release.set()
        thread.join()
    assert revocation.allows_access_in_memory(family.pk) is False


def test_a_lost_subscription_leaves_the_poll_in_charge(redis_push, family, caplog):
    assert revocation.allows_access(family.pk)
    push = redis_push.push
    broken = push.pubsub
    with (
        mock.patch.object(broken, "get_message", side_effect=ConnectionError("gone")),
        mock.patch.object(push, "_has_news", return_value=True),
    ):
        revocation.refresh()  # notices the failure
    assert push.pubsub is None
    assert "Lost the subscription" in caplog.text
    revoked_elsewhere(family)
    poll_now()
    assert not revocation.allows_access(family.pk)
    # And subscribes again once the retry interval is over.
    with mock.patch.object(revocation.time, "monotonic", return_value=push.retry_at + 1):
        poll_now()
    assert push.pubsub is not None and push.pubsub is not broken
    broken.close()


def test_a_push_that_fails_is_logged_and_the_revocation_stands(
    settings, family, caplog, django_capture_on_commit_callbacks
):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        **LONG,
        "REVOCATION_PUSH": {"URL": "redis://127.0.0.1:1/0"},  # nothing listens there
    }
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_family(family, RevokeReason.LOGOUT)
    assert "Could not push a revocation" in caplog.text
    assert not revocation.allows_access(family.pk)


def test_an_outage_logs_one_traceback_and_says_when_it_is_over(
    settings, user, client_info, caplog, django_capture_on_commit_callbacks
):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        **LONG,
        "REVOCATION_PUSH": {"URL": "redis://127.0.0.1:1/0"},  # nothing listens there
    }
    caplog.set_level("DEBUG", logger="rotating_tokens")
    for _ in range(3):
        family = services.start_family(user, client_info).family
        with django_capture_on_commit_callbacks(execute=True):
            services.revoke_family(family, RevokeReason.LOGOUT)
    pushes = [r for r in caplog.records if "push a revocation" in r.getMessage()]
    assert [(r.levelname, r.exc_info is not None) for r in pushes] == [
        ("WARNING", True),
        ("DEBUG", True),
        ("DEBUG", True),
    ]
    caplog.clear()
    push = revocation._state().push
    with mock.patch.object(push.path.client, "publish", return_value=0):
        push.publish([family.pk])
        push.publish([family.pk])
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "Pushing revocations works again.")
    ]
    # And the next outage is news again.
    caplog.clear()
    push.publish([family.pk])
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_a_subscription_that_keeps_failing_logs_one_traceback(redis_push, family, caplog):
    caplog.set_level("DEBUG", logger="rotating_tokens")
    push = redis_push.push
    client = push.path.client
    push._drop()
    with mock.patch.object(client, "pubsub", side_effect=ConnectionError("refused")):
        for _ in range(3):
            push.retry_at = 0.0
            push.ensure_subscribed()
    assert push.pubsub is None
    levels = [r.levelname for r in caplog.records if "subscribe" in r.getMessage()]
    assert levels == ["WARNING", "DEBUG", "DEBUG"]
    caplog.clear()
    push.retry_at = 0.0
    push.ensure_subscribed()
    assert push.pubsub is not None
    assert [r.getMessage() for r in caplog.records] == [
        "The subscription to revocations works again."
    ]


# The log's purge --------------------------------------------------------------------------


def test_the_purge_keeps_the_newest_row_of_the_log(family):
    for number in (1, 2, 3):
        log_row(number)
    later = timezone.now() + timedelta(days=1)
    result = services.purge(now=later)
    assert result.revocations == 2
    assert list(Revocation.objects.values_list("id", flat=True)) == [3]


def test_the_purge_keeps_rows_a_poll_may_still_read(family):
    log_row(1)
    log_row(2)
    soon = timezone.now() + timedelta(seconds=revocation.gap_lifetime())
    assert services.purge(now=soon).revocations == 0


# The bell (REVOCATION_BELL): one machine's processes, without Redis ----------------------


@pytest.fixture
def bell(settings, tmp_path):
    path = tmp_path / "revocations.bell"
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **LONG, "REVOCATION_BELL": str(path)}
    revocation.reset()  # the bell is read when a process's state is made
    return path


def ring_elsewhere(path) -> None:
    """What another process's ring leaves: a byte more in the file."""
    with open(path, "ab") as file:
        file.write(b".")


def test_a_check_after_the_bell_rang_polls_before_it_answers(bell, family):
    assert revocation.allows_access(family.pk)
    revoked_elsewhere(family)
    assert revocation.allows_access(family.pk)  # the interval is long, nothing rang
    ring_elsewhere(bell)
    assert not revocation.allows_access(family.pk)


def test_a_poll_that_started_before_the_bell_was_heard_does_not_count(bell, family):
    # A poll that another thread started just before this one heard the bell may
    # have read the log before the revocation committed; it finishes afterwards and
    # sets synced_at to when it started.
    assert revocation.allows_access(family.pk)
    known = revocation._state()
    revoked_elsewhere(family)
    ring_elsewhere(bell)
    known.bell.listen(known)
    known.synced_at = known.rang_at - 0.001
    assert not revocation.allows_access(family.pk)


def test_the_event_loops_check_asks_for_the_database_after_the_bell_rang(bell, family):
    assert revocation.allows_access(family.pk)
    assert revocation.allows_access_in_memory(family.pk) is True
    ring_elsewhere(bell)
    assert revocation.allows_access_in_memory(family.pk) is None  # a thread must poll


def test_a_revocation_rings_the_bell_once_it_commits(
    bell, family, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.revoke_family(family, RevokeReason.ADMIN)
    assert not bell.exists()  # not before the commit: a poll then would not find it
    for callback in callbacks:
        callback()
    assert bell.read_bytes() == b"."


def test_the_bell_is_begun_again_when_it_is_full_and_still_heard(bell, family):
    bell.write_bytes(b"." * revocation.BELL_SIZE)
    assert revocation.allows_access(family.pk)  # heard the full file, polled
    revoked_elsewhere(family)
    revocation._Bell().ring()  # another process's ring empties it first
    assert bell.read_bytes() == b"."
    assert not revocation.allows_access(family.pk)


def test_a_bell_that_cannot_ring_is_logged_and_the_revocation_stands(
    settings, tmp_path, family, caplog
):
    path = tmp_path / "gone" / "revocations.bell"
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **LONG, "REVOCATION_BELL": str(path)}
    revocation.reset()
    with caplog.at_level("WARNING", logger="rotating_tokens"), transaction.atomic():
        services.revoke_family(family, RevokeReason.ADMIN)
    # The test's transaction never commits: apply what the commit would have.
    revocation.announce([family.pk])
    assert "Could not ring the revocation bell" in caplog.text
    assert not revocation.allows_access(family.pk)  # applied here all the same


def test_without_a_bell_nothing_is_looked_at(long_interval, family, tmp_path):
    assert revocation._state().bell.path is None
    with mock.patch.object(revocation.os, "stat") as stat:
        assert revocation.allows_access(family.pk)
    stat.assert_not_called()
