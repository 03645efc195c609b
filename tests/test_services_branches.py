"""Branches of services.py that the other suites reach only on a database server or
not at all: losing the claim to a concurrent request (simulated deterministically
between the read and the UPDATE), a successor that no longer decrypts, address
comparison corner cases, and the current-family context."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from rotating_tokens import services, signals
from rotating_tokens.exceptions import TokenInvalid, TokenReused, TokenRevoked
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily

from .factories import RefreshTokenFactory, TokenFamilyFactory

pytestmark = pytest.mark.django_db

THIEF = services.Client(ip_address="198.51.100.66", user_agent="thief/1.0")


def interfere_before_claim(monkeypatch, action: Callable[[], Any]) -> None:
    """Run ``action`` once, after rotate() has read the token as unused and before its
    claiming UPDATE: what a concurrent request that wins the race looks like."""
    original = services._new_token
    pending = [action]

    def new_token(*args: Any, **kwargs: Any) -> Any:
        if pending:
            pending.pop()()
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "_new_token", new_token)


def test_losing_the_claim_to_the_same_client_returns_the_winners_successor(
    monkeypatch, client_info
):
    token = RefreshTokenFactory()
    winner: list[services.TokenPair] = []
    interfere_before_claim(
        monkeypatch, lambda: winner.append(services.rotate(token.raw, client_info))
    )

    pair = services.rotate(token.raw, client_info)

    assert pair.refresh == winner[0].refresh
    assert RefreshToken.objects.filter(family=token.family).count() == 2
    token.family.refresh_from_db()
    assert not token.family.is_revoked


def test_losing_the_claim_to_another_client_is_reuse(monkeypatch, client_info):
    token = RefreshTokenFactory()
    interfere_before_claim(monkeypatch, lambda: services.rotate(token.raw, THIEF))

    with pytest.raises(TokenReused):
        services.rotate(token.raw, client_info)

    token.family.refresh_from_db()
    assert token.family.revoke_reason == RevokeReason.REUSE_DETECTED


def test_a_token_purged_before_the_claim_is_invalid(monkeypatch, client_info):
    token = RefreshTokenFactory()
    interfere_before_claim(monkeypatch, lambda: RefreshToken.objects.filter(pk=token.pk).delete())

    with pytest.raises(TokenInvalid):
        services.rotate(token.raw, client_info)

    assert not RefreshToken.objects.filter(family=token.family).exists()


def test_a_family_logged_out_while_its_token_was_claimed_is_revoked(monkeypatch, client_info):
    token = RefreshTokenFactory()

    def rotate_then_log_out() -> None:
        services.rotate(token.raw, client_info)
        services.logout(token.raw)

    interfere_before_claim(monkeypatch, rotate_then_log_out)

    with pytest.raises(TokenRevoked):
        services.rotate(token.raw, client_info)

    token.family.refresh_from_db()
    assert token.family.revoke_reason == RevokeReason.LOGOUT


def test_a_retry_whose_sealed_successor_does_not_open_is_reuse(client_info):
    token = RefreshTokenFactory()
    services.rotate(token.raw, client_info)
    successor = RefreshToken.objects.get(rotated_from=token)
    sealed = bytearray(successor.sealed)
    sealed[-1] ^= 0xFF  # any tampering fails AES-GCM's tag
    RefreshToken.objects.filter(pk=successor.pk).update(sealed=bytes(sealed))

    with pytest.raises(TokenReused):
        services.rotate(token.raw, client_info)

    token.family.refresh_from_db()
    assert token.family.is_revoked


def test_a_replay_racing_another_replay_sends_no_second_alert(monkeypatch, client_info):
    token = RefreshTokenFactory()
    services.rotate(token.raw, client_info)
    original = services._successor_for_retry

    def other_replay_revokes_first(*args: Any) -> Any:
        # The other replay revoked the family after this one read it as alive.
        services.revoke_family(TokenFamily.objects.get(), RevokeReason.REUSE_DETECTED)
        return original(*args)

    monkeypatch.setattr(services, "_successor_for_retry", other_replay_revokes_first)
    alerts: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        alerts.append(kwargs)

    signals.token_reuse_detected.connect(receiver)
    try:
        with pytest.raises(TokenReused):
            services.rotate(token.raw, THIEF)
    finally:
        signals.token_reuse_detected.disconnect(receiver)

    assert alerts == []
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


@pytest.mark.parametrize(
    ("stored", "presented", "same"),
    [
        (None, None, True),
        (None, "192.0.2.1", False),
        ("192.0.2.1", None, False),
        ("::ffff:192.0.2.1", "::ffff:c000:201", True),
        ("192.0.2.1", "192.0.2.2", False),
        ("not an address", "not an address", True),
        ("not an address", "192.0.2.1", False),
    ],
)
def test_addresses_compare_as_addresses(stored, presented, same):
    assert services._same_ip(stored, presented) is same


@pytest.mark.parametrize("value", ["not-a-uuid", 42, None])
def test_an_unreadable_current_family_is_forgotten(value):
    services.set_current_family("8c1c3c64-7f3a-4b61-9b0d-0c6c2f3b1a11")
    services.set_current_family(value)
    assert services.current_family_id() is None


def test_token_pair_repr_shows_no_token(client_info):
    pair = services.rotate(RefreshTokenFactory().raw, client_info)
    text = repr(pair)
    assert pair.refresh not in text and pair.access not in text
    assert str(pair.family.pk) in text


def test_purge_reports_progress_on_spent_tokens_of_live_families():
    now = timezone.now()
    family = TokenFamilyFactory()
    RefreshTokenFactory(family=family)  # the live token keeps the family active
    spent = RefreshTokenFactory(
        family=family,
        issued_at=now - timedelta(days=20),
        expires_at=now - timedelta(days=1),
        used_at=now - timedelta(days=2),
    )
    reports: list[services.PurgeResult] = []

    result = services.purge(now=now, progress=reports.append)

    assert result.used_tokens == 1
    assert reports and reports[-1].used_tokens == 1
    assert not RefreshToken.objects.filter(pk=spent.pk).exists()
