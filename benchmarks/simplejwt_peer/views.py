from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class MeView(APIView):
    """``GET /api/me/``: the example project's view, authenticated by simplejwt's
    stateless ``JWTAuthentication`` (the project's default)."""

    def get(self, request: Request) -> Response:
        return Response({"id": request.user.pk, "username": request.user.get_username()})
