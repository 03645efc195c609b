"""One test per system check id, and none for a clean configuration."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.core.checks import Error, Info, Tags, Warning, run_checks
from django.test import override_settings

from rotating_tokens.checks import check_client_address, check_settings, check_throttle_cache

SHARED_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/5",
    }
}
LOCMEM_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK = {
    "NUM_PROXIES": 1,
    # What the installation guide shows (docs/howto/install.md).
    "DEFAULT_THROTTLE_RATES": {
        "rotating_tokens_login": "10/minute",
        "rotating_tokens_refresh": "60/minute",
    },
}
BEHIND_ONE_PROXY = {"TRUSTED_PROXY_COUNT": 1}
# What docs/howto/install.md shows.
README_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rotating_tokens.middleware.RefreshTokenCookieMiddleware",
]


def _ids(messages) -> list[str]:
    return [message.id for message in messages]


@override_settings(
    CACHES=SHARED_CACHE,
    REST_FRAMEWORK=REST_FRAMEWORK,
    ROTATING_TOKENS=BEHIND_ONE_PROXY,
    MIDDLEWARE=README_MIDDLEWARE,
)
def test_clean_configuration_has_no_message():
    assert check_settings() == []
    assert check_client_address() == []
    deploy = run_checks(include_deployment_checks=True)
    # I030: the suite signs with HS256, so jwks/ has nothing to publish. I080: how
    # soon a revocation is in force everywhere (pushed by the Redis of CACHES).
    assert sorted(m.id for m in deploy if "rotating" in m.id) == [
        "rotating_tokens.I030",
        "rotating_tokens.I080",
    ]


@override_settings(
    CACHES=LOCMEM_CACHE, ROTATING_TOKENS=None, REST_FRAMEWORK={}, MIDDLEWARE=README_MIDDLEWARE
)
def test_fresh_project_defaults_are_silent_outside_deploy_checks():
    # LocMemCache (Django's default) and no proxy: right for runserver; only
    # check --deploy speaks, about the client address, the throttles, revocations that
    # nothing pushes (the poll alone) and the cache the throttles count in.
    assert not [m for m in run_checks() if "rotating" in m.id]
    with override_settings(SILENCED_SYSTEM_CHECKS=[]):
        deploy = run_checks(include_deployment_checks=True)
    assert sorted(m.id for m in deploy if "rotating" in m.id) == [
        "rotating_tokens.I001",
        "rotating_tokens.I030",
        "rotating_tokens.I080",
        "rotating_tokens.W006",
        "rotating_tokens.W080",
        "rotating_tokens.W083",
    ]


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
        ({"REUSE_GRACE_PERIOD": True}, "rotating_tokens.E005"),
        ({"HASH_KEY_FALLBACKS": "old-key"}, "rotating_tokens.E007"),
        ({"HASH_KEY_FALLBACKS": ["old-key", ""]}, "rotating_tokens.E007"),
        ({"TRUSTED_PROXY_COUNT": -1}, "rotating_tokens.E008"),
        ({"TRUSTED_PROXY_COUNT": "1"}, "rotating_tokens.E008"),
        ({"ACCEPT_SIMPLEJWT_UNTIL": datetime(2027, 3, 1)}, "rotating_tokens.E009"),
        ({"ACCEPT_SIMPLEJWT_UNTIL": "2027-03-01"}, "rotating_tokens.E009"),
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


@pytest.mark.parametrize("grace", [0, 5, 2.5], ids=["0", "5", "2.5"])
def test_grace_period_in_seconds_is_accepted(grace):
    with override_settings(CACHES=SHARED_CACHE, ROTATING_TOKENS={"REUSE_GRACE_PERIOD": grace}):
        assert check_settings() == []


@override_settings(CACHES=LOCMEM_CACHE, SILENCED_SYSTEM_CHECKS=[])
def test_process_local_throttle_cache_is_warned_about_on_deploy():
    assert _ids(check_throttle_cache()) == ["rotating_tokens.W083"]
    assert check_settings() == []
    deploy = _ids(run_checks(include_deployment_checks=True, tags=[Tags.security]))
    assert "rotating_tokens.W083" in deploy
    assert "rotating_tokens.W083" not in _ids(run_checks(tags=[Tags.security]))


@override_settings(CACHES=SHARED_CACHE)
def test_shared_throttle_cache_is_not_warned_about():
    assert check_throttle_cache() == []


@override_settings(
    CACHES=SHARED_CACHE,
    SIMPLE_JWT={"ACCESS_TOKEN_LIFETIME": timedelta(minutes=15)},
    ROTATING_TOKENS={"ACCESS_TOKEN_LIFETIME": timedelta(minutes=5)},
)
def test_two_different_access_token_lifetimes_are_warned_about():
    messages = check_settings()
    assert _ids(messages) == ["rotating_tokens.W005"]
    assert isinstance(messages[0], Warning)


@override_settings(CACHES=SHARED_CACHE, SIMPLE_JWT={"ACCESS_TOKEN_LIFETIME": timedelta(minutes=15)})
def test_simplejwt_access_token_lifetime_alone_is_honoured_silently():
    from rotating_tokens.conf import app_settings

    assert check_settings() == []
    assert timedelta(minutes=15) == app_settings.ACCESS_TOKEN_LIFETIME


@override_settings(REST_FRAMEWORK={}, ROTATING_TOKENS={})
def test_deploy_check_explains_where_the_client_address_comes_from():
    (message,) = check_client_address()
    assert (message.id, type(message)) == ("rotating_tokens.I001", Info)
    assert "REMOTE_ADDR" in message.msg and "TRUSTED_PROXY_COUNT" in message.hint
    deploy = _ids(run_checks(include_deployment_checks=True, tags=[Tags.security]))
    assert "rotating_tokens.I001" in deploy
    assert "rotating_tokens.I001" not in _ids(run_checks(tags=[Tags.security]))


@pytest.mark.parametrize("trusted", [0, 2])
def test_drf_num_proxies_that_disagrees_is_warned_about_on_deploy(trusted):
    with override_settings(
        REST_FRAMEWORK={"NUM_PROXIES": 1}, ROTATING_TOKENS={"TRUSTED_PROXY_COUNT": trusted}
    ):
        assert _ids(check_client_address()) == ["rotating_tokens.W004"]


@override_settings(CACHES=SHARED_CACHE, ROTATING_TOKENS={"TOKEN_HASHER": "md5"})
def test_checks_are_registered_with_the_security_tag():
    assert "rotating_tokens.E003" in _ids(run_checks(tags=[Tags.security]))


@pytest.mark.parametrize(
    ("rotating_tokens", "expected"),
    [
        ({"DPOP": "on"}, "rotating_tokens.E040"),
        ({"DPOP_ALGORITHMS": ["ES256", "HS256"]}, "rotating_tokens.E041"),
        ({"DPOP_ALGORITHMS": ["none"]}, "rotating_tokens.E041"),
        ({"DPOP_ALGORITHMS": []}, "rotating_tokens.E041"),
        ({"DPOP_PROOF_MAX_AGE": -1}, "rotating_tokens.E042"),
        ({"DPOP_CLOCK_SKEW": "5s"}, "rotating_tokens.E042"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("rot") else "",
)
def test_dpop_misconfiguration_is_reported(rotating_tokens, expected):
    from rotating_tokens.checks import check_dpop

    with override_settings(ROTATING_TOKENS=rotating_tokens):
        assert [m.id for m in check_dpop()] == [expected]


@pytest.mark.parametrize("algorithms", [("ES256",), ("EdDSA", "RS256", "PS256")])
def test_dpop_asymmetric_algorithms_are_accepted(algorithms):
    from rotating_tokens.checks import check_dpop

    with override_settings(
        ROTATING_TOKENS={"DPOP_ALGORITHMS": algorithms, "DPOP_PROOF_MAX_AGE": 30}
    ):
        assert check_dpop() == []


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ({"SESSION_FAMILY_LIFETIME": 0}, ["rotating_tokens.E070"]),
        ({"SESSION_FAMILY_LIFETIME": "12h"}, ["rotating_tokens.E070"]),
        ({"SESSION_REFRESH_TOKEN_LIFETIME": timedelta(seconds=-1)}, ["rotating_tokens.E070"]),
        ({"NEW_DEVICE_WINDOW": None}, ["rotating_tokens.E070"]),
        ({"SESSION_FAMILY_LIFETIME": 3600, "NEW_DEVICE_WINDOW": timedelta(days=30)}, []),
        ({"NEW_DEVICE_EMAIL": True, "REUSE_DETECTED_EMAIL": True}, []),
        ({}, []),
    ],
)
def test_session_and_notice_settings(settings, value, ids):
    from rotating_tokens.checks import check_sessions_and_notices

    settings.ROTATING_TOKENS = value
    assert _ids(check_sessions_and_notices()) == ids


def test_a_notice_email_whose_templates_cannot_be_found(settings):
    from rotating_tokens.checks import check_sessions_and_notices

    settings.TEMPLATES = [{**settings.TEMPLATES[0], "APP_DIRS": False}]
    settings.ROTATING_TOKENS = {"REUSE_DETECTED_EMAIL": True}

    assert _ids(check_sessions_and_notices()) == ["rotating_tokens.E071", "rotating_tokens.E071"]
    settings.ROTATING_TOKENS = {}
    assert _ids(check_sessions_and_notices()) == []
