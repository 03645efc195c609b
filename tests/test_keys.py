"""Other services verify access tokens: the JWKS at ``jwks/``, the ``kid`` header, and
key rotation with ``VERIFYING_KEY_FALLBACKS`` (keys.py)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.checks import Error, Info
from joserfc.jwk import JWKRegistry
from rest_framework_simplejwt.backends import TokenBackend

from rotating_tokens import keys, services
from rotating_tokens.checks import check_jwks, check_keys

pytestmark = pytest.mark.django_db

JWKS, ME = "/api/auth/jwks/", "/api/me/"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
GENERATORS: dict[str, Callable[[], object]] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


def pem_pair(private_key) -> tuple[str, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


class Signing:
    """Switch simplejwt to an asymmetric key, as a project configured at startup
    (simplejwt builds its token backend once, at import)."""

    def __init__(self, settings, monkeypatch, algorithm: str) -> None:
        self.settings, self.monkeypatch, self.algorithm = settings, monkeypatch, algorithm

    def use(
        self,
        private_key,
        *,
        fallbacks: tuple[str, ...] = (),
        audience: str | None = None,
        issuer: str | None = None,
    ) -> str:
        private, public = pem_pair(private_key)
        self.settings.SIMPLE_JWT = {
            "ALGORITHM": self.algorithm,
            "SIGNING_KEY": private,
            "VERIFYING_KEY": public,
            "AUDIENCE": audience,
            "ISSUER": issuer,
        }
        self.monkeypatch.setattr(
            "rest_framework_simplejwt.state.token_backend",
            TokenBackend(self.algorithm, private, public, audience=audience, issuer=issuer),
        )
        self.settings.ROTATING_TOKENS = {
            **self.settings.ROTATING_TOKENS,
            "VERIFYING_KEY_FALLBACKS": list(fallbacks),
        }
        return public


@pytest.fixture(params=list(GENERATORS))
def signing(request, settings, monkeypatch) -> Signing:
    return Signing(settings, monkeypatch, request.param)


def thumbprint(public_pem: str, algorithm: str) -> str:
    kty = {"RS": "RSA", "ES": "EC", "Ed": "OKP"}[algorithm[:2]]
    return JWKRegistry.import_key(public_pem, kty).thumbprint()


def verify_with_jwks(access: str, document: dict) -> dict:
    """What another service does: pick the key by kid, verify the signature."""
    kid = jwt.get_unverified_header(access)["kid"]
    (jwk,) = [key for key in document["keys"] if key["kid"] == kid]
    return jwt.decode(access, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]])


def test_jwks_is_404_with_a_symmetric_algorithm(api_client):
    response = api_client.get(JWKS)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "symmetric" in response.json()["detail"]


def test_jwks_publishes_the_public_key_with_its_thumbprint(api_client, signing):
    public = signing.use(GENERATORS[signing.algorithm]())
    response = api_client.get(JWKS)
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"
    (jwk,) = response.json()["keys"]
    assert jwk["kid"] == thumbprint(public, signing.algorithm)
    assert (jwk["alg"], jwk["use"]) == (signing.algorithm, "sig")
    assert not PRIVATE_MEMBERS & set(jwk)


def test_access_tokens_carry_the_kid_and_verify_with_the_jwks(
    api_client, signing, user, client_info
):
    signing.use(GENERATORS[signing.algorithm]())
    pair = services.start_family(user, client_info)
    document = api_client.get(JWKS).json()
    assert jwt.get_unverified_header(pair.access)["kid"] == document["keys"][0]["kid"]
    claims = verify_with_jwks(pair.access, document)
    assert (claims["user_id"], claims["fam"]) == (str(user.pk), str(pair.family.pk))
    assert api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {pair.access}").status_code == 200


def test_key_rotation_keeps_old_tokens_working_while_the_fallback_is_listed(
    api_client, signing, user, client_info
):
    old_key, new_key = GENERATORS[signing.algorithm](), GENERATORS[signing.algorithm]()
    old_public = signing.use(old_key)
    old_access = services.start_family(user, client_info).access

    new_public = signing.use(new_key, fallbacks=(old_public,))
    new_access = services.start_family(user, client_info).access
    document = api_client.get(JWKS).json()
    assert [key["kid"] for key in document["keys"]] == [
        thumbprint(new_public, signing.algorithm),  # the current key first
        thumbprint(old_public, signing.algorithm),
    ]
    for access in (old_access, new_access):
        verify_with_jwks(access, document)
        assert api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}").status_code == 200

    signing.use(new_key)  # the old key's tokens have all expired: drop it
    assert len(api_client.get(JWKS).json()["keys"]) == 1
    refused = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {old_access}")
    assert (refused.status_code, refused.json()["code"]) == (401, "token_not_valid")


def test_a_forged_token_naming_a_fallback_key_is_refused(api_client, settings, monkeypatch, user):
    signing = Signing(settings, monkeypatch, "ES256")
    old_public = signing.use(GENERATORS["ES256"]())
    signing.use(GENERATORS["ES256"](), fallbacks=(old_public,))
    forger, _ = pem_pair(GENERATORS["ES256"]())
    forged = jwt.encode(
        {"token_type": "access", "user_id": str(user.pk), "jti": "x", "exp": 2**31},
        forger,
        algorithm="ES256",
        headers={"kid": thumbprint(old_public, "ES256")},
    )
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert (response.status_code, response.json()["code"]) == (401, "token_not_valid")


def test_fallback_keys_with_a_symmetric_algorithm_are_an_error(settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "VERIFYING_KEY_FALLBACKS": ["x"]}
    (message,) = check_keys()
    assert (message.id, type(message)) == ("rotating_tokens.E030", Error)


def test_a_fallback_key_that_does_not_load_is_an_error(settings, monkeypatch):
    signing = Signing(settings, monkeypatch, "RS256")
    signing.use(GENERATORS["RS256"](), fallbacks=("not a key",))
    assert [m.id for m in check_keys()] == ["rotating_tokens.E031"]


def test_deploy_check_says_why_jwks_is_empty():
    (message,) = check_jwks()
    assert (message.id, type(message)) == ("rotating_tokens.I030", Info)


def test_no_check_message_for_a_proper_asymmetric_setup(settings, monkeypatch):
    signing = Signing(settings, monkeypatch, "EdDSA")
    old_public = signing.use(GENERATORS["EdDSA"]())
    signing.use(GENERATORS["EdDSA"](), fallbacks=(old_public,))
    assert check_keys() == [] and check_jwks() == []


def test_jwks_document_is_plain_json(api_client, settings, monkeypatch):
    Signing(settings, monkeypatch, "RS256").use(GENERATORS["RS256"]())
    document = json.loads(api_client.get(JWKS).content)
    assert set(document) == {"keys"}
    assert keys.jwks() == document


@pytest.mark.urls("example_project.urls")
@pytest.mark.parametrize("path", ["/api/auth/jwks/", "/.well-known/jwks.json"])
def test_pyjwkclient_verifies_live_tokens_before_and_after_a_key_rotation(
    live_server, settings, monkeypatch, transactional_db, path
):
    from .factories import PASSWORD, UserFactory

    user = UserFactory()
    signing = Signing(settings, monkeypatch, "RS256")
    old_public = signing.use(GENERATORS["RS256"]())

    def login() -> str:
        request = urllib.request.Request(  # noqa: S310  (the live server, http)
            f"{live_server.url}/api/auth/token/",
            data=json.dumps({"username": user.username, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310  (the live server)
            return json.load(response)["access"]

    def verify(access: str) -> dict:
        client = jwt.PyJWKClient(f"{live_server.url}{path}", cache_keys=False)
        key = client.get_signing_key_from_jwt(access)
        return jwt.decode(access, key.key, algorithms=["RS256"])

    before = login()
    assert verify(before)["user_id"] == str(user.pk)
    signing.use(GENERATORS["RS256"](), fallbacks=(old_public,))
    after = login()
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    assert verify(after)["user_id"] == verify(before)["user_id"] == str(user.pk)


# Fallback keys verify as the current key does -------------------------------------------

AUDIENCE, ISSUER = "https://api.example", "https://auth.example"


def _resigned(access: str, private_key, algorithm: str, **changes) -> str:
    """``access`` with claims changed (None: removed), signed again by its own key."""
    claims = jwt.decode(access, options={"verify_signature": False})
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    private, _ = pem_pair(private_key)
    headers = {"kid": jwt.get_unverified_header(access)["kid"]}
    return jwt.encode(claims, private, algorithm=algorithm, headers=headers)


def _me(api_client, access: str) -> tuple[int, str | None]:
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
    return response.status_code, response.json().get("code")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://other.example"},
        {"aud": None},
        {"iss": "https://other.example"},
        {"iss": None},
    ],
    ids=["wrong aud", "no aud", "wrong iss", "no iss"],
)
def test_a_fallback_key_token_needs_the_audience_and_issuer(
    api_client, settings, monkeypatch, user, client_info, changes
):
    signing = Signing(settings, monkeypatch, "ES256")
    old_key = GENERATORS["ES256"]()
    old_public = signing.use(old_key, audience=AUDIENCE, issuer=ISSUER)
    access = services.start_family(user, client_info).access
    assert jwt.decode(access, options={"verify_signature": False})["aud"] == AUDIENCE
    altered = _resigned(access, old_key, "ES256", **changes)

    signing.use(GENERATORS["ES256"](), fallbacks=(old_public,), audience=AUDIENCE, issuer=ISSUER)
    assert _me(api_client, _resigned(access, old_key, "ES256")) == (200, None)
    assert _me(api_client, altered) == (401, "token_not_valid")


@pytest.fixture
def fallback_verifications(monkeypatch) -> list[str]:
    """The verifying keys of the fallback verifications, in order (the current key's
    are left out: a token that names a fallback key still tries it first)."""
    from rest_framework_simplejwt import state

    seen: list[str] = []
    decode = TokenBackend.decode

    def counting(self, token, verify=True):
        if self is not state.token_backend:
            seen.append(self.verifying_key)
        return decode(self, token, verify)

    monkeypatch.setattr(TokenBackend, "decode", counting)
    return seen


def test_with_two_fallback_keys_the_kid_picks_the_one_verifying(
    api_client, settings, monkeypatch, user, client_info, fallback_verifications
):
    signing = Signing(settings, monkeypatch, "ES256")
    first_key, second_key = GENERATORS["ES256"](), GENERATORS["ES256"]()
    first_public = signing.use(first_key)
    by_first = services.start_family(user, client_info).access
    second_public = signing.use(second_key)
    by_second = services.start_family(user, client_info).access
    signing.use(GENERATORS["ES256"](), fallbacks=(first_public, second_public))

    assert _me(api_client, by_second) == (200, None)
    assert fallback_verifications == [second_public]  # the first key is never tried
    fallback_verifications.clear()
    assert _me(api_client, by_first) == (200, None)
    assert fallback_verifications == [first_public]

    # Signed by the first key but naming the second: the kid picks the key, which fails.
    fallback_verifications.clear()
    claims = jwt.decode(by_first, options={"verify_signature": False})
    private, _ = pem_pair(first_key)
    misnamed = jwt.encode(
        claims, private, algorithm="ES256", headers={"kid": thumbprint(second_public, "ES256")}
    )
    assert _me(api_client, misnamed) == (401, "token_not_valid")
    assert fallback_verifications == [second_public]


@pytest.mark.parametrize("kid", ["unknown", None], ids=["unknown kid", "no kid"])
def test_a_token_naming_no_fallback_key_costs_no_fallback_verification(
    api_client, settings, monkeypatch, user, client_info, fallback_verifications, kid
):
    signing = Signing(settings, monkeypatch, "ES256")
    stranger = GENERATORS["ES256"]()
    signing.use(stranger)
    access = services.start_family(user, client_info).access
    olds = [signing.use(GENERATORS["ES256"]()) for _ in range(2)]
    signing.use(GENERATORS["ES256"](), fallbacks=tuple(olds))
    claims = jwt.decode(access, options={"verify_signature": False})
    private, _ = pem_pair(stranger)
    token = jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid} if kid else None)
    assert _me(api_client, token) == (401, "token_not_valid")
    assert fallback_verifications == []
