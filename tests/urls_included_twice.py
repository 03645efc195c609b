"""The app's URLs under an old and a new prefix: once under the app's own namespace
twice (what a project writes first), and under instance namespaces of their own."""

from django.urls import include, path

urlpatterns = [
    path("api/auth/", include("rotating_tokens.urls")),
    path("api/v2/auth/", include("rotating_tokens.urls")),
    path("old/", include("rotating_tokens.urls", namespace="old")),
    path("new/", include("rotating_tokens.urls", namespace="new")),
]
