"""Async views, adrf and Django Ninja beside the app's URLs (tests/test_async.py,
tests/test_contrib_ninja.py)."""

from __future__ import annotations

from adrf.views import APIView as AsyncAPIView
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from ninja import NinjaAPI
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from example_project.demo.views import MeView, async_me
from rotating_tokens.authentication import AccessTokenAuthentication, AsyncAccessTokenAuthentication
from rotating_tokens.contrib.ninja import (
    AccessTokenAuth,
    AsyncAccessTokenAuth,
    add_exception_handler,
)
from rotating_tokens.decorators import access_token_required
from rotating_tokens.services import current_family_id


@access_token_required
def sync_me(request: HttpRequest) -> JsonResponse:
    family = request.access.family_id  # type: ignore[attr-defined]
    return JsonResponse(
        {
            "id": request.user.pk,
            "username": request.user.get_username(),
            "family": str(family),
            "current_family": str(current_family_id()),
        }
    )


@access_token_required
async def async_post(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"family": str(request.access.family_id)})  # type: ignore[attr-defined]


class AdrfMeView(AsyncAPIView):
    authentication_classes = (AsyncAccessTokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    async def get(self, request):
        return Response({"id": request.user.pk, "username": request.user.get_username()})


class AdrfSyncAuthView(AdrfMeView):
    authentication_classes = (AccessTokenAuthentication,)


api = NinjaAPI(urls_namespace="tests-ninja")
add_exception_handler(api)
bare_api = NinjaAPI(urls_namespace="tests-ninja-bare")  # no handler installed


@api.get("/me", auth=AccessTokenAuth())
def ninja_me(request):
    return {"id": request.auth.user.pk, "username": request.user.get_username()}


@api.get("/async/me", auth=AsyncAccessTokenAuth())
async def ninja_async_me(request):
    return {"id": request.auth.user.pk, "username": request.auth.user.get_username()}


@bare_api.get("/me", auth=AccessTokenAuth())
def bare_me(request):
    return {"id": request.auth.user.pk}


urlpatterns = [
    path("api/auth/", include("rotating_tokens.urls")),
    path("api/me/", MeView.as_view(), name="me"),
    path("api/async/me/", async_me),
    path("api/sync/me/", sync_me),
    path("api/async/post/", async_post),
    path("api/adrf/me/", AdrfMeView.as_view()),
    path("api/adrf/sync-auth/me/", AdrfSyncAuthView.as_view()),
    path("api/ninja/", api.urls),
    path("api/bare-ninja/", bare_api.urls),
]
