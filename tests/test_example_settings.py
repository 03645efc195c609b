"""The example project's settings module reads the environment (its docstring lists
what): here, what it makes of ``JWT_USER_ID_FIELD`` and ``JWT_PRIVATE_KEY_FILE``."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SETTINGS = Path(__file__).resolve().parent.parent / "example_project" / "settings.py"


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("JWT_USER_ID_FIELD", "JWT_PRIVATE_KEY_FILE", "JWT_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def _private_key_file(tmp_path: Path) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "signing.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def test_without_the_variables_simplejwt_keeps_its_defaults(monkeypatch):
    assert _settings(monkeypatch)["SIMPLE_JWT"] == {}


def test_jwt_user_id_field_sets_simplejwts_user_id_field(monkeypatch):
    simple_jwt = _settings(monkeypatch, JWT_USER_ID_FIELD="username")["SIMPLE_JWT"]
    assert simple_jwt == {"USER_ID_FIELD": "username"}


def test_jwt_user_id_field_with_a_private_key_file(monkeypatch, tmp_path):
    simple_jwt = _settings(
        monkeypatch, JWT_USER_ID_FIELD="username", JWT_PRIVATE_KEY_FILE=_private_key_file(tmp_path)
    )["SIMPLE_JWT"]
    assert simple_jwt["USER_ID_FIELD"] == "username"
    assert simple_jwt["ALGORITHM"] == "ES256"
    assert "PRIVATE KEY" in simple_jwt["SIGNING_KEY"]
    assert "PUBLIC KEY" in simple_jwt["VERIFYING_KEY"]


def test_a_private_key_file_alone_leaves_the_user_id_field_to_simplejwt(monkeypatch, tmp_path):
    simple_jwt = _settings(monkeypatch, JWT_PRIVATE_KEY_FILE=_private_key_file(tmp_path))[
        "SIMPLE_JWT"
    ]
    assert "USER_ID_FIELD" not in simple_jwt
    assert simple_jwt["ALGORITHM"] == "ES256"
