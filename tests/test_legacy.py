"""Switching from djangorestframework-simplejwt without logging anyone out:
``ACCEPT_SIMPLEJWT_UNTIL`` (legacy.py, services.rotate)."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.hashers import make_password
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken as SimpleJWTAccessToken
from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

from rotating_tokens import legacy, services, signals
from rotating_tokens.conf import app_settings
from rotating_tokens.crypto import open_successor
from rotating_tokens.models import ConvertedToken, RevokeReason, SimpleJWTCutoff, TokenFamily

from .dpop_client import DPoPKey
from .factories import UserFactory

pytestmark = pytest.mark.django_db

REFRESH, ME, LOGOUT = "/api/auth/token/refresh/", "/api/me/", "/api/auth/logout/"
OTHER_CLIENT = services.Client(ip_address="198.51.100.66", user_agent="thief/1.0")


@pytest.fixture
def migrating(settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
    }


@pytest.fixture
def simple_refresh(user) -> str:
    """A refresh token the project's simplejwt views issued before the switch."""
    return str(SimpleJWTRefreshToken.for_user(user))


@pytest.fixture
def thief() -> APIClient:
    """Another client (address and user agent) than ``api_client``."""
    return APIClient(HTTP_USER_AGENT="thief/1.0", REMOTE_ADDR="198.51.100.66")


def refresh(api_client, raw, **extra):
    return api_client.post(REFRESH, {"refresh": raw}, format="json", **extra)


def assert_refused(response, code):
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code


def test_simplejwt_refresh_token_is_exchanged_for_a_family(
    migrating, api_client, user, simple_refresh
):
    response = refresh(api_client, simple_refresh)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["refresh"].startswith("rtok_")
    family = TokenFamily.objects.get()
    assert (family.user, family.ip_address) == (user, "203.0.113.10")
    converted = ConvertedToken.objects.get()
    assert converted.family == family
    assert converted.jti == SimpleJWTRefreshToken(simple_refresh, verify=False)["jti"]
    # And the client goes on with ours.
    assert api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {body['access']}").status_code == 200
    assert refresh(api_client, body["refresh"]).status_code == 200


def test_converted_token_is_blacklisted_in_simplejwt_too(migrating, api_client, simple_refresh):
    refresh(api_client, simple_refresh)
    jti = SimpleJWTRefreshToken(simple_refresh, verify=False)["jti"]
    assert BlacklistedToken.objects.filter(token__jti=jti).exists()


def test_conversion_without_the_blacklist_app(migrating, api_client, simple_refresh):
    with mock.patch("rotating_tokens.legacy.apps.is_installed", return_value=False):
        assert refresh(api_client, simple_refresh).status_code == 200
    assert not BlacklistedToken.objects.exists()


def test_second_presentation_is_reuse_and_kills_the_family(
    migrating, api_client, thief, simple_refresh
):
    alerts = []

    def receiver(family, token, **kwargs):
        alerts.append((family.pk, token))

    first = refresh(api_client, simple_refresh).json()
    signals.token_reuse_detected.connect(receiver)
    try:
        assert_refused(refresh(thief, simple_refresh), "token_reused")
    finally:
        signals.token_reuse_detected.disconnect(receiver)
    family = TokenFamily.objects.get()
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED
    assert alerts == [(family.pk, None)]
    assert_refused(refresh(api_client, first["refresh"]), "token_revoked")
    assert api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {first['access']}").status_code == 401


def test_expired_simplejwt_token_is_token_expired(migrating, api_client, user, time_machine):
    simple = str(SimpleJWTRefreshToken.for_user(user))
    time_machine.move_to(timezone.now() + timedelta(days=2), tick=False)  # simplejwt: 1 day
    assert_refused(refresh(api_client, simple), "token_expired")
    assert not TokenFamily.objects.exists()


@pytest.mark.parametrize("case", ["access token", "bad signature", "not a JWT", "no jti"])
def test_not_a_valid_simplejwt_refresh_token_is_token_invalid(
    migrating, api_client, user, simple_refresh, case
):
    if case == "access token":
        raw = str(SimpleJWTAccessToken.for_user(user))
    elif case == "bad signature":
        head, payload, signature = simple_refresh.split(".")
        raw = f"{head}.{payload}.{signature[::-1]}"
    elif case == "not a JWT":
        raw = "a.b.c"
    else:
        token = SimpleJWTRefreshToken.for_user(user)
        del token["jti"]
        raw = str(token)
    assert_refused(refresh(api_client, raw), "token_invalid")
    assert not TokenFamily.objects.exists()


def test_blacklisted_simplejwt_token_is_token_revoked(migrating, api_client, simple_refresh):
    SimpleJWTRefreshToken(simple_refresh).blacklist()  # logged out before the switch
    assert_refused(refresh(api_client, simple_refresh), "token_revoked")
    assert not TokenFamily.objects.exists()


def test_simplejwt_token_of_an_inactive_user_is_token_revoked(
    migrating, api_client, user, simple_refresh
):
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert_refused(refresh(api_client, simple_refresh), "token_revoked")


def test_simplejwt_token_of_a_deleted_user_is_token_invalid(
    migrating, api_client, user, simple_refresh
):
    user.delete()
    assert_refused(refresh(api_client, simple_refresh), "token_invalid")


@pytest.mark.parametrize("until", [None, "past"])
def test_outside_the_transition_simplejwt_tokens_are_invalid(
    api_client, user, simple_refresh, settings, until
):
    if until == "past":
        settings.ROTATING_TOKENS = {
            **settings.ROTATING_TOKENS,
            "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() - timedelta(seconds=1),
        }
    assert_refused(refresh(api_client, simple_refresh), "token_invalid")
    access = str(SimpleJWTAccessToken.for_user(user))
    assert_refused(api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}"), "token_invalid")
    assert not TokenFamily.objects.exists()


def test_simplejwt_access_tokens_work_during_the_transition(migrating, api_client, user):
    access = str(SimpleJWTAccessToken.for_user(user))
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response.status_code == 200
    assert response.json()["username"] == user.username


def test_conversion_through_the_service_is_the_same(migrating, user, simple_refresh, client_info):
    pair = services.rotate(simple_refresh, client_info)
    assert pair.family.user == user
    with pytest.raises(services.TokenReused):
        services.rotate(simple_refresh, OTHER_CLIENT)


def jti_of(raw: str) -> str:
    return SimpleJWTRefreshToken(raw, verify=False)["jti"]


def simplejwt_settings(monkeypatch, **changes):
    """Change simplejwt's settings as a project sets them at startup: its modules keep
    the settings object they imported (a SIMPLE_JWT override makes a new one that
    they never see), so each object in use gets the values."""
    import rest_framework_simplejwt.settings
    import rest_framework_simplejwt.tokens

    in_use = {
        id(obj): obj
        for obj in (
            rest_framework_simplejwt.settings.api_settings,
            rest_framework_simplejwt.tokens.api_settings,
            legacy.simplejwt_settings,
        )
    }
    for obj in in_use.values():
        for name, value in changes.items():
            monkeypatch.setattr(obj, name, value, raising=False)


# The conversion's grace period: a lost response is not a logout ----------------------


def test_retry_of_a_conversion_by_the_same_client_gets_the_same_answer(
    migrating, api_client, simple_refresh
):
    first = refresh(api_client, simple_refresh)
    retry = refresh(api_client, simple_refresh)  # the first answer was lost

    assert retry.status_code == 200, retry.content
    assert retry.json()["refresh"] == first.json()["refresh"]
    family = TokenFamily.objects.get()
    assert family.revoked_at is None
    assert (
        api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {retry.json()['access']}").status_code == 200
    )
    # And the client goes on from that answer.
    assert refresh(api_client, retry.json()["refresh"]).status_code == 200


def test_retry_of_a_conversion_after_the_grace_period_is_reuse(
    migrating, api_client, simple_refresh, time_machine
):
    first = refresh(api_client, simple_refresh).json()
    time_machine.move_to(timezone.now() + timedelta(seconds=10), tick=False)  # the window

    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED
    assert_refused(refresh(api_client, first["refresh"]), "token_revoked")


def test_retry_of_a_conversion_whose_family_refreshed_since_is_reuse(
    migrating, api_client, simple_refresh
):
    first = refresh(api_client, simple_refresh).json()
    assert refresh(api_client, first["refresh"]).status_code == 200

    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


def test_without_a_grace_period_a_retry_of_a_conversion_is_reuse(
    migrating, settings, api_client, simple_refresh
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REUSE_GRACE_PERIOD": timedelta(0)}
    refresh(api_client, simple_refresh)
    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


@pytest.mark.parametrize("other", ["user agent", "address"])
def test_retry_of_a_conversion_from_another_client_is_reuse(
    migrating, api_client, simple_refresh, other
):
    refresh(api_client, simple_refresh)
    extra = (
        {"HTTP_USER_AGENT": "other/1.0"} if other == "user agent" else {"REMOTE_ADDR": "192.0.2.99"}
    )
    assert_refused(refresh(api_client, simple_refresh, **extra), "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


def test_the_first_token_of_a_converted_family_is_sealed_under_the_simplejwt_token(
    migrating, api_client, simple_refresh
):
    """Only the simplejwt token opens it: a retry with another token of the same jti
    (which nobody but the signer can make) would not, and the database holds no key."""
    refresh(api_client, simple_refresh)
    first = TokenFamily.objects.get().tokens.get()
    assert first.sealed is not None
    for secret, opens in ((simple_refresh, True), (simple_refresh + "x", False)):
        raw = open_successor(bytes(first.sealed), parent_secret=secret, lookup_key=first.lookup_key)
        assert (raw is not None) is opens


@pytest.fixture
def dpop_on(settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "optional"}


def test_retry_of_a_dpop_bound_conversion_needs_a_proof_by_its_key(
    migrating, dpop_on, api_client, simple_refresh
):
    key = DPoPKey()
    url = "http://testserver" + REFRESH
    first = refresh(api_client, simple_refresh, HTTP_DPOP=key.proof("POST", url))
    assert first.status_code == 200, first.content
    assert TokenFamily.objects.get().dpop_jkt == key.jkt

    # From another address, with a proof by the key: the same client.
    retry = refresh(
        api_client, simple_refresh, HTTP_DPOP=key.proof("POST", url), REMOTE_ADDR="192.0.2.5"
    )
    assert retry.status_code == 200, retry.content
    assert retry.json()["refresh"] == first.json()["refresh"]

    # A proof by another key (or none) is another client: reuse.
    assert_refused(
        refresh(api_client, simple_refresh, HTTP_DPOP=DPoPKey().proof("POST", url)), "token_reused"
    )
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


def test_retry_of_a_dpop_bound_conversion_without_a_proof_is_reuse(
    migrating, dpop_on, api_client, simple_refresh
):
    key = DPoPKey()
    refresh(api_client, simple_refresh, HTTP_DPOP=key.proof("POST", "http://testserver" + REFRESH))
    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


# A presentation racing the conversion, interleaved on purpose -------------------------


def _convert_in_between(simple_refresh, client, *, blacklist_installed=True):
    """Patch the blacklist check so that, the first time a presentation reaches it, the
    conversion by ``client`` runs and commits first: the interleaving of a second
    presentation that passed the first check just before the conversion committed."""
    real = legacy.is_blacklisted
    converted: list[services.TokenPair] = []

    def conversion_commits_first(jti):
        if not converted:
            with mock.patch("rotating_tokens.legacy.is_blacklisted", real):
                converted.append(services.rotate(simple_refresh, client))
        return real(jti) if blacklist_installed else False

    return mock.patch("rotating_tokens.legacy.is_blacklisted", conversion_commits_first), converted


def test_presentation_racing_the_conversion_past_the_first_check_is_reuse(
    migrating, user, simple_refresh, client_info
):
    racing, converted = _convert_in_between(simple_refresh, client_info)
    with racing, pytest.raises(services.TokenReused):
        services.rotate(simple_refresh, OTHER_CLIENT)

    assert len(converted) == 1  # the interleaving happened
    family = TokenFamily.objects.get()
    assert family == converted[0].family
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED
    assert ConvertedToken.objects.get().family == family


def test_presentation_racing_the_conversion_to_its_insert_is_reuse(
    migrating, user, simple_refresh, client_info
):
    """Without simplejwt's blacklist, the race is lost on the unique jti."""
    racing, converted = _convert_in_between(simple_refresh, client_info, blacklist_installed=False)
    with racing, pytest.raises(services.TokenReused):
        services.rotate(simple_refresh, OTHER_CLIENT)

    assert len(converted) == 1
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


def test_same_client_racing_its_own_conversion_gets_the_same_answer(
    migrating, user, simple_refresh, client_info
):
    racing, converted = _convert_in_between(simple_refresh, client_info)
    with racing:
        pair = services.rotate(simple_refresh, client_info)

    assert pair.refresh == converted[0].refresh
    assert TokenFamily.objects.get().revoked_at is None


# Logging out with a simplejwt token spends it -----------------------------------------


def test_logout_with_a_simplejwt_token_spends_it(migrating, api_client, simple_refresh):
    assert api_client.post(LOGOUT, {"refresh": simple_refresh}, format="json").status_code == 204

    spent = ConvertedToken.objects.get()
    assert (spent.jti, spent.logged_out, spent.family) == (jti_of(simple_refresh), True, None)
    assert spent.expires_at is not None
    assert BlacklistedToken.objects.filter(token__jti=spent.jti).exists()
    assert_refused(refresh(api_client, simple_refresh), "token_revoked")
    assert not TokenFamily.objects.exists()


def test_logout_with_a_simplejwt_token_without_the_blacklist_app(
    migrating, api_client, simple_refresh
):
    with mock.patch("rotating_tokens.legacy.apps.is_installed", return_value=False):
        api_client.post(LOGOUT, {"refresh": simple_refresh}, format="json")
        assert_refused(refresh(api_client, simple_refresh), "token_revoked")
    assert not BlacklistedToken.objects.exists()
    assert not TokenFamily.objects.exists()


def test_logout_with_a_converted_simplejwt_token_ends_its_family(
    migrating, api_client, simple_refresh
):
    pair = refresh(api_client, simple_refresh).json()
    assert api_client.post(LOGOUT, {"refresh": simple_refresh}, format="json").status_code == 204

    assert TokenFamily.objects.get().revoke_reason == RevokeReason.LOGOUT
    assert_refused(refresh(api_client, pair["refresh"]), "token_revoked")


@pytest.mark.parametrize("case", ["expired", "forged"])
def test_logout_with_an_invalid_simplejwt_token_changes_nothing(
    migrating, api_client, user, time_machine, case
):
    raw = str(SimpleJWTRefreshToken.for_user(user))
    if case == "expired":
        time_machine.move_to(timezone.now() + timedelta(days=2), tick=False)
    else:
        raw = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert api_client.post(LOGOUT, {"refresh": raw}, format="json").status_code == 204
    assert not ConvertedToken.objects.exists()
    assert not BlacklistedToken.objects.exists()


def test_logout_with_a_simplejwt_token_outside_the_transition_records_nothing(
    api_client, simple_refresh
):
    assert api_client.post(LOGOUT, {"refresh": simple_refresh}, format="json").status_code == 204
    assert not ConvertedToken.objects.exists()


# simplejwt's rules, and account changes during the transition -------------------------


def test_token_with_a_stale_revoke_claim_never_converts(migrating, monkeypatch, api_client, user):
    simplejwt_settings(monkeypatch, CHECK_REVOKE_TOKEN=True)
    stale = str(SimpleJWTRefreshToken.for_user(user))
    # Changed where no signal is seen (before the switch, or by QuerySet.update()).
    type(user).objects.filter(pk=user.pk).update(password=make_password("another one"))

    assert_refused(refresh(api_client, stale), "token_revoked")
    assert not TokenFamily.objects.exists()
    user.refresh_from_db()
    assert refresh(api_client, str(SimpleJWTRefreshToken.for_user(user))).status_code == 200


@pytest.mark.parametrize("claim", [None, 42, "0" * 32])
def test_token_without_the_revoke_claim_never_converts_when_simplejwt_checks_it(
    migrating, monkeypatch, api_client, user, claim
):
    simplejwt_settings(monkeypatch, CHECK_REVOKE_TOKEN=True)
    token = SimpleJWTRefreshToken.for_user(user)
    if claim is None:
        del token["hash_password"]
    else:
        token["hash_password"] = claim
    assert_refused(refresh(api_client, str(token)), "token_revoked")


def refuse_staff(user) -> bool:
    return not user.is_staff


def test_user_authentication_rule_applies_to_the_conversion(
    migrating, monkeypatch, api_client, user
):
    simplejwt_settings(monkeypatch, USER_AUTHENTICATION_RULE=refuse_staff)
    staff = UserFactory(is_staff=True)
    assert_refused(refresh(api_client, str(SimpleJWTRefreshToken.for_user(staff))), "token_revoked")
    assert refresh(api_client, str(SimpleJWTRefreshToken.for_user(user))).status_code == 200


def test_token_issued_before_a_password_change_never_converts(
    migrating, api_client, user, simple_refresh, time_machine
):
    user.set_password("a new password")
    user.save()

    assert SimpleJWTCutoff.objects.filter(user=user).exists()
    assert_refused(refresh(api_client, simple_refresh), "token_revoked")
    assert not TokenFamily.objects.exists()
    # One issued after it (by simplejwt's views, if they still run) converts.
    time_machine.move_to(timezone.now() + timedelta(seconds=1), tick=False)
    assert refresh(api_client, str(SimpleJWTRefreshToken.for_user(user))).status_code == 200


def test_password_change_spares_simplejwt_tokens_without_revoke_on_password_change(
    migrating, settings, api_client, user, simple_refresh
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REVOKE_ON_PASSWORD_CHANGE": False}
    user.set_password("a new password")
    user.save()
    assert refresh(api_client, simple_refresh).status_code == 200


def test_token_issued_before_a_deactivation_never_converts_even_after_reactivation(
    migrating, api_client, user, simple_refresh, time_machine
):
    user.is_active = False
    user.save()
    time_machine.move_to(timezone.now() + timedelta(seconds=5), tick=False)
    user.is_active = True
    user.save()

    assert_refused(refresh(api_client, simple_refresh), "token_revoked")
    assert not TokenFamily.objects.exists()
    assert refresh(api_client, str(SimpleJWTRefreshToken.for_user(user))).status_code == 200


def test_account_changes_outside_the_transition_record_nothing(user):
    user.set_password("a new password")
    user.save()
    user.is_active = False
    user.save()
    assert not SimpleJWTCutoff.objects.exists()


def test_second_account_change_moves_the_cutoff(migrating, user, time_machine):
    user.set_password("one")
    user.save()
    first = SimpleJWTCutoff.objects.get().ended_before
    time_machine.move_to(timezone.now() + timedelta(minutes=1), tick=False)
    user.set_password("two")
    user.save()
    assert SimpleJWTCutoff.objects.get().ended_before > first


# The record of a conversion outlives its family ---------------------------------------


def test_deleting_a_converted_family_does_not_let_the_token_convert_again(
    migrating, api_client, simple_refresh
):
    refresh(api_client, simple_refresh)
    TokenFamily.objects.get().delete()

    assert ConvertedToken.objects.get().family is None
    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert not TokenFamily.objects.exists()


def test_admin_deleting_a_converted_family_does_not_let_the_token_convert_again(
    migrating, api_client, client, simple_refresh
):
    refresh(api_client, simple_refresh)
    family = TokenFamily.objects.get()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    changelist = reverse("admin:rotating_tokens_tokenfamily_changelist")
    response = client.post(
        changelist, {"action": "delete_selected", "_selected_action": [family.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not TokenFamily.objects.exists()

    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert not TokenFamily.objects.exists()


def test_deleted_user_whose_id_comes_back_does_not_inherit_a_converted_token(
    migrating, api_client, user, simple_refresh
):
    """A user deleted with its families; a new account gets the same id (SQLite and
    older MySQL reuse the highest one): the old token must not log it in."""
    refresh(api_client, simple_refresh)
    pk = user.pk
    user.delete()
    assert ConvertedToken.objects.get().family is None
    UserFactory(pk=pk)

    assert_refused(refresh(api_client, simple_refresh), "token_reused")
    assert not TokenFamily.objects.exists()


# simplejwt's URLs, answered by the app ---------------------------------------------------


@pytest.mark.urls("tests.urls_simplejwt")
def test_simplejwt_urls_keep_the_old_paths_working(
    migrating, api_client, user, password, simple_refresh
):
    assert reverse("rotating_tokens_simplejwt:refresh") == "/api/token/refresh/"
    login = api_client.post(
        "/api/token/", {"username": user.username, "password": password}, format="json"
    )
    assert login.status_code == 200, login.content
    converted = api_client.post("/api/token/refresh/", {"refresh": simple_refresh}, format="json")
    assert converted.status_code == 200, converted.content
    assert converted.json()["refresh"].startswith("rtok_")
    ours = api_client.post(
        "/api/token/refresh/", {"refresh": login.json()["refresh"]}, format="json"
    )
    assert ours.status_code == 200
    # The rest of the app, mounted beside them.
    assert (
        api_client.post(
            "/api/auth/logout/", {"refresh": ours.json()["refresh"]}, format="json"
        ).status_code
        == 204
    )


@pytest.mark.urls("tests.urls_simplejwt")
def test_simplejwt_blacklist_url_spends_a_simplejwt_token(migrating, api_client, simple_refresh):
    response = api_client.post("/api/token/blacklist/", {"refresh": simple_refresh}, format="json")

    assert (response.status_code, response.json()) == (200, {})
    assert ConvertedToken.objects.get().logged_out
    assert_refused(
        api_client.post("/api/token/refresh/", {"refresh": simple_refresh}, format="json"),
        "token_revoked",
    )


@pytest.mark.urls("tests.urls_simplejwt")
def test_simplejwt_blacklist_url_ends_a_family(migrating, api_client, user, simple_refresh):
    pair = api_client.post("/api/token/refresh/", {"refresh": simple_refresh}, format="json").json()
    response = api_client.post("/api/token/blacklist/", {"refresh": pair["refresh"]}, format="json")

    assert (response.status_code, response.json()) == (200, {})
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.LOGOUT


@pytest.mark.urls("tests.urls_simplejwt")
@pytest.mark.parametrize("body", [{}, {"refresh": "garbage"}, {"refresh": "a.b.c"}])
def test_simplejwt_blacklist_url_says_nothing_about_bad_input(migrating, api_client, body):
    response = api_client.post("/api/token/blacklist/", body, format="json")
    assert (response.status_code, response.json()) == (200, {})


@pytest.mark.parametrize("ended", ["logged out", "user deactivated unseen"])
def test_retry_of_a_conversion_whose_family_ended_gets_nothing(
    migrating, api_client, user, simple_refresh, ended
):
    pair = refresh(api_client, simple_refresh).json()
    if ended == "logged out":
        api_client.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")
    else:  # QuerySet.update() sends no signal: the family was not revoked
        type(user).objects.filter(pk=user.pk).update(is_active=False)

    response = refresh(api_client, simple_refresh)
    assert response.status_code == 401, response.content


def test_logout_with_a_converted_token_of_a_bound_family_needs_its_key(
    migrating, dpop_on, api_client, simple_refresh
):
    key = DPoPKey()
    refresh(api_client, simple_refresh, HTTP_DPOP=key.proof("POST", "http://testserver" + REFRESH))

    api_client.post(LOGOUT, {"refresh": simple_refresh}, format="json")
    assert TokenFamily.objects.get().revoked_at is None
    proof = key.proof("POST", "http://testserver" + LOGOUT)
    api_client.post(LOGOUT, {"refresh": simple_refresh}, format="json", HTTP_DPOP=proof)
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.LOGOUT


@pytest.mark.urls("tests.urls_simplejwt")
def test_simplejwt_blacklist_url_deletes_the_refresh_cookie(migrating, settings, api_client, user):
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "rotating_tokens.middleware.RefreshTokenCookieMiddleware",
    ]
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "both"}
    raw = services.start_family(user, services.Client()).refresh
    response = api_client.post("/api/token/blacklist/", {"refresh": raw}, format="json")

    assert response.status_code == 200
    cookie = response.cookies.get(app_settings.REFRESH_COOKIE_NAME)
    assert cookie is not None and cookie.value == "" and cookie["max-age"] == 0


def test_token_without_an_issue_time_never_converts_once_a_cutoff_exists(
    migrating, api_client, user
):
    token = SimpleJWTRefreshToken.for_user(user)
    del token["iat"]
    user.set_password("a new password")
    user.save()
    assert_refused(refresh(api_client, str(token)), "token_revoked")


def test_schema_documents_simplejwt_blacklist_url_as_simplejwt_answers(client, settings):
    settings.ROOT_URLCONF = "example_project.urls"
    response = client.get(reverse("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = response.json()["paths"]
    assert {"/api/token/", "/api/token/refresh/"} <= set(paths)
    blacklist = paths["/api/token/blacklist/"]["post"]
    assert blacklist["operationId"] == "simplejwt_blacklist"
    assert "200" in blacklist["responses"] and "204" not in blacklist["responses"]


def test_logout_everywhere_ends_the_unconverted_simplejwt_tokens_too(
    migrating, api_client, user, password
):
    on_another_device = str(SimpleJWTRefreshToken.for_user(user))
    login = api_client.post(
        "/api/auth/token/", {"username": user.username, "password": password}, format="json"
    ).json()
    response = api_client.post(
        "/api/auth/logout/all/", HTTP_AUTHORIZATION=f"Bearer {login['access']}"
    )
    assert response.status_code == 204

    assert_refused(refresh(api_client, on_another_device), "token_revoked")
