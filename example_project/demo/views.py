from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rotating_tokens.decorators import access_token_required
from rotating_tokens.openapi import ACCESS_TOKEN_REFUSED


class MeView(APIView):
    """``GET /api/me/``: who the access token belongs to."""

    @extend_schema(
        operation_id="me",
        summary="Who the access token belongs to",
        responses={
            200: inline_serializer(
                "Me", {"id": serializers.IntegerField(), "username": serializers.CharField()}
            ),
            **ACCESS_TOKEN_REFUSED,
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"id": request.user.pk, "username": request.user.get_username()})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL that matches nothing: the API's ``{"detail", "code"}`` under
    ``/api/`` (e.g. ``DELETE /api/auth/sessions/not-a-uuid/``), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)


@access_token_required
async def async_me(request: HttpRequest) -> JsonResponse:
    """``GET /api/async/me/``: ``/api/me/`` as an async Django view (under ASGI, the
    token is checked on the event loop; only the user row is read in a thread)."""
    user = await request.auser()
    return JsonResponse({"id": user.pk, "username": user.get_username()})
