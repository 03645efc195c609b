from __future__ import annotations

import base64
import inspect
import json
import re
import secrets
import warnings
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from rotating_tokens import dpop
from rotating_tokens.dpop import InvalidProof, UnsupportedAlgorithm, verify_proof

NOW = 1_700_000_000
METHOD = "POST"
URL = "https://api.example.com/auth/token/refresh/"
ACCESS_TOKEN = "at_" + "x" * 40

EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

_JWS = jwt.PyJWS()
_ABSENT = object()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


def public_jwk(private_key: Any, alg: str = "ES256") -> dict[str, Any]:
    return _JWS.get_algorithm_by_name(alg).to_jwk(private_key.public_key(), as_dict=True)


def private_jwk(private_key: Any, alg: str = "ES256") -> dict[str, Any]:
    return _JWS.get_algorithm_by_name(alg).to_jwk(private_key, as_dict=True)


def make_proof(
    private_key: Any = EC_KEY,
    alg: str = "ES256",
    *,
    jwk: Any = _ABSENT,
    typ: Any = "dpop+jwt",
    extra_headers: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    payload = {"jti": secrets.token_urlsafe(16), "htm": METHOD, "htu": URL, "iat": NOW}
    payload.update(claims)
    for name in drop:
        del payload[name]
    headers: dict[str, Any] = {"typ": typ}
    if jwk is _ABSENT:
        headers["jwk"] = public_jwk(private_key, alg)
    elif jwk is not None:
        headers["jwk"] = jwk
    headers.update(extra_headers or {})
    return sign(json.dumps(payload).encode(), private_key, alg, headers)


def sign(payload: bytes, private_key: Any, alg: str, headers: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        # The small RSA key of one test makes PyJWT warn while signing.
        warnings.simplefilter("ignore")
        return _JWS.encode(payload, private_key, algorithm=alg, headers=headers)


def verify(proof: str, **kwargs: Any) -> dpop.Proof:
    kwargs.setdefault("method", METHOD)
    kwargs.setdefault("url", URL)
    kwargs.setdefault("now", NOW)
    return verify_proof(proof, **kwargs)


def refusal(proof: Any, **kwargs: Any) -> InvalidProof:
    with pytest.raises(InvalidProof) as caught:
        verify(proof, **kwargs)
    return caught.value


# Accepted proofs --------------------------------------------------------------------


def test_es256_proof_is_accepted():
    proof = make_proof(jti="proof-1")
    result = verify(proof)
    assert result == dpop.Proof(
        jkt=dpop.jwk_thumbprint(public_jwk(EC_KEY)),
        jti="proof-1",
        iat=NOW,
        htm=METHOD,
        htu=URL,
        alg="ES256",
        accepted_until=NOW + 60 + 5,
        ath=None,
        nonce=None,
    )


def test_eddsa_proof_is_accepted():
    result = verify(make_proof(ED_KEY, "EdDSA"))
    assert result.alg == "EdDSA"
    assert result.jkt == dpop.jwk_thumbprint(public_jwk(ED_KEY, "EdDSA"))


@pytest.mark.parametrize(
    ("alg", "private_key"), [("RS256", RSA_KEY), ("PS256", RSA_KEY), ("ES384", EC384_KEY)]
)
def test_other_algorithms_are_accepted_when_configured(alg, private_key):
    result = verify(make_proof(private_key, alg), algorithms=("ES256", alg))
    assert result.alg == alg
    assert result.jkt == dpop.jwk_thumbprint(public_jwk(private_key, alg))


def test_rfc9449_token_request_example_verifies():
    # Figure 2 of RFC 9449, a proof for a token request.
    proof = (
        "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik"
        "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR"
        "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
        "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj"
        "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia"
        "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg"
        "4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"
    )
    result = verify_proof(
        proof, method="POST", url="https://server.example.com/token", now=1562262616
    )
    assert result.jti == "-BwC3ESc6acc2lTc"
    assert result.jkt == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # section 6.1


def test_rfc9449_protected_resource_example_verifies():
    # Figure 13 of RFC 9449: a proof sent with the access token of figure 6.
    proof = (
        "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik"
        "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR"
        "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
        "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj"
        "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z"
        "WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF"
        "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E"
        "OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
    )
    result = verify_proof(
        proof,
        method="GET",
        url="https://resource.example.org/protectedresource",
        now=1562262618,
        access_token="Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU",
        expected_jkt="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
    )
    assert result.ath == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_verify_proof_leaves_replay_to_the_caller():
    proof = make_proof()
    assert verify(proof) == verify(proof)


# typ ---------------------------------------------------------------------------------


def test_wrong_typ_is_refused():
    assert refusal(make_proof(typ="JWT")).reason == "typ"


def test_missing_typ_is_refused():
    assert refusal(make_proof(typ=None)).reason == "typ"


# alg ---------------------------------------------------------------------------------


def test_alg_none_is_refused():
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(EC_KEY)}
    claims = {"jti": "unsigned", "htm": METHOD, "htu": URL, "iat": NOW}
    unsigned = f"{b64json(header)}.{b64json(claims)}."
    assert refusal(unsigned).reason == "alg"


def test_hs256_proof_is_refused():
    secret = secrets.token_bytes(32)
    jwk = {"kty": "oct", "k": b64(secret)}
    proof = make_proof(secret, "HS256", jwk=jwk)
    assert refusal(proof).reason == "alg"


@pytest.mark.parametrize("forbidden", ["HS256", "HS512", "none", "None"])
def test_hmac_and_none_are_refused_even_when_configured(forbidden):
    secret = secrets.token_bytes(32)
    proof = make_proof(secret, "HS256", jwk={"kty": "oct", "k": b64(secret)})
    with pytest.raises(UnsupportedAlgorithm, match="never accepted"):
        verify(proof, algorithms=("ES256", forbidden))
    assert issubclass(UnsupportedAlgorithm, ValueError)


def test_algorithm_not_in_the_accepted_list_is_refused():
    assert refusal(make_proof(RSA_KEY, "RS256")).reason == "alg"


def test_unknown_algorithm_is_a_configuration_error():
    with pytest.raises(UnsupportedAlgorithm, match="not a supported"):
        dpop.validate_algorithms(["ES256", "XS999"])


def test_algorithms_given_as_one_string_is_a_configuration_error():
    with pytest.raises(UnsupportedAlgorithm, match="not one string"):
        dpop.validate_algorithms("ES256")


def test_empty_algorithms_is_a_configuration_error():
    with pytest.raises(UnsupportedAlgorithm, match="At least one"):
        dpop.validate_algorithms([])


def test_validate_algorithms_keeps_order_and_drops_repeats():
    assert dpop.validate_algorithms(["EdDSA", "ES256", "EdDSA"]) == ("EdDSA", "ES256")


# jwk ---------------------------------------------------------------------------------


def test_missing_jwk_is_refused():
    assert refusal(make_proof(jwk=None)).reason == "jwk"


def test_jwk_that_is_not_an_object_is_refused():
    assert refusal(make_proof(jwk=json.dumps(public_jwk(EC_KEY)))).reason == "jwk"


def test_jwk_with_private_d_is_refused():
    jwk = private_jwk(EC_KEY)
    assert "d" in jwk
    assert refusal(make_proof(jwk=jwk)).reason == "jwk"


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth"])
def test_rsa_jwk_with_any_private_member_is_refused(member):
    # The public key with one private member added: the signature would verify, so the
    # only thing refusing it is the private member (RFC 7518 section 6.3.2).
    jwk = public_jwk(RSA_KEY, "RS256")
    private = private_jwk(RSA_KEY, "RS256")
    jwk[member] = private.get(member, [{"r": "AQ", "d": "AQ", "t": "AQ"}])
    refused = refusal(make_proof(RSA_KEY, "RS256", jwk=jwk), algorithms=("RS256",))
    assert (refused.reason, refused.message) == (
        "jwk",
        "The DPoP proof jwk must not contain a private key.",
    )


@pytest.mark.parametrize(
    ("private_key", "alg"), [(EC_KEY, "ES256"), (ED_KEY, "EdDSA")], ids=["EC", "OKP"]
)
def test_ec_and_okp_jwk_with_the_private_d_is_refused(private_key, alg):
    jwk = {**public_jwk(private_key, alg), "d": private_jwk(private_key, alg)["d"]}
    refused = refusal(make_proof(private_key, alg, jwk=jwk), algorithms=(alg,))
    assert refused.message == "The DPoP proof jwk must not contain a private key."


def test_a_symmetric_k_in_the_jwk_is_refused():
    jwk = {**public_jwk(EC_KEY), "k": b64(b"secret")}
    assert refusal(make_proof(jwk=jwk)).message == (
        "The DPoP proof jwk must not contain a private key."
    )


def test_jwk_with_private_okp_d_is_refused():
    proof = make_proof(ED_KEY, "EdDSA", jwk=private_jwk(ED_KEY, "EdDSA"))
    assert refusal(proof).reason == "jwk"


def test_jwk_whose_type_does_not_match_alg_is_refused():
    proof = make_proof(EC_KEY, "ES256", jwk=public_jwk(ED_KEY, "EdDSA"))
    assert refusal(proof).reason == "jwk"


def test_jwk_on_another_curve_than_alg_is_refused():
    proof = make_proof(EC_KEY, "ES256", jwk=public_jwk(EC384_KEY, "ES384"))
    assert refusal(proof).reason == "jwk"


def test_jwk_declared_for_another_algorithm_is_refused():
    jwk = {**public_jwk(EC_KEY), "alg": "ES384"}
    assert refusal(make_proof(jwk=jwk)).reason == "jwk"


def test_jwk_with_a_point_off_the_curve_is_refused():
    jwk = {**public_jwk(EC_KEY), "y": b64(b"\x01" * 32)}
    assert refusal(make_proof(jwk=jwk)).reason == "jwk"


def test_small_rsa_key_is_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    proof = make_proof(small, "RS256")
    assert refusal(proof, algorithms=("RS256",)).reason == "jwk"


def test_rsa_key_larger_than_4096_bits_is_refused():
    # The cost of verifying grows with the modulus, which the client chooses.
    jwk = {"kty": "RSA", "n": b64(((1 << 4200) + 1).to_bytes(526, "big")), "e": "AQAB"}
    assert refusal(make_proof(RSA_KEY, "RS256", jwk=jwk), algorithms=("RS256",)).reason == "jwk"


def test_rsa_key_with_a_huge_exponent_is_refused():
    # A large public exponent makes verifying as slow as signing.
    numbers = RSA_KEY.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "n": b64(numbers.n.to_bytes(256, "big")),
        "e": b64((2**257 + 1).to_bytes(33, "big")),
    }
    assert refusal(make_proof(RSA_KEY, "RS256", jwk=jwk), algorithms=("RS256",)).reason == "jwk"


# signature ---------------------------------------------------------------------------


def test_proof_signed_by_another_key_than_its_jwk_is_refused():
    proof = make_proof(OTHER_EC_KEY, jwk=public_jwk(EC_KEY))
    assert refusal(proof).reason == "signature"


def test_proof_whose_claims_were_changed_is_refused():
    header, _claims, signature = make_proof().split(".")
    forged = b64json({"jti": "forged", "htm": METHOD, "htu": URL, "iat": NOW})
    assert refusal(f"{header}.{forged}.{signature}").reason == "signature"


# format ------------------------------------------------------------------------------


def test_proof_with_two_parts_is_refused():
    header, claims, _signature = make_proof().split(".")
    assert refusal(f"{header}.{claims}").reason == "format"


def test_proof_with_four_parts_is_refused():
    assert refusal(make_proof() + ".e30").reason == "format"


def test_proof_with_bad_base64_is_refused():
    header, claims, signature = make_proof().split(".")
    assert refusal(f"{header}.{claims[:-1]}!.{signature}").reason == "format"


def test_proof_with_padded_base64_is_refused():
    header, claims, signature = make_proof().split(".")
    assert refusal(f"{header}.{claims}=.{signature}").reason == "format"


def test_proof_with_a_header_that_is_not_a_json_object_is_refused():
    _header, claims, signature = make_proof().split(".")
    assert refusal(f"{b64json(['dpop+jwt'])}.{claims}.{signature}").reason == "format"


def test_proof_with_a_header_that_is_not_json_is_refused():
    _header, claims, signature = make_proof().split(".")
    assert refusal(f"{b64(b'typ=dpop+jwt')}.{claims}.{signature}").reason == "format"


def test_proof_with_claims_that_are_not_a_json_object_is_refused():
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(EC_KEY)}
    proof = sign(b'["jti", "htm", "htu", "iat"]', EC_KEY, "ES256", headers)
    assert refusal(proof).reason == "format"


@pytest.mark.parametrize(
    ("iat", "reason"), [("NaN", "format"), ("-Infinity", "format"), ("1e999", "claims")]
)
def test_proof_with_a_nan_or_infinite_iat_is_refused(iat, reason):
    # A NaN iat would pass every comparison of the time window.
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(EC_KEY)}
    payload = f'{{"jti": "j", "htm": "{METHOD}", "htu": "{URL}", "iat": {iat}}}'.encode()
    assert refusal(sign(payload, EC_KEY, "ES256", headers)).reason == reason


def test_huge_proof_is_refused_before_it_is_parsed(monkeypatch):
    def must_not_parse(*args: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(dpop._JWS, "get_unverified_header", must_not_parse)
    huge = make_proof(padding="x" * dpop.MAX_PROOF_LENGTH)
    assert refusal(huge).reason == "format"


@pytest.mark.parametrize("value", ["", " ", None, b"a.b.c", 42])
def test_empty_or_non_string_header_is_refused(value):
    assert refusal(value).reason == "format"


def test_proof_with_surrounding_whitespace_is_refused():
    assert refusal(f" {make_proof()}").reason == "format"


def test_repeated_headers_joined_by_a_comma_are_refused():
    assert refusal(f"{make_proof()},{make_proof()}").reason == "format"


def test_detached_payload_proof_is_refused():
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(EC_KEY), "b64": False}
    claims = json.dumps({"jti": "j", "htm": METHOD, "htu": URL, "iat": NOW}).encode()
    assert refusal(sign(claims, EC_KEY, "ES256", headers)).reason == "format"


def test_unknown_critical_header_is_refused():
    proof = make_proof(extra_headers={"crit": ["exp-ext"], "exp-ext": 1})
    assert refusal(proof).reason == "format"


# claims ------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat"])
def test_proof_missing_a_required_claim_is_refused(claim):
    assert refusal(make_proof(drop=(claim,))).reason == "claims"


@pytest.mark.parametrize("iat", [str(NOW), True, None, [NOW], {"t": NOW}])
def test_iat_that_is_not_a_finite_number_is_refused(iat):
    assert refusal(make_proof(iat=iat)).reason == "claims"


def test_empty_jti_is_refused():
    assert refusal(make_proof(jti="")).reason == "claims"


def test_oversized_jti_is_refused():
    assert refusal(make_proof(jti="j" * (dpop.MAX_JTI_LENGTH + 1))).reason == "claims"


def test_non_string_ath_is_refused():
    assert refusal(make_proof(ath=123)).reason == "claims"


# htm and htu -------------------------------------------------------------------------


def test_wrong_htm_is_refused():
    assert refusal(make_proof(htm="GET")).reason == "htm"


def test_htm_is_case_sensitive():
    assert refusal(make_proof(htm="post")).reason == "htm"


def test_htu_for_another_path_is_refused():
    assert refusal(make_proof(htu="https://api.example.com/auth/token/")).reason == "htu"


def test_htu_for_another_host_is_refused():
    proof = make_proof(htu="https://evil.example.com/auth/token/refresh/")
    assert refusal(proof).reason == "htu"


def test_htu_for_another_scheme_is_refused():
    proof = make_proof(htu="http://api.example.com/auth/token/refresh/")
    assert refusal(proof).reason == "htu"


def test_htu_for_another_port_is_refused():
    proof = make_proof(htu="https://api.example.com:8443/auth/token/refresh/")
    assert refusal(proof).reason == "htu"


def test_htu_equal_except_query_and_fragment_is_accepted():
    proof = make_proof(htu=f"{URL}?from=proof#part")
    assert verify(proof, url=f"{URL}?from=request").htu == f"{URL}?from=proof#part"


def test_htu_differing_only_in_host_case_and_default_port_is_accepted():
    verify(make_proof(htu="HTTPS://API.Example.COM:443/auth/token/refresh/"))


def test_htu_differing_only_in_percent_encoding_case_is_accepted():
    proof = make_proof(htu="https://api.example.com/a%2fb/%7euser/")
    verify(proof, url="https://api.example.com/a%2Fb/~user/")


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        ("https://api.example.com/a%2Fb", "https://api.example.com/a/b"),
        ("https://api.example.com/a/b", "https://api.example.com/a%2Fb"),
        ("https://api.example.com/a%3Fb", "https://api.example.com/a?b"),
        ("https://api.example.com/a%23b", "https://api.example.com/a#b"),
        ("https://api.example.com/a%25b", "https://api.example.com/a%b"),
        ("https://api.example.com/a%3Bb", "https://api.example.com/a;b"),
        ("https://api.example.com/a%40b", "https://api.example.com/a@b"),
    ],
)
def test_htu_keeps_reserved_characters_percent_encoded(htu, url):
    # RFC 3986 sections 2.2 and 6.2.2.2: only unreserved characters may be decoded; an
    # encoded reserved one is another URL ("/a%2Fb" is one segment, "/a/b" two).
    assert refusal(make_proof(htu=htu), url=url).reason == "htu"


def test_empty_htu_path_equals_root():
    verify(make_proof(htu="https://api.example.com"), url="https://api.example.com/")


@pytest.mark.parametrize(
    "htu",
    [
        "/auth/token/refresh/",
        "api.example.com/auth/token/refresh/",
        "ftp://api.example.com/auth/token/refresh/",
        "https://user@api.example.com/auth/token/refresh/",
        "https://api.example.com/auth/token/refresh/\n",
        "https://api.example.com:99999/auth/token/refresh/",
        "https://[::1/auth/token/refresh/",
    ],
)
def test_htu_that_is_not_a_plain_absolute_http_url_is_refused(htu):
    assert refusal(make_proof(htu=htu)).reason == "htu"


def test_request_url_that_is_not_absolute_is_a_caller_error():
    with pytest.raises(ValueError, match="absolute"):
        verify(make_proof(), url="/auth/token/refresh/")


# iat ---------------------------------------------------------------------------------


def test_iat_too_old_is_refused():
    assert refusal(make_proof(iat=NOW - 66), max_age=60, leeway=5).reason == "iat"


def test_iat_exactly_max_age_plus_leeway_old_is_accepted():
    verify(make_proof(iat=NOW - 65), max_age=60, leeway=5)


def test_iat_in_the_future_beyond_leeway_is_refused():
    assert refusal(make_proof(iat=NOW + 6), leeway=5).reason == "iat"


def test_iat_in_the_future_within_leeway_is_accepted():
    verify(make_proof(iat=NOW + 5), leeway=5)


def test_fractional_iat_is_accepted():
    assert verify(make_proof(iat=NOW - 0.5)).iat == NOW - 0.5


def test_accepted_until_is_the_end_of_the_window():
    proof = verify(make_proof(iat=NOW - 10), max_age=30, leeway=2)
    assert proof.accepted_until == NOW - 10 + 30 + 2
    verify(make_proof(iat=NOW - 10), max_age=30, leeway=2, now=proof.accepted_until)


@pytest.mark.parametrize("bounds", [{"max_age": -1}, {"leeway": -1}, {"leeway": float("nan")}])
def test_negative_or_nan_bounds_are_a_caller_error(bounds):
    with pytest.raises(ValueError, match="finite number"):
        verify(make_proof(), **bounds)


# ath ---------------------------------------------------------------------------------


def test_matching_ath_is_accepted():
    proof = make_proof(ath=dpop.access_token_hash(ACCESS_TOKEN))
    assert verify(proof, access_token=ACCESS_TOKEN).ath == dpop.access_token_hash(ACCESS_TOKEN)


def test_missing_ath_when_an_access_token_is_given_is_refused():
    assert refusal(make_proof(), access_token=ACCESS_TOKEN).reason == "ath"


def test_wrong_ath_is_refused():
    proof = make_proof(ath=dpop.access_token_hash("another token"))
    assert refusal(proof, access_token=ACCESS_TOKEN).reason == "ath"


def test_non_ascii_ath_is_refused():
    assert refusal(make_proof(ath="é" * 43), access_token=ACCESS_TOKEN).reason == "ath"


def test_non_ascii_access_token_is_refused_as_ath_mismatch():
    proof = make_proof(ath=dpop.access_token_hash(ACCESS_TOKEN))
    assert refusal(proof, access_token="tökén").reason == "ath"


def test_access_token_hash_matches_the_rfc9449_example():
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert dpop.access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


# jkt and nonce -----------------------------------------------------------------------


def test_proof_with_another_key_than_expected_jkt_is_refused():
    expected = dpop.jwk_thumbprint(public_jwk(OTHER_EC_KEY))
    assert refusal(make_proof(), expected_jkt=expected).reason == "jkt"


def test_proof_with_the_expected_jkt_is_accepted():
    expected = dpop.jwk_thumbprint(public_jwk(EC_KEY))
    assert verify(make_proof(), expected_jkt=expected).jkt == expected


def test_missing_nonce_when_one_is_required_is_refused():
    caught = refusal(make_proof(), nonce="server-nonce")
    assert (caught.reason, caught.error) == ("nonce", "use_dpop_nonce")


def test_wrong_nonce_is_refused():
    assert refusal(make_proof(nonce="old-nonce"), nonce="server-nonce").reason == "nonce"


def test_matching_nonce_is_accepted():
    assert verify(make_proof(nonce="server-nonce"), nonce="server-nonce").nonce == "server-nonce"


# Thumbprints -------------------------------------------------------------------------

RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_thumbprint_matches_the_rfc7638_example():
    assert dpop.jwk_thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_matches_the_rfc8037_ed25519_example():
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert dpop.jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_of_a_private_jwk_is_that_of_its_public_half():
    assert dpop.jwk_thumbprint(private_jwk(EC_KEY)) == dpop.jwk_thumbprint(public_jwk(EC_KEY))


def test_thumbprint_of_something_that_is_not_a_jwk_raises_value_error():
    with pytest.raises(ValueError, match="Not a valid JWK"):
        dpop.jwk_thumbprint({"kty": "EC", "crv": "P-256"})


@pytest.mark.parametrize(
    ("alg", "private_key"), [("ES256", EC_KEY), ("EdDSA", ED_KEY), ("RS256", RSA_KEY)]
)
def test_proof_jkt_is_the_jwk_thumbprint_with_optional_members_ignored(alg, private_key):
    jwk = {**public_jwk(private_key, alg), "kid": "device-1", "use": "sig"}
    proof = verify(make_proof(private_key, alg, jwk=jwk), algorithms=(alg,))
    assert proof.jkt == dpop.jwk_thumbprint(public_jwk(private_key, alg))


def test_replay_key_depends_on_key_and_jti():
    first = verify(make_proof(jti="same"))
    assert verify(make_proof(jti="same")).replay_key == first.replay_key
    assert verify(make_proof(jti="other")).replay_key != first.replay_key
    assert verify(make_proof(OTHER_EC_KEY, jti="same")).replay_key != first.replay_key
    assert re.fullmatch(r"[0-9a-f]{64}", first.replay_key)


# WWW-Authenticate --------------------------------------------------------------------


def test_www_authenticate_lists_the_accepted_algorithms():
    assert dpop.www_authenticate() == 'DPoP algs="ES256 EdDSA"'


def test_www_authenticate_with_an_error():
    value = dpop.www_authenticate(
        ["ES256"], error="invalid_dpop_proof", description="The DPoP proof is too old."
    )
    assert value == (
        'DPoP error="invalid_dpop_proof", '
        'error_description="The DPoP proof is too old.", algs="ES256"'
    )


def test_www_authenticate_refuses_a_quote_in_the_description():
    with pytest.raises(ValueError, match="error_description"):
        dpop.www_authenticate(error="invalid_dpop_proof", description='say "hi"')


def test_www_authenticate_refuses_a_description_without_an_error():
    with pytest.raises(ValueError, match="only goes with an error"):
        dpop.www_authenticate(description="The DPoP proof is too old.")


def test_www_authenticate_refuses_hmac_algorithms():
    with pytest.raises(UnsupportedAlgorithm):
        dpop.www_authenticate(["ES256", "HS256"])


def test_every_refusal_has_a_known_reason_and_a_message_fit_for_a_challenge():
    refusals = re.findall(r'_refuse\(\s*"(\w+)",\s*"([^"]*)"', inspect.getsource(dpop))
    assert len(refusals) > 30
    for reason, message in refusals:
        assert reason in dpop.REASONS
        dpop.www_authenticate(error="invalid_dpop_proof", description=message)


def test_refusal_repeats_neither_proof_nor_library_error():
    proof = make_proof(OTHER_EC_KEY, jwk=public_jwk(EC_KEY))
    caught = refusal(proof, access_token=ACCESS_TOKEN)
    assert proof not in str(caught)
    assert ACCESS_TOKEN not in str(caught)
    assert caught.__cause__ is None
    assert caught.__suppress_context__


# Fuzzing: nothing the client sends may raise anything but InvalidProof ------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
b64_values = st.binary(max_size=80).map(b64)


def only_invalid_proof(value: Any, **kwargs: Any) -> None:
    try:
        verify(value, algorithms=dpop.SUPPORTED_ALGORITHMS, **kwargs)
    except InvalidProof as error:
        assert error.reason in dpop.REASONS


@given(st.text())
def test_random_text_only_raises_invalid_proof(value):
    only_invalid_proof(value)


@given(st.binary())
def test_random_bytes_only_raise_invalid_proof(value):
    only_invalid_proof(value)
    only_invalid_proof(value.decode("latin-1"))


@given(st.lists(st.binary(max_size=200).map(b64), min_size=1, max_size=4))
def test_random_segments_only_raise_invalid_proof(segments):
    only_invalid_proof(".".join(segments))


@given(
    typ=st.sampled_from(["dpop+jwt", "JWT"]) | json_values,
    alg=st.sampled_from([*dpop.SUPPORTED_ALGORITHMS, "none", "HS256"]) | json_values,
    jwk=st.fixed_dictionaries(
        {"kty": st.sampled_from(["EC", "OKP", "RSA", "oct"]) | json_values},
        optional={
            "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "Ed448"]) | json_values,
            "x": b64_values | json_values,
            "y": b64_values | json_values,
            "n": b64_values | json_values,
            "e": b64_values | json_values,
            "alg": json_values,
            "kid": json_values,
            "use": json_values,
            "key_ops": json_values,
        },
    )
    | json_values,
    signature=st.binary(max_size=600),
)
def test_random_jose_headers_only_raise_invalid_proof(typ, alg, jwk, signature):
    header = {"typ": typ, "alg": alg, "jwk": jwk}
    claims = {"jti": "j", "htm": METHOD, "htu": URL, "iat": NOW}
    only_invalid_proof(f"{b64json(header)}.{b64json(claims)}.{b64(signature)}")


@given(
    st.dictionaries(
        st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]),
        json_values | st.sampled_from([METHOD, URL, NOW, NOW + 0.5, "é\ud800"]),
    )
)
def test_random_signed_claims_only_raise_invalid_proof(claims):
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(EC_KEY)}
    proof = sign(json.dumps(claims).encode(), EC_KEY, "ES256", headers)
    only_invalid_proof(proof, access_token=ACCESS_TOKEN, nonce="n")
