"""A DPoP client for django-rotating-tokens (RFC 9449): the model for a mobile app.

Start the example project (``bash scripts/demo.sh``), then::

    .venv/bin/python examples/dpop_client.py [BASE_URL] [USERNAME] [PASSWORD]

(defaults: http://127.0.0.1:8000, demo, demo-password). It needs nothing but the
standard library and what the app itself depends on: ``cryptography`` and ``PyJWT``.

It makes a P-256 key pair, logs in with a proof (the server binds the session to the
key), calls ``/api/me/`` with ``Authorization: DPoP`` and a proof carrying the token's
hash, shows that the same token is refused as Bearer and that a refresh without a proof
is refused without using the token, refreshes with a proof, and logs out. Each step is
printed.

What a real app keeps from it:

- **The private key never leaves the device.** Here it lives in memory. On iOS make it
  in the Secure Enclave (``kSecAttrTokenIDSecureEnclave``, P-256), on Android in the
  Keystore (``KeyGenParameterSpec`` with ``EC``/``secp256r1``, StrongBox where there is
  one): non-exportable, used only to sign. Keep it as long as the session (the refresh
  token's family); a new login may make a new one.
- **The refresh token is still a secret** (in the Keychain or EncryptedSharedPreferences),
  but a copy of it, or of an access token, is useless without the key.
- **One proof per request**: a new ``jti``, ``iat`` now (a device clock far off the
  server's is refused: proofs live 60 s), the method, and the URL without query or
  fragment, exactly as the server sees it (scheme, host and port included; behind a
  proxy, the public URL). For an API call, ``ath``: the hash of the access token sent
  with it. A retried request gets a new proof: the server refuses a ``jti`` it has seen.
- Send ``Authorization: DPoP <token>`` when the login answered ``"token_type": "DPoP"``,
  else ``Bearer`` (a server with DPoP off).
- A refused proof is a 400 ``dpop_required`` / ``dpop_invalid`` at the token endpoints
  and a 401 with the same code on API calls; nothing was used or revoked, so fix the
  proof (the clock, the URL) rather than logging the user out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

USER_AGENT = "dpop-client-example/1.0"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DPoPKey:
    """A P-256 key pair and the proofs it signs (ES256)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        # The public members only: a "d" here would publish the private key.
        self.jwk = {name: jwk[name] for name in ("crv", "kty", "x", "y")}

    @property
    def thumbprint(self) -> str:
        """RFC 7638: SHA-256 of the required members, sorted, without whitespace. The
        server binds the session to this value (the access token's ``cnf.jkt``)."""
        canonical = json.dumps(self.jwk, sort_keys=True, separators=(",", ":"))
        return b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """The ``DPoP`` header for one request (RFC 9449 section 4.2)."""
        scheme, netloc, path, _query, _fragment = urlsplit(url)
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": urlunsplit((scheme, netloc, path, "", "")),
            "iat": int(time.time()),
        }
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = b64url(digest)
        # PyJWT writes the ES256 signature as JWS wants it (r || s, RFC 7518 3.4).
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="ES256",
            headers={"typ": "dpop+jwt", "jwk": self.jwk},
        )


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        try:
            self.json: Any = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def code(self) -> str:
        return (self.json or {}).get("code", "") if isinstance(self.json, dict) else ""

    def __str__(self) -> str:
        return f"{self.status} {self.code}".strip()


class Session:
    """Tokens for one login, bound to ``key``. Not thread-safe: a real app makes its
    refreshes single-flight, as auth-client.js does, since a refresh token is used once."""

    def __init__(self, base_url: str, key: DPoPKey) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.key = key
        self.access: str | None = None
        self.refresh_token: str | None = None
        self.scheme = "Bearer"  # the Authorization scheme: the login's token_type

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the URL's scheme is checked in main)
            self.url(path), data=data, method=method, headers={"User-Agent": USER_AGENT}
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return Response(answer.status, answer.read())
        except urllib.error.HTTPError as refused:
            return Response(refused.code, refused.read())

    def post_with_proof(self, path: str, body: dict[str, Any]) -> Response:
        """token/, token/refresh/, logout/: a proof of this POST, no access token."""
        proof = self.key.proof("POST", self.url(path))
        return self.send("POST", path, body=body, headers={"DPoP": proof})

    def login(self, username: str, password: str) -> Response:
        response = self.post_with_proof(
            "/api/auth/token/", {"username": username, "password": password}
        )
        if response.status == 200:
            self.accept(response.json)
        return response

    def refresh(self) -> Response:
        response = self.post_with_proof("/api/auth/token/refresh/", {"refresh": self.refresh_token})
        if response.status == 200:
            self.accept(response.json)
        return response

    def logout(self) -> Response:
        return self.post_with_proof("/api/auth/logout/", {"refresh": self.refresh_token})

    def api(self, method: str, path: str) -> Response:
        """An API call with the access token; one refresh and retry on a 401 (a new
        proof for the retry: the first one's jti is spent)."""
        response = self.send(method, path, headers=self.authorization(method, path))
        if response.status == 401 and self.refresh().status == 200:
            response = self.send(method, path, headers=self.authorization(method, path))
        return response

    def authorization(self, method: str, path: str) -> dict[str, str]:
        assert self.access is not None
        if self.scheme != "DPoP":  # the server did not bind the session
            return {"Authorization": f"Bearer {self.access}"}
        return {
            "Authorization": f"DPoP {self.access}",
            "DPoP": self.key.proof(method, self.url(path), access_token=self.access),
        }

    def accept(self, body: dict[str, Any]) -> None:
        self.access = body["access"]
        self.refresh_token = body["refresh"]  # a native client gets it in the body
        self.scheme = body.get("token_type", "Bearer")


def step(text: str, response: Response | None = None, expected: int | None = None) -> None:
    print(f"- {text}" + (f": {response}" if response is not None else ""))
    if response is not None and expected is not None and response.status != expected:
        sys.exit(f"  expected {expected}, got {response.status}: {response.json}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("username", nargs="?", default="demo")
    parser.add_argument("password", nargs="?", default="demo-password")
    args = parser.parse_args(argv)
    if urlsplit(args.base_url).scheme not in ("http", "https"):
        parser.error("the base URL must start with http:// or https://")

    key = DPoPKey()
    session = Session(args.base_url, key)
    step(f"new P-256 key, thumbprint {key.thumbprint}")

    step("log in with a proof", session.login(args.username, args.password), 200)
    if session.scheme != "DPoP":
        step("the server answered Bearer: DPoP is off there, the session is not bound")
    else:
        claims = jwt.decode(session.access or "", options={"verify_signature": False})
        bound = claims.get("cnf", {}).get("jkt")
        step(f"bound: token_type DPoP, the access token's cnf.jkt is {bound}")
        if bound != key.thumbprint:
            sys.exit("  the server bound another key")

    me = session.api("GET", "/api/me/")
    step(f"GET /api/me/ with Authorization: {session.scheme} → {me.json}", me, 200)

    if session.scheme == "DPoP":
        as_bearer = session.send(
            "GET", "/api/me/", headers={"Authorization": f"Bearer {session.access}"}
        )
        step("the same access token as Bearer, as a thief would send it", as_bearer, 401)
        no_proof = session.send(
            "POST", "/api/auth/token/refresh/", body={"refresh": session.refresh_token}
        )
        step("the refresh token without a proof (it stays unused)", no_proof, 400)

    step("refresh with a proof", session.refresh(), 200)
    step("GET /api/me/ with the new access token", session.api("GET", "/api/me/"), 200)
    step("log out with a proof", session.logout(), 204)
    after = session.send("GET", "/api/me/", headers=session.authorization("GET", "/api/me/"))
    step("the access token after logout", after, 401)


if __name__ == "__main__":
    main()
