from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

from rotating_tokens import services
from rotating_tokens.exceptions import TokenReused
from rotating_tokens.models import (
    ConvertedToken,
    RefreshToken,
    RevokeReason,
    SimpleJWTCutoff,
    TokenFamily,
)

from .factories import RefreshTokenFactory, TokenFamilyFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, tzinfo=dt_timezone.utc)
DAY = timedelta(days=1)
CLIENT = services.Client(ip_address="192.0.2.7", user_agent="purge-tests/1.0")


def login(at: datetime, user=None) -> services.TokenPair:
    return services.start_family(user or UserFactory(), CLIENT, now=at)


def refresh(pair: services.TokenPair, at: datetime) -> services.TokenPair:
    return services.rotate(pair.refresh, CLIENT, now=at)


def exists(family: TokenFamily) -> bool:
    return TokenFamily.objects.filter(pk=family.pk).exists()


def purge(now: datetime, **kwargs) -> services.PurgeResult:
    return services.purge(now=now, **kwargs)


# Which families go ------------------------------------------------------------------


def test_absolutely_expired_family_is_purged_once_the_retention_has_passed():
    # A family past its absolute expiry whose token (oddly) outlives it: only the
    # absolute expiry makes it over.
    family = TokenFamilyFactory(created_at=T0 - 30 * DAY, expires_at=T0)
    RefreshTokenFactory(family=family, issued_at=T0 - DAY, expires_at=T0 + 30 * DAY)

    assert purge(T0 + 7 * DAY).families == 0
    result = purge(T0 + 7 * DAY + timedelta(seconds=1))

    assert (result.families, result.family_tokens) == (1, 1)
    assert not exists(family)
    assert not RefreshToken.objects.filter(family_id=family.pk).exists()


def test_idle_family_is_purged_once_the_retention_has_passed():
    pair = login(T0)  # one token, expiring at T0 + 14 days; the family lives 30
    idle_since = pair.refresh_expires_at

    assert purge(idle_since + 7 * DAY).families == 0
    assert purge(idle_since + 7 * DAY + timedelta(seconds=1)).families == 1
    assert not exists(pair.family)


def test_revoked_family_is_purged_once_the_retention_has_passed_with_its_whole_chain():
    pair = login(T0)
    for hour in range(1, 4):
        pair = refresh(pair, T0 + timedelta(hours=hour))
    services.revoke_family(pair.family, RevokeReason.LOGOUT, now=T0 + DAY)

    kept = purge(T0 + 8 * DAY)
    result = purge(T0 + 8 * DAY + timedelta(seconds=1))

    assert kept.families == 0
    assert (result.families, result.family_tokens) == (1, 4)
    assert RefreshToken.objects.count() == 0


def test_recently_over_families_keep_every_token():
    revoked = login(T0)
    revoked = refresh(revoked, T0 + DAY)
    services.revoke_family(revoked.family, RevokeReason.REUSE_DETECTED, now=T0 + 20 * DAY)

    result = purge(T0 + 21 * DAY)

    assert result.tokens == 0
    assert RefreshToken.objects.filter(family=revoked.family).count() == 2


def test_retention_setting_and_older_than_override(settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "PURGE_RETENTION": timedelta(days=1)}
    pair = login(T0)
    services.revoke_family(pair.family, RevokeReason.LOGOUT, now=T0)

    assert purge(T0 + timedelta(hours=12)).families == 0
    assert purge(T0 + timedelta(hours=12), older_than=timedelta(0)).families == 1


def test_live_families_are_kept():
    pair = login(T0)
    pair = refresh(pair, T0 + DAY)

    result = purge(T0 + 2 * DAY, older_than=timedelta(0))

    assert result.families == 0
    assert exists(pair.family)


# Tokens of active families -------------------------------------------------------------


def test_used_expired_tokens_of_active_families_go_and_the_chain_still_works():
    first = login(T0)
    second = refresh(first, T0 + 10 * DAY)  # first expires at T0 + 14 days
    third = refresh(second, T0 + 20 * DAY)  # second expires at T0 + 24 days

    result = purge(T0 + 21 * DAY)

    assert (result.families, result.used_tokens) == (0, 1)
    remaining = list(RefreshToken.objects.filter(family=first.family))
    assert len(remaining) == 2
    assert remaining[0].rotated_from_id is None  # its predecessor is gone
    # The live token still rotates, and the kept used token still betrays a replay.
    refresh(third, T0 + 22 * DAY)
    with pytest.raises(TokenReused):
        services.rotate(second.refresh, services.Client("198.51.100.9", "thief"), now=T0 + 22 * DAY)


def test_used_tokens_of_revoked_or_idle_families_stay_within_the_retention():
    revoked = refresh(login(T0), T0 + DAY)
    services.revoke_family(revoked.family, RevokeReason.LOGOUT, now=T0 + 10 * DAY)
    idle = refresh(login(T0), T0 + DAY)  # idle from T0 + 15 days

    result = purge(T0 + 16 * DAY)

    assert result.tokens == 0
    assert RefreshToken.objects.filter(family__in=[revoked.family, idle.family]).count() == 4


# How it runs ---------------------------------------------------------------------------


def make_purgeable(families: int, tokens_each: int = 3) -> None:
    for _ in range(families):
        pair = login(T0)
        for hour in range(1, tokens_each):
            pair = refresh(pair, T0 + timedelta(hours=hour))
        services.revoke_family(pair.family, RevokeReason.LOGOUT, now=T0 + DAY)


def test_dry_run_counts_what_a_purge_deletes_and_deletes_nothing():
    make_purgeable(3)
    live = refresh(login(T0), T0 + 10 * DAY)  # its first token: used, expired at 14 days
    idle = login(T0 - 30 * DAY)

    dry = purge(T0 + 20 * DAY, dry_run=True)
    rows = RefreshToken.objects.count()
    real = purge(T0 + 20 * DAY)

    assert dry == real
    assert (real.families, real.family_tokens, real.used_tokens) == (4, 10, 1)
    assert rows == 12
    assert exists(live.family) and not exists(idle.family)


def test_small_batches_delete_the_same_rows():
    make_purgeable(5)
    seen = []

    result = purge(T0 + 30 * DAY, batch_size=2, progress=lambda r: seen.append(r.families))

    assert (result.families, result.family_tokens) == (5, 15)
    assert seen == [2, 4, 5]
    assert TokenFamily.objects.count() == RefreshToken.objects.count() == 0


@pytest.mark.parametrize("families", [4, 12])
def test_a_batch_costs_the_same_statements_however_many_rows(families):
    """No per-row queries: the statements depend on the number of batches only."""
    from rotating_tokens.models import Revocation, UsedDPoPProof

    make_purgeable(families)
    # Proofs that DPoP tests recorded on a connection of their own (committed, so not
    # rolled back with their test) would add a batch of their own.
    UsedDPoPProof.objects.all().delete()
    Revocation.objects.all().delete()  # the log of make_purgeable's revocations
    connections["default"].queries_log.clear()
    with CaptureQueriesContext(connection) as queries:
        purge(T0 + 30 * DAY, batch_size=100)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]

    assert len(deletes) == 2  # tokens, then families: one batch
    # One batch of families, then for each of the four selections the empty one.
    assert len(queries.captured_queries) == NUMBER_OF_STATEMENTS[connection.vendor]


# BEGIN, SELECT ids, [UPDATE rotated_from on MySQL], DELETE tokens, UPDATE the records of
# converted simplejwt tokens, DELETE families, COMMIT; then BEGIN, SELECT, COMMIT for
# each of the four empty selections, for the two of the simplejwt transition's records
# (outside the transition: all of them), for the one of stale DPoP proofs, and for the
# revocation log (after one SELECT of its newest row, which it keeps).
NUMBER_OF_STATEMENTS = {"sqlite": 7 + 8 * 3, "postgresql": 7 + 8 * 3, "mysql": 8 + 8 * 3}


def test_a_purge_that_finds_its_rows_gone_goes_on():
    """As when another purge runs at the same time: what the other deleted is skipped."""
    make_purgeable(4)

    def other_purge_runs(result: services.PurgeResult) -> None:
        if result.families == 1:
            purge(T0 + 30 * DAY, batch_size=1000)

    result = purge(T0 + 30 * DAY, batch_size=1, progress=other_purge_runs)

    assert result.families == 1
    assert TokenFamily.objects.count() == 0


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_delete_every_row_once():
    if connection.vendor == "sqlite":
        pytest.skip("needs a database server")
    make_purgeable(40, tokens_each=2)
    results: list[services.PurgeResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(purge(T0 + 30 * DAY, batch_size=3))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(r.families for r in results) == 40
    assert sum(r.family_tokens for r in results) == 80
    assert TokenFamily.objects.count() == RefreshToken.objects.count() == 0


def lock_statement() -> str:
    table = connection.ops.quote_name(RefreshToken._meta.db_table)
    return f"SELECT id FROM {table} WHERE id = %s FOR UPDATE"  # noqa: S608


def a_real_deadlock() -> Exception:
    """The error the app gets when the database breaks a deadlock: two connections of
    their own each lock a row, then each asks for the other's."""
    first, second = RefreshTokenFactory().pk, RefreshTokenFactory().pk
    errors: list[Exception] = []
    locked, go = threading.Event(), threading.Event()

    def lock_one_then_the_other(own: int, other: int, *, in_thread: bool) -> None:
        conn = connections.create_connection("default")
        try:
            conn.set_autocommit(False)
            conn.cursor().execute(lock_statement(), [own])
            if in_thread:
                locked.set()
                go.wait(10)
            else:
                locked.wait(10)
                go.set()
                time.sleep(0.3)  # the thread now waits for this row's lock
            conn.cursor().execute(lock_statement(), [other])
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.rollback()  # the loser's locks go, and the winner goes on
            conn.close()

    thread = threading.Thread(
        target=lock_one_then_the_other, args=(first, second), kwargs={"in_thread": True}
    )
    thread.start()
    lock_one_then_the_other(second, first, in_thread=False)
    thread.join()
    forget_tokens(first, second)
    (error,) = errors
    return error


def forget_tokens(*ids: int) -> None:
    """Delete the factory's tokens and their families, which the test does not count."""
    families = list(RefreshToken.objects.filter(pk__in=ids).values_list("family_id", flat=True))
    RefreshToken.objects.filter(pk__in=ids).delete()
    TokenFamily.objects.filter(pk__in=families).delete()


def a_real_lock_timeout() -> Exception:
    short_wait = {
        "postgresql": "SET lock_timeout = '200ms'",
        "mysql": "SET SESSION innodb_lock_wait_timeout = 1",
    }[connection.vendor]
    row = RefreshTokenFactory().pk
    holder, waiter = (connections.create_connection("default") for _ in range(2))
    try:
        holder.set_autocommit(False)
        holder.cursor().execute(lock_statement(), [row])
        waiter.set_autocommit(False)
        waiter.cursor().execute(short_wait)
        try:
            waiter.cursor().execute(lock_statement(), [row])
        except Exception as exc:
            return exc
        raise AssertionError("the lock was not waited for")
    finally:
        for conn in (holder, waiter):
            conn.rollback()
            conn.close()
        forget_tokens(row)


def needs_a_server() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("needs a database server")


def failing_first(calls: list[str], error: Exception, times: int = 1):
    """The real _purge_families_batch, raising ``error`` in its first ``times`` calls."""
    real = services._purge_families_batch

    def batch(*args):
        calls.append("call")
        if len(calls) <= times:
            raise error
        return real(*args)

    return batch


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_and_a_lock_timeout_are_told_apart():
    needs_a_server()

    deadlock, timeout = a_real_deadlock(), a_real_lock_timeout()

    assert isinstance(deadlock, OperationalError) and isinstance(timeout, OperationalError)
    assert services._lost_to_a_deadlock(deadlock)
    assert not services._lost_to_a_deadlock(timeout)


class DriverError(Exception):
    def __init__(self, *args, **codes):
        super().__init__(*args)
        self.__dict__.update(codes)


@pytest.mark.parametrize(
    ("cause", "deadlock"),
    [
        # psycopg2 names the SQLSTATE pgcode (psycopg's sqlstate is tested above).
        (DriverError("deadlock detected", pgcode="40P01"), True),
        (DriverError("could not serialize access", pgcode="40001"), True),
        (DriverError("lock timeout", pgcode="55P03"), False),
        (DriverError(sqlstate="40001"), True),
        (DriverError(1213, "Deadlock found"), True),
        (DriverError(1205, "Lock wait timeout exceeded"), False),
        (None, False),
    ],
)
def test_what_counts_as_a_deadlock_on_each_driver(cause, deadlock):
    error = OperationalError("from the driver")
    error.__cause__ = cause

    assert services._lost_to_a_deadlock(error) is deadlock


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_batch_that_loses_a_deadlock_is_tried_again(monkeypatch, caplog):
    needs_a_server()
    deadlock = a_real_deadlock()
    make_purgeable(4)
    calls: list[str] = []
    monkeypatch.setattr(services, "_purge_families_batch", failing_first(calls, deadlock, 2))

    with caplog.at_level("INFO", logger="rotating_tokens"):
        result = purge(T0 + 30 * DAY, batch_size=10)

    assert (result.families, result.family_tokens) == (4, 12)
    assert TokenFamily.objects.count() == 0
    assert "a batch lost a deadlock; trying it again (2)" in caplog.text


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_purge_that_keeps_losing_deadlocks_gives_up(monkeypatch):
    needs_a_server()
    deadlock = a_real_deadlock()
    make_purgeable(1)
    calls: list[str] = []
    monkeypatch.setattr(
        services, "_purge_families_batch", failing_first(calls, deadlock, times=1000)
    )

    with pytest.raises(OperationalError):
        purge(T0 + 30 * DAY)

    assert len(calls) == services.DEADLOCK_ATTEMPTS
    assert TokenFamily.objects.count() == 1


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_lock_timeout_is_not_tried_again(monkeypatch):
    needs_a_server()
    timeout = a_real_lock_timeout()
    make_purgeable(1)
    calls: list[str] = []
    monkeypatch.setattr(services, "_purge_families_batch", failing_first(calls, timeout))

    with pytest.raises(OperationalError):
        purge(T0 + 30 * DAY)

    assert calls == ["call"]


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_inside_the_callers_transaction_is_the_callers(monkeypatch):
    """The database rolled back the caller's whole transaction: a batch tried again
    in it would run in a transaction that is no longer there."""
    needs_a_server()
    deadlock = a_real_deadlock()
    make_purgeable(1)
    calls: list[str] = []
    monkeypatch.setattr(services, "_purge_families_batch", failing_first(calls, deadlock))

    with pytest.raises(OperationalError), transaction.atomic():
        purge(T0 + 30 * DAY)

    assert calls == ["call"]


# The command -----------------------------------------------------------------------


def test_command_purges_with_time_moved_forward_and_reports_counts():
    make_purgeable(2)
    out = StringIO()

    with time_machine.travel(T0 + 9 * DAY, tick=False):
        call_command("purge_expired_tokens", stdout=out)

    assert out.getvalue().strip() == (
        "Deleted 2 token families over for more than 7 days (with 6 tokens) "
        "and 0 used, expired tokens of active families.\n"
        "Deleted 1 rows of the revocation log no process reads any more."
    )
    assert TokenFamily.objects.count() == 0


def test_command_older_than_zero_and_dry_run():
    make_purgeable(1)
    out = StringIO()

    with time_machine.travel(T0 + 2 * DAY, tick=False):
        call_command("purge_expired_tokens", "--dry-run", "--older-than", "0", stdout=out)

    assert out.getvalue().startswith("Would delete 1 token families over for more than 0 days")
    assert TokenFamily.objects.count() == 1


def test_command_verbosity_two_reports_batches_and_zero_is_silent():
    make_purgeable(3)
    loud, quiet = StringIO(), StringIO()

    with time_machine.travel(T0 + 30 * DAY, tick=False):
        call_command("purge_expired_tokens", "--batch-size", "2", verbosity=2, stdout=loud)
        make_purgeable(1)
        call_command("purge_expired_tokens", verbosity=0, stdout=quiet)

    assert loud.getvalue().count("so far") == 2
    assert quiet.getvalue() == ""
    assert TokenFamily.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "-1"], "--older-than must be a number of days from 0 to 36500."),
        (["--older-than", "nan"], "--older-than must be a number of days from 0 to 36500."),
        (["--older-than", "inf"], "--older-than must be a number of days from 0 to 36500."),
        (["--older-than", "1e12"], "--older-than must be a number of days from 0 to 36500."),
        (["--batch-size", "0"], "--batch-size must be 1 or more."),
        (["--batch-size", "-5"], "--batch-size must be 1 or more."),
    ],
)
def test_command_refuses_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("purge_expired_tokens", *args)


def test_purge_deletes_dpop_proofs_too_old_to_be_replayed():
    from rotating_tokens.models import UsedDPoPProof

    UsedDPoPProof.objects.create(key="a" * 64, expires_at=T0 + DAY)
    UsedDPoPProof.objects.create(key="b" * 64, expires_at=T0 + 3 * DAY)
    purge(T0 + 2 * DAY, batch_size=1)
    # These two only: earlier DPoP tests may have left proofs of their own (committed on
    # a connection of its own, services.proof_is_new).
    left = UsedDPoPProof.objects.filter(key__in=["a" * 64, "b" * 64])
    assert list(left.values_list("key", flat=True)) == ["b" * 64]


# The simplejwt transition's records ------------------------------------------------------


@pytest.fixture
def migrating(settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + 30 * DAY,
    }


def simplejwt_token(user) -> str:
    return str(SimpleJWTRefreshToken.for_user(user))


@pytest.mark.django_db(
    transaction=True
)  # committed, as cron's purge is: the foreign keys are checked
def test_command_purges_converted_families_and_their_old_tokens_stay_spent(migrating):
    user = UserFactory()
    old_tokens = [simplejwt_token(user) for _ in range(2)]
    converted = [services.rotate(raw, CLIENT) for raw in old_tokens]
    for pair in converted:
        services.revoke_family(pair.family, RevokeReason.LOGOUT)
    other = login(timezone.now())  # an ordinary family of the same batch
    services.revoke_family(other.family, RevokeReason.LOGOUT)
    live = login(timezone.now())

    with time_machine.travel(timezone.now() + timedelta(minutes=1), tick=False):
        call_command("purge_expired_tokens", "--older-than", "0", stdout=StringIO())
        assert list(TokenFamily.objects.all()) == [live.family]
        assert list(ConvertedToken.objects.values_list("family", flat=True)) == [None, None]
        for raw in old_tokens:  # presented again, even by the client that converted it
            with pytest.raises(TokenReused):
                services.rotate(raw, CLIENT)
    assert list(TokenFamily.objects.all()) == [live.family]


def test_record_of_a_spent_simplejwt_token_goes_once_the_token_has_expired(migrating, api_client):
    user = UserFactory()
    converted, logged_out = simplejwt_token(user), simplejwt_token(user)
    services.rotate(converted, CLIENT)
    services.logout(logged_out)
    exp = max(ConvertedToken.objects.values_list("expires_at", flat=True))

    assert purge(exp - timedelta(seconds=1)).simplejwt_records == 0
    assert ConvertedToken.objects.count() == 2
    assert purge(exp + timedelta(seconds=1)).simplejwt_records == 2
    assert not ConvertedToken.objects.exists()


def test_record_of_a_spent_simplejwt_token_outlives_simplejwt_leeway(migrating, monkeypatch):
    from rotating_tokens import legacy

    services.rotate(simplejwt_token(UserFactory()), CLIENT)
    exp = ConvertedToken.objects.get().expires_at
    monkeypatch.setattr(legacy.simplejwt_settings, "LEEWAY", 60)  # accepted 60 s past exp

    assert purge(exp + timedelta(seconds=59)).simplejwt_records == 0
    assert purge(exp + timedelta(seconds=61)).simplejwt_records == 1


def test_records_without_an_expiry_and_cutoffs_wait_for_the_end_of_the_transition(migrating):
    user = UserFactory()
    ConvertedToken.objects.create(jti="made-before-0004", converted_at=T0)  # no expires_at
    SimpleJWTCutoff.objects.create(user=user, ended_before=T0)

    assert purge(timezone.now() + 29 * DAY).simplejwt_records == 0
    assert (ConvertedToken.objects.count(), SimpleJWTCutoff.objects.count()) == (1, 1)

    assert purge(timezone.now() + 31 * DAY, dry_run=True).simplejwt_records == 2
    assert purge(timezone.now() + 31 * DAY, batch_size=1).simplejwt_records == 2
    assert not ConvertedToken.objects.exists() and not SimpleJWTCutoff.objects.exists()


def test_command_reports_the_simplejwt_records_it_deleted(migrating):
    services.rotate(simplejwt_token(UserFactory()), CLIENT)
    out = StringIO()
    with time_machine.travel(timezone.now() + 2 * DAY, tick=False):
        call_command("purge_expired_tokens", stdout=out)
    assert "Deleted 1 records of the simplejwt transition" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_records_made_before_migration_0004_are_kept_until_the_transition_is_over(migrating):
    """Migration 0004 keeps the records it finds, linked to their family, with no
    expiry (it was not recorded): the old tokens stay spent until the end."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("rotating_tokens", "0003_dpop")]
    latest = executor.loader.graph.leaf_nodes("rotating_tokens")
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    family = old_apps.get_model("rotating_tokens", "TokenFamily").objects.create(
        user_id=UserFactory().pk, created_at=T0, expires_at=T0 + 30 * DAY
    )
    old_apps.get_model("rotating_tokens", "ConvertedToken").objects.create(
        jti="converted-before-0004", family_id=family.pk, converted_at=T0
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(latest)

    record = ConvertedToken.objects.get()
    assert (record.family_id, record.expires_at, record.logged_out) == (family.pk, None, False)
    assert purge(timezone.now() + 29 * DAY).simplejwt_records == 0
    assert purge(timezone.now() + 31 * DAY).simplejwt_records == 1
