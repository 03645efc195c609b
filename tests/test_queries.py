"""SQL statements per login and per refresh, transaction control included.

Measured on a real transaction (``transactional_db``), so BEGIN and COMMIT are counted
as Django logs them. Run with ``-s`` to see the statements.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rotating_tokens import services

pytestmark = pytest.mark.django_db(transaction=True)

# A refresh: the token with its family and user, then the claim and the successor.
# PostgreSQL claims and inserts in one statement, in autocommit (sql.claim_and_insert);
# elsewhere the ORM's UPDATE and INSERT run in a transaction.
REFRESH_STATEMENTS = {"postgresql": ["SELECT", "WITH"]}
PORTABLE_REFRESH_STATEMENTS = ["SELECT", "BEGIN", "UPDATE", "INSERT", "COMMIT"]
# A login: the user, the family and its first token, then the last_login UPDATE (Django's
# user_logged_in). PostgreSQL inserts both in one statement (sql.insert_family_and_token).
LOGIN_STATEMENTS = {"postgresql": ["SELECT", "WITH", "UPDATE"]}
PORTABLE_LOGIN_STATEMENTS = ["SELECT", "BEGIN", "INSERT", "INSERT", "COMMIT", "UPDATE"]


def _report(name: str, queries: CaptureQueriesContext) -> None:
    print(f"\n{name} on {connection.vendor}: {len(queries)} statements")
    for query in queries.captured_queries:
        print("   ", query["sql"][:120])


def test_login_statements(api_client, user, password):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(
            "/api/auth/token/", {"username": user.username, "password": password}, format="json"
        )
    assert response.status_code == 200
    _report("login", queries)
    expected = LOGIN_STATEMENTS.get(connection.vendor, PORTABLE_LOGIN_STATEMENTS)
    assert [query["sql"].split()[0] for query in queries.captured_queries] == expected


def test_refresh_statements(api_client, user, client_info):
    pair = services.start_family(user, client_info)
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(
            "/api/auth/token/refresh/", {"refresh": pair.refresh}, format="json"
        )
    assert response.status_code == 200
    _report("refresh", queries)
    expected = REFRESH_STATEMENTS.get(connection.vendor, PORTABLE_REFRESH_STATEMENTS)
    assert [query["sql"].split()[0] for query in queries.captured_queries] == expected


def test_grace_retry_statements(api_client, user, client_info):
    pair = services.start_family(user, client_info)
    api_client.post("/api/auth/token/refresh/", {"refresh": pair.refresh}, format="json")
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(
            "/api/auth/token/refresh/", {"refresh": pair.refresh}, format="json"
        )
    assert response.status_code == 200
    _report("grace retry", queries)
    # The token with its family and user, then its successor: no write, no transaction.
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SELECT", "SELECT"]


def test_malformed_refresh_costs_no_statement(api_client):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(
            "/api/auth/token/refresh/", {"refresh": "rtok_nope"}, format="json"
        )
    assert response.status_code == 401
    assert len(queries) == 0
