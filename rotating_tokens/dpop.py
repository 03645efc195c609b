"""Verify DPoP proofs (RFC 9449) and compute JWK thumbprints (RFC 7638).

Pure: no models, no DRF, no cache, no settings. Every input, the clock included, is an
argument, so the views and the authentication class decide where each value comes from.

The cryptography is the libraries': PyJWT parses the JWS, loads the ``jwk`` header and
verifies the signature; joserfc computes the RFC 7638 thumbprint. This module only decides
what is acceptable.

``verify_proof`` makes the checks of RFC 9449 section 4.3 that need nothing but the proof
and the request. The caller keeps the ones that need state or the raw request:

- point 1, one ``DPoP`` header field: a server that joins repeated fields with a comma
  hands over a value with a comma in it, which is refused here as ``format``; a caller
  that can see the separate fields should refuse more than one itself;
- replay (section 11.1): refuse a ``Proof.replay_key`` already seen, remembering each one
  until ``Proof.accepted_until`` at least (plus the clock skew between the servers), in a
  store every server process shares and that never drops a record earlier (a cache that
  evicts does);
- nonces (sections 8 and 9): choose when one is required, issue it, and pass the expected
  value as ``nonce=``;
- the key binding (section 7.1, point 12): pass the ``jkt`` the token is bound to as
  ``expected_jkt=``, or compare ``Proof.jkt`` with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

DEFAULT_ALGORITHMS = ("ES256", "EdDSA")

# The asymmetric algorithms a project may allow, with the key type (and curves) each one
# needs. Anything not listed is refused, so "none" and the HMAC algorithms can never be
# configured: RFC 9449 section 4.2 forbids them, and section 11.6 forbids "none" outright.
_KEY_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "RS256": ("RSA", frozenset()),
    "RS384": ("RSA", frozenset()),
    "RS512": ("RSA", frozenset()),
    "PS256": ("RSA", frozenset()),
    "PS384": ("RSA", frozenset()),
    "PS512": ("RSA", frozenset()),
}
SUPPORTED_ALGORITHMS = tuple(_KEY_TYPES)

# Bounds on attacker-chosen sizes, checked before the work they would cost.
MAX_PROOF_LENGTH = 8 * 1024
MAX_JTI_LENGTH = 256
# A public RSA operation costs with the size of the modulus and of the exponent; OpenSSL
# alone would accept a 16384-bit modulus. 2048 bits is NIST's floor (SP 800-131A), and the
# exponent bound is SP 800-56B's.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
_MAX_RSA_EXPONENT = 2**256

DPOP_TYP = "dpop+jwt"
REASONS = (
    "format",  # not one compact JWS of bounded size, or its JSON is not an object
    "typ",  # the header's typ is not dpop+jwt
    "alg",  # the algorithm is not accepted
    "jwk",  # no usable public key in the header
    "signature",  # the signature does not verify with that key
    "claims",  # a required claim is missing or of the wrong type
    "htm",  # another HTTP method
    "htu",  # another URL
    "iat",  # too old, or too far in the future
    "nonce",  # not the nonce the server asked for
    "ath",  # not the hash of the access token presented with it
    "jkt",  # another key than the one the token is bound to
)

# Members that only a private (or symmetric) JWK has: RFC 7518 sections 6.2.2, 6.3.2
# and 6.4, RFC 8037 section 2.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JOSERFC_KEYS: dict[str, type[ECKey] | type[OKPKey] | type[RSAKey]] = {
    "EC": ECKey,
    "OKP": OKPKey,
    "RSA": RSAKey,
}

# Three base64url segments without padding (RFC 7515 section 7.1); the signature is
# allowed to be empty here so that an unsigned "none" proof is refused for its alg.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_JWS = jwt.PyJWS(algorithms=SUPPORTED_ALGORITHMS)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 6750 section 3: what error and error_description may hold.
_CHALLENGE_VALUE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


class UnsupportedAlgorithm(ValueError):
    """A configuration names an algorithm DPoP proofs may not use (or none at all)."""


class InvalidProof(Exception):
    """The DPoP proof is refused.

    ``reason`` is one of ``REASONS``, short and stable, for logs, metrics and tests.
    ``message`` is a fixed sentence for the client: it never repeats the proof, the token
    or any value taken from them, and it holds only characters RFC 6750 allows in
    ``error_description``, so it can go into ``www_authenticate`` as it is.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def error(self) -> str:
        """The OAuth error code for the response (RFC 9449 sections 7.1 and 12.2)."""
        return "use_dpop_nonce" if self.reason == "nonce" else "invalid_dpop_proof"


@dataclass(frozen=True)
class Proof:
    """What a verified proof says.

    ``jkt`` is the RFC 7638 SHA-256 thumbprint of the proof's public key: the value a
    token is bound to (``cnf.jkt``, RFC 9449 section 6). ``accepted_until`` is the last
    instant at which ``verify_proof``, with the same ``max_age`` and ``leeway``, would
    still accept this proof: how long its ``replay_key`` must be remembered.
    """

    jkt: str
    jti: str
    iat: int | float
    htm: str
    htu: str
    alg: str
    accepted_until: float
    ath: str | None = None
    nonce: str | None = None

    @property
    def replay_key(self) -> str:
        """A fixed-size key for the replay cache: SHA-256 of the thumbprint and the jti.

        Scoping the jti to the key means one client can never burn another's jti, and
        the hash gives the cache 64 characters whatever the jti (RFC 9449 section 11.1
        asks servers to bound jti values or store only a hash of them).
        """
        # A thumbprint is base64url, so it holds no "." and the pair cannot be ambiguous.
        material = f"{self.jkt}.{self.jti}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(material).hexdigest()


def validate_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """Return the configured algorithms, or raise UnsupportedAlgorithm.

    Fails loudly rather than filtering: a setting that names "none" or an HMAC algorithm
    is a mistake to fix, not something to ignore. Cheap enough to call per request, and
    meant for a system check at startup too.
    """
    if isinstance(algorithms, str | bytes):
        raise UnsupportedAlgorithm("DPoP algorithms must be a sequence of names, not one string.")
    accepted: list[str] = []
    for name in algorithms:
        if not isinstance(name, str):
            raise UnsupportedAlgorithm(f"DPoP algorithm names must be strings, not {name!r}.")
        if name.lower() == "none" or name.upper().startswith("HS"):
            raise UnsupportedAlgorithm(
                f"{name!r} is never accepted for DPoP proofs: RFC 9449 allows only "
                "asymmetric signature algorithms."
            )
        if name not in _KEY_TYPES:
            raise UnsupportedAlgorithm(
                f"{name!r} is not a supported DPoP algorithm; choose from "
                f"{', '.join(SUPPORTED_ALGORITHMS)}."
            )
        if name not in accepted:
            accepted.append(name)
    if not accepted:
        raise UnsupportedAlgorithm("At least one DPoP algorithm must be accepted.")
    return tuple(accepted)


def access_token_hash(token: str) -> str:
    """The ``ath`` value for an access token (RFC 9449 section 4.2).

    base64url (no padding) of the SHA-256 of the token's ASCII encoding; raises
    ValueError (UnicodeEncodeError) for a token that is not ASCII.
    """
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url without padding.

    Only the required members of the key type count, so ``kid``, ``alg`` or ``use`` do
    not change it, and a private JWK has the thumbprint of its public half (RFC 7638
    section 3.2.1). Raises ValueError for something that is not a valid JWK.
    """
    try:
        return JWKRegistry.import_key(dict(jwk)).thumbprint()
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise ValueError("Not a valid JWK.") from error


def www_authenticate(
    algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    error: str | None = None,
    description: str | None = None,
) -> str:
    """The value of a ``WWW-Authenticate`` challenge for the DPoP scheme (RFC 9449 7.1).

    ``DPoP algs="ES256 EdDSA"``, with ``error`` and ``error_description`` first where
    given (as in the RFC's figure 16). RFC 6750 section 3 limits what the quoted values
    may hold, so no escaping is ever needed; anything else raises ValueError.
    """
    params: list[str] = []
    if error is not None:
        if not error or not _CHALLENGE_VALUE.fullmatch(error):
            raise ValueError("error holds characters a challenge cannot carry.")
        params.append(f'error="{error}"')
    if description is not None:
        if error is None:
            raise ValueError("error_description only goes with an error.")
        if not _CHALLENGE_VALUE.fullmatch(description):
            raise ValueError("error_description holds characters a challenge cannot carry.")
        params.append(f'error_description="{description}"')
    params.append(f'algs="{" ".join(validate_algorithms(algorithms))}"')
    return "DPoP " + ", ".join(params)


def verify_proof(
    header_value: str,
    *,
    method: str,
    url: str,
    now: float,
    algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    max_age: float = 60.0,
    leeway: float = 5.0,
    access_token: str | None = None,
    expected_jkt: str | None = None,
    nonce: str | None = None,
) -> Proof:
    """Check a ``DPoP`` header value against RFC 9449 section 4.3; return the Proof.

    ``method`` and ``url`` are the current request's (``url`` absolute; its query and
    fragment are ignored). ``now`` is the server's clock in seconds since the epoch. The
    proof must be at most ``max_age`` seconds old and at most ``leeway`` seconds in the
    future, ``leeway`` also widening the past bound for clocks that run slow.

    ``access_token``: the token presented with the proof; its hash must be the ``ath``
    claim. ``expected_jkt``: the thumbprint the token is bound to. ``nonce``: the nonce
    the server asked for. Each is checked only when given.

    Raises InvalidProof for anything the client sent wrong (a header value that is not a
    str included), and ValueError only for a mistake of the caller's: UnsupportedAlgorithm
    for the algorithms, or bounds, or a ``url`` that is not absolute.

    Replay is not checked here: the caller must refuse a ``Proof.replay_key`` it has
    already seen, remembering each one until ``Proof.accepted_until`` (at most
    ``max_age + 2 * leeway`` seconds from now), in a store all server processes share
    and that never evicts.

    Nothing in the payload is looked at before the signature verifies, so every claim
    check below is about what the key holder really signed.
    """
    accepted = validate_algorithms(algorithms)
    if not (_finite_number(max_age) is not None and max_age >= 0):
        raise ValueError("max_age must be a finite number of seconds, 0 or more.")
    if not (_finite_number(leeway) is not None and leeway >= 0):
        raise ValueError("leeway must be a finite number of seconds, 0 or more.")
    request_url = _normalise_url(url)
    if request_url is None:
        raise ValueError("url must be an absolute http or https URL.")

    # Point 2: one well-formed JWS. The length is bounded before anything parses it.
    if (
        not isinstance(header_value, str)
        or len(header_value) > MAX_PROOF_LENGTH
        or not _COMPACT_JWS.fullmatch(header_value)
    ):
        _refuse("format", "The DPoP proof is not a compact JWS.")
    try:
        header = _JWS.get_unverified_header(header_value)
    except jwt.PyJWTError:
        _refuse("format", "The DPoP proof header cannot be read.")

    # Point 4, and section 11.5: a JWT made for another purpose is not a proof.
    if header.get("typ") != DPOP_TYP:
        _refuse("typ", "The DPoP proof must have typ dpop+jwt.")

    # Point 5.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in accepted:
        _refuse("alg", "The DPoP proof is signed with an algorithm that is not accepted.")

    key = _load_public_key(header.get("jwk"), alg)

    # Point 6. PyJWT binds the header's alg to the key's, and the key was loaded for alg.
    try:
        decoded = _JWS.decode_complete(header_value, key=key, algorithms=[alg])
    except jwt.InvalidSignatureError:
        _refuse("signature", "The DPoP proof signature does not verify.")
    except jwt.PyJWTError:
        _refuse("format", "The DPoP proof cannot be read.")

    claims = _load_claims(decoded["payload"])

    # Point 3.
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        _refuse("claims", "The DPoP proof needs a jti claim: a string of bounded length.")
    htm = claims.get("htm")
    if not isinstance(htm, str):
        _refuse("claims", "The DPoP proof needs an htm claim.")
    htu = claims.get("htu")
    if not isinstance(htu, str):
        _refuse("claims", "The DPoP proof needs an htu claim.")
    iat = _finite_number(claims.get("iat"))
    if iat is None:
        _refuse("claims", "The DPoP proof needs an iat claim: a number of seconds.")
    ath = claims.get("ath")
    if ath is not None and not isinstance(ath, str):
        _refuse("claims", "The ath claim of the DPoP proof must be a string.")
    proof_nonce = claims.get("nonce")
    if proof_nonce is not None and not isinstance(proof_nonce, str):
        _refuse("claims", "The nonce claim of the DPoP proof must be a string.")

    # Point 8. Methods are case-sensitive (RFC 9110 section 9.1).
    if htm != method:
        _refuse("htm", "The DPoP proof was made for another HTTP method.")

    # Point 9.
    if _normalise_url(htu) != request_url:
        _refuse("htu", "The DPoP proof was made for another URL.")

    # Point 10, and section 11.3: once a nonce is required, a proof without it fails.
    if nonce is not None and (proof_nonce is None or not _same(proof_nonce, nonce)):
        _refuse("nonce", "The DPoP proof must carry the nonce the server provided.")

    # Point 11.
    if iat < now - max_age - leeway:
        _refuse("iat", "The DPoP proof is too old.")
    if iat > now + leeway:
        _refuse("iat", "The DPoP proof was issued in the future.")

    # Point 12, first half: the proof was made for this very token.
    if access_token is not None:
        if ath is None:
            _refuse("ath", "The DPoP proof needs an ath claim for the access token.")
        try:
            expected_ath = access_token_hash(access_token)
        except UnicodeEncodeError:
            _refuse("ath", "The ath claim does not match the access token.")
        if not _same(ath, expected_ath):
            _refuse("ath", "The ath claim does not match the access token.")

    jkt = _thumbprint(key, header["jwk"])
    # Point 12, second half: the proof's key is the one the token is bound to.
    if expected_jkt is not None and not _same(jkt, expected_jkt):
        _refuse("jkt", "The DPoP proof key is not the key the token is bound to.")

    return Proof(
        jkt=jkt,
        jti=jti,
        iat=iat,
        htm=htm,
        htu=htu,
        alg=alg,
        accepted_until=float(iat) + max_age + leeway,
        ath=ath,
        nonce=proof_nonce,
    )


def _refuse(reason: str, message: str) -> NoReturn:
    # "from None": the libraries' own messages can quote the key or the token.
    raise InvalidProof(reason, message) from None


def _load_public_key(jwk: object, alg: str) -> jwt.PyJWK:
    """Points 5 and 7: a public key, of the type alg needs, that the library can load."""
    if not isinstance(jwk, dict):
        _refuse("jwk", "The DPoP proof needs a jwk header: a JSON object.")
    # A private key here means the client published it; accepting the proof would bind
    # tokens to a key that is no longer anyone's secret.
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        _refuse("jwk", "The DPoP proof jwk must not contain a private key.")
    kty, curves = _KEY_TYPES[alg]
    crv = jwk.get("crv")
    if jwk.get("kty") != kty or (curves and not (isinstance(crv, str) and crv in curves)):
        _refuse("jwk", "The DPoP proof jwk is not a key for its algorithm.")
    if "alg" in jwk and jwk["alg"] != alg:
        _refuse("jwk", "The DPoP proof jwk is meant for another algorithm.")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError):
        _refuse("jwk", "The DPoP proof jwk is not a valid public key.")
    if kty == "RSA":
        numbers = key.key.public_numbers()
        if not MIN_RSA_BITS <= numbers.n.bit_length() <= MAX_RSA_BITS:
            _refuse("jwk", "The DPoP proof RSA key must have 2048 to 4096 bits.")
        if numbers.e >= _MAX_RSA_EXPONENT:
            _refuse("jwk", "The DPoP proof RSA key has an unacceptable exponent.")
    return key


def _thumbprint(key: jwt.PyJWK, jwk: dict[str, Any]) -> str:
    # joserfc computes it over the members as the client sent them (RFC 7638 section 3),
    # reusing the key PyJWT has already loaded and checked.
    try:
        return _JOSERFC_KEYS[jwk["kty"]](key.key, jwk).thumbprint()
    except (JoseError, ValueError, TypeError, KeyError):
        _refuse("jwk", "The DPoP proof jwk is not a valid public key.")


def _load_claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        _refuse("format", "The DPoP proof claims cannot be read.")
    if not isinstance(claims, dict):
        _refuse("format", "The DPoP proof claims must be a JSON object.")
    return claims


def _no_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON (RFC 8259 section 6); a NaN iat would pass every
    # comparison of the time window.
    raise ValueError(f"{name} is not a JSON number")


def _finite_number(value: object) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value  # math.isfinite would overflow on a huge int; every int is finite
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _same(given: str, expected: str) -> bool:
    # compare_digest takes str only when ASCII; a claim can hold anything JSON can.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _normalise_url(value: str) -> str | None:
    """``scheme://host[:port]/path`` for comparing htu with the request URL, or None.

    RFC 9449 section 4.3 compares without query and fragment, after RFC 3986 syntax-
    and scheme-based normalisation. Kept deliberately small: scheme and host are
    lowercased, the default port (80, 443) and an empty one are dropped, an empty path
    is "/", and percent-encodings get uppercase hex, unreserved characters decoded.
    Dot segments are not resolved and hosts are not IDNA-converted: such a URL simply
    fails to match, which refuses a proof and never accepts a wrong one. Only http and
    https URLs without userinfo, whitespace, control or non-ASCII characters qualify.
    """
    if not value.isascii() or not value.isprintable() or " " in value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:
        host = f"[{host}]"
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _PERCENT_ENCODED.sub(_normalise_percent, parts.path) or "/"
    return f"{scheme}://{authority}{path}"


def _normalise_percent(match: re.Match[str]) -> str:
    char = chr(int(match[1], 16))
    return char if char in _UNRESERVED else f"%{match[1].upper()}"
