"""Notices: a login from a new device, a session ended for a stolen token; the signal
and the optional e-mail (Django's test outbox, and a mail backend that fails)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import django
import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rotating_tokens import notices, services, signals
from rotating_tokens.exceptions import TokenReused, TokenRevoked
from rotating_tokens.models import KnownDevice, TokenFamily

from .factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
OBTAIN = "/api/auth/token/"


class FailingBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise ConnectionRefusedError("mail server down")


class SlowBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        time.sleep(1.5)
        mail.outbox.extend(email_messages)
        return len(email_messages)


@pytest.fixture
def mail_now(monkeypatch):
    """The mail thread's work, done at once (after the commit, still)."""
    monkeypatch.setattr(notices, "in_background", lambda task: task())


@pytest.fixture
def emails(settings, mail_now):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "NEW_DEVICE_EMAIL": True,
        "REUSE_DETECTED_EMAIL": True,
        "NOTICE_FROM_EMAIL": "security@example.com",
    }


@pytest.fixture
def heard():
    """What new_device_login said, call by call."""
    calls: list[dict] = []

    def listen(sender, **kwargs):
        calls.append(kwargs)

    signals.new_device_login.connect(listen, dispatch_uid="test-notices")
    yield calls
    signals.new_device_login.disconnect(dispatch_uid="test-notices")


def login(user, agent=CHROME, ip="203.0.113.77", now=None) -> services.TokenPair:
    return services.start_family(user, services.Client(ip, agent), now=now)


# What a new device is -------------------------------------------------------------------


def test_a_login_from_a_device_not_used_recently_is_signalled(user, heard):
    login(user, CHROME)
    pair = login(user, FIREFOX, ip="2001:db8:1:2::5")

    assert len(heard) == 2
    assert heard[0]["first_login"] is True
    call = heard[1]
    assert call["family"] == pair.family
    assert call["user"] == user
    assert call["device"] == "Firefox 133 on Windows"
    assert (call["ip_address"], call["user_agent"]) == ("2001:db8:1:2::5", FIREFOX)
    assert call["first_login"] is False


def test_the_same_device_again_is_not_new_even_from_another_address_or_version(user, heard):
    login(user, CHROME, ip="203.0.113.1")
    login(user, CHROME.replace("131.0.0.0", "133.0.0.0"), ip="198.51.100.9")

    assert len(heard) == 1  # the first login only


def test_a_device_is_known_for_the_window_after_its_last_use(user, heard):
    now = timezone.now()
    login(user, CHROME, now=now - timedelta(days=100))
    login(user, FIREFOX, now=now - timedelta(days=80))
    heard.clear()

    login(user, FIREFOX, now=now)
    assert heard == []
    # Chrome was last used 100 days ago: outside the 90-day window, new again.
    login(user, CHROME, now=now)
    assert [call["device"] for call in heard] == ["Chrome 131 on Linux"]
    assert heard[0]["first_login"] is False


def test_the_window_runs_from_the_last_login_from_the_device(user, heard):
    now = timezone.now()
    login(user, CHROME, now=now - timedelta(days=150))
    login(user, CHROME, now=now - timedelta(days=80))  # new again, then known from here
    heard.clear()

    login(user, CHROME, now=now)

    assert heard == []
    assert KnownDevice.objects.get(user=user).last_login_at == now


def test_the_device_is_remembered_once_per_user_as_a_hash(user, heard):
    login(user, CHROME)
    login(user, CHROME.replace("131.0.0.0", "140.0.0.0"))
    login(user, FIREFOX)

    keys = list(KnownDevice.objects.filter(user=user).values_list("key", flat=True))
    assert len(keys) == 2
    assert all(len(key) == 64 and "Chrome" not in key for key in keys)


def test_devices_older_than_the_window_are_forgotten(user, heard):
    now = timezone.now()
    login(user, CHROME, now=now - timedelta(days=100))

    login(user, FIREFOX, now=now)

    assert KnownDevice.objects.filter(user=user).count() == 1


def test_a_user_with_sessions_from_before_notices_were_on_gets_no_email(
    settings, emails, user, django_capture_on_commit_callbacks
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "NEW_DEVICE_EMAIL": False}
    login(user, CHROME)  # nothing recorded: nobody listens
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "NEW_DEVICE_EMAIL": True}

    with django_capture_on_commit_callbacks(execute=True):
        login(user, FIREFOX)
        login(user, FIREFOX)

    assert mail.outbox == []


def test_the_window_is_a_setting(settings, user, heard):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "NEW_DEVICE_WINDOW": 3600}
    now = timezone.now()
    login(user, CHROME, now=now - timedelta(hours=2))
    heard.clear()

    login(user, CHROME, now=now)

    assert len(heard) == 1


def test_another_users_devices_do_not_count(user, heard):
    login(UserFactory(), CHROME)
    login(user, FIREFOX)
    heard.clear()

    login(user, CHROME)

    assert [call["device"] for call in heard] == ["Chrome 131 on Linux"]


def test_nothing_is_looked_up_when_nobody_listens_and_the_mail_is_off(user):
    login(user, CHROME)

    with CaptureQueriesContext(connection) as queries:
        login(user, FIREFOX)

    table = KnownDevice._meta.db_table
    assert not any(table in query["sql"] for query in queries.captured_queries)
    assert not KnownDevice.objects.exists()


def test_a_known_device_costs_one_query_and_a_write_at_most_hourly(user, heard):
    now = timezone.now()
    login(user, CHROME, now=now)
    table = KnownDevice._meta.db_table

    def queries_of(at):
        with CaptureQueriesContext(connection) as queries:
            login(user, CHROME, now=at)
        return [q["sql"] for q in queries.captured_queries if table in q["sql"]]

    assert len(queries_of(now + timedelta(minutes=59))) == 1
    assert KnownDevice.objects.get(user=user).last_login_at == now
    assert len(queries_of(now + timedelta(minutes=61))) == 2
    assert KnownDevice.objects.get(user=user).last_login_at == now + timedelta(minutes=61)


def test_a_database_error_while_looking_leaves_the_login_done(user, heard, monkeypatch):
    def fail(*args, **kwargs):
        raise DatabaseError("replica gone")

    monkeypatch.setattr(notices, "record_device", fail)

    pair = login(user, CHROME)

    assert TokenFamily.objects.filter(pk=pair.family.pk).exists()
    assert heard == []


# The e-mails ----------------------------------------------------------------------------


def test_a_new_device_gets_an_email_after_the_commit(
    emails, user, django_capture_on_commit_callbacks
):
    login(user, CHROME)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pair = login(user, FIREFOX, ip="203.0.113.77")
    assert mail.outbox == []  # not before the commit
    for callback in callbacks:
        callback()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert message.from_email == "security@example.com"
    assert "Firefox 133 on Windows" in message.subject
    assert "\n" not in message.subject
    assert "Firefox 133 on Windows" in message.body
    assert "203.0.113.0/24" in message.body
    assert "203.0.113.77" not in message.body + message.subject
    assert pair.refresh not in message.body
    assert pair.access not in message.body
    assert user.username in message.body


def test_the_first_login_and_a_known_device_get_no_email(
    emails, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        login(user, CHROME)
        login(user, CHROME)

    assert mail.outbox == []


def test_no_email_unless_the_setting_is_on(
    settings, mail_now, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        login(user, CHROME)
        login(user, FIREFOX)

    assert mail.outbox == []


def test_a_user_without_an_address_gets_no_email(emails, django_capture_on_commit_callbacks):
    user = UserFactory(email="")
    with django_capture_on_commit_callbacks(execute=True):
        login(user, CHROME)
        login(user, FIREFOX)

    assert mail.outbox == []


def test_a_stolen_token_gets_an_email_once(emails, user, django_capture_on_commit_callbacks):
    pair = login(user, CHROME, ip="198.51.100.20")
    services.rename_family(pair.family, "Work laptop")
    services.rotate(pair.refresh, services.Client("198.51.100.20", CHROME))
    thief = services.Client("2001:db8:abcd:12::66", FIREFOX)

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            with pytest.raises((TokenReused, TokenRevoked)):
                services.rotate(pair.refresh, thief, now=timezone.now() + timedelta(minutes=1))

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert "Chrome 131 on Linux" in message.body
    assert '"Work laptop"' in message.body
    assert "Firefox 133 on Windows" in message.body
    assert "2001:db8:abcd::/48" in message.body
    assert "2001:db8:abcd:12::66" not in message.body
    assert "rtok_" not in message.body
    assert pair.refresh not in message.body


def test_no_reuse_email_unless_the_setting_is_on(
    mail_now, user, django_capture_on_commit_callbacks
):
    pair = login(user, CHROME)
    services.rotate(pair.refresh, services.Client("203.0.113.77", CHROME))
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(TokenReused):
        services.rotate(pair.refresh, services.Client("198.51.100.1", FIREFOX))

    assert mail.outbox == []


def test_a_failing_mail_backend_never_fails_the_login(
    emails, settings, api_client, user, caplog, django_capture_on_commit_callbacks
):
    use_mail_backend(settings, "tests.test_notices.FailingBackend")
    login(user, CHROME)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            OBTAIN,
            {"username": user.username, "password": PASSWORD},
            format="json",
            HTTP_USER_AGENT=FIREFOX,
        )

    assert response.status_code == 200, response.content
    assert TokenFamily.objects.filter(user=user).count() == 2
    assert "Could not send the new_device notice" in caplog.text
    assert response.json()["refresh"] not in caplog.text


def test_a_template_that_fails_never_fails_the_login(
    emails, settings, user, caplog, django_capture_on_commit_callbacks
):
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "APP_DIRS": False}]
    login(user, CHROME)

    with django_capture_on_commit_callbacks(execute=True):
        login(user, FIREFOX)

    assert mail.outbox == []
    assert "Could not prepare the new_device notice" in caplog.text


def test_a_slow_mail_server_does_not_delay_the_login(
    settings, user, django_capture_on_commit_callbacks
):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "NEW_DEVICE_EMAIL": True}
    use_mail_backend(settings, "tests.test_notices.SlowBackend")
    login(user, CHROME)

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        login(user, FIREFOX)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    for thread in threading.enumerate():
        if thread.name == "rotating_tokens-notice":
            thread.join(timeout=5)
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("::ffff:203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1:2::5", "2001:db8:1::/48"),
        (None, ""),
        ("not an address", ""),
    ],
)
def test_a_notice_names_the_network_never_the_address(address, network):
    assert notices.network_of(address) == network


def use_mail_backend(settings, path: str) -> None:
    """Send the test's mail through ``path``: MAILERS from Django 6.1 on (where
    EMAIL_BACKEND is deprecated), EMAIL_BACKEND before."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": path}}
    else:
        settings.EMAIL_BACKEND = path
