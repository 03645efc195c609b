from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

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
