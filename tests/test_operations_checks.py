from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import Tags, run_checks
from django.test import override_settings

from rotating_tokens.checks import check_operations


def ids(rotating_tokens: object) -> list[str]:
    with override_settings(ROTATING_TOKENS=rotating_tokens):
        return [message.id for message in check_operations()]


def test_defaults_raise_nothing():
    assert ids({}) == []


@pytest.mark.parametrize(
    ("rotating_tokens", "expected"),
    [
        ({"PURGE_RETENTION": timedelta(days=-1)}, ["rotating_tokens.E020"]),
        ({"PURGE_RETENTION": 7}, ["rotating_tokens.E020"]),
        ({"MAX_FAMILIES_PER_USER": 0}, ["rotating_tokens.E021"]),
        ({"MAX_FAMILIES_PER_USER": "5"}, ["rotating_tokens.E021"]),
        ({"MAX_FAMILIES_PER_USER": True}, ["rotating_tokens.E021"]),
        ({"REVOKE_ON_PASSWORD_CHANGE": "yes"}, ["rotating_tokens.E022"]),
        ({"REVOKE_ON_PASSWORD_CHANGE": False}, ["rotating_tokens.W020"]),
    ],
)
def test_misconfiguration_is_reported(rotating_tokens, expected):
    assert ids(rotating_tokens) == expected


@pytest.mark.parametrize(
    "rotating_tokens",
    [
        {"PURGE_RETENTION": timedelta(0)},
        {"MAX_FAMILIES_PER_USER": 1},
        {"MAX_FAMILIES_PER_USER": None},
        {"REVOKE_ON_PASSWORD_CHANGE": True},
    ],
)
def test_sound_values_are_accepted(rotating_tokens):
    assert ids(rotating_tokens) == []


def test_not_a_dict_is_left_to_e001():
    assert ids(["not", "a", "dict"]) == []


def test_registered_with_the_security_tag():
    with override_settings(ROTATING_TOKENS={"MAX_FAMILIES_PER_USER": 0}):
        messages = run_checks(tags=[Tags.security])
    assert "rotating_tokens.E021" in [m.id for m in messages]
