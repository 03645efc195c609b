"""One test per system check id, and none for a clean configuration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import Error, Tags, Warning, run_checks
from django.test import override_settings

from rotating_tokens.checks import check_num_proxies, check_settings

SHARED_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/5",
    }
}
LOCMEM_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK = {"NUM_PROXIES": 0}


def _ids(messages) -> list[str]:
    return [message.id for message in messages]


@override_settings(CACHES=SHARED_CACHE, REST_FRAMEWORK=REST_FRAMEWORK)
def test_clean_configuration_has_no_message():
    assert check_settings() == []
    assert check_num_proxies() == []
    assert not [m for m in run_checks(include_deployment_checks=True) if "rotating" in m.id]


@override_settings(CACHES=SHARED_CACHE, ROTATING_TOKENS=None)
def test_missing_setting_uses_the_defaults_cleanly():
    assert check_settings() == []


@pytest.mark.parametrize(
    ("rotating_tokens", "expected"),
    [
        (["REUSE_GRACE_PERIOD"], "rotating_tokens.E001"),
        ({"REUSE_GRACE_PERIODE": timedelta(seconds=5)}, "rotating_tokens.E002"),
        ({"TOKEN_HASHER": "md5"}, "rotating_tokens.E003"),
        ({"ACCESS_TOKEN_LIFETIME": 300}, "rotating_tokens.E004"),
        ({"REFRESH_TOKEN_LIFETIME": timedelta(0)}, "rotating_tokens.E004"),
        ({"FAMILY_LIFETIME": timedelta(days=-1)}, "rotating_tokens.E004"),
        ({"REUSE_GRACE_PERIOD": timedelta(seconds=-1)}, "rotating_tokens.E005"),
        ({"REUSE_GRACE_PERIOD": -1}, "rotating_tokens.E005"),
        ({"REUSE_GRACE_PERIOD": "10s"}, "rotating_tokens.E005"),
        ({"FAMILY_STATE_CACHE": "sessions"}, "rotating_tokens.E006"),
        ({"REUSE_GRACE_PERIOD": timedelta(minutes=1, seconds=1)}, "rotating_tokens.W001"),
        (
            {"REFRESH_TOKEN_LIFETIME": timedelta(days=31), "FAMILY_LIFETIME": timedelta(days=30)},
            "rotating_tokens.W002",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("rot") else "",
)
def test_misconfiguration_is_reported(rotating_tokens, expected):
    with override_settings(CACHES=SHARED_CACHE, ROTATING_TOKENS=rotating_tokens):
        messages = check_settings()
    assert _ids(messages) == [expected]
    level = Error if expected.split(".")[1].startswith("E") else Warning
    assert isinstance(messages[0], level)


@override_settings(
    CACHES=SHARED_CACHE, ROTATING_TOKENS={"REUSE_GRACE_PERIOD": timedelta(minutes=1)}
)
def test_grace_period_of_exactly_a_minute_is_accepted():
    assert check_settings() == []


@override_settings(CACHES=SHARED_CACHE, ROTATING_TOKENS={"REUSE_GRACE_PERIOD": 0})
def test_zero_grace_period_is_accepted():
    assert check_settings() == []


@override_settings(CACHES=LOCMEM_CACHE)
def test_process_local_family_state_cache_is_warned_about():
    assert _ids(check_settings()) == ["rotating_tokens.W003"]


@pytest.mark.parametrize(
    "rotating_tokens",
    [{"CHECK_FAMILY_ON_ACCESS": False}, {"FAMILY_STATE_CACHE": None}],
    ids=["check off", "no cache"],
)
def test_family_state_cache_is_not_checked_when_unused(rotating_tokens):
    with override_settings(CACHES=LOCMEM_CACHE, ROTATING_TOKENS=rotating_tokens):
        assert check_settings() == []


@override_settings(REST_FRAMEWORK={})
def test_unset_num_proxies_is_warned_about_on_deploy():
    assert _ids(check_num_proxies()) == ["rotating_tokens.W004"]
    deploy = _ids(run_checks(include_deployment_checks=True, tags=[Tags.security]))
    assert "rotating_tokens.W004" in deploy
    assert "rotating_tokens.W004" not in _ids(run_checks(tags=[Tags.security]))


@override_settings(CACHES=SHARED_CACHE, ROTATING_TOKENS={"TOKEN_HASHER": "md5"})
def test_checks_are_registered_with_the_security_tag():
    assert "rotating_tokens.E003" in _ids(run_checks(tags=[Tags.security]))
