"""Sender-constrained tokens over HTTP (RFC 9449): binding at login, refresh and logout
of a bound family, the grace period by key, resource requests. The proof checks
themselves are tested one by one in test_dpop.py."""

from __future__ import annotations

import logging
from datetime import timedelta
from unittest import mock

import jwt
import pytest
from rest_framework.test import APIClient

from rotating_tokens import services, signals
from rotating_tokens.crypto import parse_token
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily

from .dpop_client import DPoPKey

pytestmark = pytest.mark.django_db

BASE = "http://testserver"
OBTAIN, REFRESH, LOGOUT = "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"
ME, SESSIONS = "/api/me/", "/api/auth/sessions/"


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey()


def login(api_client, user, password, key: DPoPKey | None = None, **extra):
    headers = key.headers("POST", BASE + OBTAIN) if key else {}
    return api_client.post(
        OBTAIN,
        {"username": user.username, "password": password},
        format="json",
        **headers,
        **extra,
    )


def refresh(api_client, raw, key: DPoPKey | None = None, **extra):
    headers = key.headers("POST", BASE + REFRESH) if key else {}
    return api_client.post(REFRESH, {"refresh": raw}, format="json", **headers, **extra)


def me(api_client, access, key: DPoPKey | None = None, scheme="DPoP", **proof_kwargs):
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {access}"}
    if key is not None:
        headers |= key.headers("GET", BASE + ME, access=access, **proof_kwargs)
    return api_client.get(ME, **headers)


def claims(access: str) -> dict:
    return jwt.decode(access, options={"verify_signature": False})


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


def token_row(raw: str) -> RefreshToken:
    return RefreshToken.objects.get(lookup_key=parse_token(raw).lookup_key)


@pytest.fixture
def bound(api_client, user, password, key) -> dict:
    response = login(api_client, user, password, key)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def rejections():
    seen: list[tuple] = []

    def receiver(family, reason, ip_address, user_agent, **kwargs):
        seen.append((family.pk, reason, ip_address, user_agent))

    signals.dpop_proof_rejected.connect(receiver)
    yield seen
    signals.dpop_proof_rejected.disconnect(receiver)


# Login --------------------------------------------------------------------------------


def test_login_with_a_proof_binds_the_family(bound, key):
    assert bound["token_type"] == "DPoP"
    family = TokenFamily.objects.get()
    assert family.dpop_jkt == key.jkt
    assert claims(bound["access"])["cnf"] == {"jkt": key.jkt}


def test_login_without_a_proof_is_a_bearer_login(api_client, user, password):
    body = login(api_client, user, password).json()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in claims(body["access"])
    assert TokenFamily.objects.get().dpop_jkt == ""


@pytest.mark.parametrize(
    "case", ["other URL", "other method", "stale", "from the future", "replayed", "garbage"]
)
def test_login_with_an_invalid_proof_is_never_a_bearer_login(api_client, user, password, key, case):
    url, method, iat = BASE + OBTAIN, "POST", None
    if case == "other URL":
        url = BASE + REFRESH
    elif case == "other method":
        method = "GET"
    elif case == "stale":
        iat = __import__("time").time() - 120
    elif case == "from the future":
        iat = __import__("time").time() + 60
    proof = "not.a.proof" if case == "garbage" else key.proof(method, url, iat=iat, jti="j1")
    if case == "replayed":
        assert login(api_client, user, password, HTTP_DPOP=proof).status_code == 200
        TokenFamily.objects.all().delete()
    response = login(api_client, user, password, HTTP_DPOP=proof)
    assert_error(response, 400, "dpop_invalid")
    assert not TokenFamily.objects.exists()


def test_required_mode_refuses_a_login_without_a_proof(api_client, user, password, key, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "required"}
    assert_error(login(api_client, user, password), 400, "dpop_required")
    assert not TokenFamily.objects.exists()
    assert login(api_client, user, password, key).json()["token_type"] == "DPoP"


def test_off_mode_ignores_proofs(api_client, user, password, key, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "off"}
    assert login(api_client, user, password, key).json()["token_type"] == "Bearer"
    assert login(api_client, user, password, HTTP_DPOP="garbage").status_code == 200


# Refresh of a bound family -----------------------------------------------------------------


def test_refresh_with_a_proof_by_the_bound_key_rotates_and_stays_bound(api_client, bound, key):
    response = refresh(api_client, bound["refresh"], key)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert claims(body["access"])["cnf"] == {"jkt": key.jkt}
    assert token_row(bound["refresh"]).used_at is not None


@pytest.mark.parametrize("case", ["no proof", "another key", "invalid proof"])
def test_refresh_without_the_key_changes_nothing(api_client, bound, key, rejections, case):
    thief = {"REMOTE_ADDR": "198.51.100.66", "HTTP_USER_AGENT": "thief/1.0"}
    if case == "no proof":
        response = refresh(api_client, bound["refresh"], **thief)
        expected, reason = "dpop_required", "missing"
    elif case == "another key":
        response = refresh(api_client, bound["refresh"], DPoPKey(), **thief)
        expected, reason = "dpop_invalid", "jkt"
    else:
        proof = key.proof("POST", BASE + OBTAIN)  # signed by the key, for another URL
        response = refresh(api_client, bound["refresh"], HTTP_DPOP=proof, **thief)
        expected, reason = "dpop_invalid", "htu"
    assert_error(response, 400, expected)
    assert token_row(bound["refresh"]).used_at is None  # not consumed
    family = TokenFamily.objects.get()
    assert family.revoked_at is None  # not even logged out
    assert rejections == [(family.pk, reason, "198.51.100.66", "thief/1.0")]
    # The real client, with the key, goes on.
    assert refresh(api_client, bound["refresh"], key).status_code == 200


def test_replay_of_a_used_token_without_the_key_does_not_kill_the_family(api_client, bound, key):
    assert refresh(api_client, bound["refresh"], key).status_code == 200
    assert_error(
        refresh(api_client, bound["refresh"], REMOTE_ADDR="198.51.100.66"), 400, "dpop_required"
    )
    assert TokenFamily.objects.get().revoked_at is None


def test_grace_retry_by_the_key_gets_the_same_successor_from_anywhere(api_client, bound, key):
    first = refresh(api_client, bound["refresh"], key).json()
    retry = refresh(
        api_client,
        bound["refresh"],
        key,
        REMOTE_ADDR="198.51.100.99",
        HTTP_USER_AGENT="another-network/2.0",
    )
    assert retry.status_code == 200, retry.content
    assert retry.json()["refresh"] == first["refresh"]


def test_replay_by_the_key_after_the_window_is_reuse(api_client, bound, key, time_machine):
    from django.utils import timezone

    first = refresh(api_client, bound["refresh"], key).json()
    time_machine.move_to(timezone.now() + timedelta(seconds=11), tick=False)
    assert_error(refresh(api_client, bound["refresh"], key), 401, "token_reused")
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED
    assert_error(refresh(api_client, first["refresh"], key), 401, "token_revoked")


def test_replay_by_the_key_after_the_successor_was_used_is_reuse(api_client, bound, key):
    first = refresh(api_client, bound["refresh"], key).json()
    assert refresh(api_client, first["refresh"], key).status_code == 200
    assert_error(refresh(api_client, bound["refresh"], key), 401, "token_reused")


def test_a_replayed_proof_is_refused(api_client, bound, key):
    proof = key.proof("POST", BASE + REFRESH)
    assert refresh(api_client, bound["refresh"], HTTP_DPOP=proof).status_code == 200
    assert_error(refresh(api_client, bound["refresh"], HTTP_DPOP=proof), 400, "dpop_invalid")


# Unbound families ----------------------------------------------------------------------------


def test_a_proof_does_not_bind_a_family_after_login(api_client, user, password, key):
    body = login(api_client, user, password).json()
    response = refresh(api_client, body["refresh"], key)
    assert response.json()["token_type"] == "Bearer"
    assert TokenFamily.objects.get().dpop_jkt == ""


def test_an_invalid_proof_on_an_unbound_family_is_refused(api_client, user, password):
    body = login(api_client, user, password).json()
    assert_error(refresh(api_client, body["refresh"], HTTP_DPOP="garbage"), 400, "dpop_invalid")
    assert token_row(body["refresh"]).used_at is None


# Resource requests ---------------------------------------------------------------------------


def test_bound_access_token_with_its_proof_authenticates(api_client, bound, key):
    response = me(api_client, bound["access"], key)
    assert response.status_code == 200, response.content


def test_bound_access_token_as_bearer_is_dpop_required(api_client, bound, key):
    response = me(api_client, bound["access"], scheme="Bearer")
    assert_error(response, 401, "dpop_required")
    assert response["WWW-Authenticate"] == 'DPoP algs="ES256 EdDSA"'


@pytest.mark.parametrize("case", ["no proof", "another key", "no ath", "wrong ath", "other URL"])
def test_bound_access_token_without_a_good_proof_is_dpop_invalid(api_client, bound, key, case):
    access = bound["access"]
    if case == "no proof":
        response = me(api_client, access)
    elif case == "another key":
        response = me(api_client, access, DPoPKey())
    elif case == "no ath":
        response = api_client.get(
            ME, HTTP_AUTHORIZATION=f"DPoP {access}", **key.headers("GET", BASE + ME)
        )
    elif case == "wrong ath":
        response = api_client.get(
            ME,
            HTTP_AUTHORIZATION=f"DPoP {access}",
            **key.headers("GET", BASE + ME, access=access + "x"),
        )
    else:
        response = api_client.get(
            ME,
            HTTP_AUTHORIZATION=f"DPoP {access}",
            **key.headers("GET", BASE + SESSIONS, access=access),
        )
    assert_error(response, 401, "dpop_invalid")
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("DPoP ")
    assert 'error="invalid_dpop_proof"' in challenge and 'algs="ES256 EdDSA"' in challenge


def test_unbound_access_token_with_the_dpop_scheme_is_token_invalid(api_client, user, password):
    access = login(api_client, user, password).json()["access"]
    assert_error(me(api_client, access, DPoPKey()), 401, "token_invalid")


def test_a_401_offers_both_schemes(api_client):
    response = api_client.get(ME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api", DPoP algs="ES256 EdDSA"'


def test_every_api_view_takes_a_bound_token(api_client, bound, key):
    access = bound["access"]
    listed = api_client.get(
        SESSIONS,
        HTTP_AUTHORIZATION=f"DPoP {access}",
        **key.headers("GET", BASE + SESSIONS, access=access),
    )
    assert listed.status_code == 200, listed.content
    (session,) = listed.json()
    assert session["dpop_jkt"] == key.jkt


def test_htu_follows_the_trusted_proxys_scheme(api_client, user, password, key, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = api_client.post(
        OBTAIN,
        {"username": user.username, "password": password},
        format="json",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_HOST="api.example.com",  # what the proxy passes on
        **key.headers("POST", "https://api.example.com" + OBTAIN),
    )
    assert response.status_code == 200, response.content
    assert response.json()["token_type"] == "DPoP"


# Logout -------------------------------------------------------------------------------------


def test_logout_of_a_bound_family_needs_the_key(api_client, bound, key):
    response = api_client.post(LOGOUT, {"refresh": bound["refresh"]}, format="json")
    assert response.status_code == 204
    assert TokenFamily.objects.get().revoked_at is None
    response = api_client.post(
        LOGOUT,
        {"refresh": bound["refresh"]},
        format="json",
        **key.headers("POST", BASE + LOGOUT),
    )
    assert response.status_code == 204
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.LOGOUT


# The cookie transport ---------------------------------------------------------------------


@pytest.fixture
def browser(settings) -> APIClient:
    """A browser's client, with the refresh cookie in "auto" transport."""
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "rotating_tokens.middleware.RefreshTokenCookieMiddleware",
    ]
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "auto"}
    return APIClient(enforce_csrf_checks=True, HTTP_SEC_FETCH_SITE="same-origin")


def test_a_browser_family_is_both_in_the_cookie_and_bound(browser, user, password, key):
    body = login(browser, user, password, key).json()
    assert "refresh" not in body and body["token_type"] == "DPoP"
    csrf = {"HTTP_X_CSRFTOKEN": browser.cookies["csrftoken"].value}
    # The cookie alone (a copy of it, say) is not enough; the cookie stays.
    refused = browser.post(REFRESH, content_type="application/json", **csrf)
    assert_error(refused, 400, "dpop_required")
    assert "__Secure-refresh_token" not in refused.cookies
    refreshed = browser.post(
        REFRESH, content_type="application/json", **csrf, **key.headers("POST", BASE + REFRESH)
    )
    assert refreshed.status_code == 200, refreshed.content
    assert refreshed.cookies["__Secure-refresh_token"].value.startswith("rtok_")


# The replay store -------------------------------------------------------------------------


def test_proofs_are_remembered_in_the_database_without_a_shared_cache(key):
    from rotating_tokens import dpop

    proof = dpop.verify_proof(
        key.proof("GET", "https://x.example/"),
        method="GET",
        url="https://x.example/",
        now=__import__("time").time(),
    )
    assert services.proof_is_new(proof)  # LocMemCache: not shared, so the database
    assert not services.proof_is_new(proof)


@pytest.fixture
def failing_redis(settings):
    settings.CACHES = {
        **settings.CACHES,
        "state": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        },
    }
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP_REPLAY_CACHE": "state"}


def test_a_failing_replay_cache_refuses_proofs_rather_than_switch_stores(key, failing_redis):
    # A proof recorded in the cache would pass again in the database, and the other
    # way round once the cache is back: no fallback.
    from rotating_tokens import dpop

    proof = dpop.verify_proof(
        key.proof("GET", "https://x.example/"),
        method="GET",
        url="https://x.example/",
        now=__import__("time").time(),
    )
    with (
        mock.patch("rotating_tokens.services.logger"),
        pytest.raises(services.ReplayStoreUnavailable),
    ):
        services.proof_is_new(proof)


def test_a_failing_replay_cache_is_a_503_for_bound_requests_only(
    api_client, bound, key, failing_redis, user, password
):
    with mock.patch("rotating_tokens.services.logger"):
        refused = refresh(api_client, bound["refresh"], key)
        assert refused.status_code == 503 and refused["Retry-After"]
        assert token_row(bound["refresh"]).used_at is None
        assert me(api_client, bound["access"], key).status_code == 503
        # Bearer logins and their families do not depend on it.
        assert login(api_client, user, password).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_proofs_of_requests_inside_atomic_requests_survive_an_error_answer(
    api_client, user, password, key, settings
):
    # Under ATOMIC_REQUESTS an error answer rolls the request's transaction back; the
    # record of the proof must not go with it, or the proof could be replayed (with
    # another body, which the proof does not cover).
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite: one writer at a time (rotating_tokens.W041)")
    access = login(api_client, user, password, key).json()["access"]
    url = "/own/refusing/"
    headers = {
        "HTTP_AUTHORIZATION": f"DPoP {access}",
        "HTTP_DPOP": key.proof("POST", BASE + url, access=access),
    }
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    try:
        assert api_client.post(url, {"amount": 1}, format="json", **headers).status_code == 400
        replay = api_client.post(url, {"amount": 2}, format="json", **headers)
    finally:
        settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False
    assert_error(replay, 401, "dpop_invalid")


# Found by reviewing the wiring against the contract ----------------------------------------


def test_a_simplejwt_conversion_binds_like_a_login(api_client, user, key, settings):
    from datetime import datetime, timezone

    from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": datetime(2100, 1, 1, tzinfo=timezone.utc),
        "DPOP": "required",
    }
    simple = str(SimpleJWTRefreshToken.for_user(user))
    assert_error(refresh(api_client, simple), 400, "dpop_required")
    assert_error(refresh(api_client, simple, HTTP_DPOP="garbage"), 400, "dpop_invalid")
    assert not TokenFamily.objects.exists()
    body = refresh(api_client, simple, key).json()
    assert body["token_type"] == "DPoP"
    assert TokenFamily.objects.get().dpop_jkt == key.jkt


def test_a_logout_without_the_key_keeps_the_browsers_cookie(browser, user, password, key):
    login(browser, user, password, key)
    csrf = {"HTTP_X_CSRFTOKEN": browser.cookies["csrftoken"].value}
    kept = browser.post(LOGOUT, content_type="application/json", **csrf)
    assert kept.status_code == 204
    assert "__Secure-refresh_token" not in kept.cookies  # not deleted
    assert TokenFamily.objects.get().revoked_at is None
    done = browser.post(
        LOGOUT, content_type="application/json", **csrf, **key.headers("POST", BASE + LOGOUT)
    )
    assert done.cookies["__Secure-refresh_token"].value == ""
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.LOGOUT


def test_a_plain_view_answers_a_refused_proof_with_the_apps_shape(api_client, user):
    response = api_client.post(
        "/own/plain-login/", {"username": user.username}, format="json", HTTP_DPOP="garbage"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "The DPoP proof is not valid.", "code": "dpop_invalid"}


@pytest.mark.parametrize("scheme", ["Bearer", "DPoP"])
def test_an_access_token_that_is_not_utf8_is_a_401(api_client, scheme):
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"{scheme} \xe9\xe9.\xe9.\xe9")
    assert response.status_code == 401


def test_families_bound_before_dpop_was_turned_off_keep_their_binding(
    api_client, bound, key, settings, user, password
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "off"}
    assert_error(me(api_client, bound["access"], scheme="Bearer"), 401, "dpop_required")
    assert me(api_client, bound["access"], key).status_code == 200
    assert refresh(api_client, bound["refresh"], key).status_code == 200
    # New logins are bearer logins, whatever they send.
    assert login(api_client, user, password, key).json()["token_type"] == "Bearer"


def test_an_unknown_dpop_mode_counts_as_required(api_client, user, password, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "require"}
    assert_error(login(api_client, user, password), 400, "dpop_required")


def test_simplejwt_authentication_with_dpop_on_is_warned_about(settings):
    from rotating_tokens.checks import check_simplejwt_authentication

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework_simplejwt.authentication.JWTAuthentication"
        ],
    }
    assert [m.id for m in check_simplejwt_authentication()] == ["rotating_tokens.W040"]


def test_atomic_requests_on_sqlite_without_a_shared_cache_is_warned_about(settings):
    from django.conf import settings as django_settings

    from rotating_tokens.checks import check_dpop_holes

    sqlite = {"ENGINE": "django.db.backends.sqlite3", "ATOMIC_REQUESTS": True}
    with mock.patch.dict(django_settings.DATABASES, {"other": sqlite}):
        assert "rotating_tokens.W041" in [m.id for m in check_dpop_holes()]
    assert "rotating_tokens.W041" not in [m.id for m in check_dpop_holes()]


# Why a proof was refused is logged ---------------------------------------------------------

ELSEWHERE = "https://elsewhere.example/"  # a proof made for another URL: reason "htu"
API_CLIENT_IP = "203.0.113.10"  # the api_client fixture's REMOTE_ADDR


@pytest.fixture
def proof_log(caplog):
    caplog.set_level(logging.WARNING, logger="rotating_tokens")
    return caplog


def refusals(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rotating_tokens" and r.getMessage().startswith("DPoP proof refused (")
    ]


def _session_exchange(user, key: DPoPKey):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/admin/login/")  # sets the csrftoken cookie
    return browser.post(
        "/api/auth/token/session/",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
        content_type="application/json",
        HTTP_DPOP=key.proof("POST", ELSEWHERE),
    )


@pytest.mark.parametrize("endpoint", ["login", "refresh", "logout", "session", "access"])
def test_every_refused_proof_is_logged_with_its_reason_and_no_secret(
    api_client, bound, key, user, password, proof_log, endpoint, settings
):
    proof = key.proof("POST" if endpoint != "access" else "GET", ELSEWHERE, access=bound["access"])
    proof_log.clear()
    if endpoint == "login":
        path, expected = OBTAIN, 400
        response = api_client.post(
            OBTAIN,
            {"username": user.username, "password": password},
            format="json",
            HTTP_DPOP=proof,
        )
    elif endpoint == "refresh":
        path, expected = REFRESH, 400
        response = api_client.post(
            REFRESH, {"refresh": bound["refresh"]}, format="json", HTTP_DPOP=proof
        )
    elif endpoint == "logout":
        path, expected = LOGOUT, 204
        response = api_client.post(
            LOGOUT, {"refresh": bound["refresh"]}, format="json", HTTP_DPOP=proof
        )
    elif endpoint == "session":
        path, expected = "/api/auth/token/session/", 400
        settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "body"}
        response = _session_exchange(user, key)
        proof = response.wsgi_request.META["HTTP_DPOP"]
    else:
        path, expected = ME, 401
        response = api_client.get(ME, HTTP_AUTHORIZATION=f"DPoP {bound['access']}", HTTP_DPOP=proof)
    assert response.status_code == expected, response.content
    method = "GET" if endpoint == "access" else "POST"
    ip = response.wsgi_request.META["REMOTE_ADDR"]
    assert f"DPoP proof refused (htu) on {method} '{path}' from {ip}." in refusals(proof_log)
    for secret in (proof, bound["access"], bound["refresh"], password):
        assert secret not in proof_log.text
    assert TokenFamily.objects.filter(revoked_at__isnull=False).count() == 0


def test_an_access_proof_by_another_key_is_logged_as_such(api_client, bound, proof_log):
    other = DPoPKey()
    me(api_client, bound["access"], other)
    assert refusals(proof_log) == [f"DPoP proof refused (jkt) on GET '{ME}' from {API_CLIENT_IP}."]


def test_a_replayed_access_proof_is_logged_as_a_replay(api_client, bound, key, proof_log):
    proof = key.proof("GET", BASE + ME, access=bound["access"])
    headers = {"HTTP_AUTHORIZATION": f"DPoP {bound['access']}", "HTTP_DPOP": proof}
    assert api_client.get(ME, **headers).status_code == 200
    assert refusals(proof_log) == []
    assert_error(api_client.get(ME, **headers), 401, "dpop_invalid")
    assert refusals(proof_log) == [
        f"DPoP proof refused (replay) on GET '{ME}' from {API_CLIENT_IP}."
    ]


@pytest.mark.parametrize(("scheme", "reason"), [("DPoP", "missing"), ("Bearer", "bearer")])
def test_a_bound_access_token_without_a_proof_is_logged(
    api_client, bound, proof_log, scheme, reason
):
    me(api_client, bound["access"], scheme=scheme)
    assert refusals(proof_log) == [
        f"DPoP proof refused ({reason}) on GET '{ME}' from {API_CLIENT_IP}."
    ]


# htu and the path as the client wrote it ------------------------------------------------------


def test_htu_is_compared_with_the_path_the_client_wrote(api_client, bound, key):
    # Django decodes "/api/me%2F" to "/api/me/" and routes it there; the raw request
    # target (gunicorn's RAW_URI) keeps the escape, so a proof for "/api/me/" is not one
    # for it (RFC 3986 section 2.2).
    access = bound["access"]
    headers = {"HTTP_AUTHORIZATION": f"DPoP {access}", "RAW_URI": "/api/me%2F"}
    for_other_path = key.proof("GET", BASE + "/api/me/", access=access)
    refused = api_client.get("/api/me%2F", HTTP_DPOP=for_other_path, **headers)
    assert_error(refused, 401, "dpop_invalid")
    for_this_path = key.proof("GET", BASE + "/api/me%2F", access=access)
    assert api_client.get("/api/me%2F", HTTP_DPOP=for_this_path, **headers).status_code == 200


def test_a_raw_target_that_is_not_the_routed_path_is_ignored(api_client, bound, key):
    # A server (or a proxy rewriting the path) whose raw target does not decode to the
    # path Django routed: the routed path, encoded again, is what htu must be.
    access = bound["access"]
    headers = {"HTTP_AUTHORIZATION": f"DPoP {access}", "REQUEST_URI": "/elsewhere/"}
    proof = key.proof("GET", BASE + ME, access=access)
    assert api_client.get(ME, HTTP_DPOP=proof, **headers).status_code == 200


@pytest.mark.parametrize(
    ("backend", "warned"),
    [
        ("django.core.cache.backends.db.DatabaseCache", True),  # culls: never holds them
        ("django.core.cache.backends.filebased.FileBasedCache", True),
        ("django.core.cache.backends.redis.RedisCache", False),
    ],
)
def test_atomic_requests_on_sqlite_is_warned_about_unless_redis_can_hold_the_proofs(
    settings, backend, warned
):
    from django.conf import settings as django_settings

    from rotating_tokens.checks import check_dpop_holes

    settings.CACHES = {
        **settings.CACHES,
        "state": {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:1/0"},
    }
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP_REPLAY_CACHE": "state"}
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "ATOMIC_REQUESTS": True}
    with mock.patch.dict(django_settings.DATABASES, {"other": sqlite}):
        ids = [m.id for m in check_dpop_holes()]
    assert ("rotating_tokens.W041" in ids) is warned


@pytest.mark.parametrize(
    ("path", "elsewhere"),
    [("//evil.example/x", "http://evil.example/x"), ("/a/../api/me/", BASE + ME)],
)
def test_htu_is_the_requests_own_host_and_path_whatever_the_path_holds(key, path, elsewhere):
    # Joined with urljoin, "//evil.example/x" is another host, and "/a/../" is resolved.
    from django.test import RequestFactory

    from rotating_tokens.clients import dpop_proof

    request = RequestFactory().get("/")
    request.path = request.path_info = path  # as a server hands over "GET //evil.example/x"
    assert dpop_proof(request) is None
    request.META["HTTP_DPOP"] = key.proof("GET", elsewhere)
    assert dpop_proof(request).reason == "htu"
    request.META["HTTP_DPOP"] = key.proof("GET", BASE + path)
    assert dpop_proof(request).jkt == key.jkt
