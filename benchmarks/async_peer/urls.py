"""The example project's URLs, and ``/bench/simplejwt/me/``: the async view of
``/api/async/me/`` with simplejwt's JWTAuthentication, as a project writes it without
this app (simplejwt has no async path: its check, with its user query, runs in
one ``sync_to_async`` hop, as ours does when the family is not known in memory)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication

from example_project.urls import urlpatterns as example_urlpatterns


async def simplejwt_me(request: HttpRequest) -> JsonResponse:
    try:
        found = await sync_to_async(JWTAuthentication().authenticate)(request)  # type: ignore[arg-type]
    except AuthenticationFailed as refused:
        return JsonResponse({"detail": str(refused.detail)}, status=401)
    if found is None:
        return JsonResponse({"detail": "not authenticated"}, status=401)
    user = found[0]
    return JsonResponse({"id": user.pk, "username": user.get_username()})


urlpatterns = [*example_urlpatterns, path("bench/simplejwt/me/", simplejwt_me)]
