from __future__ import annotations

import secrets

import pytest
from django.conf import settings
from django.test import override_settings

from rotating_tokens import crypto, services

# Shapes a raw token must have: prefix + 16 + 43 URL-safe characters.
VALID_LENGTH = len("rtok_") + crypto.LOOKUP_KEY_LENGTH + crypto.SECRET_LENGTH


def test_made_token_has_prefix_key_and_secret():
    raw, parsed = crypto.make_token()
    assert raw == f"rtok_{parsed.lookup_key}{parsed.secret}"
    assert len(raw) == VALID_LENGTH
    assert crypto.parse_token(raw) == parsed


def test_made_tokens_differ():
    assert crypto.make_token()[0] != crypto.make_token()[0]


@override_settings(ROTATING_TOKENS={"TOKEN_PREFIX": "acme_rt_"})
def test_token_prefix_setting_is_read_live():
    raw, parsed = crypto.make_token()
    assert raw.startswith("acme_rt_")
    assert crypto.parse_token(raw) == parsed


def test_parsed_token_repr_hides_the_secret():
    _raw, parsed = crypto.make_token()
    assert parsed.secret not in repr(parsed)


def _body(char: str = "a") -> str:
    return char * (crypto.LOOKUP_KEY_LENGTH + crypto.SECRET_LENGTH)


MALFORMED = {
    "none": None,
    "int": 12345,
    "bytes": b"rtok_" + _body().encode(),
    "list": ["rtok_" + _body()],
    "dict": {"refresh": "rtok_" + _body()},
    "empty": "",
    "prefix only": "rtok_",
    "wrong prefix": "xtok_" + _body(),
    "no prefix, right length": "abcde" + _body(),
    "one short": "rtok_" + _body()[:-1],
    "one long": "rtok_" + _body() + "a",
    "trailing newline": "rtok_" + _body()[:-1] + "\n",
    "leading space": " rtok_" + _body()[:-1],
    "plus and slash": "rtok_" + _body("+"),
    "padding": "rtok_" + _body()[:-1] + "=",
    "dot": "rtok_" + _body("."),
    "non-ascii letters": "rtok_" + _body("é"),
    "arabic digits": "rtok_" + _body("\u0663"),
    "nul byte": "rtok_" + _body()[:-1] + "\x00",
    "megabytes": "rtok_" + "a" * 5_000_000,
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_token_is_rejected(raw):
    with pytest.raises(crypto.MalformedToken):
        crypto.parse_token(raw)


def test_hmac_hash_verifies_its_secret_only():
    stored = crypto.hash_secret("s3cret", crypto.HMAC_SHA256)
    assert stored.startswith("hmac-sha256$")
    assert "s3cret" not in stored
    assert crypto.verify_secret("s3cret", stored)
    assert not crypto.verify_secret("s3cres", stored)


def test_argon2_hash_verifies_its_secret_only():
    stored = crypto.hash_secret("s3cret", crypto.ARGON2)
    assert stored.startswith("argon2$$argon2id$")
    assert crypto.verify_secret("s3cret", stored)
    assert not crypto.verify_secret("s3cres", stored)


@override_settings(ROTATING_TOKENS={"TOKEN_HASHER": "argon2"})
def test_token_hasher_setting_picks_the_hasher():
    assert crypto.hash_secret("s3cret").startswith("argon2$")


@pytest.mark.parametrize(
    "stored",
    ["", "plain", "md5$abc", "hmac-sha256$", "argon2$", "argon2$not-a-hash", "$$$"],
)
def test_unknown_or_broken_stored_hash_never_verifies(stored):
    assert not crypto.verify_secret("s3cret", stored)


def test_hash_made_under_one_hasher_verifies_after_the_setting_changes():
    with override_settings(ROTATING_TOKENS={"TOKEN_HASHER": "argon2"}):
        argon2_hash = crypto.hash_secret("s3cret")
    hmac_hash = crypto.hash_secret("s3cret")
    with override_settings(ROTATING_TOKENS={"TOKEN_HASHER": "argon2"}):
        assert crypto.verify_secret("s3cret", hmac_hash)
    assert crypto.verify_secret("s3cret", argon2_hash)


def test_unknown_hasher_cannot_hash():
    with pytest.raises(ValueError, match="TOKEN_HASHER"):
        crypto.hash_secret("s3cret", "md5")


def test_secret_key_fallbacks_keep_hashes_valid_after_key_rotation():
    with override_settings(SECRET_KEY="old-key-" + "x" * 50):
        stored = crypto.hash_secret("s3cret")
    with override_settings(SECRET_KEY="new-key-" + "y" * 50):
        assert not crypto.verify_secret("s3cret", stored)
    with override_settings(
        SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=["old-key-" + "x" * 50]
    ):
        assert crypto.verify_secret("s3cret", stored)
        # New hashes use the current key, not a fallback.
        assert crypto.hash_secret("s3cret") != stored


def test_hash_key_setting_replaces_secret_key():
    with override_settings(ROTATING_TOKENS={"HASH_KEY": "a-dedicated-hash-key"}):
        stored = crypto.hash_secret("s3cret")
        assert crypto.verify_secret("s3cret", stored)
    assert stored != crypto.hash_secret("s3cret")
    with override_settings(
        SECRET_KEY="another-" + "z" * 50, ROTATING_TOKENS={"HASH_KEY": "a-dedicated-hash-key"}
    ):
        assert crypto.verify_secret("s3cret", stored)


def test_hash_key_fallbacks_keep_hashes_valid_after_hash_key_rotation():
    with override_settings(ROTATING_TOKENS={"HASH_KEY": "old-hash-key"}):
        stored = crypto.hash_secret("s3cret")
    with override_settings(ROTATING_TOKENS={"HASH_KEY": "new-hash-key"}):
        assert not crypto.verify_secret("s3cret", stored)
    rotated = {"HASH_KEY": "new-hash-key", "HASH_KEY_FALLBACKS": ["old-hash-key"]}
    with override_settings(ROTATING_TOKENS=rotated):
        assert crypto.verify_secret("s3cret", stored)
        assert not crypto.verify_secret("s3cret!", stored)
        # New hashes use the current key, not a fallback.
        new = crypto.hash_secret("s3cret")
    assert new != stored
    with override_settings(ROTATING_TOKENS={"HASH_KEY": "new-hash-key"}):
        assert crypto.verify_secret("s3cret", new)


def test_hash_key_fallbacks_cover_the_move_from_secret_key_to_a_hash_key():
    stored = crypto.hash_secret("s3cret")  # made with SECRET_KEY (HASH_KEY unset)
    with override_settings(ROTATING_TOKENS={"HASH_KEY": "new-hash-key"}):
        assert not crypto.verify_secret("s3cret", stored)
    with override_settings(
        ROTATING_TOKENS={"HASH_KEY": "new-hash-key", "HASH_KEY_FALLBACKS": [settings.SECRET_KEY]}
    ):
        assert crypto.verify_secret("s3cret", stored)


@pytest.mark.django_db
def test_refresh_token_survives_a_hash_key_rotation(client_info, user):
    with override_settings(ROTATING_TOKENS={"HASH_KEY": "old-hash-key"}):
        pair = services.start_family(user, client_info)
    with override_settings(
        ROTATING_TOKENS={"HASH_KEY": "new-hash-key", "HASH_KEY_FALLBACKS": ["old-hash-key"]}
    ):
        assert services.rotate(pair.refresh, client_info).family == pair.family


def test_sealed_successor_opens_with_the_parent_secret():
    parent_secret = secrets.token_urlsafe(32)
    raw, parsed = crypto.make_token()
    sealed = crypto.seal_successor(raw, parent_secret=parent_secret, lookup_key=parsed.lookup_key)
    assert raw.encode() not in sealed
    assert (
        crypto.open_successor(sealed, parent_secret=parent_secret, lookup_key=parsed.lookup_key)
        == raw
    )
    assert (
        crypto.open_successor(
            memoryview(sealed), parent_secret=parent_secret, lookup_key=parsed.lookup_key
        )
        == raw
    )


def test_sealed_successor_does_not_open_with_another_secret():
    raw, parsed = crypto.make_token()
    sealed = crypto.seal_successor(raw, parent_secret="right", lookup_key=parsed.lookup_key)
    assert (
        crypto.open_successor(sealed, parent_secret="wrong", lookup_key=parsed.lookup_key) is None
    )


def test_sealed_successor_does_not_open_on_another_row():
    raw, parsed = crypto.make_token()
    sealed = crypto.seal_successor(raw, parent_secret="right", lookup_key=parsed.lookup_key)
    assert crypto.open_successor(sealed, parent_secret="right", lookup_key="another-key") is None


def test_tampered_seal_does_not_open():
    raw, parsed = crypto.make_token()
    sealed = bytearray(crypto.seal_successor(raw, parent_secret="p", lookup_key=parsed.lookup_key))
    sealed[-1] ^= 1
    assert (
        crypto.open_successor(bytes(sealed), parent_secret="p", lookup_key=parsed.lookup_key)
        is None
    )
