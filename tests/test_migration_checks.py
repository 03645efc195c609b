"""The checks of a project migrating from simplejwt and of the integrations
(W040, W006, E060-E069, W060-W069): one test per id, and the silent cases."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import (
    JWTAuthentication,
    JWTStatelessUserAuthentication,
)

from rotating_tokens.authentication import AccessTokenAuthentication
from rotating_tokens.checks import check_simplejwt_authentication

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


@override_settings(ROOT_URLCONF="tests.urls_that_do_not_exist")
def test_a_urlconf_that_does_not_import_is_left_to_djangos_checks():
    assert check_simplejwt_authentication() == []
