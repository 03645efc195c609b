"""Installing the allauth strategy as docs/howto/allauth.md says, and what a missing piece does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

from rotating_tokens.checks import (
    ALLAUTH_MIDDLEWARE,
    ALLAUTH_STRATEGY,
    check_allauth_strategy,
)
from rotating_tokens.contrib.allauth.strategy import RotatingTokenStrategy

ROOT = Path(__file__).resolve().parents[2]

# What allauth does on its first request (allauth.headless.app_settings.TOKEN_STRATEGY).
FIRST_REQUEST = """
import django
django.setup()
from django.core.exceptions import ImproperlyConfigured
from allauth.headless import app_settings
try:
    app_settings.TOKEN_STRATEGY
except ImproperlyConfigured as exc:
    print("ImproperlyConfigured:", exc)
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.contrib_allauth.settings_without_app"}
    return subprocess.run(  # noqa: S603  (this interpreter, fixed code)
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_strategy_without_rotating_tokens_installed_says_what_to_add():
    result = _run(FIRST_REQUEST)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImproperlyConfigured: HEADLESS_TOKEN_STRATEGY")
    assert '"rotating_tokens" in INSTALLED_APPS' in result.stdout


# Checks of what the strategy needs (rotating_tokens installed) ----------------------


class ProjectStrategy(RotatingTokenStrategy):
    pass


@pytest.mark.parametrize(
    "strategy", [ALLAUTH_STRATEGY, f"{__name__}.ProjectStrategy"], ids=["ours", "a subclass"]
)
def test_strategy_with_client_side_sessions_is_an_error(settings, strategy):
    settings.HEADLESS_TOKEN_STRATEGY = strategy
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

    assert [m.id for m in check_allauth_strategy()] == ["rotating_tokens.E062"]
    assert "rotating_tokens.E062" in [m.id for m in run_checks()]


def test_strategy_without_allauths_middleware_is_an_error(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != ALLAUTH_MIDDLEWARE]

    assert [m.id for m in check_allauth_strategy()] == ["rotating_tokens.E063"]


def test_the_readmes_allauth_settings_are_silent():
    # tests/contrib_allauth/settings.py is what docs/howto/allauth.md shows.
    assert check_allauth_strategy() == []
    assert not [m for m in run_checks() if m.id.startswith("rotating_tokens")]


@pytest.mark.parametrize(
    "strategy",
    [
        "allauth.headless.tokens.strategies.sessions.SessionTokenStrategy",
        "tests.no_such_module.Strategy",
        None,
    ],
)
def test_other_strategies_are_not_checked(settings, strategy):
    settings.HEADLESS_TOKEN_STRATEGY = strategy
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

    assert check_allauth_strategy() == []
