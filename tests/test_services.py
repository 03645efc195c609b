"""The rotation algorithm of ``services.rotate``, step by step, and the grace rules."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection
from django.test import override_settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from rotating_tokens import crypto, revocation, services, signals
from rotating_tokens.exceptions import TokenExpired, TokenInvalid, TokenReused, TokenRevoked
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily
from rotating_tokens.services import Client

from .db_faults import failing_successor_insert, next_lookup_key
from .factories import RefreshTokenFactory, TokenFamilyFactory, UserFactory
from .test_crypto import MALFORMED

pytestmark = pytest.mark.django_db

OTHER_IP = Client(ip_address="198.51.100.7", user_agent="pytest-client/1.0")
OTHER_AGENT = Client(ip_address="203.0.113.10", user_agent="evil-client/6.6")
GRACE_10S = {"REUSE_GRACE_PERIOD": timedelta(seconds=10)}


@pytest.fixture
def token():
    return RefreshTokenFactory()


@pytest.fixture
def login(user, client_info):
    return services.start_family(user, client_info)


def _state(token: RefreshToken) -> tuple:
    token.refresh_from_db()
    token.family.refresh_from_db()
    return (token.used_at, token.family.revoked_at, RefreshToken.objects.count())


def _token_of(raw: str) -> RefreshToken:
    return RefreshToken.objects.get(lookup_key=crypto.parse_token(raw).lookup_key)


# Step 1: invalid ----------------------------------------------------------------------


def test_unknown_lookup_key_is_invalid_and_changes_nothing(token, client_info):
    before = _state(token)
    raw, _ = crypto.make_token()
    with pytest.raises(TokenInvalid):
        services.rotate(raw, client_info)
    assert _state(token) == before


def test_wrong_secret_is_invalid_and_changes_nothing(token, client_info):
    before = _state(token)
    wrong = token.raw[:-1] + ("A" if token.raw[-1] != "A" else "B")
    with pytest.raises(TokenInvalid):
        services.rotate(wrong, client_info)
    assert _state(token) == before


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_token_is_invalid_without_any_query(raw, client_info, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(TokenInvalid):
        services.rotate(raw, client_info)


# Step 2: revoked ----------------------------------------------------------------------


def test_token_of_revoked_family_is_refused(token, client_info):
    services.revoke_family(token.family, RevokeReason.ADMIN)
    with pytest.raises(TokenRevoked):
        services.rotate(token.raw, client_info)
    token.refresh_from_db()
    assert token.used_at is None


def test_token_of_inactive_user_is_refused(token, client_info):
    token.family.user.is_active = False
    token.family.user.save()
    with pytest.raises(TokenRevoked):
        services.rotate(token.raw, client_info)


def test_inactive_user_is_refused_by_rotate_itself_without_any_revocation(
    token, client_info, api_client
):
    # update() sends no signal: no receiver revokes the family, the refusal alone must.
    get_user_model().objects.filter(pk=token.family.user_id).update(is_active=False)

    with pytest.raises(TokenRevoked):
        services.rotate(token.raw, client_info)
    response = api_client.post("/api/auth/token/refresh/", {"refresh": token.raw}, format="json")

    assert (response.status_code, response.json()["code"]) == (401, "token_revoked")
    assert _state(token)[:2] == (None, None)  # neither used nor revoked


# Step 3: expired ----------------------------------------------------------------------


def test_expired_token_is_refused(token, client_info):
    with pytest.raises(TokenExpired):
        services.rotate(token.raw, client_info, now=token.expires_at)
    token.refresh_from_db()
    assert token.used_at is None


def test_token_of_expired_family_is_refused(client_info):
    now = timezone.now()
    family = TokenFamilyFactory(created_at=now - timedelta(days=30), expires_at=now)
    token = RefreshTokenFactory(family=family, issued_at=now - timedelta(days=1))
    assert token.expires_at > now
    with pytest.raises(TokenExpired):
        services.rotate(token.raw, client_info, now=now)


def test_refresh_token_expires_when_idle(time_machine, user, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    pair = services.start_family(user, client_info)
    time_machine.shift(timedelta(days=14))
    with pytest.raises(TokenExpired):
        services.rotate(pair.refresh, client_info)


def test_refresh_just_before_idle_expiry_works(time_machine, user, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    pair = services.start_family(user, client_info)
    time_machine.shift(timedelta(days=14) - timedelta(seconds=1))
    services.rotate(pair.refresh, client_info)


def test_family_expires_however_active_the_client_is(time_machine, user, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    pair = services.start_family(user, client_info)
    family_expiry = pair.family.expires_at
    for _ in range(29):
        time_machine.shift(timedelta(days=1))
        pair = services.rotate(pair.refresh, client_info)
        assert pair.refresh_expires_at <= family_expiry
    assert pair.refresh_expires_at == family_expiry
    time_machine.shift(timedelta(days=1))
    with pytest.raises(TokenExpired):
        services.rotate(pair.refresh, client_info)


# Step 5: success ----------------------------------------------------------------------


def test_rotation_marks_the_token_used(token, client_info):
    now = timezone.now()
    services.rotate(token.raw, client_info, now=now)
    token.refresh_from_db()
    assert token.used_at == now


def test_successor_is_linked_to_the_used_token(token, client_info):
    pair = services.rotate(token.raw, client_info)
    successor = _token_of(pair.refresh)
    assert successor.rotated_from == token
    assert successor.family == token.family
    assert successor.used_at is None
    assert pair.family == token.family


def test_successor_records_the_client(token, client_info):
    pair = services.rotate(token.raw, client_info)
    successor = _token_of(pair.refresh)
    assert (successor.ip_address, successor.user_agent) == (
        client_info.ip_address,
        client_info.user_agent,
    )


@override_settings(ROTATING_TOKENS={"REFRESH_TOKEN_LIFETIME": timedelta(days=3)})
def test_successor_expires_a_refresh_lifetime_from_now(token, client_info):
    now = timezone.now()
    pair = services.rotate(token.raw, client_info, now=now)
    assert pair.refresh_expires_at == now + timedelta(days=3)
    assert _token_of(pair.refresh).expires_at == now + timedelta(days=3)


def test_successor_never_outlives_its_family(client_info):
    now = timezone.now()
    family = TokenFamilyFactory(
        created_at=now - timedelta(days=29), expires_at=now + timedelta(hours=1)
    )
    token = RefreshTokenFactory(family=family, issued_at=now - timedelta(hours=1))
    pair = services.rotate(token.raw, client_info, now=now)
    assert pair.refresh_expires_at == family.expires_at
    assert _token_of(pair.refresh).expires_at == family.expires_at


def test_access_token_carries_the_family_claim(token, client_info):
    pair = services.rotate(token.raw, client_info)
    access = AccessToken(pair.access)
    assert access["fam"] == str(token.family.pk)
    assert str(access["user_id"]) == str(token.family.user.pk)


@override_settings(ROTATING_TOKENS={"FAMILY_CLAIM": "sid"})
def test_family_claim_name_is_a_setting(token, client_info):
    pair = services.rotate(token.raw, client_info)
    assert AccessToken(pair.access)["sid"] == str(token.family.pk)


@override_settings(ROTATING_TOKENS={"ACCESS_TOKEN_LIFETIME": timedelta(minutes=7)})
def test_access_token_lives_access_token_lifetime(token, client_info):
    now = timezone.now().replace(microsecond=0)
    pair = services.rotate(token.raw, client_info, now=now)
    assert pair.access_expires_at == now + timedelta(minutes=7)
    assert AccessToken(pair.access)["exp"] == int((now + timedelta(minutes=7)).timestamp())


def test_access_token_never_outlives_its_family(time_machine, client_info):
    now = timezone.now().replace(microsecond=0)
    time_machine.move_to(now, tick=False)
    family = TokenFamilyFactory(
        created_at=now - timedelta(days=29), expires_at=now + timedelta(minutes=2)
    )
    token = RefreshTokenFactory(family=family, issued_at=now - timedelta(hours=1))
    pair = services.rotate(token.raw, client_info)
    assert pair.access_expires_at == family.expires_at
    assert AccessToken(pair.access)["exp"] == int(family.expires_at.timestamp())


def test_last_use_of_family_is_its_newest_token(time_machine, login, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    time_machine.shift(timedelta(hours=1))
    services.rotate(login.refresh, OTHER_IP)
    family = TokenFamily.objects.with_last_use().get(pk=login.family.pk)
    assert family.last_used_at == timezone.now()
    assert family.last_ip_address == OTHER_IP.ip_address
    assert family.ip_address == client_info.ip_address


def test_rotation_sends_token_rotated(token, client_info):
    received = []
    with _listening(signals.token_rotated, received):
        pair = services.rotate(token.raw, client_info)
    (kwargs,) = received
    assert kwargs["family"] == token.family
    assert kwargs["user"] == token.family.user
    assert kwargs["token"] == _token_of(pair.refresh)
    assert kwargs["previous"] == token


def test_login_starts_a_family_and_sends_tokens_issued(user, client_info):
    received = []
    with _listening(signals.tokens_issued, received):
        pair = services.start_family(user, client_info)
    family = TokenFamily.objects.get(user=user)
    assert family == pair.family
    (kwargs,) = received
    assert (kwargs["family"], kwargs["user"], kwargs["token"]) == (
        family,
        user,
        _token_of(pair.refresh),
    )
    assert (family.ip_address, family.user_agent) == (
        client_info.ip_address,
        client_info.user_agent,
    )


def test_failed_rotation_leaves_the_token_as_it_was(token, client_info, claim):
    with failing_successor_insert(DatabaseError("disk full")), pytest.raises(DatabaseError):
        services.rotate(token.raw, client_info)
    token.refresh_from_db()
    assert token.used_at is None
    assert RefreshToken.objects.count() == 1
    services.rotate(token.raw, client_info)


def test_successor_refused_by_the_database_leaves_the_token_as_it_was(token, client_info, claim):
    # The database itself refuses the successor (its lookup key is taken), after the
    # claim ran in the same transaction, or the same statement on PostgreSQL. Inside
    # this test's transaction, which stays usable: the rotation failed in a savepoint.
    with next_lookup_key(token.lookup_key), pytest.raises(IntegrityError):
        services.rotate(token.raw, client_info)
    token.refresh_from_db()
    assert token.used_at is None
    assert RefreshToken.objects.count() == 1
    services.rotate(token.raw, client_info)


# Step 4: used: retry or reuse ----------------------------------------------------------


def test_retry_from_same_client_in_window_returns_identical_refresh_token(
    time_machine, login, client_info
):
    time_machine.move_to(timezone.now(), tick=False)
    first = services.rotate(login.refresh, client_info)
    time_machine.shift(timedelta(seconds=3))
    count = RefreshToken.objects.count()
    retry = services.rotate(login.refresh, client_info)
    assert retry.refresh == first.refresh
    assert retry.access != first.access
    assert AccessToken(retry.access)["fam"] == str(login.family.pk)
    assert RefreshToken.objects.count() == count
    login.family.refresh_from_db()
    assert login.family.revoked_at is None
    # The chain stays one line: the returned token still rotates.
    services.rotate(retry.refresh, client_info)


def test_retry_window_runs_from_first_use_and_does_not_slide(time_machine, login, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    first = services.rotate(login.refresh, client_info)
    time_machine.shift(timedelta(seconds=6))
    assert services.rotate(login.refresh, client_info).refresh == first.refresh
    time_machine.shift(timedelta(seconds=4))  # 10 s after the first use, 4 after the retry
    with pytest.raises(TokenReused):
        services.rotate(login.refresh, client_info)


def test_retry_after_window_is_reuse_and_kills_the_family(time_machine, login, client_info):
    time_machine.move_to(timezone.now(), tick=False)
    first = services.rotate(login.refresh, client_info)
    time_machine.shift(timedelta(seconds=11))
    with pytest.raises(TokenReused):
        services.rotate(login.refresh, client_info)
    _assert_family_dead(login, first.refresh, client_info)


@pytest.mark.parametrize("other", [OTHER_IP, OTHER_AGENT], ids=["other ip", "other user agent"])
def test_retry_from_another_client_is_reuse(login, client_info, other):
    first = services.rotate(login.refresh, client_info)
    with pytest.raises(TokenReused):
        services.rotate(login.refresh, other)
    _assert_family_dead(login, first.refresh, client_info)


def test_retry_after_successor_was_used_is_reuse(login, client_info):
    first = services.rotate(login.refresh, client_info)
    second = services.rotate(first.refresh, client_info)
    with pytest.raises(TokenReused):
        services.rotate(login.refresh, client_info)
    _assert_family_dead(login, second.refresh, client_info)


def test_logged_out_family_is_never_honoured_inside_grace(login, client_info):
    first = services.rotate(login.refresh, client_info)
    services.logout(first.refresh)
    with pytest.raises(TokenRevoked):
        services.rotate(login.refresh, client_info)
    with pytest.raises(TokenRevoked):
        services.rotate(first.refresh, client_info)
    login.family.refresh_from_db()
    assert login.family.revoke_reason == RevokeReason.LOGOUT


@pytest.mark.parametrize("grace", [timedelta(0), 0], ids=["timedelta", "int"])
def test_zero_grace_makes_any_second_use_reuse(login, client_info, grace):
    with override_settings(ROTATING_TOKENS={"REUSE_GRACE_PERIOD": grace}):
        first = services.rotate(login.refresh, client_info)
        assert _token_of(first.refresh).sealed is None
        with pytest.raises(TokenReused):
            services.rotate(login.refresh, client_info)
    _assert_family_dead(login, first.refresh, client_info)


def test_sealed_successor_is_erased_once_the_successor_is_used(login, client_info):
    first = services.rotate(login.refresh, client_info)
    assert _token_of(first.refresh).sealed is not None
    services.rotate(first.refresh, client_info)
    assert _token_of(first.refresh).sealed is None


def test_first_token_of_a_family_holds_no_seal(login):
    assert _token_of(login.refresh).sealed is None


def test_database_never_contains_a_raw_token(login, client_info):
    first = services.rotate(login.refresh, client_info)
    retry = services.rotate(login.refresh, client_info)
    second = services.rotate(first.refresh, client_info)
    secrets_ = set()
    for raw in (login.refresh, first.refresh, retry.refresh, second.refresh):
        secrets_ |= {raw, raw[len("rtok_") :], crypto.parse_token(raw).secret}
    for table in (TokenFamily._meta.db_table, RefreshToken._meta.db_table):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            rows = cursor.fetchall()
        assert rows
        for row in rows:
            for value in row:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    value = bytes(value)
                    assert not any(s.encode() in value for s in secrets_)
                else:
                    assert not any(s in str(value) for s in secrets_)


def test_reused_token_revokes_whole_family(login, client_info):
    first = services.rotate(login.refresh, client_info)
    second = services.rotate(first.refresh, client_info)
    with pytest.raises(TokenReused):
        services.rotate(login.refresh, OTHER_IP)
    login.family.refresh_from_db()
    assert login.family.revoke_reason == RevokeReason.REUSE_DETECTED
    for raw in (login.refresh, first.refresh, second.refresh):
        with pytest.raises(TokenRevoked):
            services.rotate(raw, client_info)
    assert not revocation.allows_access(login.family.pk)


def test_reuse_revokes_only_that_family(user, client_info):
    stolen = services.start_family(user, client_info)
    other = services.start_family(user, client_info)
    services.rotate(stolen.refresh, client_info)
    with pytest.raises(TokenReused):
        services.rotate(stolen.refresh, OTHER_IP)
    services.rotate(other.refresh, client_info)


def test_reuse_sends_token_reuse_detected_and_family_revoked(login, client_info):
    services.rotate(login.refresh, client_info)
    reuse, revoked = [], []
    with (
        _listening(signals.token_reuse_detected, reuse),
        _listening(signals.family_revoked, revoked),
        pytest.raises(TokenReused),
    ):
        services.rotate(login.refresh, OTHER_AGENT)
    (kwargs,) = reuse
    assert kwargs["sender"] is TokenFamily
    assert kwargs["family"] == login.family
    assert kwargs["family"].revoked_at is not None
    assert kwargs["user"] == login.family.user
    assert kwargs["token"] == _token_of(login.refresh)
    assert kwargs["ip_address"] == OTHER_AGENT.ip_address
    assert kwargs["user_agent"] == OTHER_AGENT.user_agent
    (kwargs,) = revoked
    assert kwargs["family"] == login.family
    assert kwargs["reason"] == RevokeReason.REUSE_DETECTED


def test_reuse_logs_a_warning_without_any_token(caplog, login, client_info):
    first = services.rotate(login.refresh, client_info)
    with caplog.at_level(logging.WARNING, logger="rotating_tokens"), pytest.raises(TokenReused):
        services.rotate(login.refresh, OTHER_AGENT)
    (record,) = [r for r in caplog.records if r.name == "rotating_tokens"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert str(login.family.pk) in message
    assert OTHER_AGENT.ip_address in message
    assert OTHER_AGENT.user_agent in message
    for raw in (login.refresh, first.refresh):
        parsed = crypto.parse_token(raw)
        assert parsed.lookup_key not in caplog.text
        assert parsed.secret not in caplog.text


def test_second_revocation_sends_nothing(login):
    received = []
    assert services.revoke_family(login.family, RevokeReason.LOGOUT)
    with _listening(signals.family_revoked, received):
        assert not services.revoke_family(login.family, RevokeReason.ADMIN)
    assert received == []
    login.family.refresh_from_db()
    assert login.family.revoke_reason == RevokeReason.LOGOUT


# Hashers --------------------------------------------------------------------------------


@override_settings(ROTATING_TOKENS={"TOKEN_HASHER": "argon2"})
def test_argon2_hasher_works_end_to_end(user, client_info):
    pair = services.start_family(user, client_info)
    assert _token_of(pair.refresh).secret_hash.startswith("argon2$")
    first = services.rotate(pair.refresh, client_info)
    assert _token_of(first.refresh).secret_hash.startswith("argon2$")
    assert services.rotate(pair.refresh, client_info).refresh == first.refresh
    with pytest.raises(TokenReused):
        services.rotate(pair.refresh, OTHER_IP)


@pytest.mark.parametrize(
    ("before", "after"), [("hmac-sha256", "argon2"), ("argon2", "hmac-sha256")]
)
def test_token_survives_a_hasher_switch(user, client_info, before, after):
    with override_settings(ROTATING_TOKENS={"TOKEN_HASHER": before}):
        pair = services.start_family(user, client_info)
    with override_settings(ROTATING_TOKENS={"TOKEN_HASHER": after}):
        first = services.rotate(pair.refresh, client_info)
    assert _token_of(pair.refresh).secret_hash.startswith(f"{before}$")
    assert _token_of(first.refresh).secret_hash.startswith(f"{after}$")


def test_secret_key_rotation_logs_nobody_out(user, client_info):
    old, new = "old-secret-key-" + "o" * 50, "new-secret-key-" + "n" * 50
    with override_settings(SECRET_KEY=old):
        pair = services.start_family(user, client_info)
    with override_settings(SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]):
        services.rotate(pair.refresh, client_info)


def test_secret_key_change_without_fallback_invalidates_tokens(user, client_info):
    pair = services.start_family(user, client_info)
    with override_settings(SECRET_KEY="new-secret-key-" + "n" * 50), pytest.raises(TokenInvalid):
        services.rotate(pair.refresh, client_info)


# Logout -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "garbage", "rtok_" + "a" * 59])
def test_logout_ignores_unknown_and_malformed_tokens(login, raw):
    services.logout(raw)
    login.family.refresh_from_db()
    assert login.family.revoked_at is None


def test_logout_all_revokes_every_family_of_the_user_only(user, client_info):
    families = [services.start_family(user, client_info).family for _ in range(3)]
    bystander = services.start_family(UserFactory(), client_info)
    services.revoke_family(families[0], RevokeReason.ADMIN)
    assert services.logout_all(user) == 2
    assert set(
        TokenFamily.objects.for_user(user).revoked().values_list("revoke_reason", flat=True)
    ) == {
        RevokeReason.ADMIN,
        RevokeReason.LOGOUT_ALL,
    }
    bystander.family.refresh_from_db()
    assert bystander.family.revoked_at is None


def test_querysets_read_like_the_domain(user, client_info):
    now = timezone.now()
    live = services.start_family(user, client_info, now=now).family
    revoked = services.start_family(user, client_info, now=now).family
    services.revoke_family(revoked, RevokeReason.LOGOUT, now=now)
    old = services.start_family(user, client_info, now=now - timedelta(days=31)).family
    services.start_family(UserFactory(), client_info, now=now)
    assert list(TokenFamily.objects.for_user(user).active(now)) == [live]
    assert list(TokenFamily.objects.for_user(user).expired(now)) == [old]
    assert RefreshToken.objects.for_user(user).active(now).get().family == live
    assert RefreshToken.objects.for_user(user).expired(now).get().family == old


# Helpers ----------------------------------------------------------------------------


class _listening:
    def __init__(self, signal, received: list) -> None:
        self.signal, self.received = signal, received

    def _receiver(self, **kwargs) -> None:
        self.received.append(kwargs)

    def __enter__(self) -> None:
        self.signal.connect(self._receiver, weak=False)

    def __exit__(self, *exc) -> None:
        self.signal.disconnect(self._receiver)


def _assert_family_dead(login: services.TokenPair, newest: str, client: Client) -> None:
    login.family.refresh_from_db()
    assert login.family.revoked_at is not None
    assert login.family.revoke_reason == RevokeReason.REUSE_DETECTED
    with pytest.raises(TokenRevoked):
        services.rotate(newest, client)
