"""The demo page in a real Chromium (Debian's, driven by Playwright): the refresh cookie
is out of JavaScript's reach, silent refresh, tabs, replay, logout.

Needs /usr/bin/chromium (``apt-get install chromium``) and the ``playwright`` package;
never ``playwright install``. Skipped when either is missing. Time is moved with
time_machine (it patches the clock of the whole process, live server threads included),
so nothing sleeps until a token expires.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import django.contrib.admin
import pytest
import time_machine
from django.test import override_settings
from django.utils import formats, timezone
from pytest_django.live_server_helper import LiveServer

from rotating_tokens.models import TokenFamily

from .factories import UserFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.urls("example_project.urls"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed"),
]

ACCESS_LIFETIME = timedelta(seconds=20)
COOKIE = "refresh_token"  # Secure is off over http://127.0.0.1, so no __Secure- prefix
REFRESH_URL = re.compile(r"/api/auth/token/refresh/$")
PASSWORD = "demo-password"

BROWSER_SETTINGS = {
    "STATIC_URL": "/static/",  # the live server's static files handler needs one
    # Where it finds them (no staticfiles app in the test settings): the admin's own,
    # so the admin pages are measured with their styles.
    "STATIC_ROOT": str(Path(django.contrib.admin.__file__).parent / "static"),
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "rotating_tokens.middleware.RefreshTokenCookieMiddleware",
    ],
}
ROTATING_TOKENS = {
    "ACCESS_TOKEN_LIFETIME": ACCESS_LIFETIME,
    "REUSE_GRACE_PERIOD": timedelta(seconds=10),
    "TRANSPORT": "auto",  # as the example project: Chromium sends Sec-Fetch-Site
    "REFRESH_COOKIE_SECURE": False,  # the live server speaks plain HTTP
}


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    """The example project on 127.0.0.1, with the cookie middleware. A server of this
    module's own: the WSGI handler loads MIDDLEWARE once, when the server starts."""
    with override_settings(**BROWSER_SETTINGS):
        server = LiveServer("127.0.0.1:0")
        yield server
        server.stop()


@pytest.fixture(autouse=True)
def _cookie_settings(settings, live_server):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, **ROTATING_TOKENS}


@pytest.fixture(scope="module")
def chromium():
    # Playwright's sync API keeps an asyncio loop in this thread, which makes Django
    # refuse ORM calls from the test; they are plain sync calls, so allow them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield playwright, browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def context(chromium):
    context = chromium[1].new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def user(transactional_db):
    return UserFactory(username="demo", password=PASSWORD)


def refresh_requests(target) -> list[str]:
    """The refresh requests that ``target`` (a page or a context) sends from now on."""
    sent: list[str] = []
    target.on("request", lambda r: REFRESH_URL.search(r.url) and sent.append(r.url))
    return sent


class RefreshGate:
    """Holds a context's refresh requests at the network until ``release()``, so that
    two tabs' refreshes truly overlap."""

    def __init__(self, context) -> None:
        self.held: list = []
        self.holding = True
        context.route(REFRESH_URL, self._handle)

    def _handle(self, route) -> None:
        if self.holding:
            self.held.append(route)
        else:
            route.continue_()

    def wait_for(self, count: int, page) -> None:
        deadline = time.monotonic() + 10
        while len(self.held) < count and time.monotonic() < deadline:
            page.wait_for_timeout(20)  # lets Playwright deliver the route events

    def release(self) -> None:
        self.holding = False
        for route in self.held:
            route.continue_()


def open_demo(context, live_server):
    page = context.new_page()
    page.goto(live_server.url + "/")
    return page


def log_in(page, user, *, remember: bool = True) -> None:
    page.wait_for_selector("#login-view:not([hidden])")
    page.fill("#username", user.username)
    page.fill("#password", PASSWORD)
    page.set_checked("#remember", remember)
    page.click("#login-button")
    expect_me(page)


def expect_me(page, user_name: str = "demo") -> None:
    sync_api.expect(page.locator("#me-result")).to_contain_text(f'"username":"{user_name}"')


def call_me(page) -> None:
    page.locator("#me-result").evaluate("node => { node.textContent = 'waiting' }")
    page.click("#call-me")


def refresh_cookie(context):
    return next((c for c in context.cookies() if c["name"] == COOKIE), None)


def test_login_keeps_refresh_token_out_of_javascripts_reach(context, live_server, user):
    page = open_demo(context, live_server)
    with page.expect_response(re.compile(r"/api/auth/token/$")) as login_response:
        log_in(page, user)
    body = login_response.value.json()
    assert "refresh" not in body and body["refresh_expires_at"]  # "auto": a browser
    cookie = refresh_cookie(context)
    assert cookie["value"].startswith("rtok_")
    assert cookie["httpOnly"] is True
    assert cookie["path"] == "/api/auth/"
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False
    visible = page.evaluate("document.cookie")
    assert "csrftoken=" in visible
    assert COOKIE not in visible and "rtok_" not in visible
    sync_api.expect(page.locator("#visible-cookies")).not_to_contain_text("rtok_")


def test_expired_access_token_is_refreshed_once_silently(context, live_server, user, clock):
    page = open_demo(context, live_server)
    log_in(page, user)
    sent = refresh_requests(page)
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    with page.expect_response(REFRESH_URL) as refresh:
        call_me(page)
    expect_me(page)
    assert refresh.value.status == 200
    assert len(sent) == 1
    sync_api.expect(page.locator("#refresh-count")).to_have_text("1")
    if os.environ.get("DEMO_SCREENSHOT"):  # DEMO_SCREENSHOT=docs/demo.png pytest -k silently
        page.screenshot(path=os.environ["DEMO_SCREENSHOT"], full_page=True)
    # Three calls at once after the next expiry share one refresh (single-flight).
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    page.locator("#me-result").evaluate("node => { node.textContent = 'waiting' }")
    page.click("#call-many")
    expect_me(page)
    sync_api.expect(page.locator("#refresh-count")).to_have_text("2")
    assert len(sent) == 2


def test_two_tabs_refresh_one_after_the_other(settings, context, live_server, user, clock):
    # No grace period: were the tabs to present the same cookie twice, it would be
    # reuse and the family would die. The Web Lock is what keeps it alive.
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REUSE_GRACE_PERIOD": timedelta(0)}
    first = open_demo(context, live_server)
    log_in(first, user)
    second = open_demo(context, live_server)  # restores the session from the cookie
    expect_me(second)
    sent = refresh_requests(context)
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    # Both tabs' access tokens have expired and both call the API: one tab's refresh
    # request is held at the network while the other tab waits for the Web Lock.
    gate = RefreshGate(context)
    for page in (first, second):
        page.locator("#me-result").evaluate("node => { node.textContent = 'waiting' }")
        page.click("#call-me", no_wait_after=True)
    first.wait_for_function(
        "navigator.locks.query().then(s => s.held.length === 1 && s.pending.length === 1)"
    )
    gate.wait_for(1, first)
    assert len(gate.held) == 1  # the other tab waits for the lock, not on the network
    gate.release()
    expect_me(first)
    expect_me(second)
    sync_api.expect(first.locator("#refresh-count")).to_have_text("1")
    sync_api.expect(second.locator("#refresh-count")).to_have_text("2")  # restore + expiry
    assert len(sent) == 2
    family = TokenFamily.objects.get(user=user)
    assert family.revoked_at is None
    assert family.tokens.count() == 4  # login, the second tab's restore, two refreshes
    # Both tabs keep working.
    call_me(first)
    expect_me(first)
    call_me(second)
    expect_me(second)


def test_replayed_stolen_token_kills_the_family_and_page_returns_to_login(
    settings, context, live_server, user, clock, chromium
):
    # Bearer tokens (DPoP off): with DPoP the demo's family is bound to its key, and a
    # copy of the cookie alone is refused without killing anything (test_browser_dpop).
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "off"}
    page = open_demo(context, live_server)
    log_in(page, user)
    stolen = refresh_cookie(context)["value"]  # copied by malware, say
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    call_me(page)  # the page refreshes: the stolen token is now used
    expect_me(page)
    thief = chromium[0].request.new_context(
        base_url=live_server.url, extra_http_headers={"User-Agent": "thief/1.0"}
    )
    replay = thief.post("/api/auth/token/refresh/", data={"refresh": stolen})
    assert replay.status == 401
    assert replay.json()["code"] == "token_reused"
    thief.dispose()
    assert TokenFamily.objects.get(user=user).revoke_reason == "reuse_detected"
    call_me(page)  # the access token is refused at once, and so is the refresh
    sync_api.expect(page.locator("#login-view")).to_be_visible()
    sync_api.expect(page.locator("#login-error")).to_contain_text("log in again")
    assert refresh_cookie(context) is None  # the refused refresh deleted the cookie


def test_logout_clears_the_cookie(context, live_server, user):
    page = open_demo(context, live_server)
    log_in(page, user)
    assert refresh_cookie(context) is not None
    with page.expect_response(re.compile(r"/api/auth/logout/$")) as logout:
        page.click("#logout")
    assert logout.value.status == 204
    sync_api.expect(page.locator("#login-view")).to_be_visible()
    assert refresh_cookie(context) is None
    assert TokenFamily.objects.get(user=user).revoke_reason == "logout"
    page.reload()  # no cookie, no session to restore
    sync_api.expect(page.locator("#login-view")).to_be_visible()


def test_logout_everywhere_ends_every_session(context, live_server, user, chromium):
    page = open_demo(context, live_server)
    log_in(page, user)
    other = chromium[1].new_context()
    other_page = open_demo(other, live_server)
    log_in(other_page, user)
    page.click("#logout-all")
    sync_api.expect(page.locator("#login-view")).to_be_visible()
    assert refresh_cookie(context) is None
    call_me(other_page)
    sync_api.expect(other_page.locator("#login-view")).to_be_visible()
    other.close()
    assert not TokenFamily.objects.active().exists()


def test_sessions_list_signs_another_device_out(context, live_server, user, chromium):
    other = chromium[1].new_context()
    log_in(open_demo(other, live_server), user)
    page = open_demo(context, live_server)
    log_in(page, user)
    rows = page.locator("#sessions tr")
    sync_api.expect(rows).to_have_count(2)
    sync_api.expect(page.locator("#sessions .badge")).to_have_count(1)
    page.locator("#sessions tr:not(:has(.badge)) button[data-session]").click()
    sync_api.expect(rows).to_have_count(1)
    other.close()
    assert TokenFamily.objects.active().count() == 1


# Another site's page -------------------------------------------------------------------

EVIL = "http://evil.test"


def attackers_page(context, action: str, refresh: str) -> None:
    """Serve, as http://evil.test/, a page that auto-submits a form to ``action``
    carrying ``refresh`` (no request leaves the machine: Playwright answers it)."""
    html = (
        f'<form method="post" action="{action}"><input name="refresh" value="{refresh}"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    context.route(f"{EVIL}/", lambda route: route.fulfill(body=html, content_type="text/html"))


def test_another_sites_form_cannot_plant_its_session_through_refresh(
    context, live_server, user, clock, chromium
):
    # Login CSRF through refresh: the attacker's page posts the attacker's own refresh
    # token; were the answer to set the cookie, the victim's next silent refresh would
    # sign them in as the attacker.
    page = open_demo(context, live_server)
    log_in(page, user)
    victims = refresh_cookie(context)["value"]
    attacker = UserFactory(username="mallory", password=PASSWORD)
    api = chromium[0].request.new_context(base_url=live_server.url)
    login = api.post("/api/auth/token/", data={"username": attacker.username, "password": PASSWORD})
    attackers_token = login.json()["refresh"]
    api.dispose()

    attackers_page(context, f"{live_server.url}/api/auth/token/refresh/", attackers_token)
    evil = context.new_page()
    with evil.expect_response(REFRESH_URL) as planted:
        evil.goto(f"{EVIL}/")
    assert planted.value.status == 200
    # From a plain-HTTP page Chromium sends no Sec-Fetch-Site: the foreign Origin is
    # what gives the request away.
    assert planted.value.request.header_value("origin") == EVIL
    assert "set-cookie" not in planted.value.headers
    assert refresh_cookie(context)["value"] == victims
    # The victim's next silent refresh still signs the victim in.
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    call_me(page)
    expect_me(page, "demo")


def test_another_sites_form_cannot_log_the_browser_out(context, live_server, user):
    page = open_demo(context, live_server)
    log_in(page, user)
    victims = refresh_cookie(context)["value"]
    attackers_page(context, f"{live_server.url}/api/auth/logout/", "garbage")
    evil = context.new_page()
    with evil.expect_response(re.compile(r"/api/auth/logout/$")) as logout:
        evil.goto(f"{EVIL}/")
    # (Chromium reports a 204 that ends a navigation as 200; the server said 204.)
    assert "set-cookie" not in logout.value.headers
    assert refresh_cookie(context)["value"] == victims
    assert TokenFamily.objects.get(user=user).revoked_at is None
    call_me(page)
    expect_me(page)


# Remember me, devices and names ---------------------------------------------------------

SCREENS = "/tmp/screens"  # noqa: S108 (screenshots for people to look at, nothing secret)


def screenshot(page, name: str) -> None:
    os.makedirs(SCREENS, exist_ok=True)
    page.screenshot(path=f"{SCREENS}/{name}.png", full_page=True)


def test_remember_me_unticked_keeps_a_session_cookie_through_refreshes(
    context, live_server, user, clock
):
    page = open_demo(context, live_server)
    log_in(page, user, remember=False)

    cookie = refresh_cookie(context)
    assert cookie is not None and cookie["httpOnly"]
    assert cookie["expires"] == -1  # a session cookie: gone when the browser closes
    family = TokenFamily.objects.get()
    assert family.remember is False

    refreshes = refresh_requests(page)
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    call_me(page)
    expect_me(page)
    assert len(refreshes) == 1
    renewed = refresh_cookie(context)
    assert renewed["value"] != cookie["value"]
    assert renewed["expires"] == -1


def test_remember_me_ticked_keeps_a_cookie_that_outlives_the_browser(context, live_server, user):
    page = open_demo(context, live_server)
    page.wait_for_selector("#login-view:not([hidden])")
    sync_api.expect(page.locator("#remember")).to_be_checked()  # the default
    screenshot(page, "demo-login")
    log_in(page, user, remember=True)

    cookie = refresh_cookie(context)
    assert cookie["expires"] > time.time() + timedelta(days=13).total_seconds()
    assert TokenFamily.objects.get().remember is True


def test_sessions_table_shows_the_device_and_renames_it_as_text(context, live_server, user):
    page = open_demo(context, live_server)
    log_in(page, user)
    row = page.locator("#sessions tr").first
    sync_api.expect(row.locator("td.device")).to_contain_text("Chrome")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    row.locator("td.name input").fill('<img src=x onerror="alert(1)"> laptop')
    row.locator("td.name button").click()

    sync_api.expect(page.locator("#log")).to_contain_text(re.compile(r"renamed session \S+ → 200"))
    sync_api.expect(page.locator("#sessions tr").first.locator("td.name input")).to_have_value(
        '<img src=x onerror="alert(1)"> laptop'
    )
    assert TokenFamily.objects.get().name == '<img src=x onerror="alert(1)"> laptop'
    assert page.locator("#sessions img").count() == 0
    assert dialogs == []
    screenshot(page, "demo-sessions")


def admin_login(context, live_server):
    UserFactory(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    page = context.new_page()
    page.set_viewport_size({"width": 1300, "height": 800})
    page.goto(live_server.url + "/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


# The widest date and time the admin writes in English: "Sept. 30, 2027, 10:59 a.m." (a
# year ahead, so that the admin's session cookie is not already expired for Chromium).
WIDEST_MOMENT = datetime(2027, 9, 30, 10, 59, 59, tzinfo=dt_timezone.utc)


def test_admin_family_list_and_users_page_fit_a_1300_pixel_screen(context, live_server, user):
    from rotating_tokens import services
    from rotating_tokens.models import RevokeReason

    with time_machine.travel(WIDEST_MOMENT, tick=False):
        for agent, name in ((CHROME_UA, "Work laptop"), (IPHONE_UA, "Phone"), ("curl/8.5.0", "")):
            pair = services.start_family(user, services.Client("2001:db8:1234:5678::99", agent))
            if name:
                services.rename_family(pair.family, name)
        assert "Sept. 30" in formats.date_format(pair.family.created_at, "DATE_FORMAT")
    services.revoke_family(pair.family, RevokeReason.REUSE_DETECTED)
    page = admin_login(context, live_server)

    page.goto(live_server.url + "/admin/rotating_tokens/tokenfamily/")
    sync_api.expect(page.locator("#result_list")).to_contain_text("Safari 17 on iPhone")
    screenshot(page, "admin-families")
    # Nothing scrolls: not the page, not the table inside its box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1300
    results = page.locator("#changelist .results")
    assert results.evaluate("box => box.scrollWidth <= box.clientWidth")

    page.goto(live_server.url + f"/admin/auth/user/{user.pk}/change/")
    inline = page.locator("#token_families-group")
    sync_api.expect(inline).to_contain_text("Chrome 131 on Windows")
    sync_api.expect(inline).to_contain_text("revoked: reuse detected")
    width = page.evaluate("document.documentElement.scrollWidth")
    inline.scroll_into_view_if_needed()
    screenshot(page, "admin-user")
    assert width <= 1300
