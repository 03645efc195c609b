"""Proofs of possession for the tests: a client key pair and RFC 9449 proofs signed with
it (PyJWT), as a mobile app or the demo page would make them."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from rotating_tokens.dpop import jwk_thumbprint


class DPoPKey:
    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_jwk: dict[str, Any] = json.loads(
            jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key())
        )
        self.jkt = jwk_thumbprint(self.public_jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        access: str | None = None,
        jti: str | None = None,
        iat: float | None = None,
        **claims: Any,
    ) -> str:
        payload: dict[str, Any] = {
            "jti": jti or str(uuid.uuid4()),
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
            **claims,
        }
        if access is not None:
            digest = hashlib.sha256(access.encode("ascii")).digest()
            payload["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return jwt.encode(
            payload,
            self.private_key,
            algorithm="ES256",
            headers={"typ": "dpop+jwt", "jwk": self.public_jwk},
        )

    def headers(self, method: str, url: str, **kwargs: Any) -> dict[str, str]:
        """The test client's keyword arguments for a request carrying a proof."""
        return {"HTTP_DPOP": self.proof(method, url, **kwargs)}
