"""rotating_tokens.contrib.channels with the real Channels (WebsocketCommunicator):
authentication by the first message, 4401 for every refusal, and sockets closed when
their family is revoked, with no channel layer."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from example_project.demo.consumers import MeConsumer
from rotating_tokens import revocation, services
from rotating_tokens.contrib.channels import CLOSE_UNAUTHENTICATED, websocket_htu
from rotating_tokens.contrib.channels import sockets as socket_registry
from rotating_tokens.models import RevokeReason, TokenFamily

from .dpop_client import DPoPKey
from .factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/ws/me/"
HTU = "http://testserver/ws/me/"
WAIT = 10  # seconds a test waits for an answer at most: never a timing assertion


class QuickTimeoutConsumer(MeConsumer):
    authentication_timeout = 0.2


application = URLRouter(
    [path("ws/me/", MeConsumer.as_asgi()), path("ws/quick/", QuickTimeoutConsumer.as_asgi())]
)


def run(scenario):
    """Run an async test body (pytest-django's transaction stays the main thread's:
    sync_to_async calls come back to it)."""
    async_to_sync(scenario)()


def communicator(url: str = URL) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, url, headers=[(b"host", b"testserver")])


async def opened(url: str = URL) -> WebsocketCommunicator:
    socket = communicator(url)
    connected, _ = await socket.connect(timeout=WAIT)
    assert connected
    return socket


async def assert_closed_unauthenticated(socket: WebsocketCommunicator) -> None:
    message = await socket.receive_output(timeout=WAIT)
    assert message == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


@pytest.fixture
def login(user, client_info):
    return services.start_family(user, client_info)


@pytest.fixture
def fast_poll(settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "REVOCATION_POLL_INTERVAL": timedelta(milliseconds=50),
    }


@pytest.fixture
def slow_poll(settings):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "REVOCATION_POLL_INTERVAL": timedelta(seconds=60),
    }


@pytest.fixture
def bound(api_client, user, password):
    key = DPoPKey()
    response = api_client.post(
        "/api/auth/token/",
        {"username": user.username, "password": password},
        format="json",
        HTTP_DPOP=key.proof("POST", "http://testserver/api/auth/token/"),
    )
    assert response.status_code == 200
    return key, response.json()["access"]


def test_the_first_message_authenticates_the_socket(login, user):
    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        answer = await socket.receive_json_from(timeout=WAIT)
        assert answer == {
            "type": "authenticated",
            "user": {"id": user.pk, "username": user.username},
        }
        await socket.send_json_to({"type": "ping"})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "pong"
        assert socket_registry.open_families() == {login.family.pk: 1}
        await socket.disconnect()
        assert socket_registry.open_families() == {}

    run(scenario)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "authenticate", "access": "not-a-jwt"},
        {"type": "authenticate"},
        {"type": "authenticate", "access": 42},
        {"type": "ping"},  # anything before authenticating
        ["authenticate"],
    ],
)
def test_a_bad_first_message_closes_with_4401(message, login):
    async def scenario():
        socket = await opened()
        await socket.send_json_to(message)
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_first_message_that_is_not_json_closes_with_4401():
    async def scenario():
        socket = await opened()
        await socket.send_to(text_data="{not json")
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_revoked_familys_token_is_refused(login):
    services.revoke_family(login.family, RevokeReason.ADMIN)

    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_no_first_message_in_time_closes_with_4401():
    async def scenario():
        socket = await opened("/ws/quick/")
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_bound_token_without_a_proof_is_refused(bound):
    _key, access = bound

    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": access})
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_bound_token_with_its_proof_authenticates(bound, user):
    key, access = bound

    async def scenario():
        socket = await opened()
        proof = key.proof("GET", HTU, access=access)
        await socket.send_json_to({"type": "authenticate", "access": access, "dpop": proof})
        answer = await socket.receive_json_from(timeout=WAIT)
        assert answer["type"] == "authenticated"
        assert answer["user"]["id"] == user.pk
        await socket.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    "proof_for",
    [
        lambda key, access: key.proof("POST", HTU, access=access),  # htm must be GET
        lambda key, access: key.proof("GET", "ws://testserver/ws/me/", access=access),
        lambda key, access: key.proof("GET", "http://testserver/ws/other/", access=access),
        lambda key, access: key.proof("GET", HTU),  # no ath
        lambda key, access: DPoPKey().proof("GET", HTU, access=access),  # another key
    ],
    ids=["POST", "ws scheme", "other path", "no ath", "other key"],
)
def test_a_bound_token_with_a_wrong_proof_is_refused(bound, proof_for):
    key, access = bound

    async def scenario():
        socket = await opened()
        message = {"type": "authenticate", "access": access, "dpop": proof_for(key, access)}
        await socket.send_json_to(message)
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_replayed_proof_is_refused(bound):
    key, access = bound
    proof = key.proof("GET", HTU, access=access)

    async def scenario():
        first = await opened()
        await first.send_json_to({"type": "authenticate", "access": access, "dpop": proof})
        assert (await first.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        second = await opened()
        await second.send_json_to({"type": "authenticate", "access": access, "dpop": proof})
        await assert_closed_unauthenticated(second)
        await first.disconnect()

    run(scenario)


def test_an_unbound_token_with_a_proof_is_refused(login):
    async def scenario():
        socket = await opened()
        proof = DPoPKey().proof("GET", HTU, access=login.access)
        await socket.send_json_to({"type": "authenticate", "access": login.access, "dpop": proof})
        await assert_closed_unauthenticated(socket)

    run(scenario)


@pytest.mark.parametrize(
    "revoke",
    [
        lambda login: services.logout(login.refresh),
        lambda login: services.revoke_family(login.family, RevokeReason.ADMIN),
        lambda login: services.logout_all(login.family.user),
    ],
    ids=["logout", "admin revoke", "logout everywhere"],
)
def test_a_revocation_closes_the_familys_sockets_only(fast_poll, login, user, client_info, revoke):
    other = services.start_family(user, client_info)

    async def scenario():
        mine, theirs = await opened(), await opened()
        await mine.send_json_to({"type": "authenticate", "access": login.access})
        await theirs.send_json_to({"type": "authenticate", "access": other.access})
        assert (await mine.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        assert (await theirs.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        await sync_to_async(revoke)(login)
        await assert_closed_unauthenticated(mine)
        still_open = await sync_to_async(
            TokenFamily.objects.filter(pk=other.family.pk, revoked_at=None).exists
        )()
        if still_open:  # logout and the admin's revoke: the other socket stays
            await theirs.send_json_to({"type": "ping"})
            assert (await theirs.receive_json_from(timeout=WAIT))["type"] == "pong"
            await theirs.disconnect()
        else:  # logout everywhere: both
            await assert_closed_unauthenticated(theirs)

    run(scenario)


def test_a_password_change_closes_the_users_sockets(fast_poll, login, user):
    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"

        def change_password():
            user.set_password("a new password")
            user.save()

        await sync_to_async(change_password)()
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_close_families_closes_at_once_from_any_caller(slow_poll, login):
    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        socket_registry.close_families({login.family.pk})
        await assert_closed_unauthenticated(socket)
        assert socket_registry.open_families() == {}

    run(scenario)


def test_an_expired_access_token_closes_the_socket(settings, user, client_info):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCESS_TOKEN_LIFETIME": timedelta(seconds=4),  # time to authenticate on a busy CI
    }
    login = services.start_family(user, client_info)

    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_new_token_on_the_open_socket_keeps_it_open(settings, user, client_info):
    settings.ROTATING_TOKENS = {
        **settings.ROTATING_TOKENS,
        "ACCESS_TOKEN_LIFETIME": timedelta(seconds=4),  # time to authenticate on a busy CI
    }
    login = services.start_family(user, client_info)

    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        settings.ROTATING_TOKENS = {
            **settings.ROTATING_TOKENS,
            "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
        }
        fresh = await sync_to_async(services.rotate)(login.refresh, client_info)
        await socket.send_json_to({"type": "authenticate", "access": fresh.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        # Past the first token's expiry, the socket still answers.
        await socket.send_json_to({"type": "ping"})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "pong"
        import asyncio

        await asyncio.sleep(4.5)
        await socket.send_json_to({"type": "ping"})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "pong"
        await socket.disconnect()

    run(scenario)


def test_a_socket_cannot_change_users(login, client_info):
    other = services.start_family(UserFactory(), client_info)

    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        await socket.send_json_to({"type": "authenticate", "access": other.access})
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_a_revocation_by_another_process_is_closed_by_the_poll(fast_poll, login):
    # Another process revoked the family: nothing is applied here at once (no announce,
    # no push), so only this process's poll of the database can close the socket.
    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        with mock.patch.object(revocation, "announce"):
            await sync_to_async(services.revoke_family)(login.family, RevokeReason.ADMIN)
        assert not revocation.is_revoked(login.family.pk)
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_this_processs_own_revocation_closes_at_once(
    slow_poll, login, django_capture_on_commit_callbacks
):
    # A poll interval longer than the wait: only the listener can close it in time.
    def logout():
        with django_capture_on_commit_callbacks(execute=True):  # the revocation commits
            services.logout(login.refresh)

    async def scenario():
        socket = await opened()
        await socket.send_json_to({"type": "authenticate", "access": login.access})
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "authenticated"
        await sync_to_async(logout)()
        await assert_closed_unauthenticated(socket)

    run(scenario)


def test_the_poll_closes_a_family_revoked_before_its_socket_registered(fast_poll, login):
    # Revoked and heard of (the listener found no socket), then a socket of the family
    # registers: the next poll finds the family on the deny-list.
    class Stub:
        closed = False

        async def close_unauthenticated(self):
            Stub.closed = True

    async def scenario():
        import asyncio

        revocation.announce([login.family.pk])
        socket_registry.register(Stub(), login.family.pk)
        for _ in range(200):
            if Stub.closed:
                break
            await asyncio.sleep(0.05)
        assert Stub.closed
        assert login.family.pk not in socket_registry.open_families()

    run(scenario)


@pytest.mark.parametrize(
    ("scope", "htu"),
    [
        (
            {"scheme": "ws", "headers": [(b"host", b"example.com")], "path": "/ws/me/"},
            "http://example.com/ws/me/",
        ),
        (
            {
                "scheme": "wss",
                "headers": [(b"host", b"example.com:8443")],
                "path": "/ws/me/",
                "raw_path": b"/ws/a%2Fb/?x=1",
            },
            "https://example.com:8443/ws/a%2Fb/",
        ),
        (
            {"headers": [], "server": ("10.0.0.1", 8000), "path": "/ws/é/"},
            "http://10.0.0.1:8000/ws/%C3%A9/",
        ),
    ],
)
def test_the_htu_of_a_socket_is_its_http_url(scope, htu):
    assert websocket_htu(scope) == htu


def test_the_htu_follows_the_trusted_proxys_scheme(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    scope = {
        "scheme": "ws",
        "headers": [(b"host", b"example.com"), (b"x-forwarded-proto", b"https")],
        "path": "/ws/me/",
    }
    assert websocket_htu(scope) == "https://example.com/ws/me/"
    scope["headers"][1] = (b"x-forwarded-proto", b"http")
    scope["scheme"] = "wss"
    assert websocket_htu(scope) == "http://example.com/ws/me/"
