"""The demo page's DPoP binding (RFC 9449) in a real Chromium: the session is bound to a
key pair the page made with WebCrypto and cannot export, kept in IndexedDB across
reloads and tabs, so a copy of the refresh cookie or of an access token is useless
elsewhere.

Same setup as tests/test_browser.py (Debian's Chromium through Playwright, the example
project on a live server with the cookie middleware, time moved with time_machine), whose
fixtures and helpers this module imports. The browser's clock is not moved: its proofs
are real time, so a test moves the server's clock less than DPOP_PROOF_MAX_AGE.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest

from rotating_tokens.dpop import jwk_thumbprint, verify_proof
from rotating_tokens.models import TokenFamily

from . import test_browser
from .dpop_client import DPoPKey
from .test_browser import (
    ACCESS_LIFETIME,
    REFRESH_URL,
    call_me,
    expect_me,
    log_in,
    open_demo,
    refresh_cookie,
    sync_api,
)

pytestmark = test_browser.pytestmark
# tests/test_browser.py's fixtures, found by pytest under these names: its live server
# (a module's own, started with the cookie middleware), Chromium, a context, the clock,
# the demo user, and its settings (autouse).
live_server = test_browser.live_server
chromium = test_browser.chromium
context = test_browser.context
clock = test_browser.clock
user = test_browser.user
_cookie_settings = test_browser._cookie_settings

LOGIN_URL = re.compile(r"/api/auth/token/$")
ME_URL = re.compile(r"/api/me/$")

# What an injected script could do with the page's IndexedDB: read the stored pair, try
# to export its private key, and export the public one. (It opens the database the way
# auth-client.js does, so it never creates one without the store.)
READ_STORED_KEY = """async () => {
  const database = await new Promise((resolve, reject) => {
    const opening = indexedDB.open("rotating-tokens", 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore("dpop");
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error);
  });
  const pair = await new Promise((resolve, reject) => {
    const request = database.transaction("dpop").objectStore("dpop").get("session-key");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  database.close();
  if (!pair) return null;
  let exportPrivate;
  try {
    await crypto.subtle.exportKey("jwk", pair.privateKey);
    exportPrivate = "exported";
  } catch (error) {
    exportPrivate = error.name;
  }
  return {
    extractable: pair.privateKey.extractable,
    exportPrivate,
    publicJwk: await crypto.subtle.exportKey("jwk", pair.publicKey),
  };
}"""


def stored_key(page) -> dict[str, Any] | None:
    return page.evaluate(READ_STORED_KEY)


def proof_thumbprint(proof: str) -> str:
    """The thumbprint of the key in a proof's header (what the server binds to)."""
    return jwk_thumbprint(jwt.get_unverified_header(proof)["jwk"])


def shown_key(jkt: str) -> str:
    return f"bound to key {jkt[:8]}…"


def settled(page) -> str | None:
    """Wait for the last request a login or a restore makes (the sessions list, whose
    row for this browser shows its key), and return the thumbprint of the key the
    page's session is bound to (None: Bearer).

    Needed before the test touches the database or sends requests of its own: the live
    server's threads share the test's in-memory SQLite connection, and with DPoP every
    API call writes (its proof's jti), so overlapping requests can break each other's
    transactions ("database table is locked").
    """
    page.wait_for_function("() => client.loggedIn")
    jkt = page.evaluate("client.boundKey")
    cell = page.locator("#sessions tr:has(.badge) td.key")
    sync_api.expect(cell).to_have_text(f"{jkt[:8]}…" if jkt else "\N{EN DASH}")
    return jkt


def test_page_proofs_pass_the_servers_verifier(context, live_server):
    # The proof format of auth-client.js against rotating_tokens.dpop, with no server
    # involved: header, claims, the r||s signature, ath and the client's thumbprint.
    page = open_demo(context, live_server)
    made = page.evaluate(
        """async () => {
          const key = await DPoPKey.generate();
          const proof = await key.proof("GET", "/api/me/?page=2#top", "an.access.token");
          return { proof, thumbprint: key.thumbprint, jwk: key.jwk };
        }"""
    )
    proof = verify_proof(
        made["proof"],
        method="GET",
        url=f"{live_server.url}/api/me/",
        now=time.time(),
        access_token="an.access.token",
        expected_jkt=made["thumbprint"],
    )
    assert proof.htu == f"{live_server.url}/api/me/"  # no query, no fragment
    assert jwk_thumbprint(made["jwk"]) == made["thumbprint"]
    assert sorted(made["jwk"]) == ["crv", "kty", "x", "y"]
    header = jwt.get_unverified_header(made["proof"])
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": made["jwk"]}


def test_login_binds_the_family_and_the_page_shows_the_key(context, live_server, user):
    page = open_demo(context, live_server)
    with page.expect_response(LOGIN_URL) as login:
        log_in(page, user)
    jkt = settled(page)  # the sessions list shows it
    body = login.value.json()
    assert body["token_type"] == "DPoP"
    family = TokenFamily.objects.get(user=user)
    assert family.dpop_jkt == jkt == jwk_thumbprint(stored_key(page)["publicJwk"])
    assert proof_thumbprint(login.value.request.header_value("dpop")) == family.dpop_jkt
    claims = jwt.decode(body["access"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": family.dpop_jkt}
    sync_api.expect(page.locator("#dpop-state")).to_have_text(shown_key(family.dpop_jkt))
    # The page's own calls present the token as DPoP, with a proof.
    with page.expect_request(ME_URL) as me:
        call_me(page)
    expect_me(page)
    assert me.value.header_value("authorization") == f"DPoP {body['access']}"
    assert proof_thumbprint(me.value.header_value("dpop")) == family.dpop_jkt


def test_private_key_cannot_be_exported_from_the_page(context, live_server, user):
    page = open_demo(context, live_server)
    log_in(page, user)
    settled(page)
    key = stored_key(page)
    assert key["extractable"] is False
    assert key["exportPrivate"] == "InvalidAccessError"
    assert "d" not in key["publicJwk"]
    # Still so after a reload: IndexedDB keeps the CryptoKey as it was made.
    page.reload()
    settled(page)
    assert stored_key(page)["exportPrivate"] == "InvalidAccessError"


def test_bound_session_survives_a_reload_and_works_in_two_tabs(context, live_server, user, clock):
    page = open_demo(context, live_server)
    log_in(page, user)
    jkt = settled(page)
    assert TokenFamily.objects.get(user=user).dpop_jkt == jkt
    refreshes: list = []
    me_calls: list = []
    context.on("request", lambda r: REFRESH_URL.search(r.url) and refreshes.append(r))
    context.on("request", lambda r: ME_URL.search(r.url) and me_calls.append(r))

    page.reload()  # the access token is gone; the cookie and the stored key restore it
    assert settled(page) == jkt
    sync_api.expect(page.locator("#dpop-state")).to_have_text(shown_key(jkt))
    second = open_demo(context, live_server)  # restores the same session, same key
    assert settled(second) == jkt
    sync_api.expect(second.locator("#dpop-state")).to_have_text(shown_key(jkt))
    # Both access tokens expire; each tab refreshes with the stored key. (One tab after
    # the other: tabs refreshing at once are test_browser.py's Web Lock test.)
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    for tab in (page, second):
        call_me(tab)
        expect_me(tab)

    assert len(refreshes) == 4  # the reload, the second tab, two expiries
    assert all(proof_thumbprint(r.header_value("dpop")) == jkt for r in refreshes)
    assert me_calls and all(r.header_value("authorization").startswith("DPoP ") for r in me_calls)
    assert all(proof_thumbprint(r.header_value("dpop")) == jkt for r in me_calls)
    family = TokenFamily.objects.get(user=user)
    assert family.revoked_at is None
    assert family.tokens.count() == 5  # the login and four refreshes


def test_a_new_login_in_another_tab_hands_its_key_over(context, live_server, user):
    first = open_demo(context, live_server)
    log_in(first, user)
    old_jkt = settled(first)
    second = open_demo(context, live_server)
    settled(second)
    second.click("#logout")  # both tabs show the login form; the key is dropped
    sync_api.expect(first.locator("#login-view")).to_be_visible()
    assert stored_key(first) is None
    with first.expect_request(REFRESH_URL) as pickup:
        log_in(second, user)  # a new family, a new key; the first tab picks it up
        new_jkt = settled(second)
        assert settled(first) == new_jkt != old_jkt
    assert proof_thumbprint(pickup.value.header_value("dpop")) == new_jkt
    sync_api.expect(first.locator("#dpop-state")).to_have_text(shown_key(new_jkt))
    assert TokenFamily.objects.active().get(user=user).dpop_jkt == new_jkt


@pytest.mark.parametrize(
    ("thiefs_proof", "code"),
    [(False, "dpop_required"), (True, "dpop_invalid")],
    ids=["no proof", "the thief's own key"],
)
def test_copied_refresh_cookie_is_refused_without_the_key(
    context, live_server, user, clock, chromium, thiefs_proof, code
):
    page = open_demo(context, live_server)
    log_in(page, user)
    settled(page)
    stolen = refresh_cookie(context)  # from a proxy log or a shared HAR file, say
    csrf = next(c for c in context.cookies() if c["name"] == "csrftoken")
    thief = chromium[1].new_context()
    thief.add_cookies([stolen, csrf])
    url = f"{live_server.url}/api/auth/token/refresh/"
    headers = {"X-CSRFToken": csrf["value"]}
    if thiefs_proof:
        headers["DPoP"] = DPoPKey().proof("POST", url)
    replay = thief.request.post(url, headers=headers)
    assert replay.status == 400
    assert replay.json()["code"] == code
    thief.close()

    family = TokenFamily.objects.get(user=user)
    assert family.revoked_at is None
    assert family.tokens.get().used_at is None  # not consumed
    # The page's next refresh uses that very token, and the session goes on.
    clock.shift(ACCESS_LIFETIME + timedelta(seconds=1))
    with page.expect_response(REFRESH_URL) as refresh:
        call_me(page)
    expect_me(page)
    assert refresh.value.status == 200
    assert family.tokens.count() == 2


def test_copied_access_token_is_refused_without_the_key(context, live_server, user, chromium):
    page = open_demo(context, live_server)
    with page.expect_response(LOGIN_URL) as login:
        log_in(page, user)
    settled(page)
    access = login.value.json()["access"]
    thief = chromium[0].request.new_context(base_url=live_server.url)
    as_bearer = thief.get("/api/me/", headers={"Authorization": f"Bearer {access}"})
    assert as_bearer.status == 401
    assert as_bearer.json()["code"] == "dpop_required"
    proof = DPoPKey().proof("GET", f"{live_server.url}/api/me/", access=access)
    with_own_key = thief.get("/api/me/", headers={"Authorization": f"DPoP {access}", "DPoP": proof})
    assert with_own_key.status == 401
    assert with_own_key.json()["code"] == "dpop_invalid"
    thief.dispose()
    call_me(page)
    expect_me(page)


def test_page_falls_back_to_bearer_when_dpop_is_off(settings, context, live_server, user):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": "off"}
    page = open_demo(context, live_server)
    with page.expect_response(LOGIN_URL) as login:
        log_in(page, user)
    assert settled(page) is None
    assert login.value.json()["token_type"] == "Bearer"
    assert TokenFamily.objects.get(user=user).dpop_jkt == ""
    sync_api.expect(page.locator("#dpop-state")).to_have_text("not bound (Bearer token)")
    assert stored_key(page) is None  # a key the server did not take is not kept
    with page.expect_request(REFRESH_URL) as refresh:
        page.reload()
    settled(page)
    assert refresh.value.header_value("dpop") is None
    with page.expect_request(ME_URL) as me:
        call_me(page)
    expect_me(page)
    assert me.value.header_value("authorization").startswith("Bearer ")


def test_logout_with_a_proof_ends_the_bound_session_and_drops_the_key(context, live_server, user):
    page = open_demo(context, live_server)
    log_in(page, user)
    settled(page)
    with page.expect_response(re.compile(r"/api/auth/logout/$")) as logout:
        page.click("#logout")
    assert logout.value.status == 204
    assert logout.value.request.header_value("dpop")
    sync_api.expect(page.locator("#login-view")).to_be_visible()
    assert TokenFamily.objects.get(user=user).revoke_reason == "logout"
    assert refresh_cookie(context) is None
    assert stored_key(page) is None
