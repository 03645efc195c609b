"""Property-based tests on hostile input: the token parser and the views.

Whatever arrives (random bytes, any unicode, lone surrogates, huge values, wrong JSON
types, any content type, duplicate or disagreeing cookies): nothing raises, nothing
but a well-formed token gets past the parser, every answer is documented in the
OpenAPI schema, and nothing changes in the database.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from rotating_tokens.conf import app_settings
from rotating_tokens.crypto import LOOKUP_KEY_LENGTH, SECRET_LENGTH, MalformedToken, parse_token
from rotating_tokens.models import RefreshToken, TokenFamily

from .factories import RefreshTokenFactory
from .openapi_schema import assert_documented

OBTAIN, REFRESH, LOGOUT = "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"
COOKIE_MIDDLEWARE = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
ALPHABET = string.ascii_letters + string.digits + "-_"
BODY_LENGTH = LOOKUP_KEY_LENGTH + SECRET_LENGTH

# Every character, lone surrogates included (JSON can carry them as \ud800 escapes).
any_char = st.characters(exclude_categories=())
any_text = st.text(any_char, max_size=80)
# Huge but cheap to make: one character repeated (megabytes: see the tests below).
huge_text = st.builds(lambda c, n: c * n, any_char, st.sampled_from([1_000, 100_000]))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=8,
)
well_formed = st.text(st.sampled_from(ALPHABET), min_size=BODY_LENGTH, max_size=BODY_LENGTH)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-16",
        "application/json; charset=no-such-charset",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/xml",
        "",
    ]
)


def token_form(raw: str) -> bool:
    prefix = re.escape(app_settings.TOKEN_PREFIX)
    return re.fullmatch(rf"{prefix}[A-Za-z0-9_-]{{{BODY_LENGTH}}}", raw) is not None


# The parser ------------------------------------------------------------------------


@given(
    st.one_of(
        any_text,
        huge_text,
        st.binary(max_size=120),
        json_values,
        well_formed.map(lambda body: app_settings.TOKEN_PREFIX + body),
        # A valid token with a prefix or suffix of anything.
        st.tuples(any_text, well_formed, any_text).map(
            lambda parts: parts[0] + app_settings.TOKEN_PREFIX + parts[1] + parts[2]
        ),
    )
)
def test_parser_accepts_exactly_the_token_form(raw: Any):
    try:
        parsed = parse_token(raw)
    except MalformedToken:
        assert not (isinstance(raw, str) and token_form(raw))
    else:
        assert isinstance(raw, str) and token_form(raw)
        assert app_settings.TOKEN_PREFIX + parsed.lookup_key + parsed.secret == raw


@given(well_formed, st.data())
def test_parser_rejects_any_one_foreign_character(body: str, data: st.DataObject):
    position = data.draw(st.integers(0, BODY_LENGTH - 1))
    foreign = data.draw(any_char.filter(lambda c: c not in ALPHABET))
    raw = app_settings.TOKEN_PREFIX + body[:position] + foreign + body[position + 1 :]
    with pytest.raises(MalformedToken):
        parse_token(raw)


@given(well_formed, st.sampled_from(["", "rtok", "RTOK_", "rtok-", " rtok_", "xtok_"]))
def test_parser_rejects_a_wrong_prefix(body: str, prefix: str):
    with pytest.raises(MalformedToken):
        parse_token(prefix + body)


# The views -------------------------------------------------------------------------


@pytest.fixture
def live_token(db) -> RefreshToken:
    """A usable token, so that a request that wrongly changed something would show."""
    return RefreshTokenFactory()


def snapshot() -> tuple[list[Any], list[Any]]:
    return (
        sorted(TokenFamily.objects.values_list("pk", "revoked_at", "revoke_reason")),
        sorted(RefreshToken.objects.values_list("pk", "used_at", "sealed")),
    )


def post(client: APIClient, path: str, body: bytes | str, content_type: str, **extra: Any):
    before = snapshot()
    response = client.generic("POST", path, body, content_type=content_type, **extra)
    assert response.status_code < 500, response.content
    assert_documented(response, path)
    assert snapshot() == before, f"{path} changed the database"
    return response


@pytest.mark.parametrize("path", [REFRESH, LOGOUT])
@given(value=st.one_of(json_values, huge_text))
def test_any_json_refresh_value_is_refused_and_changes_nothing(api_client, live_token, path, value):
    assume(value != live_token.raw)
    post(api_client, path, json.dumps({"refresh": value}), "application/json")


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
@given(body=json_values)
def test_any_json_body_is_refused_and_changes_nothing(api_client, live_token, path, body):
    post(api_client, path, json.dumps(body), "application/json")


@given(
    fields=st.dictionaries(
        st.sampled_from(["username", "password", "refresh", ""]),
        st.one_of(json_values, huge_text),
        max_size=3,
    )
)
def test_any_login_fields_are_refused_and_change_nothing(api_client, live_token, fields):
    response = post(api_client, OBTAIN, json.dumps(fields), "application/json")
    assert response.status_code in (400, 401, 413)


@pytest.mark.parametrize("path", [OBTAIN, REFRESH, LOGOUT])
@given(body=st.binary(max_size=300), content_type=content_types)
def test_any_bytes_with_any_content_type_change_nothing(
    api_client, live_token, path, body, content_type
):
    post(api_client, path, body, content_type)


@pytest.mark.parametrize("path", [OBTAIN, REFRESH])
def test_megabytes_of_json_change_nothing(api_client, live_token, path):
    body = json.dumps({"username": "a" * 3_000_000, "password": "b", "refresh": "c" * 3_000_000})
    post(api_client, path, body, "application/json")


def test_thousands_of_form_fields_change_nothing(api_client, live_token):
    body = "&".join(f"f{i}=x" for i in range(5000))
    post(api_client, REFRESH, body, "application/x-www-form-urlencoded")


# The refresh cookie ----------------------------------------------------------------


@pytest.fixture
def cookie_transport(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, COOKIE_MIDDLEWARE]
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "TRANSPORT": "both"}
    return app_settings.REFRESH_COOKIE_NAME


cookie_values = st.one_of(
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,\\"')
    ).filter(lambda value: not token_form(value)),
    well_formed.map(lambda body: app_settings.TOKEN_PREFIX + body),
)


@pytest.mark.parametrize("path", [REFRESH, LOGOUT])
@given(values=st.lists(cookie_values, min_size=1, max_size=4))
def test_duplicate_cookies_of_unknown_tokens_change_nothing(
    api_client, live_token, cookie_transport, path, values
):
    header = "; ".join(f"{cookie_transport}={value}" for value in values)
    post(api_client, path, b"", "application/json", HTTP_COOKIE=header)


@pytest.mark.parametrize("path", [REFRESH, LOGOUT])
@given(value=st.one_of(json_values.filter(lambda v: v not in (None, "")), huge_text))
def test_a_body_token_wins_over_a_disagreeing_cookie(
    api_client, live_token, cookie_transport, path, value
):
    # The cookie holds a live token, the body anything else: the body is what counts,
    # so the cookie's token is neither used nor revoked.
    post(
        api_client,
        path,
        json.dumps({"refresh": value}),
        "application/json",
        HTTP_COOKIE=f"{cookie_transport}={live_token.raw}",
    )


# Headers the client writes -----------------------------------------------------------

# WSGI hands headers over as latin-1 text.
header_text = st.text(st.characters(max_codepoint=0xFF), max_size=200)
forwarded_for = st.one_of(
    header_text,
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(v=6), st.text(ALPHABET + "%.", min_size=1, max_size=60)).map(
        lambda parts: f"{parts[0]}%{parts[1]}"  # a scope id
    ),
    st.lists(st.ip_addresses().map(str), min_size=2, max_size=4).map(", ".join),
)


@given(forwarded=forwarded_for, user_agent=header_text)
def test_any_forwarded_for_and_user_agent_still_log_in(
    api_client, user, password, forwarded, user_agent
):
    response = api_client.post(
        OBTAIN,
        {"username": user.username, "password": password},
        format="json",
        HTTP_X_FORWARDED_FOR=forwarded,
        HTTP_USER_AGENT=user_agent,
    )
    assert response.status_code == 200, response.content
    assert_documented(response, OBTAIN)


@given(value=st.one_of(json_values, huge_text), user_agent=header_text)
def test_any_session_name_is_a_documented_answer_and_only_a_valid_one_is_stored(
    api_client, live_token, value, user_agent
):
    from rotating_tokens import services

    family = live_token.family
    access = services._token_pair(
        family.user, family, live_token, live_token.raw, family.created_at
    )
    # A user agent of anything still describes a device (GET sessions/ never fails).
    # (As clients.py stores it: without NUL, which PostgreSQL refuses.)
    agent = user_agent.replace("\x00", "")[:512]
    RefreshToken.objects.filter(pk=live_token.pk).update(user_agent=agent)
    TokenFamily.objects.filter(pk=family.pk).update(name="Before")  # each example afresh
    path = f"/api/auth/sessions/{family.pk}/"
    response = api_client.generic(
        "PATCH",
        path,
        json.dumps({"name": value}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {access.access}",
    )
    assert response.status_code < 500, response.content
    if response.status_code != 200:
        # (A session's body has nullable fields, which assert_documented's JSON Schema
        # validator does not read the OpenAPI 3.0 way.)
        assert_documented(response, "/api/auth/sessions/{family_id}/", "patch")
    stored = TokenFamily.objects.get(pk=family.pk).name
    if response.status_code == 200:
        assert isinstance(value, str) and stored == value.strip() and 0 < len(stored) <= 64
    else:
        assert stored == "Before"
    listed = api_client.get("/api/auth/sessions/", HTTP_AUTHORIZATION=f"Bearer {access.access}")
    assert listed.status_code == 200
    assert listed.json()[0]["device"]
