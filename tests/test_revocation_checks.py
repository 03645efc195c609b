"""The checks of how revocations reach every process (E080-E083, W080-W082, I080)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.checks import Error, Info, Warning
from django.test import override_settings

from rotating_tokens.checks import check_revocation_reach, check_revocation_settings

REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/5",
    }
}
FILE = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": "rotating-tokens-check-test",  # never written: checks only
    }
}
DJANGO_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/5",
    }
}


def _ids(messages) -> list[str]:
    return [message.id for message in messages]


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ({"REVOCATION_POLL_INTERVAL": -1}, ["rotating_tokens.E080"]),
        ({"REVOCATION_POLL_INTERVAL": "1"}, ["rotating_tokens.E080"]),
        ({"REVOCATION_POLL_INTERVAL": 0}, []),
        ({"REVOCATION_POLL_INTERVAL": 2.5}, []),
        ({"REVOCATION_PUSH": "nowhere"}, ["rotating_tokens.E081"]),
        ({"REVOCATION_PUSH": 3}, ["rotating_tokens.E081"]),
        ({"REVOCATION_PUSH": {"URL": "http://x"}}, ["rotating_tokens.E081"]),
        ({"REVOCATION_PUSH": {"URL": "redis://x", "CLUSTER": "yes"}}, ["rotating_tokens.E081"]),
        ({"REVOCATION_PUSH": {"URL": "redis://x", "HOST": "y"}}, ["rotating_tokens.E081"]),
        ({"REVOCATION_PUSH": {"URL": "redis://x", "CLUSTER": True}}, []),
        ({"REVOCATION_PUSH": None}, []),
        ({"REVOCATION_BELL": "/no/such/folder/revocations.bell"}, ["rotating_tokens.E083"]),
        ({"REVOCATION_BELL": 3}, ["rotating_tokens.E083"]),
        ({"REVOCATION_BELL": "revocations.bell"}, []),  # the working directory
        ({"REVOCATION_BELL": None}, []),
        ({"DPOP_REPLAY_CACHE": "nowhere"}, ["rotating_tokens.E082"]),
        ({"DPOP_REPLAY_CACHE": None}, []),
        ({"FAMILY_STATE_CACHE": "default"}, ["rotating_tokens.W081"]),
        ({"FAMILY_STATE_LOCAL_TIMEOUT": 10}, ["rotating_tokens.W081"]),
    ],
)
def test_revocation_settings(settings, value, ids):
    settings.ROTATING_TOKENS = value
    messages = check_revocation_settings()
    assert _ids(messages) == ids
    for message in messages:
        assert isinstance(message, Error if message.id[16] == "E" else Warning)


def test_obsolete_settings_are_not_unknown(settings):
    from rotating_tokens.checks import check_settings

    settings.ROTATING_TOKENS = {"FAMILY_STATE_CACHE": "default"}
    assert "rotating_tokens.E002" not in _ids(check_settings())


@override_settings(CACHES=REDIS, ROTATING_TOKENS={})
def test_deploy_says_redis_pushes_and_the_bound():
    (info,) = check_revocation_reach()
    assert isinstance(info, Info) and info.id == "rotating_tokens.I080"
    assert "at once while Redis is healthy" in info.msg
    assert "within 1 s" in info.msg


@override_settings(CACHES=DJANGO_REDIS, ROTATING_TOKENS={})
def test_deploy_knows_django_redis_pushes():
    pytest.importorskip("django_redis")
    (info,) = check_revocation_reach()
    assert "django-redis's DefaultClient" in info.msg


@override_settings(CACHES=FILE, ROTATING_TOKENS={})
def test_deploy_warns_when_the_named_cache_cannot_push():
    warning, info = check_revocation_reach()
    assert warning.id == "rotating_tokens.W080"
    assert "FileBasedCache, which cannot push" in warning.msg
    assert "within 1 s" in info.msg


@override_settings(CACHES=FILE, ROTATING_TOKENS={"REVOCATION_PUSH": None})
def test_deploy_is_quiet_when_the_poll_alone_is_chosen():
    (info,) = check_revocation_reach()
    assert info.id == "rotating_tokens.I080"
    assert "no push: REVOCATION_PUSH is None" in info.msg


@override_settings(CACHES=REDIS, ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 30})
def test_deploy_warns_about_a_long_poll_interval():
    assert _ids(check_revocation_reach()) == ["rotating_tokens.W082", "rotating_tokens.I080"]


@override_settings(CACHES=REDIS, ROTATING_TOKENS={"REVOCATION_POLL_INTERVAL": 0})
def test_deploy_with_the_database_on_every_check():
    (info,) = check_revocation_reach()
    assert "every check reads the family's row" in info.msg


@override_settings(
    CACHES=REDIS,
    ROTATING_TOKENS={"REVOCATION_PUSH": {"URL": "redis://127.0.0.1:7000/0", "CLUSTER": True}},
)
def test_deploy_names_a_cluster_push():
    with mock.patch("redis.cluster.RedisCluster.from_url") as cluster:
        (info,) = check_revocation_reach()
    assert cluster.called
    assert "sharded pub/sub on the Redis Cluster" in info.msg


@override_settings(
    CACHES=REDIS,
    ROTATING_TOKENS={"REVOCATION_PUSH": {"URL": "redis://127.0.0.1:1/0", "CLUSTER": True}},
)
def test_deploy_warns_when_the_cluster_cannot_be_reached():
    (warning,) = check_revocation_reach()
    assert warning.id == "rotating_tokens.W080"
    assert "poll alone" in warning.msg


def test_a_bell_in_a_folder_that_exists_is_accepted(settings, tmp_path):
    settings.ROTATING_TOKENS = {"REVOCATION_BELL": tmp_path / "revocations.bell"}
    assert check_revocation_settings() == []


@override_settings(CACHES=FILE)
def test_deploy_states_the_bound_with_a_bell(settings, tmp_path):
    settings.ROTATING_TOKENS = {"REVOCATION_BELL": str(tmp_path / "revocations.bell")}
    warning, info = check_revocation_reach()
    assert warning.id == "rotating_tokens.W080"
    assert "this machine hear the bell" in warning.msg
    assert "at once on this machine" in info.msg
    assert "on other machines within 1 s" in info.msg
