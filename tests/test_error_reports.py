"""Error reports never carry a password or a refresh token: Django's error mail and
its technical 500 page (``ExceptionReporter``) with DEBUG off."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from urllib.parse import urlencode

import pytest
from django.core.signals import got_request_exception
from django.views.debug import ExceptionReporter
from rest_framework.test import APIClient

from rotating_tokens import services, signals

pytestmark = pytest.mark.django_db

OBTAIN, REFRESH, LOGOUT = "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"


class Boom(Exception):
    pass


def explode(**kwargs):
    raise Boom("a receiver failed")


@contextmanager
def error_report(signal):
    """Make ``signal``'s receivers fail inside the request, and yield a list that then
    holds the text of the error report Django would mail."""
    reports: list[str] = []

    def report(sender, request, **kwargs):
        reporter = ExceptionReporter(request, *sys.exc_info())
        # The mail's text and its HTML attachment (the debug page, with every frame's
        # local variables).
        reports.append(reporter.get_traceback_text() + reporter.get_traceback_html())

    signal.connect(explode)
    got_request_exception.connect(report)
    try:
        yield reports
    finally:
        signal.disconnect(explode)
        got_request_exception.disconnect(report)


@pytest.fixture
def client() -> APIClient:
    return APIClient(raise_request_exception=False)


@pytest.mark.parametrize("body", ["json", "form"])
def test_login_error_report_hides_the_password(client, user, password, body):
    credentials = {"username": user.username, "password": password}
    with error_report(signals.tokens_issued) as reports:
        if body == "json":
            response = client.post(OBTAIN, credentials, format="json")
        else:
            response = client.post(
                OBTAIN, urlencode(credentials), content_type="application/x-www-form-urlencoded"
            )
    assert response.status_code == 500
    (report,) = reports
    assert "Boom" in report and "rotating_tokens/services.py" in report  # a real report
    assert user.username in report or body == "json"  # form fields are listed
    assert password not in report


def test_refresh_error_report_hides_the_tokens(client, user, client_info, password):
    pair = services.start_family(user, client_info)
    with error_report(signals.token_rotated) as reports:
        response = client.post(REFRESH, {"refresh": pair.refresh}, format="json")
    assert response.status_code == 500
    (report,) = reports
    assert "Boom" in report and "def rotate" not in report  # frames, not source
    assert "raw_token" in report  # the variables are listed, their values hidden
    assert "********" in report
    body = pair.refresh.removeprefix("rtok_")
    assert body[:16] not in report  # not even the lookup key
    assert body[16:] not in report


def test_logout_error_report_hides_the_token(client, user, client_info):
    pair = services.start_family(user, client_info)
    with error_report(signals.family_revoked) as reports:
        response = client.post(
            LOGOUT,
            urlencode({"refresh": pair.refresh}),
            content_type="application/x-www-form-urlencoded",
        )
    assert response.status_code == 500
    (report,) = reports
    assert "Boom" in report
    assert pair.refresh.removeprefix("rtok_")[16:] not in report


# Sentry -------------------------------------------------------------------------------

# The deny list docs/howto/deploy.md shows for Sentry's EventScrubber.
SENTRY_DENYLIST_ADDITIONS = [
    "refresh",
    "raw_token",
    "raw",
    "raw_successor",
    "parent_secret",
    "body",
    "plain",
    "credentials",
]


def sentry_event(exc_info, denylist_additions):
    """The event the Sentry SDK builds for this exception with local variables on,
    after its EventScrubber (what leaves the process), without starting a client."""
    pytest.importorskip("sentry_sdk")
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
    from sentry_sdk.utils import event_from_exception

    options = {
        "include_local_variables": True,
        "include_source_context": False,
        "max_value_length": 1024,
    }
    event, _hint = event_from_exception(exc_info, client_options=options)
    EventScrubber(denylist=[*DEFAULT_DENYLIST, *denylist_additions]).scrub_event(event)
    return event


@pytest.mark.parametrize("scrubbed", [True, False], ids=["README deny list", "defaults only"])
def test_sentry_event_of_a_failed_refresh_carries_no_token_with_the_readme_scrubber(
    client, user, client_info, scrubbed
):
    pair = services.start_family(user, client_info)
    captured = []

    def capture(sender, request, **kwargs):
        captured.append(sys.exc_info())

    signals.token_rotated.connect(explode)
    got_request_exception.connect(capture)
    try:
        client.post(REFRESH, {"refresh": pair.refresh}, format="json")
    finally:
        signals.token_rotated.disconnect(explode)
        got_request_exception.disconnect(capture)
    event = sentry_event(captured[0], SENTRY_DENYLIST_ADDITIONS if scrubbed else [])
    text = json.dumps(event, default=str)
    secret = pair.refresh.removeprefix("rtok_")[16:]
    assert "raw_token" in text  # the frames and their variables are there
    # The documented list hides every copy of the secret; Sentry's defaults alone do not,
    # which is why the docs ask for it.
    assert (secret not in text) is scrubbed
