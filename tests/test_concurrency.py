"""Many threads, each with its own database connection, present the same unused refresh
token at the same moment. Exactly one of them may rotate it.

Needs real row locks: PostgreSQL or MariaDB (DATABASE_URL). SQLite serialises writers.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from rotating_tokens import services, signals
from rotating_tokens.exceptions import TokenError
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily
from rotating_tokens.services import Client

THREADS = 20

pytestmark = [
    pytest.mark.server_db,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"]
        not in ("django.db.backends.postgresql", "django.db.backends.mysql"),
        reason="needs the row locks of PostgreSQL or MariaDB (DATABASE_URL)",
    ),
]


def _race(raw: str, clients: list[Client], proofs: list | None = None) -> list[str]:
    """Rotate ``raw`` from one thread per client, all released at once. Each result is
    the new refresh token or the error code."""
    barrier = threading.Barrier(len(clients))
    results: list[str] = [""] * len(clients)

    def run(i: int) -> None:
        try:
            barrier.wait()
            dpop = proofs[i] if proofs else None
            results[i] = services.rotate(raw, clients[i], dpop=dpop).refresh
        except TokenError as exc:
            results[i] = exc.code
        except Exception as exc:  # reported by the assertions, not lost in the thread
            results[i] = f"error: {exc!r}"
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def login(user, client_info):
    return services.start_family(user, client_info)


def _successors(login: services.TokenPair) -> int:
    return RefreshToken.objects.filter(family=login.family, rotated_from__isnull=False).count()


@pytest.mark.usefixtures("claim")
@override_settings(ROTATING_TOKENS={"REUSE_GRACE_PERIOD": timedelta(0)})
def test_simultaneous_refreshes_without_grace_rotate_once_and_kill_the_family(login, client_info):
    alerts = []

    def receiver(**kwargs):
        alerts.append(kwargs["family"].pk)

    signals.token_reuse_detected.connect(receiver, weak=False)
    try:
        results = _race(login.refresh, [client_info] * THREADS)
    finally:
        signals.token_reuse_detected.disconnect(receiver)
    winners = [r for r in results if r.startswith("rtok_")]
    assert len(winners) == 1, results
    assert set(results) - set(winners) <= {"token_reused", "token_revoked"}, results
    assert "token_reused" in results
    assert _successors(login) == 1
    family = TokenFamily.objects.get()
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED
    assert alerts == [family.pk]  # one alert, however many replays raced


@pytest.mark.usefixtures("claim")
def test_simultaneous_refreshes_from_one_client_in_grace_all_get_the_same_successor(
    login, client_info
):
    results = _race(login.refresh, [client_info] * THREADS)
    assert len(set(results)) == 1, results
    assert results[0].startswith("rtok_")
    assert _successors(login) == 1
    assert TokenFamily.objects.get().revoked_at is None
    services.rotate(results[0], client_info)


@pytest.mark.usefixtures("claim")
def test_simultaneous_refreshes_from_many_clients_rotate_once(login):
    clients = [Client(f"198.51.100.{i + 1}", "pytest-client/1.0") for i in range(THREADS)]
    results = _race(login.refresh, clients)
    winners = [r for r in results if r.startswith("rtok_")]
    assert len(winners) == 1, results
    assert set(results) - set(winners) <= {"token_reused", "token_revoked"}, results
    assert _successors(login) == 1
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


def test_simultaneous_presentations_of_a_simplejwt_token_convert_it_once(user, settings):
    from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

    from rotating_tokens.models import ConvertedToken

    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
    }
    simple = str(SimpleJWTRefreshToken.for_user(user))
    # Each from another address: a presentation by the same client inside the grace
    # period would be a retry, answered with the same pair (below).
    clients = [Client(f"198.51.100.{i + 1}", "pytest-client/1.0") for i in range(THREADS)]
    results = _race(simple, clients)
    winners = [r for r in results if r.startswith("rtok_")]
    assert len(winners) == 1, results
    assert set(results) - set(winners) == {"token_reused"}, results
    assert ConvertedToken.objects.count() == 1
    family = TokenFamily.objects.get()
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED


def test_simultaneous_presentations_of_a_simplejwt_token_by_one_client_get_one_pair(user, settings):
    from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
    }
    simple = str(SimpleJWTRefreshToken.for_user(user))
    results = _race(simple, [Client("198.51.100.1", "pytest-client/1.0")] * THREADS)
    assert len(set(results)) == 1 and results[0].startswith("rtok_"), results
    assert TokenFamily.objects.get().revoked_at is None


def _proofs(key, count: int) -> list:
    """``count`` verified proofs by ``key`` for a refresh, as the view would pass them."""
    import time

    from rotating_tokens.dpop import verify_proof

    url = "http://testserver/api/auth/token/refresh/"
    return [
        verify_proof(key.proof("POST", url), method="POST", url=url, now=time.time())
        for _ in range(count)
    ]


@pytest.mark.usefixtures("claim")
def test_simultaneous_refreshes_of_a_bound_token_rotate_once(user):
    from .dpop_client import DPoPKey

    key = DPoPKey()
    login = services.start_family(user, Client("198.51.100.1", "app/1.0"), dpop=_proofs(key, 1)[0])
    # Each request from anywhere, each with its own proof by the key: the same client.
    clients = [Client(f"198.51.100.{i + 1}", f"app/{i}") for i in range(THREADS)]
    results = _race(login.refresh, clients, _proofs(key, THREADS))
    assert len(set(results)) == 1, results
    assert results[0].startswith("rtok_")
    assert _successors(login) == 1
    assert TokenFamily.objects.get().revoked_at is None


@pytest.mark.usefixtures("claim")
@override_settings(ROTATING_TOKENS={"REUSE_GRACE_PERIOD": timedelta(0)})
def test_simultaneous_refreshes_of_a_bound_token_without_grace_rotate_once(user):
    from .dpop_client import DPoPKey

    key = DPoPKey()
    login = services.start_family(user, Client("198.51.100.1", "app/1.0"), dpop=_proofs(key, 1)[0])
    results = _race(
        login.refresh, [Client("198.51.100.1", "app/1.0")] * THREADS, _proofs(key, THREADS)
    )
    winners = [r for r in results if r.startswith("rtok_")]
    assert len(winners) == 1, results
    assert set(results) - set(winners) <= {"token_reused", "token_revoked"}, results
    assert _successors(login) == 1


def test_simultaneous_refreshes_of_a_bound_token_without_proofs_change_nothing(user):
    from .dpop_client import DPoPKey

    key = DPoPKey()
    login = services.start_family(user, Client("198.51.100.1", "app/1.0"), dpop=_proofs(key, 1)[0])
    results = _race(login.refresh, [Client("198.51.100.66", "thief/1.0")] * THREADS)
    assert set(results) == {"dpop_required"}, results
    assert _successors(login) == 0
    assert TokenFamily.objects.get().revoked_at is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one statement")
def test_simultaneous_claims_in_one_statement_insert_one_successor(login, client_info):
    from rotating_tokens import sql

    token = RefreshToken.objects.get(family=login.family)
    now = timezone.now()
    successors = [
        services._new_token(login.family, client_info, now, rotated_from=token)[0]
        for _ in range(THREADS)
    ]
    barrier = threading.Barrier(THREADS)
    claimed: list[bool | str | None] = [None] * THREADS

    def claim(i: int) -> None:
        try:
            barrier.wait()
            claimed[i] = sql.claim_and_insert(token, successors[i], now=now, using="default")
        except Exception as exc:  # reported by the assertions, not lost in the thread
            claimed[i] = f"error: {exc!r}"
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(claimed, key=str) == [False] * (THREADS - 1) + [True], claimed
    (winner,) = [s for s, won in zip(successors, claimed, strict=True) if won is True]
    assert list(RefreshToken.objects.filter(rotated_from=token).values_list("pk", flat=True)) == [
        winner.pk
    ]
    token.refresh_from_db()
    assert token.used_at == now
