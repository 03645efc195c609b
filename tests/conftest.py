from __future__ import annotations

import os
from collections.abc import Iterator
from unittest import mock

import pytest
from django.core.cache import caches
from django.db import connection
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from rotating_tokens import revocation
from rotating_tokens.services import Client

from . import redis_servers
from .factories import PASSWORD, UserFactory

# Property-based tests: a modest number of examples and no per-example deadline (the
# CI machine is shared), so the suite stays fast and never flakes on timing.
# HYPOTHESIS_PROFILE=thorough digs deeper.
hypothesis_settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "thorough", parent=hypothesis_settings.get_profile("ci"), max_examples=1000
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test databases, plus the table of the database cache some tests use. Made
    here, once: on MySQL a CREATE TABLE inside a test would commit the test's
    transaction, and its rows would outlive it."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        call_command("createcachetable", DATABASE_CACHE_TABLE, verbosity=0)


DATABASE_CACHE_TABLE = "rotating_tokens_test_cache"


@pytest.fixture(autouse=True)
def _clear_caches():
    # Throttle counts and replay records must not leak between tests, nor what this
    # process knows of families (revocation.py): each test's rows are rolled back, and
    # SQLite numbers the next test's rows again from where the last one started.
    for cache in caches.all():
        cache.clear()
    revocation.reset()
    yield
    revocation.reset()


# How a rotation claims its token and inserts the successor: with the ORM, in a
# transaction (every database), or in one statement (sql.claim_and_insert: PostgreSQL
# only). Tests that take this fixture run once per way the database has.
CLAIMS = ["orm", *(["one statement"] if connection.vendor == "postgresql" else [])]


@pytest.fixture(params=CLAIMS)
def claim(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "orm":
        with mock.patch("rotating_tokens.sql.claim_and_insert", return_value=None):
            yield request.param
    else:
        yield request.param


# How a login inserts the family and its first token: the same two ways
# (sql.insert_family_and_token: PostgreSQL only).
@pytest.fixture(params=CLAIMS)
def login_insert(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "orm":
        with mock.patch("rotating_tokens.sql.insert_family_and_token", return_value=False):
            yield request.param
    else:
        yield request.param


@pytest.fixture
def api_client() -> APIClient:
    return APIClient(HTTP_USER_AGENT="pytest-client/1.0", REMOTE_ADDR="203.0.113.10")


@pytest.fixture
def client_info() -> Client:
    """The Client that ``api_client`` requests are seen as."""
    return Client(ip_address="203.0.113.10", user_agent="pytest-client/1.0")


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture(params=["database", "deny-list"])
def state_store(request, settings):
    """How a family's state is known: read from the database on every check
    (REVOCATION_POLL_INTERVAL 0), or from this process's memory, kept current by the
    poll (revocation.py)."""
    if request.param == "database":
        settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REVOCATION_POLL_INTERVAL": 0}
    return request.param


# Redis servers of a test's own (tests/redis_servers.py), on free loopback ports: never
# the shared one. Skipped where redis-server is not installed.
@pytest.fixture
def redis_server() -> Iterator[redis_servers.RedisServer]:
    try:
        with redis_servers.standalone() as server:
            yield server
    except redis_servers.RedisUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def redis_sentinel() -> Iterator[redis_servers.Sentinel]:
    try:
        with redis_servers.sentinel() as setup:
            yield setup
    except redis_servers.RedisUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def redis_cluster() -> Iterator[redis_servers.Cluster]:
    try:
        with redis_servers.cluster() as setup:
            yield setup
    except redis_servers.RedisUnavailable as error:
        pytest.skip(str(error))
