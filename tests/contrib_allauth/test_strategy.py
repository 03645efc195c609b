"""django-allauth's headless app client (``/_allauth/app/v1/…``) on this app's tokens,
through allauth's own endpoints, with the real django-allauth package."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from allauth.account.models import EmailAddress
from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client as HttpClient
from django.test import RequestFactory, override_settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from rotating_tokens import services
from rotating_tokens.contrib.allauth.strategy import (
    FAMILY_SESSION_KEY,
    REMEMBER_SESSION_KEY,
    RotatingTokenStrategy,
    _move_session,
    revoke_family_on_logout,
)
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily
from tests.dpop_client import DPoPKey
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

APP = "/_allauth/app/v1"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # base32, as allauth stores it


def _app(user_agent: str = "pytest-app/1.0", ip: str = "203.0.113.20") -> HttpClient:
    return HttpClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)


@pytest.fixture
def app() -> HttpClient:
    return _app()


@pytest.fixture
def thief() -> HttpClient:
    return _app(user_agent="thief/1.0", ip="198.51.100.66")


@pytest.fixture
def user(db: Any) -> Any:
    user = UserFactory()
    # ACCOUNT_EMAIL_VERIFICATION is mandatory in these settings.
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


@pytest.fixture
def totp_user(user: Any) -> Any:
    TOTP.activate(user, TOTP_SECRET)
    return user


def _totp_code() -> str:
    return format_hotp_value(hotp_value(TOTP_SECRET, int(time.time()) // mfa_settings.TOTP_PERIOD))


def _post(client: HttpClient, path: str, data: dict[str, Any], **headers: str) -> Any:
    return client.post(APP + path, data, content_type="application/json", headers=headers)


def _bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def _login(client: HttpClient, user: Any) -> dict[str, Any]:
    response = _post(client, "/auth/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200, response.json()
    return response.json()["meta"]


def _refresh(client: HttpClient, raw: str) -> Any:
    return _post(client, "/tokens/refresh", {"refresh_token": raw})


def _family_of(access: str) -> TokenFamily:
    claims = jwt.decode(access, options={"verify_signature": False})
    return TokenFamily.objects.get(pk=claims["fam"])


# Login --------------------------------------------------------------------------------


def test_password_login_returns_access_and_refresh_tokens(app, user):
    meta = _login(app, user)

    assert meta["is_authenticated"] is True
    assert meta["refresh_token"].startswith("rtok_")
    assert 0 < meta["expires_in"] <= 300
    assert meta["session_token"]
    family = TokenFamily.objects.get(user=user)
    assert _family_of(meta["access_token"]) == family
    assert (family.ip_address, family.user_agent) == ("203.0.113.20", "pytest-app/1.0")
    assert family.tokens.get().used_at is None


def test_access_token_authenticates_an_allauth_app_request(app, user):
    meta = _login(app, user)

    response = _app().get(f"{APP}/auth/session", headers=_bearer(meta["access_token"]))

    assert response.status_code == 200
    assert response.json()["data"]["user"]["username"] == user.username
    # The methods of the login are there: it is the login's own session.
    assert [m["method"] for m in response.json()["data"]["methods"]] == ["password"]


def test_access_token_authenticates_a_drf_view(app, user):
    meta = _login(app, user)

    response = _app().get("/api/me/", headers=_bearer(meta["access_token"]))

    assert response.status_code == 200
    assert response.json() == {"id": user.pk, "username": user.username}


def test_session_token_of_the_login_is_the_familys_session(app, user):
    meta = _login(app, user)

    response = _app().get(f"{APP}/auth/session", headers={"X-Session-Token": meta["session_token"]})

    assert response.status_code == 200
    session = SessionStore(meta["session_token"])
    assert session[FAMILY_SESSION_KEY] == str(_family_of(meta["access_token"]).pk)
    # The session lives as long as the family, not SESSION_COOKIE_AGE.
    assert session.get_expiry_date() == _family_of(meta["access_token"]).expires_at


def test_wrong_password_starts_no_family(app, user):
    response = _post(app, "/auth/login", {"username": user.username, "password": "wrong"})

    assert response.status_code == 400
    assert "access_token" not in response.json().get("meta", {})
    assert not TokenFamily.objects.exists()


def test_login_with_totp_passes_the_mfa_stage_then_returns_tokens(app, totp_user, time_machine):
    time_machine.move_to(timezone.now(), tick=False)  # no TOTP period ends mid-test
    response = _post(app, "/auth/login", {"username": totp_user.username, "password": PASSWORD})

    assert response.status_code == 401
    body = response.json()
    assert {"id": "mfa_authenticate", "is_pending": True, "types": ["totp"]} in body["data"][
        "flows"
    ]
    assert "access_token" not in body["meta"]
    assert not TokenFamily.objects.exists()
    session_token = body["meta"]["session_token"]

    wrong = _post(app, "/auth/2fa/authenticate", {"code": "000000"}, X_Session_Token=session_token)
    assert wrong.status_code == 400
    assert not TokenFamily.objects.exists()

    response = _post(
        app, "/auth/2fa/authenticate", {"code": _totp_code()}, X_Session_Token=session_token
    )

    assert response.status_code == 200, response.json()
    meta = response.json()["meta"]
    assert meta["refresh_token"].startswith("rtok_")
    assert _family_of(meta["access_token"]) == TokenFamily.objects.get(user=totp_user)
    methods = [m["method"] for m in response.json()["data"]["methods"]]
    assert methods == ["password", "mfa"]
    # The session of the MFA stage is gone: the app goes on with the family's.
    assert meta["session_token"] != session_token
    assert not SessionStore().exists(session_token)
    assert _app().get("/api/me/", headers=_bearer(meta["access_token"])).status_code == 200


def test_signup_with_email_verification_by_code_returns_tokens(app):
    response = _post(
        app,
        "/auth/signup",
        {"username": "newcomer", "email": "newcomer@example.com", "password": PASSWORD},
    )
    assert response.status_code == 401
    session_token = response.json()["meta"]["session_token"]
    assert not TokenFamily.objects.exists()
    code = re.search(r"^([A-Z0-9-]{6,})$", mail.outbox[-1].body, re.MULTILINE)
    assert code is not None, mail.outbox[-1].body

    response = _post(app, "/auth/email/verify", {"key": code[1]}, X_Session_Token=session_token)

    assert response.status_code == 200, response.json()
    meta = response.json()["meta"]
    assert meta["refresh_token"].startswith("rtok_")
    assert _family_of(meta["access_token"]).user.username == "newcomer"


# Refresh ------------------------------------------------------------------------------


def test_refresh_through_allauth_rotates(app, user):
    meta = _login(app, user)

    response = _refresh(app, meta["refresh_token"])

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["refresh_token"].startswith("rtok_")
    assert data["refresh_token"] != meta["refresh_token"]
    family = TokenFamily.objects.get(user=user)
    assert _family_of(data["access_token"]) == family
    assert family.tokens.filter(used_at__isnull=False).count() == 1
    assert _app().get("/api/me/", headers=_bearer(data["access_token"])).status_code == 200
    # The rotated chain goes on.
    assert _refresh(app, data["refresh_token"]).status_code == 200


def test_retry_from_the_same_client_within_grace_gets_the_same_successor(app, user):
    meta = _login(app, user)
    first = _refresh(app, meta["refresh_token"]).json()["data"]

    retry = _refresh(_app(), meta["refresh_token"])

    assert retry.status_code == 200
    assert retry.json()["data"]["refresh_token"] == first["refresh_token"]
    assert TokenFamily.objects.get(user=user).revoked_at is None


def _assert_family_dead(user: Any, meta: dict[str, Any], newest_refresh: str) -> None:
    family = TokenFamily.objects.get(user=user)
    assert family.revoke_reason == RevokeReason.REUSE_DETECTED
    # The newest refresh token is refused too.
    assert _refresh(_app(), newest_refresh).status_code == 400
    # The access token, on the app's API and on allauth's.
    response = _app().get("/api/me/", headers=_bearer(meta["access_token"]))
    assert (response.status_code, response.json()["code"]) == (401, "token_revoked")
    response = _app().get(f"{APP}/auth/session", headers=_bearer(meta["access_token"]))
    assert response.status_code == 401
    # And the session token: allauth's "session gone".
    response = _app().get(f"{APP}/auth/session", headers={"X-Session-Token": meta["session_token"]})
    assert response.status_code == 410
    assert not SessionStore().exists(meta["session_token"])


def test_replay_from_another_client_revokes_the_family(app, thief, user):
    meta = _login(app, user)
    newest = _refresh(app, meta["refresh_token"]).json()["data"]["refresh_token"]

    response = _refresh(thief, meta["refresh_token"])

    # allauth's error for a refused refresh token: its shape has no room for the reason.
    assert response.status_code == 400
    assert response.json() == {"status": 400}
    _assert_family_dead(user, meta, newest)


def test_replay_after_the_grace_window_revokes_the_family(app, user, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    meta = _login(app, user)
    newest = _refresh(app, meta["refresh_token"]).json()["data"]["refresh_token"]
    time_machine.shift(timedelta(seconds=11))

    assert _refresh(_app(), meta["refresh_token"]).status_code == 400

    _assert_family_dead(user, meta, newest)


def test_replay_with_grace_zero_revokes_the_family(app, user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REUSE_GRACE_PERIOD": 0}
    meta = _login(app, user)
    newest = _refresh(app, meta["refresh_token"]).json()["data"]["refresh_token"]

    assert _refresh(_app(), meta["refresh_token"]).status_code == 400

    _assert_family_dead(user, meta, newest)


@pytest.mark.parametrize("value", ["", "rtok_unknown", "eyJhbGciOiJIUzI1NiJ9.e30.x", "x" * 5000])
def test_invalid_refresh_token_is_allauths_error(app, value):
    response = _refresh(app, value)

    assert response.status_code == 400
    assert response.json()["status"] == 400


# Logout and revocation ----------------------------------------------------------------


@pytest.mark.parametrize("credential", ["access_token", "session_token"])
def test_allauth_logout_revokes_the_family(app, user, credential):
    meta = _login(app, user)
    header = (
        _bearer(meta["access_token"])
        if credential == "access_token"
        else {"X-Session-Token": meta["session_token"]}
    )

    response = _app().delete(f"{APP}/auth/session", headers=header)

    assert response.status_code == 401  # allauth: no longer authenticated
    family = TokenFamily.objects.get(user=user)
    assert family.revoke_reason == RevokeReason.LOGOUT
    response = _app().get("/api/me/", headers=_bearer(meta["access_token"]))
    assert (response.status_code, response.json()["code"]) == (401, "token_revoked")
    assert _refresh(_app(), meta["refresh_token"]).status_code == 400
    assert not SessionStore().exists(meta["session_token"])


def test_revocation_elsewhere_ends_the_allauth_session(app, user):
    meta = _login(app, user)

    services.logout_all(user)

    response = _app().get(f"{APP}/auth/session", headers=_bearer(meta["access_token"]))
    assert response.status_code == 401
    response = _app().get(f"{APP}/auth/session", headers={"X-Session-Token": meta["session_token"]})
    assert response.status_code == 410


def test_session_of_a_revoked_family_is_refused_even_if_not_deleted(app, user):
    meta = _login(app, user)
    # As a revocation made where the strategy was never loaded: no session deleted.
    TokenFamily.objects.update(revoked_at=TokenFamily.objects.get().created_at)
    cache.clear()  # the family's cached state

    response = _app().get(f"{APP}/auth/session", headers={"X-Session-Token": meta["session_token"]})

    assert response.status_code == 410
    assert not SessionStore().exists(meta["session_token"])


def test_authenticated_session_without_a_family_is_refused(user):
    # A session logged in some other way (a browser's), sent as X-Session-Token.
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()

    response = _app().get(f"{APP}/auth/session", headers={"X-Session-Token": session.session_key})

    assert response.status_code == 410


def test_password_change_through_allauth_spares_only_this_family(app, user):
    this = _login(app, user)
    other = _login(_app(user_agent="other-device/1.0"), user)

    response = _post(
        app,
        "/account/password/change",
        {"current_password": PASSWORD, "new_password": "a new and long passphrase 42"},
        **_bearer(this["access_token"]),
    )

    assert response.status_code == 200, response.json()
    assert _family_of(other["access_token"]).revoke_reason == RevokeReason.PASSWORD_CHANGE
    assert _family_of(this["access_token"]).revoked_at is None
    # Django gave the session a new key; it is back under its family's key, so both
    # the access token and the session token still find it.
    for header in (_bearer(this["access_token"]), {"X-Session-Token": this["session_token"]}):
        assert _app().get(f"{APP}/auth/session", headers=header).status_code == 200
    assert _refresh(app, this["refresh_token"]).status_code == 200
    assert _refresh(app, other["refresh_token"]).status_code == 400


def test_expired_access_token_leaves_allauth_request_anonymous(app, user, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    meta = _login(app, user)
    time_machine.shift(timedelta(minutes=6))

    response = _app().get(f"{APP}/auth/session", headers=_bearer(meta["access_token"]))

    assert response.status_code == 401
    # The refresh token still works, and its access token reaches allauth again.
    access = _refresh(app, meta["refresh_token"]).json()["data"]["access_token"]
    assert _app().get(f"{APP}/auth/session", headers=_bearer(access)).status_code == 200


# Concurrency --------------------------------------------------------------------------


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"]
    not in ("django.db.backends.postgresql", "django.db.backends.mysql"),
    reason="needs the row locks of PostgreSQL or MariaDB (DATABASE_URL)",
)
def test_concurrent_refreshes_through_allauth_let_one_through(user, settings):
    """allauth's own JWT strategy lets two concurrent refreshes of one token both
    succeed; here one rotates, and with grace 0 the others are reuse."""
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REUSE_GRACE_PERIOD": 0}
    meta = _login(_app(), user)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = [0] * threads_count

    def run(i: int) -> None:
        try:
            client = _app()
            barrier.wait()
            statuses[i] = _refresh(client, meta["refresh_token"]).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [400] * (threads_count - 1)
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED
    assert RefreshToken.objects.count() == 2  # one successor, never a fork


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_client_side_sessions_are_refused_with_a_clear_error(app, user):
    with pytest.raises(ImproperlyConfigured, match="stored on the server"):
        _post(app, "/auth/login", {"username": user.username, "password": PASSWORD})


# Edges --------------------------------------------------------------------------------


def test_unknown_session_token_is_gone(app):
    response = _app().get(f"{APP}/auth/session", headers={"X-Session-Token": "no-such-session"})

    assert response.status_code == 410


def test_access_token_without_a_family_reaches_no_session(user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "CHECK_FAMILY_ON_ACCESS": False}
    access = str(AccessToken.for_user(user))  # simplejwt's own: no family claim

    response = _app().get(f"{APP}/auth/session", headers=_bearer(access))

    assert response.status_code == 401


def test_refresh_outside_a_request_is_a_configuration_error(app, user):
    meta = _login(app, user)

    with pytest.raises(ImproperlyConfigured, match="AccountMiddleware"):
        RotatingTokenStrategy().refresh_token(meta["refresh_token"])


def test_session_made_before_a_secret_key_rotation_is_still_found(app, user, settings):
    meta = _login(app, user)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-the-tests-that-is-long-enough-for-hs256"

    # simplejwt froze its signing key at import, so the access token still verifies.
    response = _app().get(f"{APP}/auth/session", headers=_bearer(meta["access_token"]))

    assert response.status_code == 200
    # A revocation deletes it under the old key as well.
    services.logout_all(user)
    assert not SessionStore().exists(meta["session_token"])


def test_new_login_in_a_session_that_has_a_family_revokes_the_old_one(app, user):
    meta = _login(app, user)
    old_family = _family_of(meta["access_token"])
    request = RequestFactory().post("/", HTTP_USER_AGENT="pytest-app/1.0")
    request.session = SessionStore(meta["session_token"])
    request.user = user

    payload = RotatingTokenStrategy().create_access_token_payload(request)

    assert payload is not None
    new_family = _family_of(payload["access_token"])
    assert new_family != old_family
    old_family.refresh_from_db()
    assert old_family.revoke_reason == RevokeReason.LOGOUT
    assert request.session[FAMILY_SESSION_KEY] == str(new_family.pk)


def test_moving_a_session_onto_an_existing_key_overwrites_it():
    taken = SessionStore()
    taken["stale"] = True
    taken.save()
    session = SessionStore()
    session["fresh"] = True
    session.save()
    old_key = session.session_key

    _move_session(session, taken.session_key)

    moved = SessionStore(taken.session_key)
    assert moved.get("fresh") is True
    assert not SessionStore().exists(old_key)


def test_logout_of_a_session_without_a_family_revokes_nothing(user):
    family = services.start_family(user, services.Client()).family
    request = RequestFactory().get("/")
    request.session = SessionStore()

    revoke_family_on_logout(sender=None, request=request)
    revoke_family_on_logout(sender=None, request=None)

    family.refresh_from_db()
    assert family.revoked_at is None


# DPoP: logins through allauth bind as POST token/ does (bug 8) ------------------------

SERVER = "http://testserver"


def _proof(key: DPoPKey, method: str, path: str, **kwargs: Any) -> dict[str, str]:
    return {"DPoP": key.proof(method, SERVER + APP + path, **kwargs)}


def _login_with(client: HttpClient, user: Any, **headers: str) -> Any:
    return _post(
        client, "/auth/login", {"username": user.username, "password": PASSWORD}, **headers
    )


def _no_authenticated_session() -> bool:
    return all(SESSION_KEY not in s.get_decoded() for s in Session.objects.all())


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_login_with_a_dpop_proof_binds_the_family(app, user, settings, mode):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": mode}
    key = DPoPKey()

    response = _login_with(app, user, **_proof(key, "POST", "/auth/login"))

    assert response.status_code == 200, response.json()
    meta = response.json()["meta"]
    assert meta["token_type"] == "DPoP"
    assert TokenFamily.objects.get(user=user).dpop_jkt == key.jkt
    claims = jwt.decode(meta["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.jkt}
    # Its access token needs a proof by the key, on allauth's endpoints too.
    access = meta["access_token"]
    bound = {
        "Authorization": f"DPoP {access}",
        **_proof(key, "GET", "/auth/session", access=access),
    }
    assert _app().get(f"{APP}/auth/session", headers=bound).status_code == 200
    assert _app().get(f"{APP}/auth/session", headers=_bearer(access)).status_code == 401


def test_refresh_of_a_bound_family_through_allauth_needs_a_proof_by_its_key(app, user):
    key = DPoPKey()
    meta = _login_with(app, user, **_proof(key, "POST", "/auth/login")).json()["meta"]
    raw = {"refresh_token": meta["refresh_token"]}

    assert _post(app, "/tokens/refresh", raw).status_code == 400
    other = DPoPKey()
    assert (
        _post(app, "/tokens/refresh", raw, **_proof(other, "POST", "/tokens/refresh")).status_code
        == 400
    )
    # Nothing was used by the refused attempts.
    assert TokenFamily.objects.get(user=user).tokens.get().used_at is None

    response = _post(app, "/tokens/refresh", raw, **_proof(key, "POST", "/tokens/refresh"))

    assert response.status_code == 200
    assert TokenFamily.objects.get(user=user).revoked_at is None


def test_dpop_required_refuses_an_allauth_login_without_a_proof(app, user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "required"}

    response = _login_with(app, user)

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "message": "This token is bound to a key: the request needs a DPoP proof.",
            "code": "dpop_required",
        }
    ]
    assert "meta" not in response.json()
    assert not TokenFamily.objects.exists()
    # allauth had logged the user in: no session is left authenticated.
    assert _no_authenticated_session()


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_a_refused_proof_at_an_allauth_login_is_never_a_bearer_login(app, user, settings, mode):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": mode}
    key = DPoPKey()

    # A proof made for another URL.
    response = _login_with(app, user, **_proof(key, "POST", "/tokens/refresh"))

    assert response.status_code == 400
    assert [e["code"] for e in response.json()["errors"]] == ["dpop_invalid"]
    assert not TokenFamily.objects.exists()
    assert _no_authenticated_session()


def test_dpop_off_ignores_the_proof_of_an_allauth_login(app, user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "off"}

    response = _login_with(app, user, DPoP="not even a proof")

    assert response.status_code == 200
    assert response.json()["meta"]["token_type"] == "Bearer"
    assert TokenFamily.objects.get(user=user).dpop_jkt == ""


def test_the_mfa_step_that_ends_the_login_carries_the_proof(app, totp_user, settings, time_machine):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "required"}
    key = DPoPKey()
    time_machine.move_to(timezone.now(), tick=False)  # no TOTP period ends mid-test
    # The first step does not authenticate yet: no proof needed.
    first = _login_with(app, totp_user)
    assert first.status_code == 401
    session_token = first.json()["meta"]["session_token"]

    response = _post(
        app,
        "/auth/2fa/authenticate",
        {"code": _totp_code()},
        X_Session_Token=session_token,
        **_proof(key, "POST", "/auth/2fa/authenticate"),
    )

    assert response.status_code == 200, response.json()
    assert TokenFamily.objects.get(user=totp_user).dpop_jkt == key.jkt


def test_the_session_token_of_a_bound_family_alone_reaches_no_session(app, user):
    key = DPoPKey()
    meta = _login_with(app, user, **_proof(key, "POST", "/auth/login")).json()["meta"]
    session_token = {"X-Session-Token": meta["session_token"]}

    # A bearer secret, next to the bound tokens in the login's answer: alone, anonymous.
    alone = _app().get(f"{APP}/auth/session", headers=session_token)
    assert alone.status_code == 401
    assert alone.json()["meta"]["is_authenticated"] is False
    # With the family's access token and a proof, the login's own session.
    access = meta["access_token"]
    proven = {
        **session_token,
        "Authorization": f"DPoP {access}",
        **_proof(key, "GET", "/auth/session", access=access),
    }
    response = _app().get(f"{APP}/auth/session", headers=proven)
    assert response.status_code == 200
    assert response.json()["data"]["user"]["username"] == user.username
    # An app that sends its session token on every request still refreshes.
    raw = {"refresh_token": meta["refresh_token"]}
    refreshed = _post(
        app, "/tokens/refresh", raw, **session_token, **_proof(key, "POST", "/tokens/refresh")
    )
    assert refreshed.status_code == 200, refreshed.json()
    assert SessionStore().exists(meta["session_token"])  # nothing was deleted


# Remember me ----------------------------------------------------------------------------


def test_login_with_remember_false_starts_a_family_that_is_not_remembered(app, user):
    response = _post(
        app, "/auth/login", {"username": user.username, "password": PASSWORD, "remember": False}
    )

    assert response.status_code == 200, response.json()
    family = TokenFamily.objects.get(user=user)
    assert family.remember is False
    assert family.expires_at - family.created_at == timedelta(hours=12)
    # allauth's session ends with the family.
    session = SessionStore(response.json()["meta"]["session_token"])
    assert abs(session.get_expiry_date() - family.expires_at) < timedelta(seconds=1)


@pytest.mark.parametrize("said", [{}, {"remember": True}, {"remember": "false"}])
def test_login_is_remembered_unless_it_says_false(app, user, said):
    _post(app, "/auth/login", {"username": user.username, "password": PASSWORD, **said})

    assert TokenFamily.objects.get(user=user).remember is True


def test_remember_false_of_the_login_holds_through_the_mfa_stage(app, totp_user, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    response = _post(
        app,
        "/auth/login",
        {"username": totp_user.username, "password": PASSWORD, "remember": False},
    )
    assert response.status_code == 401
    session_token = response.json()["meta"]["session_token"]

    response = _post(
        app, "/auth/2fa/authenticate", {"code": _totp_code()}, X_Session_Token=session_token
    )

    assert response.status_code == 200, response.json()
    assert TokenFamily.objects.get(user=totp_user).remember is False
    # Used up: a later login in this session asks again.
    family_session = SessionStore(response.json()["meta"]["session_token"])
    assert REMEMBER_SESSION_KEY not in family_session.load()


@pytest.mark.parametrize(("setting", "remembered"), [(True, True), (False, False)])
def test_account_session_remember_decides_when_set(app, user, settings, setting, remembered):
    settings.ACCOUNT_SESSION_REMEMBER = setting

    _post(
        app,
        "/auth/login",
        {"username": user.username, "password": PASSWORD, "remember": not remembered},
    )

    assert TokenFamily.objects.get(user=user).remember is remembered
