"""A project that mounted simplejwt's views at api/token/ (tests/test_legacy.py)."""

from django.urls import include, path

urlpatterns = [
    path("api/token/", include("rotating_tokens.simplejwt_urls")),
    path("api/auth/", include("rotating_tokens.urls")),
]
