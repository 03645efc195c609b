"""The HTTP contract of the endpoints: status codes, ``{"detail", "code"}`` bodies, headers."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock
from urllib.parse import urlencode

import pytest
from django.contrib.auth.signals import user_logged_in
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from rotating_tokens import services
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily
from rotating_tokens.serializers import TokenPairSerializer
from rotating_tokens.throttling import OptionalScopedRateThrottle

from .factories import RefreshTokenFactory, UserFactory

pytestmark = pytest.mark.django_db

OBTAIN, REFRESH = "/api/auth/token/", "/api/auth/token/refresh/"
LOGOUT, LOGOUT_ALL = "/api/auth/logout/", "/api/auth/logout/all/"
SESSIONS_LIST = "/api/auth/sessions/"
TOKEN_PAIR_KEYS = {
    "access",
    "access_expires_at",
    "token_type",
    "refresh",
    "refresh_expires_at",
    "remember",
}


def _login(api_client: APIClient, user, password: str, **extra) -> dict:
    response = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json", **extra
    )
    assert response.status_code == 200, response.content
    return response.json()


def _refresh(api_client: APIClient, raw, **extra):
    return api_client.post(REFRESH, {"refresh": raw}, format="json", **extra)


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def _assert_only_error(response, status: int, code: str) -> None:
    body = _assert_error(response, status, code)
    assert set(body) == {"detail", "code"}


# Obtain -----------------------------------------------------------------------------


def test_obtain_returns_the_token_pair(api_client, user, password):
    response = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_PAIR_KEYS
    assert body["token_type"] == "Bearer"
    assert body["refresh"].startswith("rtok_")
    now = timezone.now()
    # parse_datetime: Python 3.10's fromisoformat() does not read the "Z" suffix.
    access_expiry = parse_datetime(body["access_expires_at"])
    refresh_expiry = parse_datetime(body["refresh_expires_at"])
    assert access_expiry and access_expiry.tzinfo is not None
    assert refresh_expiry and refresh_expiry.tzinfo is not None
    assert now < access_expiry <= now + timedelta(minutes=5)
    assert now + timedelta(days=13) < refresh_expiry <= now + timedelta(days=14)
    assert TokenFamily.objects.for_user(user).count() == 1


@pytest.mark.parametrize("path", [OBTAIN, REFRESH])
def test_token_responses_are_not_cached(api_client, user, password, path):
    login = _login(api_client, user, password)
    response = (
        _refresh(api_client, login["refresh"])
        if path == REFRESH
        else api_client.post(path, {"username": user.username, "password": password}, format="json")
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_obtain_accepts_form_data(api_client, user, password):
    response = api_client.post(
        OBTAIN,
        urlencode({"username": user.username, "password": password}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200


def test_login_sends_user_logged_in_and_updates_last_login(api_client, user, password):
    # django-axes, audit logs and "last seen" screens listen to user_logged_in.
    received = []

    def receiver(sender, request, user, **kwargs):
        received.append((sender, request.path, user.pk))

    user_logged_in.connect(receiver)
    try:
        _login(api_client, user, password)
    finally:
        user_logged_in.disconnect(receiver)
    assert received == [(type(user), OBTAIN, user.pk)]
    user.refresh_from_db()
    assert user.last_login is not None
    assert timezone.now() - user.last_login < timedelta(seconds=30)


def test_failed_login_sends_no_user_logged_in(api_client, user, password):
    received = []

    def receiver(sender, user, **kwargs):
        received.append(user)

    user_logged_in.connect(receiver)
    try:
        api_client.post(OBTAIN, {"username": user.username, "password": "x"}, format="json")
    finally:
        user_logged_in.disconnect(receiver)
    assert received == []
    user.refresh_from_db()
    assert user.last_login is None


@pytest.mark.parametrize("case", ["wrong password", "unknown user", "inactive user"])
def test_obtain_refuses_bad_credentials_alike(api_client, user, password, case):
    credentials = {"username": user.username, "password": password}
    if case == "wrong password":
        credentials["password"] = password + "!"
    elif case == "unknown user":
        credentials["username"] = "nobody-by-that-name"
    else:
        user.is_active = False
        user.save()
    response = api_client.post(OBTAIN, credentials, format="json")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "No active account was found with these credentials.",
        "code": "invalid_credentials",
    }
    assert not TokenFamily.objects.exists()


def test_obtain_without_fields_lists_field_errors(api_client):
    response = api_client.post(OBTAIN, {}, format="json")
    body = _assert_error(response, 400, "invalid")
    assert set(body) == {"detail", "code", "username", "password"}
    assert body["username"] and body["password"]


def test_obtain_with_json_array_body_is_400(api_client):
    _assert_error(api_client.post(OBTAIN, [1, 2], format="json"), 400, "invalid")


@pytest.mark.parametrize("field", ["username", "password"])
def test_obtain_with_huge_field_is_400(api_client, user, password, field):
    credentials = {"username": user.username, "password": password}
    credentials[field] = "x" * 1_000_000
    body = _assert_error(api_client.post(OBTAIN, credentials, format="json"), 400, "invalid")
    assert field in body


@pytest.mark.parametrize("value", [None, 12, ["a"], {"a": 1}, True])
def test_obtain_with_wrong_json_types_is_never_500(api_client, user, value):
    response = api_client.post(
        OBTAIN, {"username": user.username, "password": value}, format="json"
    )
    assert response.status_code in (400, 401)
    assert set(response.json()) >= {"detail", "code"}


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
def test_malformed_json_is_parse_error(api_client, path):
    response = api_client.post(path, b'{"refresh": ', content_type="application/json")
    _assert_only_error(response, 400, "parse_error")


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
def test_wrong_content_type_is_415(api_client, path):
    response = api_client.post(path, b"refresh=x", content_type="text/plain")
    _assert_only_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
def test_json_nested_past_the_limit_is_parse_error_on_any_python(api_client, path):
    # 21 levels: every Python parses it (3.11 would recurse past its limit only at
    # about 1000, 3.12 much deeper), and a token body is one flat object.
    nested = '{"refresh": ' + "[" * 20 + "]" * 20 + "}"
    response = api_client.post(path, nested, content_type="application/json")
    _assert_only_error(response, 400, "parse_error")


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
def test_deeply_nested_json_is_parse_error(api_client, path):
    # 2 KB that make json recurse past Python's limit (RecursionError: a 500 before).
    body = "[" * 1000 + "]" * 1000
    response = api_client.post(path, body, content_type="application/json")
    _assert_only_error(response, 400, "parse_error")


@pytest.mark.parametrize("with_cookie_middleware", [False, True])
@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
def test_file_upload_is_415_and_never_read(api_client, settings, path, with_cookie_middleware):
    if with_cookie_middleware:
        settings.MIDDLEWARE = [
            *settings.MIDDLEWARE,
            "rotating_tokens.middleware.RefreshTokenCookieMiddleware",
        ]
        settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "auto"}
    upload = SimpleUploadedFile("big.bin", b"\0" * (256 << 10))
    with mock.patch(
        "django.http.multipartparser.MultiPartParser.parse",
        side_effect=AssertionError("the upload was read"),
    ):
        response = api_client.post(
            path,
            {"refresh": "rtok_x", "file": upload},
            format="multipart",
            # Another site's form: the cookie middleware's CSRF check reads form bodies.
            HTTP_SEC_FETCH_SITE="cross-site",
        )
    _assert_only_error(response, 415, "unsupported_media_type")


# Refresh ----------------------------------------------------------------------------


def test_refresh_returns_a_new_pair(api_client, user, password):
    login = _login(api_client, user, password)
    response = _refresh(api_client, login["refresh"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_PAIR_KEYS
    assert body["token_type"] == "Bearer"
    assert body["refresh"] != login["refresh"]
    assert parse_datetime(body["access_expires_at"])
    assert parse_datetime(body["refresh_expires_at"])


@pytest.mark.parametrize(
    ("rest_framework", "zone"),
    [
        ({}, "UTC"),
        ({}, "America/New_York"),
        ({"DATETIME_FORMAT": "%Y-%m-%d %H:%M:%S"}, "Asia/Kolkata"),
    ],
    ids=["utc", "another zone", "another format"],
)
def test_token_body_is_what_the_serializer_makes(user, client_info, settings, rest_framework, zone):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, **rest_framework}
    pair = services.start_family(user, client_info)
    with timezone.override(zone):
        data = TokenPairSerializer.data_of(pair)
        assert json.dumps(data) == json.dumps(TokenPairSerializer(pair).data)


@pytest.mark.parametrize("body", [{}, {"refresh": ""}, {"refresh": None}, {"other": "x"}], ids=repr)
def test_refresh_without_token_is_token_missing(api_client, body):
    _assert_only_error(api_client.post(REFRESH, body, format="json"), 401, "token_missing")


def test_refresh_without_body_is_token_missing(api_client):
    _assert_only_error(api_client.post(REFRESH), 401, "token_missing")


def test_refresh_with_json_array_body_is_token_missing(api_client):
    response = api_client.post(REFRESH, ["rtok_x"], format="json")
    _assert_only_error(response, 401, "token_missing")


@pytest.mark.parametrize("value", [12, 1.5, True, ["rtok_x"], {"refresh": "rtok_x"}], ids=repr)
def test_refresh_with_wrong_json_type_is_token_invalid(api_client, value):
    _assert_only_error(_refresh(api_client, value), 401, "token_invalid")


@pytest.mark.parametrize(
    "value", ["garbage", "rtok_" + "a" * 59, "rtok_" + "!" * 59, "rtok_" + "a" * 2_000_000]
)
def test_refresh_with_malformed_or_unknown_token_is_token_invalid(api_client, value):
    _assert_only_error(_refresh(api_client, value), 401, "token_invalid")


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
def test_body_over_the_upload_limit_is_413(api_client, path):
    body = json.dumps({"refresh": "a" * 3_000_000, "username": "u", "password": "p"})
    response = api_client.post(path, body, content_type="application/json")
    _assert_only_error(response, 413, "request_too_large")


def test_form_with_too_many_fields_is_413(api_client):
    fields = urlencode({f"f{i}": "x" for i in range(2000)})
    response = api_client.post(REFRESH, fields, content_type="application/x-www-form-urlencoded")
    _assert_only_error(response, 413, "request_too_large")


def test_refresh_of_revoked_family_is_token_revoked(api_client, user, password):
    login = _login(api_client, user, password)
    services.revoke_family(TokenFamily.objects.get(), RevokeReason.ADMIN)
    _assert_only_error(_refresh(api_client, login["refresh"]), 401, "token_revoked")


def test_refresh_of_expired_token_is_token_expired(api_client, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    token = RefreshTokenFactory()
    time_machine.shift(timedelta(days=14))
    _assert_only_error(_refresh(api_client, token.raw), 401, "token_expired")


def test_replayed_token_is_token_reused(api_client, user, password):
    login = _login(api_client, user, password)
    newest = _refresh(api_client, login["refresh"]).json()["refresh"]
    replay = _refresh(api_client, login["refresh"], HTTP_USER_AGENT="thief/1.0")
    _assert_only_error(replay, 401, "token_reused")
    _assert_only_error(_refresh(api_client, newest), 401, "token_revoked")


def test_refused_refresh_says_how_to_authenticate(api_client):
    response = _refresh(api_client, "garbage")
    assert response.status_code == 401
    assert response.has_header("WWW-Authenticate")


# Grace over HTTP: the client is found as DRF's throttles find it -------------------


def test_retry_from_same_client_gets_the_identical_refresh_token(api_client, user, password):
    login = _login(api_client, user, password)
    first = _refresh(api_client, login["refresh"]).json()
    count = RefreshToken.objects.count()
    retry = _refresh(api_client, login["refresh"])
    assert retry.status_code == 200
    assert retry["Cache-Control"] == "no-store"
    assert retry.json()["refresh"] == first["refresh"]
    assert retry.json()["access"] != first["access"]
    assert RefreshToken.objects.count() == count


@pytest.mark.parametrize(
    "other",
    [
        {"REMOTE_ADDR": "198.51.100.7"},
        {"HTTP_USER_AGENT": "pytest-client/1.1"},
        # A thief on another address who writes the victim's into X-Forwarded-For:
        # with no trusted proxy (the default) the header is not read at all.
        {"REMOTE_ADDR": "198.51.100.66", "HTTP_X_FORWARDED_FOR": "203.0.113.10"},
    ],
    ids=["REMOTE_ADDR", "user agent", "forged X-Forwarded-For"],
)
def test_retry_from_another_client_is_token_reused(api_client, user, password, other):
    login = _login(api_client, user, password)
    first = _refresh(api_client, login["refresh"]).json()
    _assert_only_error(_refresh(api_client, login["refresh"], **other), 401, "token_reused")
    _assert_only_error(_refresh(api_client, first["refresh"]), 401, "token_revoked")


def test_forwarded_for_is_ignored_without_a_trusted_proxy(api_client, user, password):
    _login(api_client, user, password, HTTP_X_FORWARDED_FOR="198.51.100.7")
    family = TokenFamily.objects.get()
    assert family.ip_address == "203.0.113.10"  # REMOTE_ADDR
    assert RefreshToken.objects.get().ip_address == "203.0.113.10"


def test_retry_behind_the_same_trusted_proxy_address_is_honoured(
    api_client, user, password, settings
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRUSTED_PROXY_COUNT": 1}
    login = _login(api_client, user, password)
    first = _refresh(api_client, login["refresh"], HTTP_X_FORWARDED_FOR="198.51.100.7").json()
    retry = _refresh(
        api_client, login["refresh"], HTTP_X_FORWARDED_FOR="198.51.100.7", REMOTE_ADDR="10.0.0.9"
    )
    assert retry.status_code == 200
    assert retry.json()["refresh"] == first["refresh"]


@pytest.mark.parametrize(
    ("retry_forwarded_for", "status"),
    [("10.9.9.9, 198.51.100.7", 200), ("198.51.100.7, 198.51.100.8", 401)],
    ids=["spoofed part differs", "proxy-set part differs"],
)
def test_client_address_honours_trusted_proxy_count(
    api_client, user, password, settings, retry_forwarded_for, status
):
    # With one proxy in front, only the last X-Forwarded-For entry (the one the proxy
    # wrote) names the client; what the client wrote before it does not count.
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRUSTED_PROXY_COUNT": 1}
    login = _login(api_client, user, password)
    first = _refresh(api_client, login["refresh"], HTTP_X_FORWARDED_FOR="172.16.0.1, 198.51.100.7")
    retry = _refresh(api_client, login["refresh"], HTTP_X_FORWARDED_FOR=retry_forwarded_for)
    assert retry.status_code == status
    if status == 200:
        assert retry.json()["refresh"] == first.json()["refresh"]
        successor = RefreshToken.objects.get(rotated_from__isnull=False)
        assert successor.ip_address == "198.51.100.7"


def test_trusted_proxy_count_ignores_drf_num_proxies(api_client, user, password, settings):
    # DRF's NUM_PROXIES (unset: trust the whole header) is not this app's rule.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": None}
    _login(api_client, user, password, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert TokenFamily.objects.get().ip_address == "203.0.113.10"


def test_too_short_forwarded_for_falls_back_to_remote_addr(api_client, user, password, settings):
    # Two proxies configured, one entry: the request did not come through both.
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRUSTED_PROXY_COUNT": 2}
    _login(api_client, user, password, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert TokenFamily.objects.get().ip_address == "203.0.113.10"


@pytest.mark.parametrize("address", ["::ffff:203.0.113.10", "2001:DB8:0:0::1"])
def test_retry_from_same_ipv6_client_is_honoured(user, password, address):
    # Dual-stack servers see IPv4 clients as IPv4-mapped IPv6 addresses; the address
    # stored on the successor must compare equal to the one of the retry.
    api_client = APIClient(HTTP_USER_AGENT="pytest-client/1.0", REMOTE_ADDR=address)
    login = _login(api_client, user, password)
    first = _refresh(api_client, login["refresh"]).json()
    retry = _refresh(api_client, login["refresh"])
    assert retry.status_code == 200, retry.content
    assert retry.json()["refresh"] == first["refresh"]


@pytest.mark.parametrize(("setting", "stored"), [(None, 512), (100, 100), (10_000, 512)])
def test_user_agent_is_stored_cut_to_its_maximum_length(
    settings, api_client, user, password, setting, stored
):
    if setting is not None:
        settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "USER_AGENT_MAX_LENGTH": setting}
    login = api_client.post(
        OBTAIN,
        {"username": user.username, "password": password},
        format="json",
        HTTP_USER_AGENT="é" * 600,
    )
    assert login.status_code == 200
    assert TokenFamily.objects.get().user_agent == "é" * stored


def test_user_agent_with_nul_characters_is_accepted(api_client, user, password):
    agent = {"HTTP_USER_AGENT": "broken\x00agent"}
    login = api_client.post(
        OBTAIN, {"username": user.username, "password": password}, format="json", **agent
    )
    assert login.status_code == 200, login.content
    first = _refresh(api_client, login.json()["refresh"], **agent)
    retry = _refresh(api_client, login.json()["refresh"], **agent)
    assert retry.json()["refresh"] == first.json()["refresh"]


# Logout -----------------------------------------------------------------------------


def test_logout_revokes_the_family(api_client, user, password):
    login = _login(api_client, user, password)
    response = api_client.post(LOGOUT, {"refresh": login["refresh"]}, format="json")
    assert response.status_code == 204
    assert response.content == b""
    family = TokenFamily.objects.get()
    assert family.revoke_reason == RevokeReason.LOGOUT
    _assert_only_error(_refresh(api_client, login["refresh"]), 401, "token_revoked")


def test_logout_is_idempotent(api_client, user, password):
    login = _login(api_client, user, password)
    revocations = []
    for _ in range(2):
        response = api_client.post(LOGOUT, {"refresh": login["refresh"]}, format="json")
        assert response.status_code == 204
        family = TokenFamily.objects.get()
        assert family.revoke_reason == RevokeReason.LOGOUT
        revocations.append(family.revoked_at)
    assert revocations[0] is not None
    assert revocations[1] == revocations[0]  # the second logout changes nothing


def test_logout_with_a_known_lookup_key_but_a_wrong_secret_changes_nothing(
    api_client, user, password
):
    raw = _login(api_client, user, password)["refresh"]
    wrong = raw[:-1] + ("A" if raw[-1] != "A" else "B")

    assert api_client.post(LOGOUT, {"refresh": wrong}, format="json").status_code == 204

    token = RefreshToken.objects.get()
    assert (token.used_at, token.family.revoked_at) == (None, None)
    assert _refresh(api_client, raw).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"refresh": "rtok_" + "a" * 59}, {"refresh": "garbage"}, {"refresh": 12}, {}, ["x"]],
    ids=["unknown", "malformed", "int", "empty", "array"],
)
def test_logout_answers_204_whatever_the_token(api_client, user, password, body):
    _login(api_client, user, password)
    assert api_client.post(LOGOUT, body, format="json").status_code == 204
    assert TokenFamily.objects.get().revoked_at is None


def test_logout_all_revokes_every_family_of_the_user(api_client, user, password):
    logins = [_login(api_client, user, password) for _ in range(3)]
    other_user = UserFactory()
    other = _login(api_client, other_user, password)
    response = api_client.post(
        LOGOUT_ALL, HTTP_AUTHORIZATION=f"Bearer {logins[0]['access']}", format="json"
    )
    assert response.status_code == 204
    assert set(TokenFamily.objects.for_user(user).values_list("revoke_reason", flat=True)) == {
        RevokeReason.LOGOUT_ALL
    }
    for login in logins:
        _assert_only_error(_refresh(api_client, login["refresh"]), 401, "token_revoked")
    assert _refresh(api_client, other["refresh"]).status_code == 200


def test_logout_all_needs_an_access_token(api_client, user, password):
    _login(api_client, user, password)
    response = api_client.post(LOGOUT_ALL)
    _assert_only_error(response, 401, "not_authenticated")
    assert TokenFamily.objects.get().revoked_at is None


def test_logout_all_refuses_a_refresh_token_as_bearer(api_client, user, password):
    login = _login(api_client, user, password)
    response = api_client.post(LOGOUT_ALL, HTTP_AUTHORIZATION=f"Bearer {login['refresh']}")
    _assert_only_error(response, 401, "token_not_valid")


# Throttling -------------------------------------------------------------------------


@pytest.fixture
def throttle_rates(monkeypatch):
    # DRF reads DEFAULT_THROTTLE_RATES into a class attribute at import.
    rates: dict[str, str] = {}
    monkeypatch.setattr(OptionalScopedRateThrottle, "THROTTLE_RATES", rates)
    return rates


def test_login_is_throttled_by_its_scope(api_client, user, password, throttle_rates):
    throttle_rates["rotating_tokens_login"] = "2/minute"
    credentials = {"username": user.username, "password": password}
    for _ in range(2):
        assert api_client.post(OBTAIN, credentials, format="json").status_code == 200
    response = api_client.post(OBTAIN, credentials, format="json")
    _assert_only_error(response, 429, "throttled")
    assert response.has_header("Retry-After")


def test_refresh_is_throttled_by_its_scope(api_client, throttle_rates):
    throttle_rates["rotating_tokens_refresh"] = "2/minute"
    for _ in range(2):
        _assert_error(_refresh(api_client, "garbage"), 401, "token_invalid")
    _assert_only_error(_refresh(api_client, "garbage"), 429, "throttled")


def test_forged_forwarded_for_does_not_escape_the_login_throttle(
    api_client, user, password, throttle_rates
):
    # Each request claims another address; without a trusted proxy they all count
    # against REMOTE_ADDR.
    throttle_rates["rotating_tokens_login"] = "3/minute"
    credentials = {"username": user.username, "password": password}
    codes = [
        api_client.post(
            OBTAIN, credentials, format="json", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}"
        ).status_code
        for i in range(8)
    ]
    assert codes == [200] * 3 + [429] * 5


def test_logout_is_throttled_with_the_refresh_scope(api_client, throttle_rates):
    # A logout verifies a secret like a refresh (argon2: 0.1 s, 64 MiB); the two
    # share one budget.
    throttle_rates["rotating_tokens_refresh"] = "3/minute"
    _assert_error(_refresh(api_client, "garbage"), 401, "token_invalid")
    for _ in range(2):
        assert api_client.post(LOGOUT, {"refresh": "garbage"}, format="json").status_code == 204
    response = api_client.post(LOGOUT, {"refresh": "garbage"}, format="json")
    _assert_only_error(response, 429, "throttled")


def test_scope_without_a_rate_is_not_throttled(api_client, user, password, throttle_rates):
    throttle_rates["rotating_tokens_login"] = "1/minute"
    login = _login(api_client, user, password)
    raw = login["refresh"]
    for _ in range(5):
        response = _refresh(api_client, raw)
        assert response.status_code == 200
        raw = response.json()["refresh"]


@pytest.mark.django_db(transaction=True)
def test_reuse_revocation_survives_atomic_requests(api_client, user, password, settings):
    # The 401 token_reused answer would make DRF roll back the request's transaction,
    # and the revocation with it: the app's views are never inside ATOMIC_REQUESTS.
    login = _login(api_client, user, password)
    first = _refresh(api_client, login["refresh"]).json()
    assert _refresh(api_client, first["refresh"]).status_code == 200
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    try:
        _assert_only_error(_refresh(api_client, login["refresh"]), 401, "token_reused")
    finally:
        settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False
    assert TokenFamily.objects.get().revoke_reason == RevokeReason.REUSE_DETECTED


@pytest.mark.parametrize(
    ("method", "path"),
    [("trace", "/api/auth/token/session/"), ("put", SESSIONS_LIST), ("patch", LOGOUT_ALL)],
)
def test_an_undeclared_method_is_405_before_authentication(api_client, method, path):
    response = getattr(api_client, method)(path)
    _assert_only_error(response, 405, "method_not_allowed")
