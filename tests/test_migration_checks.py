"""The checks of a project migrating from simplejwt and of the integrations
(W040, W006, E060-E069, W060-W069): one test per id, and the silent cases."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.checks import Tags, run_checks
from django.test import override_settings
from django.urls import include, path
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import (
    JWTAuthentication,
    JWTStatelessUserAuthentication,
)

from rotating_tokens import services
from rotating_tokens.authentication import AccessTokenAuthentication
from rotating_tokens.checks import (
    check_migration,
    check_settings,
    check_simplejwt_authentication,
    check_throttle_rates,
)
from tests.factories import UserFactory

STATELESS = "rest_framework_simplejwt.authentication.JWTStatelessUserAuthentication"
OURS = "rotating_tokens.authentication.AccessTokenAuthentication"


def _ids(messages) -> list[str]:
    return [message.id for message in messages]


def _rotating_ids(messages) -> list[str]:
    return [message.id for message in messages if message.id.startswith("rotating_tokens")]


# W040: simplejwt's JWTAuthentication, or a subclass that is not ours ---------------


class ProjectJWTAuthentication(JWTAuthentication):
    """A project's own subclass: as blind to families as its parent."""


class OurSubclass(AccessTokenAuthentication):
    pass


class StatelessView(APIView):
    authentication_classes = (JWTStatelessUserAuthentication,)

    def get(self, request):
        return Response({})


class OwnSubclassView(APIView):
    authentication_classes = (OurSubclass,)

    def get(self, request):
        return Response({})


nested = [path("stateless/", StatelessView.as_view())]
urlpatterns = [
    path("api/auth/", include("rotating_tokens.urls")),
    path("mine/", OwnSubclassView.as_view()),
    path("deep/", include(nested)),
]


@pytest.mark.parametrize(
    "classes",
    [
        ["rest_framework_simplejwt.authentication.JWTAuthentication"],
        [STATELESS],
        [OURS, f"{__name__}.ProjectJWTAuthentication"],
    ],
    ids=["JWTAuthentication", "JWTStatelessUserAuthentication", "a project's subclass"],
)
@pytest.mark.parametrize("dpop", ["optional", "off"])
def test_simplejwt_authentication_or_a_subclass_is_warned_about(settings, classes, dpop):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}
    settings.ROTATING_TOKENS = {**settings.ROTATING_TOKENS, "DPOP": dpop}

    messages = check_simplejwt_authentication()

    assert _ids(messages) == ["rotating_tokens.W040"]
    assert classes[-1] in messages[0].msg
    assert "rotating_tokens.W040" in _ids(run_checks())


@pytest.mark.parametrize("classes", [[OURS], [f"{__name__}.OurSubclass"], []])
def test_our_authentication_and_its_subclasses_are_silent(settings, classes):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}
    assert check_simplejwt_authentication() == []


@override_settings(ROOT_URLCONF=__name__)
def test_a_view_with_simplejwt_authentication_is_warned_about():
    messages = check_simplejwt_authentication()

    # The view in the nested include, not the one with our subclass, nor the app's.
    assert _ids(messages) == ["rotating_tokens.W040"]
    assert f"{__name__}.StatelessView" in messages[0].msg
    assert STATELESS in messages[0].msg


def test_a_view_with_the_default_class_is_not_warned_about_twice(settings):
    # As in a project whose views inherit DEFAULT_AUTHENTICATION_CLASSES. (Through the
    # settings fixture only: mixed with override_settings, it would restore this
    # ROOT_URLCONF after the test.)
    settings.ROOT_URLCONF = __name__
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_AUTHENTICATION_CLASSES": [STATELESS],
    }

    messages = check_simplejwt_authentication()

    assert _ids(messages) == ["rotating_tokens.W040"]
    assert "DEFAULT_AUTHENTICATION_CLASSES" in messages[0].msg


@override_settings(ROOT_URLCONF="tests.urls_that_do_not_exist")
def test_a_urlconf_that_does_not_import_is_left_to_djangos_checks():
    assert check_simplejwt_authentication() == []


# SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] is honoured, W060 when ROTATING_TOKENS differs --


DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("simple_jwt", "idle", "family"),
    [
        # One token per login, never rotated: the session ended a day after the login.
        ({"REFRESH_TOKEN_LIFETIME": DAY}, DAY, DAY),
        ({"REFRESH_TOKEN_LIFETIME": DAY, "ROTATE_REFRESH_TOKENS": False}, DAY, DAY),
        # Rotated: a day unused, and no bound; ours is 30 days, or longer to match.
        ({"REFRESH_TOKEN_LIFETIME": DAY, "ROTATE_REFRESH_TOKENS": True}, DAY, 30 * DAY),
        ({"REFRESH_TOKEN_LIFETIME": 60 * DAY, "ROTATE_REFRESH_TOKENS": True}, 60 * DAY, 60 * DAY),
        # simplejwt's lifetime not set: ours.
        ({"ACCESS_TOKEN_LIFETIME": timedelta(minutes=1)}, 14 * DAY, 30 * DAY),
    ],
)
@pytest.mark.django_db
def test_simplejwt_refresh_token_lifetime_is_honoured(settings, simple_jwt, idle, family):
    settings.SIMPLE_JWT = simple_jwt
    settings.ROTATING_TOKENS = {"TRANSPORT": "body"}
    now = timezone.now()

    pair = services.start_family(UserFactory(), services.Client(None, ""), now=now)

    assert (pair.family.expires_at - now, pair.refresh_expires_at - now) == (family, idle)
    assert _rotating_ids(run_checks()) == []


@pytest.mark.django_db
def test_our_lifetimes_win_over_simplejwts(settings):
    settings.SIMPLE_JWT = {"REFRESH_TOKEN_LIFETIME": DAY}
    settings.ROTATING_TOKENS = {"REFRESH_TOKEN_LIFETIME": 2 * DAY, "FAMILY_LIFETIME": 3 * DAY}
    now = timezone.now()

    pair = services.start_family(UserFactory(), services.Client(None, ""), now=now)

    assert (pair.family.expires_at - now, pair.refresh_expires_at - now) == (3 * DAY, 2 * DAY)


@pytest.mark.parametrize(
    ("ours", "warned"),
    [
        ({"REFRESH_TOKEN_LIFETIME": 14 * DAY, "FAMILY_LIFETIME": 30 * DAY}, True),
        ({"FAMILY_LIFETIME": 2 * DAY}, True),
        ({"REFRESH_TOKEN_LIFETIME": DAY}, False),  # the same as simplejwt's
        ({"REFRESH_TOKEN_LIFETIME": DAY, "FAMILY_LIFETIME": DAY}, False),
        ({}, False),
    ],
)
def test_lifetimes_that_differ_from_simplejwts_are_warned_about(settings, ours, warned):
    settings.SIMPLE_JWT = {"REFRESH_TOKEN_LIFETIME": DAY}
    settings.ROTATING_TOKENS = ours

    ids = _ids(check_migration())

    assert ids == (["rotating_tokens.W060"] if warned else [])
    assert ("rotating_tokens.W060" in _ids(run_checks(tags=[Tags.security]))) is warned


def test_a_simplejwt_lifetime_that_is_not_a_duration_is_e004_only(settings):
    settings.SIMPLE_JWT = {"REFRESH_TOKEN_LIFETIME": 86400}
    settings.ROTATING_TOKENS = {"FAMILY_LIFETIME": DAY}

    assert _ids(check_migration()) == []
    errors = check_settings()
    assert _ids(errors) == ["rotating_tokens.E004"]
    assert "REFRESH_TOKEN_LIFETIME (from SIMPLE_JWT['REFRESH_TOKEN_LIFETIME'])" in errors[0].msg


# W006: the app's throttle scopes without a rate (check --deploy) --------------------

RATES = {"rotating_tokens_login": "10/minute", "rotating_tokens_refresh": "60/minute"}


@pytest.mark.parametrize(
    ("rates", "rotating_tokens", "missing"),
    [
        ({}, {}, ["LOGIN_THROTTLE_SCOPE", "REFRESH_THROTTLE_SCOPE"]),
        ({"rotating_tokens_login": "10/minute"}, {}, ["REFRESH_THROTTLE_SCOPE"]),
        ({**RATES, "rotating_tokens_refresh": None}, {}, ["REFRESH_THROTTLE_SCOPE"]),
        (RATES, {"LOGIN_THROTTLE_SCOPE": "logins"}, ["LOGIN_THROTTLE_SCOPE"]),
    ],
)
def test_throttle_scopes_without_a_rate_are_warned_about_on_deploy(
    settings, rates, rotating_tokens, missing
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    settings.ROTATING_TOKENS = rotating_tokens

    messages = check_throttle_rates()

    assert _ids(messages) == ["rotating_tokens.W006"]
    assert [
        name
        for name in ("LOGIN_THROTTLE_SCOPE", "REFRESH_THROTTLE_SCOPE")
        if name in messages[0].msg
    ] == missing
    assert "rotating_tokens.W006" in _ids(run_checks(include_deployment_checks=True))
    assert "rotating_tokens.W006" not in _ids(run_checks())  # runserver and tests: quiet


def test_throttle_scopes_with_rates_are_silent(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RATES}
    assert check_throttle_rates() == []
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"logins": "1/s"},
    }
    settings.ROTATING_TOKENS = {
        "LOGIN_THROTTLE_SCOPE": "logins",
        "REFRESH_THROTTLE_SCOPE": "logins",
    }
    assert check_throttle_rates() == []


# E061, W061: SIMPLEJWT_LEGACY_KEYS -----------------------------------------------------

ES_PUBLIC = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ES_PRIVATE = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)
TRANSITION = {"ACCEPT_SIMPLEJWT_UNTIL": datetime(2999, 1, 1, tzinfo=dt_timezone.utc)}


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [{"ALGORITHM": "HS256", "SIGNING_KEY": "the old secret"}],
        [
            {"ALGORITHM": "ES256", "VERIFYING_KEY": ES_PUBLIC},
            {"ALGORITHM": "HS512", "SIGNING_KEY": b"k"},
        ],
    ],
)
def test_well_formed_legacy_keys_are_silent(settings, keys):
    settings.ROTATING_TOKENS = {**TRANSITION, "SIMPLEJWT_LEGACY_KEYS": keys}
    assert check_migration() == []
    assert check_settings() == []  # a known setting (E002)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"ALGORITHM": "HS256"}, "list of dicts"),
        (["HS256"], "must be a dict"),
        ([{"ALGORITHM": "HS256", "SIGNING_KEY": "k", "KID": "1"}], "unknown key(s) KID"),
        ([{"ALGORITHM": "none", "SIGNING_KEY": "k"}], "'none'"),
        ([{"SIGNING_KEY": "k"}], "None"),
        ([{"ALGORITHM": "HS256", "SIGNING_KEY": ""}], "needs SIGNING_KEY"),
        ([{"ALGORITHM": "HS256", "VERIFYING_KEY": "k"}], "needs SIGNING_KEY"),
        ([{"ALGORITHM": "ES256"}], "PEM public key"),
        ([{"ALGORITHM": "ES256", "VERIFYING_KEY": "not a PEM"}], "PEM public key"),
        ([{"ALGORITHM": "ES256", "VERIFYING_KEY": ES_PRIVATE}], "PEM public key"),
        ([{"ALGORITHM": "RS256", "VERIFYING_KEY": ES_PUBLIC}], "PEM public key"),
    ],
)
def test_malformed_legacy_keys_are_an_error(settings, keys, problem):
    settings.ROTATING_TOKENS = {**TRANSITION, "SIMPLEJWT_LEGACY_KEYS": keys}

    messages = check_migration()

    assert _ids(messages) == ["rotating_tokens.E061"]
    assert problem in messages[0].msg


@pytest.mark.parametrize(
    "until", [None, datetime(2000, 1, 1, tzinfo=dt_timezone.utc)], ids=["unset", "past"]
)
def test_legacy_keys_after_the_transition_are_warned_about(settings, until):
    settings.ROTATING_TOKENS = {
        "ACCEPT_SIMPLEJWT_UNTIL": until,
        "SIMPLEJWT_LEGACY_KEYS": [{"ALGORITHM": "HS256", "SIGNING_KEY": "the old secret"}],
    }
    assert _ids(check_migration()) == ["rotating_tokens.W061"]


# W062: TRANSPORT "both" kept past the transition ----------------------------------------

PAST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(
    ("transport", "until", "middleware", "warned"),
    [
        ("both", PAST, True, True),
        ("both", datetime(2999, 1, 1, tzinfo=dt_timezone.utc), True, False),  # transition on
        ("both", None, True, False),  # "both" chosen for its own sake, no migration
        ("both", PAST, False, False),  # no cookie at all (W010 says it)
        ("auto", PAST, True, False),
    ],
)
def test_transport_both_after_the_transition_is_warned_about(
    settings, transport, until, middleware, warned
):
    settings.ROTATING_TOKENS = {"TRANSPORT": transport, "ACCEPT_SIMPLEJWT_UNTIL": until}
    cookie = "rotating_tokens.middleware.RefreshTokenCookieMiddleware"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != cookie] + (
        [cookie] if middleware else []
    )

    assert _ids(check_migration()) == (["rotating_tokens.W062"] if warned else [])


# W063: simplejwt's own token views still routed ---------------------------------------


def simplejwt_views_urlconf():
    from rest_framework_simplejwt import views as simplejwt_views

    return [
        path("api/token/refresh/", simplejwt_views.TokenRefreshView.as_view()),
        path("api/auth/", include("rotating_tokens.urls")),
        path("compat/", include("rotating_tokens.simplejwt_urls")),
    ]


class SimpleJWTViewsURLconf:
    urlpatterns = simplejwt_views_urlconf()


def test_simplejwt_token_views_still_routed_are_warned_about():
    with override_settings(ROOT_URLCONF=SimpleJWTViewsURLconf):
        messages = [m for m in check_migration() if m.id == "rotating_tokens.W063"]

    # simplejwt's refresh view only: the app's views and its simplejwt-compatible URLs
    # are silent.
    assert len(messages) == 1
    assert "rest_framework_simplejwt.views.TokenRefreshView" in messages[0].msg


def test_the_apps_simplejwt_compatible_urls_are_silent():
    class URLconf:
        urlpatterns = [path("api/token/", include("rotating_tokens.simplejwt_urls"))]

    with override_settings(ROOT_URLCONF=URLconf):
        assert "rotating_tokens.W063" not in _ids(check_migration())


# E064: SIMPLE_JWT["USER_ID_FIELD"] must name exactly one user ---------------------------


@pytest.mark.parametrize("field", ["email", "first_name", "no_such_field", "groups"])
def test_a_user_id_field_that_is_not_unique_is_an_error(field):
    with override_settings(SIMPLE_JWT={"USER_ID_FIELD": field}):
        messages = [m for m in check_migration() if m.id == "rotating_tokens.E064"]

    assert len(messages) == 1
    assert repr(field) in messages[0].msg


@pytest.mark.parametrize("field", ["id", "pk", "username"])
def test_a_unique_user_id_field_is_silent(field):
    with override_settings(SIMPLE_JWT={"USER_ID_FIELD": field}):
        assert "rotating_tokens.E064" not in _ids(check_migration())
