"""The app's hand-written SQL (rotating_tokens/sql.py), on every database: the values
it writes read back as the ORM wrote them, and the claim is all or nothing."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.apps.registry import Apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rotating_tokens import services, sql
from rotating_tokens.models import RefreshToken, TokenFamily, UsedDPoPProof
from rotating_tokens.services import Client
from rotating_tokens.sql import _foreign_key

from .factories import RefreshTokenFactory, TokenFamilyFactory, UserFactory

ONE_STATEMENT = connection.vendor == "postgresql"
needs_one_statement = pytest.mark.skipif(
    not ONE_STATEMENT, reason="a claim in one statement is PostgreSQL's"
)


def _successor_of(token: RefreshToken, client: Client, **overrides) -> RefreshToken:
    successor, _ = services._new_token(
        token.family, client, timezone.now(), rotated_from=token, parent_secret="s" * 43
    )
    for name, value in overrides.items():
        setattr(successor, name, value)
    return successor


def _columns(token: RefreshToken) -> dict:
    return {
        field.attname: getattr(token, field.attname) for field in RefreshToken._meta.concrete_fields
    }


def _committed_tokens() -> int:
    """How many refresh tokens another connection sees: only what is committed."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            table = other.ops.quote_name(RefreshToken._meta.db_table)
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
            (count,) = cursor.fetchone()
            return int(count)
    finally:
        other.close()


# The token a refresh presents ---------------------------------------------------------


def _loaded(instance) -> dict:
    """The instance's column values, each with its type."""
    return {
        field.attname: (getattr(instance, field.attname), type(getattr(instance, field.attname)))
        for field in type(instance)._meta.concrete_fields
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "columns",
    [
        {},
        {
            "token": {"used_at": timezone.now(), "sealed": b"\x00\xffsealed", "ip_address": None},
            "family": {
                "ip_address": "2001:db8::7",
                "user_agent": "Mozilla/5.0 (Ünïcødé; ☃) 🚀",
                "revoked_at": timezone.now(),
                "revoke_reason": "logout",
                "dpop_jkt": "j" * 43,
            },
            "user": {"is_active": False, "last_login": timezone.now()},
        },
    ],
    ids=["fresh", "every column set"],
)
def test_token_lookup_loads_what_the_orm_loads(columns, django_assert_num_queries):
    user = UserFactory(**columns.get("user", {}))
    family = TokenFamilyFactory(user=user, **columns.get("family", {}))
    token = RefreshTokenFactory(family=family, **columns.get("token", {}))
    orm = RefreshToken.objects.select_related("family__user").get(lookup_key=token.lookup_key)

    with django_assert_num_queries(1):
        found = sql.token_with_family_and_user(token.lookup_key, using="default")
        loaded = [found, found.family, found.family.user]

    for ours, theirs in zip(loaded, [orm, orm.family, orm.family.user], strict=True):
        assert type(ours) is type(theirs)
        assert _loaded(ours) == _loaded(theirs)
        assert (ours._state.adding, ours._state.db) == (False, "default")


@pytest.mark.django_db
def test_token_lookup_of_an_unknown_key_finds_nothing():
    RefreshTokenFactory()
    assert sql.token_with_family_and_user("k" * 16, using="default") is None


@pytest.mark.django_db
def test_token_lookup_leaves_a_user_model_on_several_tables_to_the_orm(
    django_assert_num_queries,
):
    token = RefreshTokenFactory()
    # As for a user model with multi-table inheritance, which one SELECT of its own
    # table would not load.
    with (
        mock.patch.object(sql, "_token_lookup", return_value=None),
        django_assert_num_queries(1),
    ):
        found = sql.token_with_family_and_user(token.lookup_key, using="default")
        assert found.family.user == token.family.user
    assert found == token


def test_a_user_model_on_several_tables_is_seen():
    user_model = get_user_model()

    class Customer(user_model):  # multi-table inheritance, in a registry of its own
        class Meta:
            app_label = "tests"
            apps = Apps()

    with mock.patch.object(_foreign_key(TokenFamily, "user"), "related_model", Customer):
        assert sql._token_lookup(connection) is None


# A login's family and first token ---------------------------------------------------------


def _new_family(client: Client) -> tuple[TokenFamily, RefreshToken]:
    now = timezone.now()
    family = TokenFamily(
        user=UserFactory(),
        created_at=now,
        expires_at=now + timedelta(days=30),
        ip_address=client.ip_address,
        user_agent=client.user_agent,
        dpop_jkt="j" * 43,
    )
    token, _ = services._new_token(family, client, now)
    return family, token


@pytest.mark.django_db
@pytest.mark.parametrize(
    "client",
    [Client("2001:db8::7", "Mozilla/5.0 (Ünïcødé; ☃) 🚀"), Client(None, "")],
    ids=["ipv6 and unicode", "no address"],
)
def test_insert_family_and_token_writes_what_the_orm_would(client):
    family, token = _new_family(client)

    inserted = sql.insert_family_and_token(family, token, using="default")

    if not ONE_STATEMENT:
        assert inserted is False  # the caller uses the ORM
        assert not TokenFamily.objects.exists()
        return
    assert inserted is True
    assert (family._state.adding, token._state.adding) == (False, False)
    stored_family = TokenFamily.objects.get(pk=family.pk)
    assert {
        f.attname: getattr(stored_family, f.attname) for f in TokenFamily._meta.concrete_fields
    } == {f.attname: getattr(family, f.attname) for f in TokenFamily._meta.concrete_fields}
    assert _columns(RefreshToken.objects.get(pk=token.pk)) == _columns(token)


@needs_one_statement
@pytest.mark.django_db(transaction=True)
def test_insert_family_and_token_is_one_statement_that_commits(client_info):
    family, token = _new_family(client_info)

    with CaptureQueriesContext(connection) as queries:
        assert sql.insert_family_and_token(family, token, using="default")

    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["WITH"]
    assert _committed_tokens() == 1


@needs_one_statement
@pytest.mark.django_db
def test_a_failed_token_insert_leaves_no_family(client_info):
    taken = RefreshTokenFactory()
    family, token = _new_family(client_info)
    token.lookup_key = taken.lookup_key  # the database refuses the token's INSERT

    with transaction.atomic(), pytest.raises(IntegrityError):
        sql.insert_family_and_token(family, token, using="default")

    assert not TokenFamily.objects.filter(pk=family.pk).exists()


# The claim ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "client",
    [
        Client("203.0.113.10", "pytest-client/1.0"),
        Client("2001:db8::7", "Mozilla/5.0 (Ünïcødé; ☃) 🚀"),
        Client("::ffff:192.0.2.1", ""),
        Client(None, "x" * 512),
    ],
    ids=["ipv4", "ipv6 and unicode", "ipv4-mapped", "no address"],
)
def test_claim_and_insert_writes_what_the_orm_would(client):
    token = RefreshTokenFactory()
    successor = _successor_of(token, client)
    now = timezone.now()

    claimed = sql.claim_and_insert(token, successor, now=now, using="default")

    if not ONE_STATEMENT:
        assert claimed is None  # the caller uses the ORM
        assert RefreshToken.objects.count() == 1
        token.refresh_from_db()
        assert token.used_at is None
        return
    assert claimed is True
    assert successor.pk is not None
    assert (successor._state.adding, successor._state.db) == (False, "default")
    stored = RefreshToken.objects.get(pk=successor.pk)
    expected = _columns(successor)
    expected["sealed"] = bytes(expected["sealed"])
    assert {**_columns(stored), "sealed": bytes(stored.sealed)} == expected
    token.refresh_from_db()
    assert (token.used_at, token.sealed) == (now, None)


@needs_one_statement
@pytest.mark.django_db
def test_claim_of_a_used_token_claims_and_inserts_nothing(client_info):
    used_at = timezone.now() - timedelta(seconds=3)
    token = RefreshTokenFactory(used_at=used_at, sealed=b"kept")

    claimed = sql.claim_and_insert(
        token, _successor_of(token, client_info), now=timezone.now(), using="default"
    )

    assert claimed is False
    assert RefreshToken.objects.count() == 1
    token.refresh_from_db()
    assert (token.used_at, bytes(token.sealed)) == (used_at, b"kept")


@needs_one_statement
@pytest.mark.django_db(transaction=True)
def test_claim_outside_a_transaction_is_one_statement_that_commits(client_info):
    token = RefreshTokenFactory()
    successor = _successor_of(token, client_info)

    with CaptureQueriesContext(connection) as queries:
        assert sql.claim_and_insert(token, successor, now=timezone.now(), using="default")

    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["WITH"]
    assert _committed_tokens() == 2


@needs_one_statement
@pytest.mark.django_db
def test_failed_claim_inside_a_transaction_leaves_it_usable(client_info):
    token = RefreshTokenFactory()
    # The successor's lookup key is taken: the INSERT fails after the UPDATE ran.
    successor = _successor_of(token, client_info, lookup_key=token.lookup_key)

    with transaction.atomic():
        with pytest.raises(IntegrityError):
            sql.claim_and_insert(token, successor, now=timezone.now(), using="default")
        token.refresh_from_db()  # PostgreSQL refuses any statement in a failed transaction

    assert token.used_at is None
    assert RefreshToken.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_insert_used_proof_records_a_proof_once():
    expires_at = timezone.now() + timedelta(seconds=65)
    own = connections.create_connection("default")
    try:
        sql.insert_used_proof(own, "k" * 64, expires_at)
        own.commit()
        with pytest.raises(IntegrityError):
            sql.insert_used_proof(own, "k" * 64, expires_at)
    finally:
        own.close()

    # Only this key: DPoP tests that ran before in a transaction of their own recorded
    # their proofs on a connection of its own, committed (services.proof_is_new).
    (proof,) = UsedDPoPProof.objects.filter(key="k" * 64)
    assert proof.expires_at == expires_at
