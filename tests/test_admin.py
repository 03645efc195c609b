from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import formats, timezone

from rotating_tokens import services, signals
from rotating_tokens.models import RefreshToken, RevokeReason, TokenFamily

from .factories import RefreshTokenFactory, TokenFamilyFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:rotating_tokens_tokenfamily_changelist")
CLIENT = services.Client(ip_address="198.51.100.20", user_agent="admin-tests/1.0")


def change_url(family: TokenFamily) -> str:
    return reverse("admin:rotating_tokens_tokenfamily_change", args=[family.pk])


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def login(user=None, client=CLIENT) -> services.TokenPair:
    return services.start_family(user or UserFactory(), client)


def listed(response) -> set[str]:
    return {str(family.pk) for family in response.context["cl"].result_list}


# The list --------------------------------------------------------------------------


def test_list_shows_status_last_use_and_token_count(admin_client):
    pair = login(UserFactory(username="alice"))
    services.rotate(pair.refresh, services.Client("203.0.113.99", "phone/2.0"))

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    family = response.context["cl"].result_list[0]
    assert (family.status, family.token_count) == ("active", 2)
    assert (family.last_ip_address, family.last_user_agent) == ("203.0.113.99", "phone/2.0")
    html = response.content.decode()
    # The device of the last use, its user agent on hover; the login's are on the
    # family's page.
    for shown in ("alice", "active", 'title="phone/2.0"', "Unknown device", "203.0.113.99"):
        assert shown in html


def test_list_runs_the_same_number_of_queries_however_many_families(admin_client):
    def queries_for(families: int) -> int:
        TokenFamily.objects.all().delete()
        for _ in range(families):
            services.rotate(login().refresh, CLIENT)
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(queries)

    assert queries_for(3) == queries_for(30)


@pytest.mark.parametrize("status", ["active", "revoked", "expired"])
def test_status_filter(admin_client, status):
    active = login()
    revoked = login()
    services.revoke_family(revoked.family, RevokeReason.LOGOUT)
    expired = TokenFamilyFactory(expires_at=timezone.now() - timedelta(days=1))
    idle = TokenFamilyFactory()
    RefreshTokenFactory(family=idle, expires_at=timezone.now() - timedelta(seconds=1))
    expected = {
        "active": {active.family},
        "revoked": {revoked.family},
        "expired": {expired, idle},
    }[status]

    response = admin_client.get(CHANGELIST, {"status": status})

    assert listed(response) == {str(f.pk) for f in expected}


def test_revoke_reason_filter(admin_client):
    logged_out, stolen = login(), login()
    services.revoke_family(logged_out.family, RevokeReason.LOGOUT)
    services.revoke_family(stolen.family, RevokeReason.REUSE_DETECTED)

    response = admin_client.get(CHANGELIST, {"revoke_reason__exact": "reuse_detected"})

    assert listed(response) == {str(stolen.family.pk)}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("ALICE", {"laptop", "phone"}),
        ("alice@example.com", {"laptop", "phone"}),
        ("{laptop}", {"laptop"}),
        ("203.0.113.50", {"laptop"}),  # the address at login
        ("198.51.100.77", {"phone"}),  # the address of a later use
    ],
)
def test_search_by_username_email_family_id_and_ip(admin_client, term, expected):
    alice = UserFactory(username="alice", email="alice@example.com")
    laptop = login(alice, services.Client("203.0.113.50", "laptop")).family
    phone = login(alice)
    services.rotate(phone.refresh, services.Client("198.51.100.77", "phone"))
    login(UserFactory(username="bob"))
    names = {str(laptop.pk): "laptop", str(phone.family.pk): "phone"}

    response = admin_client.get(CHANGELIST, {"q": term.format(laptop=laptop.pk)})

    assert {names.get(pk, pk) for pk in listed(response)} == expected


def test_search_with_text_that_is_no_uuid_or_address_does_not_fail(admin_client):
    login(UserFactory(username="carol"))

    response = admin_client.get(CHANGELIST, {"q": "not-an-ip:or-uuid"})

    assert response.status_code == 200
    assert listed(response) == set()


# The change page ---------------------------------------------------------------------


def test_change_page_shows_the_rotation_chain_in_order_and_no_secret(admin_client, settings):
    pair = login()
    second = services.rotate(pair.refresh, services.Client("192.0.2.2", "tab-two/1.0"))
    services.rotate(second.refresh, services.Client("192.0.2.3", "tab-three/1.0"))
    tokens = list(RefreshToken.objects.filter(family=pair.family).order_by("issued_at", "pk"))

    response = admin_client.get(change_url(pair.family))

    assert response.status_code == 200
    html = response.content.decode()
    chain = html[html.index("tokens-TOTAL_FORMS") :]
    positions = [
        chain.index(agent) for agent in ("admin-tests/1.0", "tab-two/1.0", "tab-three/1.0")
    ]
    assert positions == sorted(positions)
    assert f"#{tokens[1].pk}" in chain and f"#{tokens[0].pk}" in chain  # rotated from
    for token in tokens:
        assert token.lookup_key not in html
        assert token.secret_hash not in html
        assert token.secret_hash.split("$", 1)[1] not in html
        if token.sealed:
            assert bytes(token.sealed).hex() not in html
    for raw in (pair.refresh, second.refresh):
        assert raw[len(settings.ROTATING_TOKENS.get("TOKEN_PREFIX", "rtok_")) :][:16] not in html
    assert 'name="_save"' not in html  # read-only


def test_last_use_is_shown_like_the_other_dates(admin_client):
    family = login().family
    response = admin_client.get(change_url(family))
    html = response.content.decode()
    row = html[html.index("field-last_used_at") :]
    row = row[: row.index("</div>", row.index("readonly"))]
    last_used = TokenFamily.objects.with_last_use().get().last_used_at
    assert formats.localize(timezone.template_localtime(last_used)) in row
    assert "+00:00" not in row and str(last_used.year) in row


def test_a_bound_family_shows_its_key_thumbprint(admin_client):
    family = login().family
    TokenFamily.objects.filter(pk=family.pk).update(dpop_jkt="a" * 43)
    listing = admin_client.get(CHANGELIST).content.decode()
    assert "icon-yes.svg" in listing  # the "bound to a key" column
    assert "a" * 43 in admin_client.get(change_url(family)).content.decode()


def test_families_and_tokens_cannot_be_added(admin_client):
    assert admin_client.get(reverse("admin:rotating_tokens_tokenfamily_add")).status_code == 403
    response = admin_client.get(change_url(login().family))
    (chain,) = response.context["inline_admin_formsets"]
    assert not chain.has_add_permission and not chain.has_change_permission
    assert not chain.has_delete_permission


def test_only_superusers_delete_and_a_deleted_family_is_revoked_first(
    client, superuser, revocations
):
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_tokenfamily", "change_tokenfamily"])
    )
    staff.user_permissions.add(Permission.objects.get(codename="delete_tokenfamily"))
    family = login().family
    delete_url = reverse("admin:rotating_tokens_tokenfamily_delete", args=[family.pk])

    client.force_login(staff)
    assert client.get(delete_url).status_code == 403
    assert "delete_selected" not in client.get(CHANGELIST).content.decode()
    client.force_login(superuser)
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not TokenFamily.objects.filter(pk=family.pk).exists()
    assert revocations == [(family.pk, "admin")]


# Actions ---------------------------------------------------------------------------------


@pytest.fixture
def revocations():
    sent = []

    def receiver(sender, family, reason, **kwargs):
        sent.append((family.pk, reason))

    signals.family_revoked.connect(receiver)
    yield sent
    signals.family_revoked.disconnect(receiver)


def me(api_client, pair: services.TokenPair) -> int:
    return api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {pair.access}").status_code


def test_revoke_selected_families(admin_client, api_client, revocations):
    chosen, other = login(), login()
    assert me(api_client, chosen) == 200  # the family is known to the process now

    response = admin_client.post(
        CHANGELIST,
        {"action": "revoke_selected_families", "_selected_action": [str(chosen.family.pk)]},
        follow=True,
    )

    assert "1 family revoked." in response.content.decode()
    assert revocations == [(chosen.family.pk, "admin")]
    assert me(api_client, chosen) == 401
    assert me(api_client, other) == 200
    assert TokenFamily.objects.get(pk=chosen.family.pk).revoke_reason == "admin"


def test_revoke_all_families_of_the_selected_families_users(admin_client, api_client, revocations):
    alice, bob = UserFactory(), UserFactory()
    alice_phone, alice_laptop, bob_phone = login(alice), login(alice), login(bob)

    admin_client.post(
        CHANGELIST,
        {
            "action": "revoke_all_families_of_users",
            "_selected_action": [str(alice_phone.family.pk)],
        },
    )

    assert {pk for pk, _ in revocations} == {alice_phone.family.pk, alice_laptop.family.pk}
    assert {reason for _, reason in revocations} == {"admin"}
    assert me(api_client, alice_laptop) == 401
    assert me(api_client, bob_phone) == 200


# Devices, names and the user's page -----------------------------------------------------

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
HOSTILE_NAME = '<script>alert("name")</script>'
HOSTILE_AGENT = '"><script>alert("agent")</script>'


def user_change_url(user) -> str:
    return reverse(f"admin:{user._meta.app_label}_{user._meta.model_name}_change", args=[user.pk])


def test_list_and_family_page_show_device_and_name_escaped(admin_client):
    pair = login(client=services.Client("198.51.100.20", CHROME))
    services.rename_family(pair.family, HOSTILE_NAME)
    hostile = login(client=services.Client("198.51.100.21", HOSTILE_AGENT))

    for url in (CHANGELIST, change_url(pair.family), change_url(hostile.family)):
        html = admin_client.get(url).content.decode()
        assert "<script>alert(" not in html
    listing = admin_client.get(CHANGELIST).content.decode()
    assert "Chrome 131 on Linux" in listing
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in listing
    page = admin_client.get(change_url(pair.family)).content.decode()
    assert "Chrome 131 on Linux" in page


def test_list_searches_names(admin_client):
    pair = login()
    services.rename_family(pair.family, "Work laptop")
    login()

    assert listed(admin_client.get(CHANGELIST, {"q": "work LAPTOP"})) == {str(pair.family.pk)}


def test_users_page_lists_their_families_newest_first_with_device_name_and_state(admin_client):
    user = UserFactory(username="alice")
    laptop = services.start_family(user, services.Client("198.51.100.20", CHROME))
    services.rename_family(laptop.family, HOSTILE_NAME)
    ended = login(user)
    services.revoke_family(ended.family, RevokeReason.REUSE_DETECTED)
    someone_else = login(UserFactory(username="bob"))

    response = admin_client.get(user_change_url(user))

    assert response.status_code == 200
    html = response.content.decode()
    section = html[html.index("token_families-TOTAL_FORMS") :]
    assert 'value="2"' in section[:80]
    assert "Chrome 131 on Linux" in section
    assert "&lt;script&gt;" in section and "<script>alert(" not in html
    assert "revoked: reuse detected" in section
    assert "active" in section
    assert str(someone_else.family.pk) not in html
    # Newest first: the revoked login came after the laptop.
    assert section.index("revoked: reuse detected") < section.index("Chrome 131 on Linux")


def _user_form_data(response) -> dict[str, str]:
    """The user change form as the browser would post it back."""
    form = response.context["adminform"].form
    data: dict[str, str] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None or name in ("password",):
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        if isinstance(value, (list, tuple)):
            continue
        data[name] = (
            value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)
        )
    for split in ("last_login", "date_joined"):
        if split in data:
            date, time = data.pop(split).split(" ")
            data[f"{split}_0"], data[f"{split}_1"] = date, time
    for formset in response.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = str(management.initial.get(name, 0))
        for index, form in enumerate(formset.formset.forms):
            data[f"{formset.formset.prefix}-{index}-id"] = str(form.instance.pk)
            data[f"{formset.formset.prefix}-{index}-user"] = str(form.instance.user_id)
    return data


def test_revoking_from_the_users_page_goes_through_the_service(
    admin_client, api_client, revocations
):
    user = UserFactory(username="alice")
    keep, stolen = login(user), login(user)
    page = admin_client.get(user_change_url(user))
    data = _user_form_data(page)
    prefix = page.context["inline_admin_formsets"][0].formset.prefix
    forms = page.context["inline_admin_formsets"][0].formset.forms
    index = next(i for i, form in enumerate(forms) if form.instance.pk == stolen.family.pk)
    data[f"{prefix}-{index}-revoke"] = "on"

    response = admin_client.post(user_change_url(user), data)

    assert response.status_code == 302, response.context and response.context["adminform"].errors
    assert TokenFamily.objects.get(pk=stolen.family.pk).revoke_reason == "admin"
    assert TokenFamily.objects.get(pk=keep.family.pk).revoked_at is None
    assert revocations == [(stolen.family.pk, "admin")]
    assert (
        api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {stolen.access}").status_code == 401
    )


def test_users_page_without_permission_on_families_shows_none(client, superuser):
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_user"), Permission.objects.get(codename="change_user")
    )
    client.force_login(staff)
    user = UserFactory(username="alice")
    login(user)

    html = client.get(user_change_url(user)).content.decode()

    assert "token_families-TOTAL_FORMS" not in html
