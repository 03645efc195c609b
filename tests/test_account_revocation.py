from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rotating_tokens import services, signals
from rotating_tokens.authentication import AccessTokenAuthentication
from rotating_tokens.exceptions import TokenRevoked
from rotating_tokens.models import RevokeReason, TokenFamily
from rotating_tokens.receivers import forget_current_family

from .factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

CLIENT = services.Client("198.51.100.3", "account-tests/1.0")


def login(user) -> services.TokenPair:
    return services.start_family(user, CLIENT)


def reasons(user) -> dict:
    return dict(TokenFamily.objects.for_user(user).values_list("pk", "revoke_reason"))


# Password change -------------------------------------------------------------------


def test_password_change_revokes_every_family_of_the_user(user):
    phone, laptop = login(user), login(user)
    other = login(UserFactory())

    user.set_password("a new password")
    user.save()

    assert reasons(user) == {
        phone.family.pk: "password_change",
        laptop.family.pk: "password_change",
    }
    assert TokenFamily.objects.get(pk=other.family.pk).revoked_at is None


def test_password_change_of_a_user_loaded_again_and_with_update_fields(user):
    pair = login(user)
    again = get_user_model().objects.get(pk=user.pk)

    again.set_password("another")
    again.save(update_fields=["password"])

    assert reasons(user) == {pair.family.pk: "password_change"}


def test_password_change_of_a_user_loaded_without_the_password(user):
    pair = login(user)
    partial = get_user_model().objects.only("username").get(pk=user.pk)

    partial.set_password("another")
    partial.save()

    assert reasons(user) == {pair.family.pk: "password_change"}


def test_saving_a_user_without_changing_the_password_revokes_nothing_and_costs_no_query(user):
    login(user)
    loaded = get_user_model().objects.get(pk=user.pk)
    loaded.first_name = "Alice"

    with CaptureQueriesContext(connection) as queries:
        loaded.save()
        loaded.save(update_fields=["last_login"])

    assert all(q["sql"].startswith("UPDATE") for q in queries.captured_queries)
    assert set(reasons(user).values()) == {""}


def test_password_change_can_be_turned_off(user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "REVOKE_ON_PASSWORD_CHANGE": False}
    login(user)

    user.set_password("another")
    user.save()

    assert set(reasons(user).values()) == {""}


@pytest.mark.parametrize("update_fields", [None, ["password"]], ids=["save", "update_fields"])
def test_saving_the_same_user_again_after_a_password_change_revokes_nothing_more(
    user, update_fields
):
    user.set_password("a new password")
    user.save(update_fields=update_fields)
    after = login(user)  # with the new password

    update_last_login(None, user)  # save(update_fields=["last_login"])
    user.first_name = "Alice"
    user.save()  # every field, the password among them: unchanged since the change

    assert reasons(user)[after.family.pk] == ""


class ChangePasswordView(APIView):
    """What a project's own password-change endpoint looks like."""

    def post(self, request):
        request.user.set_password(request.data["password"])
        request.user.save()
        return Response(status=204)


def test_password_changed_through_an_authenticated_request_keeps_that_session(api_client, user, rf):
    current, other = login(user), login(user)
    request = rf.post(
        "/change-password/",
        {"password": "a new one"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {current.access}",
    )

    try:
        response = ChangePasswordView.as_view()(request)
    finally:
        forget_current_family()  # as at request_finished, which RequestFactory skips

    assert response.status_code == 204
    assert reasons(user) == {current.family.pk: "", other.family.pk: "password_change"}
    assert (
        api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {current.access}").status_code == 200
    )


def test_the_current_family_is_forgotten_when_the_request_ends(api_client, user):
    pair = login(user)

    assert api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {pair.access}").status_code == 200

    assert services.current_family_id() is None
    user.set_password("changed outside any request")
    user.save()
    assert reasons(user) == {pair.family.pk: "password_change"}


# Deactivation ------------------------------------------------------------------------


def test_deactivating_a_user_revokes_every_family_and_sends_the_signal(user, api_client):
    phone, laptop = login(user), login(user)
    sent = []
    signals.family_revoked.connect(
        receiver := lambda sender, family, reason, **kw: sent.append(reason)
    )
    try:
        user.is_active = False
        user.save()
    finally:
        signals.family_revoked.disconnect(receiver)

    assert reasons(user) == {
        phone.family.pk: "user_deactivated",
        laptop.family.pk: "user_deactivated",
    }
    assert sent == ["user_deactivated", "user_deactivated"]
    assert (
        api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {phone.access}").status_code == 401
    )


def test_reactivating_or_creating_a_user_revokes_nothing(user):
    pair = login(user)
    services.revoke_family(pair.family, RevokeReason.LOGOUT)
    inactive = UserFactory(is_active=False)
    fresh = login(inactive)

    inactive.is_active = True
    inactive.save()

    assert TokenFamily.objects.get(pk=fresh.family.pk).revoked_at is None


def test_deactivating_again_a_user_reactivated_on_the_same_object_revokes_its_families():
    user = UserFactory(is_active=False)
    user.is_active = True
    user.save()
    pair = login(user)

    user.is_active = False
    user.save()

    assert reasons(user) == {pair.family.pk: "user_deactivated"}


class DeactivateAccountView(APIView):
    """What a project's own "close my account" endpoint looks like."""

    def post(self, request):
        request.user.is_active = False
        request.user.save()
        return Response(status=204)


def test_deactivation_inside_a_request_revokes_its_own_family_too(user, rf):
    current, other = login(user), login(user)
    request = rf.post("/close-account/", HTTP_AUTHORIZATION=f"Bearer {current.access}")

    try:
        response = DeactivateAccountView.as_view()(request)
    finally:
        forget_current_family()  # as at request_finished, which RequestFactory skips

    assert response.status_code == 204
    # Unlike a password change, which spares the session it was made from.
    assert reasons(user) == {
        current.family.pk: "user_deactivated",
        other.family.pk: "user_deactivated",
    }


class AccessTokenForDjangoViews:
    """A project's middleware that authenticates plain Django views, the admin among
    them, with the access token: the admin's request then has a family of its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        authenticated = AccessTokenAuthentication().authenticate(Request(request))
        if authenticated is not None:
            request.user = authenticated[0]
        return self.get_response(request)


def test_deactivation_in_the_admin_revokes_the_family_of_the_request_too(client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.AccessTokenForDjangoViews"]
    staff = UserFactory(is_staff=True, is_superuser=True)
    current, other = login(staff), login(staff)
    form = {
        "username": staff.username,
        "email": staff.email,
        "is_staff": "on",
        "is_superuser": "on",
        "date_joined_0": staff.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": staff.date_joined.strftime("%H:%M:%S"),
        # is_active left out: unticked
        # The user's sessions (rotating_tokens.admin.TokenFamilyInline), none revoked by hand.
        "token_families-TOTAL_FORMS": "0",
        "token_families-INITIAL_FORMS": "0",
    }

    response = client.post(
        reverse("admin:auth_user_change", args=[staff.pk]),
        form,
        HTTP_AUTHORIZATION=f"Bearer {current.access}",
    )

    assert response.url == reverse("admin:auth_user_changelist")  # saved, not sent to log in
    assert get_user_model().objects.get(pk=staff.pk).is_active is False
    assert reasons(staff) == {
        current.family.pk: "user_deactivated",
        other.family.pk: "user_deactivated",
    }


def test_inactive_users_can_neither_log_in_nor_refresh(api_client, user):
    pair = login(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)  # no signal

    obtain = api_client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )

    assert (obtain.status_code, obtain.json()["code"]) == (401, "invalid_credentials")
    with pytest.raises(TokenRevoked):
        services.rotate(pair.refresh, CLIENT)


# MAX_FAMILIES_PER_USER -----------------------------------------------------------------


def test_a_login_beyond_the_limit_evicts_the_least_recently_used_family(user, settings):
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "MAX_FAMILIES_PER_USER": 2}
    now = services.timezone.now()
    oldest = services.start_family(user, CLIENT, now=now - timedelta(hours=3))
    used_lately = services.start_family(user, CLIENT, now=now - timedelta(hours=2))
    services.rotate(oldest.refresh, CLIENT, now=now - timedelta(hours=1))  # oldest, but used
    newest = services.start_family(user, CLIENT, now=now)

    assert reasons(user) == {
        oldest.family.pk: "",
        used_lately.family.pk: "evicted",
        newest.family.pk: "",
    }


def test_without_a_limit_nothing_is_evicted(user):
    for _ in range(5):
        login(user)

    assert set(reasons(user).values()) == {""}
