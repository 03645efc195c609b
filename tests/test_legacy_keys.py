"""A project that changes simplejwt's ALGORITHM or key during the transition:
``SIMPLEJWT_LEGACY_KEYS`` keeps the refresh tokens signed before converting
(``legacy.verify_refresh``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.settings import api_settings as simplejwt_settings
from rest_framework_simplejwt.tokens import RefreshToken as SimpleJWTRefreshToken

from rotating_tokens.models import TokenFamily
from tests.test_keys import pem_pair

pytestmark = pytest.mark.django_db

REFRESH = "/api/auth/token/refresh/"
# Test keys, long enough for PyJWT's key-length warnings up to HS512.
OLD_SECRET = "the-key-simplejwt-signed-with-before-" * 2
OTHER_SECRET = "another-key-that-signed-nothing-here-" * 2


ES_PRIVATE, ES_PUBLIC = pem_pair(ec.generate_private_key(ec.SECP256R1()))
RS_PRIVATE, RS_PUBLIC = pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def switched(settings):
    """The transition is on, and simplejwt now signs with ES256 (its state is built at
    import, as a restarted server would build it from the new SIMPLE_JWT)."""
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCEPT_SIMPLEJWT_UNTIL": timezone.now() + timedelta(days=30),
    }
    new = TokenBackend("ES256", ES_PRIVATE, ES_PUBLIC)
    with mock.patch("rest_framework_simplejwt.state.token_backend", new):
        yield settings


def _legacy(settings, *entries) -> None:
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "SIMPLEJWT_LEGACY_KEYS": list(entries)}


def _old_refresh(user, backend: TokenBackend, *, lifetime=timedelta(days=1), **claims) -> str:
    """A refresh token as simplejwt issued it before the switch, signed by ``backend``."""
    now = timezone.now()
    payload = {
        simplejwt_settings.TOKEN_TYPE_CLAIM: "refresh",
        "exp": int((now + lifetime).timestamp()),
        "iat": int(now.timestamp()),
        simplejwt_settings.JTI_CLAIM: uuid.uuid4().hex,
        simplejwt_settings.USER_ID_CLAIM: str(getattr(user, simplejwt_settings.USER_ID_FIELD)),
        **claims,
    }
    return backend.encode(payload)


def _refresh(api_client, raw):
    return api_client.post(REFRESH, {"refresh": raw}, format="json")


HS256_OLD = {"ALGORITHM": "HS256", "SIGNING_KEY": OLD_SECRET}


def test_an_algorithm_switch_without_legacy_keys_refuses_old_tokens(switched, api_client, user):
    # What happened before the setting: every unconverted client logged out.
    raw = _old_refresh(user, TokenBackend("HS256", OLD_SECRET))

    response = _refresh(api_client, raw)

    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


def test_a_token_signed_before_the_switch_converts_with_its_legacy_key(switched, api_client, user):
    _legacy(switched, HS256_OLD)
    # simplejwt's own token class, as the project's simplejwt signed it before the switch.
    with mock.patch(
        "rest_framework_simplejwt.state.token_backend", TokenBackend("HS256", OLD_SECRET)
    ):
        raw = str(SimpleJWTRefreshToken.for_user(user))

    response = _refresh(api_client, raw)

    assert response.status_code == 200, response.content
    assert TokenFamily.objects.get().user == user
    # Converted once: presented again by another client (past the conversion's grace
    # period rule), it is reuse, as for any simplejwt token.
    thief = APIClient(HTTP_USER_AGENT="thief/1.0", REMOTE_ADDR="198.51.100.7")
    assert _refresh(thief, raw).json()["code"] == "token_reused"


def test_tokens_of_the_new_key_still_convert(switched, api_client, user):
    _legacy(switched, HS256_OLD)
    raw = _old_refresh(user, TokenBackend("ES256", ES_PRIVATE, ES_PUBLIC))

    assert _refresh(api_client, raw).status_code == 200


def test_the_second_of_two_legacy_keys_verifies_its_token(switched, api_client, user):
    _legacy(
        switched,
        {"ALGORITHM": "HS256", "SIGNING_KEY": OTHER_SECRET},
        {"ALGORITHM": "RS256", "VERIFYING_KEY": RS_PUBLIC},
    )
    raw = _old_refresh(user, TokenBackend("RS256", RS_PRIVATE, RS_PUBLIC))

    with mock.patch.object(
        TokenBackend, "decode", autospec=True, side_effect=TokenBackend.decode
    ) as decode:
        response = _refresh(api_client, raw)

    assert response.status_code == 200, response.content
    # The current key, then only the entry of the token's algorithm: not the HS256 one.
    verified = [c.args[0].algorithm for c in decode.call_args_list if c.kwargs.get("verify", True)]
    assert verified == ["ES256", "RS256"]


def test_a_token_of_an_algorithm_no_key_has_costs_no_verification(switched, api_client, user):
    _legacy(switched, HS256_OLD, {"ALGORITHM": "HS256", "SIGNING_KEY": OTHER_SECRET})
    raw = _old_refresh(user, TokenBackend("HS512", OLD_SECRET))

    with mock.patch.object(
        TokenBackend, "decode", autospec=True, side_effect=TokenBackend.decode
    ) as decode:
        response = _refresh(api_client, raw)

    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")
    assert decode.call_count == 1  # the current key only


def test_keys_of_the_same_algorithm_are_each_tried(switched, api_client, user):
    _legacy(switched, {"ALGORITHM": "HS256", "SIGNING_KEY": OTHER_SECRET}, HS256_OLD)
    raw = _old_refresh(user, TokenBackend("HS256", OLD_SECRET))

    assert _refresh(api_client, raw).status_code == 200


def test_a_token_forged_with_an_unlisted_key_is_invalid(switched, api_client, user):
    _legacy(switched, HS256_OLD)
    raw = _old_refresh(user, TokenBackend("HS256", "an-attacker-key-" * 4))

    assert _refresh(api_client, raw).json()["code"] == "token_invalid"
    assert not TokenFamily.objects.exists()


def test_an_expired_token_under_a_legacy_key_is_token_expired(switched, api_client, user):
    _legacy(switched, HS256_OLD)
    raw = _old_refresh(user, TokenBackend("HS256", OLD_SECRET), lifetime=timedelta(seconds=-60))

    assert _refresh(api_client, raw).json()["code"] == "token_expired"


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"aud": "api", "iss": "https://auth.example.com"}, True),
        ({"aud": "api"}, False),  # no iss
        ({"iss": "https://auth.example.com"}, False),  # no aud
        ({"aud": "another-api", "iss": "https://auth.example.com"}, False),
        ({"aud": "api", "iss": "https://evil.example.com"}, False),
    ],
)
def test_legacy_keys_check_audience_and_issuer_as_simplejwt_does(
    switched, api_client, user, claims, accepted
):
    switched.SIMPLE_JWT = {"AUDIENCE": "api", "ISSUER": "https://auth.example.com"}
    _legacy(switched, HS256_OLD)
    raw = _old_refresh(user, TokenBackend("HS256", OLD_SECRET), **claims)

    response = _refresh(api_client, raw)

    if accepted:
        assert response.status_code == 200, response.content
    else:
        assert (response.status_code, response.json().get("code")) == (401, "token_invalid"), (
            response.content
        )


@pytest.mark.parametrize(
    "entry",
    [
        "HS256",
        {"ALGORITHM": "HS256"},
        {"ALGORITHM": "RS256", "VERIFYING_KEY": "not a PEM"},
        {"ALGORITHM": "none", "SIGNING_KEY": OLD_SECRET},
    ],
)
def test_a_malformed_entry_is_skipped_not_a_500(switched, api_client, user, entry):
    _legacy(switched, entry, HS256_OLD)
    raw = _old_refresh(user, TokenBackend("HS256", OLD_SECRET))

    assert _refresh(api_client, raw).status_code == 200
