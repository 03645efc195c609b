"""Every SQL statement of the app that is written by hand, and why the ORM's would not do.

Table and column names come from the models' ``_meta``, quoted by the backend; every
value is a parameter, converted by its model field as the ORM converts it (UUIDs,
datetimes, IP addresses and bytes come out right on every backend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

from django.db import connections, models, transaction

from .models import RefreshToken, TokenFamily, UsedDPoPProof

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.expressions import Col

T = TypeVar("T")


# The token a refresh presents ----------------------------------------------------------


def token_with_family_and_user(lookup_key: str, *, using: str) -> RefreshToken | None:
    """The token with this lookup key, with its family and the family's user loaded, or
    None: what ``select_related("family__user").filter(lookup_key=...)`` finds, with
    the same one SELECT.

    The statement is written once per connection instead of being built by the ORM
    on every call: that took 0.4-0.55 ms of Python from every refresh (measured
    in-process: SQLite 1.88 to 1.41 ms a refresh, PostgreSQL 2.41 to 1.87, MariaDB
    2.87 to 2.46). Values go through the converters the ORM applies, and rows become
    instances through ``Model.from_db``, as the ORM's do.
    """
    connection = connections[using]
    lookup = _once_per_connection(connection, _token_lookup)
    if lookup is None:  # a user model spread over several tables: the ORM joins them
        tokens = RefreshToken.objects.using(using).select_related("family__user")
        return next(iter(tokens.filter(lookup_key=lookup_key).order_by()[:1]), None)
    with connection.cursor() as cursor:
        cursor.execute(lookup.statement, [lookup_key])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, converters, column in lookup.converters:
        for convert in converters:
            values[index] = convert(values[index], column, connection)
    token_names, family_names, user_names = lookup.attnames
    family_at, user_at = len(token_names), len(token_names) + len(family_names)
    token = RefreshToken.from_db(using, token_names, values[:family_at])
    family = TokenFamily.from_db(using, family_names, values[family_at:user_at])
    user = lookup.user_model.from_db(using, user_names, values[user_at:])
    family.user = user  # type: ignore[assignment]  # any AUTH_USER_MODEL; the stubs assume auth.User
    token.family = family
    return token


@dataclass(frozen=True)
class _Lookup:
    statement: str
    user_model: type[models.Model]
    # The attnames of the concrete fields of the token, the family and the user, whose
    # columns the statement selects in that order.
    attnames: tuple[list[str], list[str], list[str]]
    # (position in the row, the ORM's converters for that column, the column)
    converters: list[tuple[int, list[Callable[..., Any]], Col]]


def _token_lookup(connection: BaseDatabaseWrapper) -> _Lookup | None:
    family_key, user_key = _foreign_key(RefreshToken, "family"), _foreign_key(TokenFamily, "user")
    user_model: type[models.Model] = user_key.related_model
    if user_model._meta.concrete_model._meta.parents:  # type: ignore[union-attr]
        return None  # multi-table inheritance
    columns: list[str] = []
    converters: list[tuple[int, list[Callable[..., Any]], Col]] = []
    for model, alias in ((RefreshToken, "t"), (TokenFamily, "f"), (user_model, "u")):
        for field in model._meta.concrete_fields:
            column = field.get_col(alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((len(columns), found, column))
            columns.append(f"{alias}.{_column(connection, field)}")
    quote = connection.ops.quote_name
    lookup_key = _column(connection, _field(RefreshToken, "lookup_key"))
    family_id, user_id = _column(connection, family_key), _column(connection, user_key)
    family_pk = _column(connection, family_key.target_field)
    user_pk = _column(connection, user_key.target_field)
    statement = (
        f"SELECT {', '.join(columns)} "  # noqa: S608  (names from _meta, quoted; values bound)
        f"FROM {quote(RefreshToken._meta.db_table)} t "
        f"INNER JOIN {quote(TokenFamily._meta.db_table)} f ON f.{family_pk} = t.{family_id} "
        f"INNER JOIN {quote(user_model._meta.db_table)} u ON u.{user_pk} = f.{user_id} "
        f"WHERE t.{lookup_key} = %s"
    )
    token_names, family_names, user_names = (
        [field.attname for field in model._meta.concrete_fields]
        for model in (RefreshToken, TokenFamily, user_model)
    )
    return _Lookup(statement, user_model, (token_names, family_names, user_names), converters)


# Login ---------------------------------------------------------------------------------------


def insert_family_and_token(family: TokenFamily, token: RefreshToken, *, using: str) -> bool:
    """Insert a new family and its first refresh token: both or neither. Returns False
    on a database that cannot do it in one statement (the caller then saves both in a
    transaction, with the ORM).

    PostgreSQL only, with a data-modifying CTE, committed on its own: one round trip
    where the ORM's transaction takes four (BEGIN, two INSERTs, COMMIT).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    statement, family_fields, token_fields = _once_per_connection(
        connection, _family_and_token_statement
    )
    params = [
        *(f.get_db_prep_save(getattr(family, f.attname), connection) for f in family_fields),
        *(f.get_db_prep_save(getattr(token, f.attname), connection) for f in token_fields),
    ]
    row = _execute_returning(connection, using, statement, params)
    assert row is not None  # an INSERT that fails raises
    token.pk = row[0]
    for instance in (family, token):
        instance._state.adding, instance._state.db = False, using
    return True


def _family_and_token_statement(
    connection: BaseDatabaseWrapper,
) -> tuple[str, list[models.Field[Any, Any]], list[models.Field[Any, Any]]]:
    """The statement, and the fields of the family and of the token whose values it
    inserts, in order: what ``save()`` would insert (the family's id is made in
    Python, the token's by the database)."""
    quote = connection.ops.quote_name
    family_fields = list(TokenFamily._meta.local_concrete_fields)
    token_id = _field(RefreshToken, "id")
    token_fields = [f for f in RefreshToken._meta.local_concrete_fields if f is not token_id]
    family_pk = _column(connection, _field(TokenFamily, "id"))
    statement = (
        f"WITH family AS ("  # noqa: S608  (names from _meta, quoted; values bound)
        f"INSERT INTO {quote(TokenFamily._meta.db_table)} "
        f"({', '.join(_column(connection, f) for f in family_fields)}) "
        f"VALUES ({', '.join(['%s'] * len(family_fields))}) RETURNING {family_pk}) "
        f"INSERT INTO {quote(RefreshToken._meta.db_table)} "
        f"({', '.join(_column(connection, f) for f in token_fields)}) "
        f"SELECT {', '.join(['%s'] * len(token_fields))} FROM family "
        f"RETURNING {_column(connection, token_id)}"
    )
    return statement, family_fields, token_fields


# Rotation ----------------------------------------------------------------------------------


def claim_and_insert(
    token: RefreshToken, successor: RefreshToken, *, now: datetime, using: str
) -> bool | None:
    """Claim ``token`` (mark it used at ``now`` and erase its ``sealed``, unless it is
    used already) and, if that claimed it, insert ``successor``: both or neither.
    Returns whether it was claimed, or None on a database that cannot do it in one
    statement (the caller then does it in a transaction, with the ORM).

    PostgreSQL only, with a data-modifying CTE: one round trip where the ORM's
    transaction takes four (BEGIN, UPDATE, INSERT, COMMIT). The UPDATE is the claim
    the ORM path makes: of N statements claiming one token at once, the first locks
    the row and the others wait for it, re-check ``used_at IS NULL`` against the
    committed row, match nothing, and so insert nothing.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    statement, inserted = _once_per_connection(connection, _claim_and_insert_statement)
    params = [
        _field(RefreshToken, "used_at").get_db_prep_save(now, connection),
        _field(RefreshToken, "id").get_db_prep_save(token.pk, connection),
        *(
            field.get_db_prep_save(getattr(successor, field.attname), connection)
            for field in inserted
        ),
    ]
    row = _execute_returning(connection, using, statement, params)
    if row is None:
        return False
    successor.pk = row[0]
    successor._state.adding, successor._state.db = False, using
    return True


def _claim_and_insert_statement(
    connection: BaseDatabaseWrapper,
) -> tuple[str, list[models.Field[Any, Any]]]:
    """The statement, and the fields whose values it inserts, in order."""
    id_field = _field(RefreshToken, "id")
    table = connection.ops.quote_name(RefreshToken._meta.db_table)
    pk = _column(connection, id_field)
    used_at = _column(connection, _field(RefreshToken, "used_at"))
    sealed = _column(connection, _field(RefreshToken, "sealed"))
    # What Model.save() would insert: every column but the id the database assigns.
    inserted = [
        field for field in RefreshToken._meta.local_concrete_fields if field is not id_field
    ]
    columns = ", ".join(_column(connection, field) for field in inserted)
    values = ", ".join(["%s"] * len(inserted))
    statement = (
        f"WITH claimed AS ("  # noqa: S608  (names from _meta, quoted; values bound)
        f"UPDATE {table} SET {used_at} = %s, {sealed} = NULL "
        f"WHERE {pk} = %s AND {used_at} IS NULL RETURNING {pk}) "
        f"INSERT INTO {table} ({columns}) SELECT {values} FROM claimed RETURNING {pk}"
    )
    return statement, inserted


def _execute_returning(
    connection: BaseDatabaseWrapper, using: str, statement: str, params: list[Any]
) -> tuple[Any, ...] | None:
    """Run one statement and return its first row. Outside a transaction it commits
    on its own (autocommit): no BEGIN and COMMIT to wait for. Inside the caller's
    transaction it runs in a savepoint, as a nested ``atomic`` would, so a failure
    leaves that transaction usable."""
    if not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchone()
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


def insert_used_proof(connection: BaseDatabaseWrapper, key: str, expires_at: datetime) -> None:
    """Record a used DPoP proof on ``connection``, a connection of the caller's own,
    outside the request's transaction (see ``services.proof_is_new``): the ORM only
    speaks through the connections Django manages. Raises IntegrityError if the
    proof is recorded already."""
    key_field = _field(UsedDPoPProof, "key")
    expires_field = _field(UsedDPoPProof, "expires_at")
    table = connection.ops.quote_name(UsedDPoPProof._meta.db_table)
    columns = f"{_column(connection, key_field)}, {_column(connection, expires_field)}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES (%s, %s)",  # noqa: S608  (as above)
            [
                key_field.get_db_prep_save(key, connection),
                expires_field.get_db_prep_save(expires_at, connection),
            ],
        )


# Statements are written once per connection (a connection is one thread's, and its
# backend decides quoting and converters); the models do not change while a process runs.
_prepared: WeakKeyDictionary[BaseDatabaseWrapper, dict[Callable[..., Any], Any]] = (
    WeakKeyDictionary()
)


def _once_per_connection(
    connection: BaseDatabaseWrapper, prepare: Callable[[BaseDatabaseWrapper], T]
) -> T:
    prepared = _prepared.setdefault(connection, {})
    if prepare not in prepared:
        prepared[prepare] = prepare(connection)
    return prepared[prepare]


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column, not the far end of a relation
    return field


def _foreign_key(model: type[models.Model], name: str) -> models.ForeignKey[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.ForeignKey)
    return field


def _column(connection: BaseDatabaseWrapper, field: models.Field[Any, Any]) -> str:
    return connection.ops.quote_name(field.column or field.attname)
