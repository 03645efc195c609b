"""Make, parse and hash raw refresh tokens, and seal a successor for the grace period.

A raw token reads ``<prefix><lookup key><secret>``:

- the prefix (``rtok_`` by default) lets secret scanners recognise a leaked token;
- the lookup key (16 URL-safe characters, 96 random bits) is not secret: it finds the
  row with one indexed query;
- the secret (43 URL-safe characters, 256 random bits from ``secrets``) is never
  stored. The database keeps a hash of it, compared in constant time.

Nothing here touches the database.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.utils.crypto import salted_hmac

from .conf import app_settings

LOOKUP_KEY_LENGTH = 16  # token_urlsafe(12)
SECRET_LENGTH = 43  # token_urlsafe(32): 256 bits
_BODY = re.compile(rf"[A-Za-z0-9_-]{{{LOOKUP_KEY_LENGTH + SECRET_LENGTH}}}")

HMAC_SHA256 = "hmac-sha256"
ARGON2 = "argon2"
HASHERS = (HMAC_SHA256, ARGON2)


@dataclass(frozen=True)
class ParsedToken:
    lookup_key: str
    secret: str

    def __repr__(self) -> str:
        # Keep the secret out of tracebacks and debug logs.
        return f"ParsedToken(lookup_key={self.lookup_key!r}, secret=...)"


class MalformedToken(ValueError):
    pass


def make_token() -> tuple[str, ParsedToken]:
    """Return a new raw token and its parts."""
    lookup_key = secrets.token_urlsafe(12)
    secret = secrets.token_urlsafe(32)
    return f"{app_settings.TOKEN_PREFIX}{lookup_key}{secret}", ParsedToken(lookup_key, secret)


def parse_token(raw: object) -> ParsedToken:
    """Split a raw token into its parts, or raise MalformedToken.

    Runs before any database query, and its cost does not grow with the input:
    the length is checked before anything else looks at the characters.
    """
    prefix = app_settings.TOKEN_PREFIX
    expected_length = len(prefix) + LOOKUP_KEY_LENGTH + SECRET_LENGTH
    if not isinstance(raw, str) or len(raw) != expected_length or not raw.startswith(prefix):
        raise MalformedToken
    body = raw[len(prefix) :]
    if not _BODY.fullmatch(body):
        raise MalformedToken
    return ParsedToken(body[:LOOKUP_KEY_LENGTH], body[LOOKUP_KEY_LENGTH:])


# Hashing -----------------------------------------------------------------------------
#
# A stored hash reads "<hasher>$<digest>", so a token keeps working after
# TOKEN_HASHER changes: verification uses the hasher that made the hash.


def _hmac_keys() -> list[str]:
    """The key new hashes are made with, then every key that still verifies: like
    Django's SECRET_KEY_FALLBACKS, so a key can be changed without logging anyone out."""
    if app_settings.HASH_KEY:
        keys = [app_settings.HASH_KEY]
    else:
        keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [*keys, *app_settings.HASH_KEY_FALLBACKS]


def _hmac_digest(secret: str, key: str) -> str:
    return salted_hmac(
        "rotating_tokens.refresh", secret, secret=key, algorithm="sha256"
    ).hexdigest()


@lru_cache(maxsize=1)
def _argon2() -> PasswordHasher:
    return PasswordHasher()


def hash_secret(secret: str, hasher: str | None = None) -> str:
    hasher = hasher or app_settings.TOKEN_HASHER
    if hasher == HMAC_SHA256:
        return f"{HMAC_SHA256}${_hmac_digest(secret, _hmac_keys()[0])}"
    if hasher == ARGON2:
        return f"{ARGON2}${_argon2().hash(secret)}"
    raise ValueError(f"Unknown TOKEN_HASHER {hasher!r}.")


def verify_secret(secret: str, stored: str) -> bool:
    """Compare a presented secret with a stored hash, in constant time."""
    hasher, _, digest = stored.partition("$")
    if hasher == HMAC_SHA256:
        # Try every key (the fallbacks) so rotating the key logs nobody out;
        # the loop does not short-circuit, so its time does not depend on which matched.
        matched = False
        for key in _hmac_keys():
            matched |= hmac.compare_digest(_hmac_digest(secret, key), digest)
        return matched
    if hasher == ARGON2:
        try:
            return _argon2().verify(digest, secret)
        except (VerificationError, InvalidHashError):
            return False
    return False


# Sealing the successor ---------------------------------------------------------------
#
# During the grace period a retry of token T must get back the very token that T's first
# use returned. The server keeps that successor only encrypted with AES-GCM under a key
# derived (HKDF) from T's secret, which the database never holds: a copy of the database
# alone opens nothing. The ciphertext is erased when the successor is used.

_SEAL_INFO = b"rotating_tokens successor v1"
_NONCE_LENGTH = 12


def _seal_key(parent_secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return hkdf.derive(parent_secret.encode())


def seal_successor(raw_successor: str, *, parent_secret: str, lookup_key: str) -> bytes:
    nonce = secrets.token_bytes(_NONCE_LENGTH)
    # The successor's lookup key is the associated data: a ciphertext moved to another
    # row does not open.
    sealed = AESGCM(_seal_key(parent_secret)).encrypt(
        nonce, raw_successor.encode(), lookup_key.encode()
    )
    return nonce + sealed


def open_successor(sealed: bytes, *, parent_secret: str, lookup_key: str) -> str | None:
    nonce, ciphertext = bytes(sealed[:_NONCE_LENGTH]), bytes(sealed[_NONCE_LENGTH:])
    try:
        plain = AESGCM(_seal_key(parent_secret)).decrypt(nonce, ciphertext, lookup_key.encode())
    except InvalidTag:
        return None
    return plain.decode()
