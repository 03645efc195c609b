"""The keys access tokens are signed and verified with, and the JWKS that publishes
the verifying ones, so that other services can check access tokens on their own.

Access tokens are signed by simplejwt's token backend (``SIMPLE_JWT``: ``ALGORITHM``,
``SIGNING_KEY``, ``VERIFYING_KEY``). With an asymmetric algorithm (RS*, PS*, ES*,
EdDSA) every access token names its key in a ``kid`` header: the key's RFC 7638
thumbprint. ``VERIFYING_KEY_FALLBACKS`` lists the public keys of earlier signing keys:
the JWKS keeps publishing them, and ``AccessTokenAuthentication`` keeps accepting
tokens signed with them, while such tokens may still be alive. With a symmetric
algorithm (HS*) there is nothing to publish: the key is a secret.

The JWK conversion and thumbprints come from joserfc; signatures from PyJWT.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jwt
from joserfc.jwk import JWKRegistry

from .conf import app_settings

# JWK key type of each family of JWS algorithms simplejwt can sign with.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _backend() -> Any:
    # What simplejwt signs and verifies with (built once, from SIMPLE_JWT, at import).
    from rest_framework_simplejwt.state import token_backend

    return token_backend


def is_asymmetric(algorithm: str | None = None) -> bool:
    algorithm = algorithm or _backend().algorithm
    return algorithm[:2] in _KEY_TYPES


def _pem(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


@lru_cache(maxsize=64)
def public_jwk(pem: str, algorithm: str) -> dict[str, Any]:
    """The public JWK of a PEM key (public, or private: only its public part is kept),
    with ``kid`` (its RFC 7638 SHA-256 thumbprint), ``alg`` and ``use``."""
    key = JWKRegistry.import_key(pem, _KEY_TYPES[algorithm[:2]])
    return {
        **key.as_dict(private=False),
        "kid": key.thumbprint(),
        "alg": algorithm,
        "use": "sig",
    }


def current_jwk() -> dict[str, Any]:
    """The JWK of the key access tokens are signed with now."""
    backend = _backend()
    pem = _pem(backend.verifying_key or backend.signing_key)
    return public_jwk(pem, backend.algorithm)


def fallback_jwk(pem: str | bytes) -> dict[str, Any]:
    return public_jwk(_pem(pem), _backend().algorithm)


def fallback_jwks() -> list[dict[str, Any]]:
    return [fallback_jwk(pem) for pem in app_settings.VERIFYING_KEY_FALLBACKS]


def jwks() -> dict[str, Any] | None:
    """The JWKS document (RFC 7517) of the verifying keys, or None with a symmetric
    algorithm."""
    if not is_asymmetric():
        return None
    keys = [current_jwk(), *fallback_jwks()]
    unique = {key["kid"]: key for key in reversed(keys)}  # the current key first
    return {"keys": list(reversed(unique.values()))}


def encode_access_token(payload: dict[str, Any]) -> str:
    """Sign an access token's payload as simplejwt does, plus the ``kid`` header of
    the signing key when the algorithm is asymmetric."""
    backend = _backend()
    if not is_asymmetric(backend.algorithm):
        return str(backend.encode(payload))
    claims = dict(payload)
    if backend.audience is not None:
        claims["aud"] = backend.audience
    if backend.issuer is not None:
        claims["iss"] = backend.issuer
    return jwt.encode(
        claims,
        backend.prepared_signing_key,
        algorithm=backend.algorithm,
        headers={"kid": current_jwk()["kid"]},
        json_encoder=backend.json_encoder,
    )


def fallback_backend_for(raw_token: str) -> Any:
    """The token backend of the fallback key a token's ``kid`` names, or None.

    Only tokens that name a fallback key are tried with one: a token signed with no
    known key costs one failed verification, not one per fallback."""
    fallbacks = app_settings.VERIFYING_KEY_FALLBACKS
    if not fallbacks or not is_asymmetric():
        return None
    try:
        kid = jwt.get_unverified_header(raw_token).get("kid")
    except jwt.PyJWTError:
        return None
    for pem in fallbacks:
        if fallback_jwk(pem)["kid"] == kid:
            return _fallback_backend(_pem(pem))
    return None


@lru_cache(maxsize=16)
def _fallback_backend(pem: str) -> Any:
    from rest_framework_simplejwt.backends import TokenBackend

    current = _backend()
    return TokenBackend(
        current.algorithm,
        signing_key=None,
        verifying_key=pem,
        audience=current.audience,
        issuer=current.issuer,
        leeway=current.leeway,
        json_encoder=current.json_encoder,
    )
