"""Ways to make the database fail in the middle of a rotation, on every path.

A rotation writes the successor with the ORM (a transaction: UPDATE, then INSERT) or,
on PostgreSQL, with one statement that claims and inserts (``sql.claim_and_insert``);
these reach both, so no test depends on which one ran.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any
from unittest import mock

from django.db import OperationalError, connection

from rotating_tokens import crypto
from rotating_tokens.conf import app_settings
from rotating_tokens.models import RefreshToken


@contextlib.contextmanager
def failing_successor_insert(failure: Exception) -> Iterator[None]:
    """Raise ``failure`` instead of running the statement that inserts a refresh token:
    the successor's INSERT, after the claiming UPDATE, in the ORM's transaction; the
    whole claim-and-insert statement on PostgreSQL."""
    with failing_statements(successor_insert(), failure, times=sys.maxsize):
        yield


def a_deadlock() -> OperationalError:
    """What Django raises when MySQL or MariaDB breaks a deadlock by rolling back this
    connection's transaction: the driver's error 1213 as its cause."""
    error = OperationalError("Deadlock found when trying to get lock; try restarting transaction")
    error.__cause__ = Exception(1213, "Deadlock found when trying to get lock")
    return error


@contextlib.contextmanager
def failing_statements(marker: str, failure: Exception, times: int) -> Iterator[list[str]]:
    """Raise ``failure`` instead of running the first ``times`` statements that
    contain ``marker`` (the rest run); yields the statements it refused."""
    refused: list[str] = []

    def fail_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if marker in sql and len(refused) < times:
            refused.append(sql)
            raise failure
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_first):
        yield refused


def successor_insert() -> str:
    """What the statement that inserts a refresh token contains: the successor's
    INSERT in the ORM's transaction, the claim-and-insert statement on PostgreSQL."""
    return f"INSERT INTO {connection.ops.quote_name(RefreshToken._meta.db_table)} "


@contextlib.contextmanager
def next_lookup_key(lookup_key: str) -> Iterator[None]:
    """The tokens made meanwhile get ``lookup_key`` (and random secrets). A successor
    whose key is taken makes the database itself refuse the successor's INSERT, after
    the claim ran in the same transaction or statement."""

    def make_token() -> tuple[str, crypto.ParsedToken]:
        secret = crypto.make_token()[1].secret
        raw = f"{app_settings.TOKEN_PREFIX}{lookup_key}{secret}"
        return raw, crypto.ParsedToken(lookup_key, secret)

    with mock.patch("rotating_tokens.services.make_token", make_token):
        yield
