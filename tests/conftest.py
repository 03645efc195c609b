from __future__ import annotations

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from rotating_tokens.services import Client

from .factories import PASSWORD, UserFactory


@pytest.fixture(autouse=True)
def _clear_caches():
    # The family-state cache and throttle counts must not leak between tests.
    for cache in caches.all():
        cache.clear()


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
